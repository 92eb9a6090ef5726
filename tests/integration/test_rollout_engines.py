"""The vLLM and HF generation engines on the tiny model: parity, log-probs, seeding, weight pushes.

vLLM runs in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, ``"uni"`` executor, eager), so it
starts inside pytest in a few seconds with no child process; one engine serves the whole module
and the tests that change its weights put the original ones back.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alignrl.errors import UserError
from alignrl.rollout.base import SamplingConfig
from alignrl.rollout.factory import make_engine
from alignrl.rollout.hf_engine import HFEngine

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:`torch.distributed.reduce_op` is deprecated:FutureWarning"),
]

EOS = 2  # "</s>" in the tiny tokenizer
LONG = "The cat sat on the mat. " * 6  # 144 characters + BOS: longer than one 128-token KV block
PROMPTS = ["hello", "The quick brown fox", "a", "1+1=", "xyz" * 3, "Q: what?\nA:", " ", LONG]
GREEDY = SamplingConfig(temperature=0.0, max_new_tokens=16, logprobs=True)


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory: pytest.TempPathFactory):
    """vLLM and torch caches in a temporary folder unless set already; vLLM in-process.

    vLLM compiles two small sampler kernels with inductor (C++, g++) on first use: 10-25 s on two
    busy cores with an empty cache. A ``TORCHINDUCTOR_CACHE_DIR`` set by the caller (e.g. a
    lasting ``.cache/`` folder) is kept so that reruns skip it. Variables are restored afterwards.
    """
    root = tmp_path_factory.mktemp("caches")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR", "XDG_CACHE_HOME"):
            if not os.environ.get(var):
                mp.setenv(var, str(root / var.lower()))
        mp.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        yield root


@pytest.fixture(scope="module")
def vllm_engine(cache_env: Path, tiny_model_dir: Path):
    """One in-process vLLM engine on the tiny model for the module; closed at the end."""
    engine = make_engine("vllm", tiny_model_dir, kv_cache_gib=1)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def hf_engine(tiny_model_dir: Path) -> HFEngine:
    """The HF engine on the same tiny model (never modified by the tests)."""
    return make_engine("hf", tiny_model_dir)


@pytest.fixture(scope="module")
def second_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model with the same shape and tokenizer but other weights (seed 1)."""
    from alignrl.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_seed1") / "model", seed=1)


def _weights(model_dir: Path) -> list[tuple[str, torch.Tensor]]:
    return list(load_file(model_dir / "model.safetensors").items())


def _ids(outputs) -> list[tuple[int, ...]]:
    return [c.token_ids for completions in outputs for c in completions]


def _teacher_forced(engine: HFEngine, prompt: str, completion: tuple[int, ...]) -> torch.Tensor:
    """log_softmax of the model's logits at each completion token, from one forward pass."""
    prompt_ids = engine.tokenizer(prompt)["input_ids"]
    ids = torch.tensor([prompt_ids + list(completion)])
    with torch.no_grad():
        logp = engine.model(ids).logits[0].float().log_softmax(-1)  # (L, V)
    targets = torch.tensor(completion)
    return logp[len(prompt_ids) - 1:-1].gather(-1, targets[:, None])[:, 0]


