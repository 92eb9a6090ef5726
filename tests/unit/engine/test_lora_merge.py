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
