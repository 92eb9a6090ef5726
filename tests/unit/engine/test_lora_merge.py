"""LoRA weights for the generators: the merged state dict equals the PEFT model's function, under HF names."""

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from alignrl.engine.deepspeed_learner import merged_lora_state_dict


def test_merged_lora_weights_reproduce_the_adapted_model(tiny_model_dir):
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    names = set(base.state_dict())
    peft_model = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8,
                                                 target_modules=["q_proj", "v_proj", "up_proj"]))
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)  # PEFT starts B at 0; make the adapters matter
    ids = torch.randint(3, 60, (2, 9))
    with torch.no_grad():
        want = peft_model(input_ids=ids).logits
    merged = merged_lora_state_dict(peft_model)
    assert set(merged) == names
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    plain.load_state_dict(merged)
    with torch.no_grad():
        got = plain(input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-5)
    # the adapters are unmerged again: training goes on from the same function, not a doubled update
    with torch.no_grad():
        again = peft_model(input_ids=ids).logits
    assert torch.allclose(again, want, atol=1e-6)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(merged[q], AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()[q])


def _adapted(tiny_model_dir, **lora_kw):
    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    kw = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "up_proj"], **lora_kw}
    peft_model = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", **kw))
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_" in n:
                p.normal_(0, 0.1)
    return peft_model


def test_adapter_sync_rebuilds_exactly_the_merged_layers_from_the_base_folder(tiny_model_dir):
    from alignrl.actors.lora_sync import bucket_nbytes, lora_adapter_bucket, merged_layers, read_base_layers
    from alignrl.actors.rollout import layer_key

    peft_model = _adapted(tiny_model_dir)
    bucket = lora_adapter_bucket(peft_model, str(tiny_model_dir))
    layers = {layer_key(name) for name, *_ in bucket["adapters"]}
    got = dict(merged_layers(read_base_layers(tiny_model_dir, layers, layer_key), bucket["adapters"], layer_key))
    want = merged_lora_state_dict(peft_model)
    # every tensor of each decoder layer (vLLM reloads whole layers), nothing outside them
    assert set(got) == {n for n in want if layer_key(n).startswith("model.layers.")}
    for name, t in got.items():  # PEFT's merge as one fused addmm: equal up to one rounding of the product
        torch.testing.assert_close(t.float(), want[name], rtol=0, atol=1e-6)
    buffers: dict[str, torch.Tensor] = {}
    again = dict(merged_layers(read_base_layers(tiny_model_dir, layers, layer_key), bucket["adapters"], layer_key,
                               out=buffers))
    assert all(again[name].data_ptr() == buf.data_ptr() for name, buf in buffers.items())  # merged in place
    assert len(buffers) == len(bucket["adapters"]) and all(torch.equal(again[n], got[n]) for n in got)
    full = sum(t.numel() * t.element_size() for t in want.values())
    assert bucket_nbytes(bucket) * 10 < full


def test_a_rollout_worker_merges_sent_adapters_into_its_engine(tiny_model_dir):
    from alignrl.actors.lora_sync import lora_adapter_bucket
    from alignrl.actors.rollout import RolloutWorker

    peft_model = _adapted(tiny_model_dir)
    worker = RolloutWorker("hf", str(tiny_model_dir), seed=0, engine_kw={})
    ids = torch.randint(3, 60, (2, 9))
    model = worker.engine.model
    with torch.no_grad():
        before = model(input_ids=ids).logits
        want = peft_model(input_ids=ids).logits
    seconds, nbytes = worker.load_bucket(lora_adapter_bucket(peft_model, str(tiny_model_dir)))
    with torch.no_grad():
        got = model(input_ids=ids).logits
    assert not torch.allclose(before, want, atol=1e-3)
    assert torch.allclose(got, want, atol=1e-5)
    assert seconds > 0 and nbytes > 0
    # a second sync with moved adapters starts from the base again, not from the last merge
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.mul_(-1)
        want = peft_model(input_ids=ids).logits
    worker.load_bucket(lora_adapter_bucket(peft_model, str(tiny_model_dir)))
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, want, atol=1e-5)


def test_adapters_the_merge_cannot_rebuild_fall_back_to_full_weights(tiny_model_dir):
    from alignrl.actors.lora_sync import lora_adapter_bucket

    assert lora_adapter_bucket(_adapted(tiny_model_dir, use_dora=True), str(tiny_model_dir)) is None
    assert lora_adapter_bucket(_adapted(tiny_model_dir, target_modules=["embed_tokens", "q_proj"]),
                               str(tiny_model_dir)) is None