def test_greedy_outputs_agree(hf_engine, vllm_engine):
    hf_out = hf_engine.generate(PROMPTS, GREEDY)
    vllm_out = vllm_engine.generate(PROMPTS, GREEDY)
    assert _ids(hf_out) == _ids(vllm_out)
    assert [c[0].text for c in hf_out] == [c[0].text for c in vllm_out]
    assert all(len(c[0].token_ids) == 16 for c in hf_out)  # the random model never emits EOS here


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.7, 0.9)])
@pytest.mark.parametrize("engine_name", ["vllm", "hf"])
def test_logprobs_match_teacher_forcing(request, hf_engine, engine_name, temperature, top_p):
    # Raw log-probs (before temperature and top-p) of sampled tokens, for both engines.
    engine = request.getfixturevalue(f"{engine_name}_engine")
    sampling = SamplingConfig(n=2, temperature=temperature, top_p=top_p, max_new_tokens=16,
                              seed=3, logprobs=True)
    for prompt, completions in zip(PROMPTS, engine.generate(PROMPTS, sampling), strict=True):
        for c in completions:
            expected = _teacher_forced(hf_engine, prompt, c.token_ids)
            torch.testing.assert_close(torch.tensor(c.logprobs), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("engine_name", ["vllm", "hf"])
def test_seeded_sampling(request, engine_name):
    engine = request.getfixturevalue(f"{engine_name}_engine")
    sampling = SamplingConfig(n=4, temperature=1.0, max_new_tokens=12, seed=7)
    first = engine.generate(PROMPTS[:3], sampling)
    assert [len(c) for c in first] == [4, 4, 4]
    assert all(len(set(c.token_ids for c in completions)) > 1 for completions in first)
    assert _ids(engine.generate(PROMPTS[:3], sampling)) == _ids(first)
    other_seed = SamplingConfig(n=4, temperature=1.0, max_new_tokens=12, seed=8)
    assert _ids(engine.generate(PROMPTS[:3], other_seed)) != _ids(first)


def test_vllm_load_weights_resets_prefix_cache(tiny_model_dir, second_model_dir, vllm_engine,
                                               hf_engine):
    # LONG fills a full KV block, which vLLM caches and would reuse after the push if the
    # engine did not reset the prefix cache.
    assert len(hf_engine.tokenizer(LONG)["input_ids"]) > 128
    expected = make_engine("hf", second_model_dir).generate(PROMPTS, GREEDY)
    before = vllm_engine.generate(PROMPTS, GREEDY)  # fills the prefix cache
    assert before[-1][0].token_ids != expected[-1][0].token_ids  # else the test proves nothing
    try:
        vllm_engine.load_weights(_weights(second_model_dir))
        assert _ids(vllm_engine.generate(PROMPTS, GREEDY)) == _ids(expected)
    finally:
        vllm_engine.load_weights(_weights(tiny_model_dir))
    assert _ids(vllm_engine.generate(PROMPTS, GREEDY)) == _ids(before)


def test_vllm_load_weights_rejects_unknown_names_and_partial_layers(vllm_engine, tiny_model_dir):
    weights = dict(_weights(tiny_model_dir))
    with pytest.raises(ValueError, match="no parameters named"):
        vllm_engine.load_weights([("model.layers.9.mlp.up_proj.weight", weights["lm_head.weight"])])
    q_name = "model.layers.0.self_attn.q_proj.weight"  # fused into qkv_proj by vLLM
    with pytest.raises(ValueError, match="k_proj"):
        vllm_engine.load_weights([(q_name, weights[q_name])])
    assert _ids(vllm_engine.generate(PROMPTS[:2], GREEDY))  # the engine still works


def test_eos_and_finished(tiny_model_dir, vllm_engine, hf_engine):
    # Make EOS win exactly where token t would have been the greedy choice: its output row
    # becomes 1.01 x t's row. A prompt whose greedy output contains t then ends right there.
    original = hf_engine.generate(PROMPTS, GREEDY)
    t = original[0][0].token_ids[3]
    head = dict(_weights(tiny_model_dir))["lm_head.weight"].clone()
    head[EOS] = 1.01 * head[t]
    hf = HFEngine(tiny_model_dir, batch_size=3)  # several batches, finished and running rows mixed
    hf.load_weights([("lm_head.weight", head)])
    outputs = hf.generate(PROMPTS, GREEDY)
    try:
        vllm_engine.load_weights([("lm_head.weight", head)])
        vllm_outputs = vllm_engine.generate(PROMPTS, GREEDY)
    finally:
        vllm_engine.load_weights(_weights(tiny_model_dir))
    assert _ids(vllm_outputs) == _ids(outputs)
    assert [c[0].text for c in vllm_outputs] == [c[0].text for c in outputs]
    assert [c[0].finished for c in vllm_outputs] == [c[0].finished for c in outputs]
    for before, after in zip(original, outputs, strict=True):
        ids, c = before[0].token_ids, after[0]
        if t in ids:
            assert c.token_ids == ids[:ids.index(t)] + (EOS,) and c.finished
            assert len(c.logprobs) == len(c.token_ids)
            assert c.text == hf.tokenizer.decode(ids[:ids.index(t)])  # EOS not in the text
        else:
            assert c.token_ids == ids and not c.finished and EOS not in ids
    assert any(t in c[0].token_ids for c in original) and not all(
        t in c[0].token_ids for c in original)  # both cases happen


def test_hf_load_weights_rejects_unknown_names(tiny_model_dir):
    engine = HFEngine(tiny_model_dir)
    with pytest.raises(ValueError, match="no parameters named"):
        engine.load_weights([("model.nope.weight", torch.zeros(1))])


def test_make_engine_rejects_unknown_kind(tiny_model_dir):
    with pytest.raises(UserError, match="vllm, hf"):
        make_engine("sglang", tiny_model_dir)
