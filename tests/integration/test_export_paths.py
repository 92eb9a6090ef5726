"""`alignrl export` of a real online-RL run with an EMA anchor: the policy, the EMA weights and LITI
interpolants towards the init, each an HF folder that transformers and vLLM load with the same log-probs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alignrl.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:`torch.distributed.reduce_op` is deprecated:FutureWarning")]
PROMPT = "12+34="


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A 4-step distillation run (towards another tiny model, so every step moves the policy) with an EMA
    anchor (decay 0.5, so the EMA visibly differs from both ends)."""
    from alignrl.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("export")
    teacher = build_tiny_model(root / "teacher", hidden=64, layers=2, heads=2, max_positions=32, seed=7)
    recipe = root / "r.yaml"
    recipe.write_text(f"""\
name: ema-run
seed: 1
policy: {{tiny: {{hidden: 64, layers: 2, heads: 2, max_positions: 32}}}}
algorithm: {{name: distill}}
anchors:
  - {{model: path, name: teacher, path: {teacher}, divergence: forward_kl, estimator: topk, topk: 8, coef: 1.0}}
  - {{model: ema, decay: 0.5, estimator: k3, coef: 0.01}}
data: {{train: "tasks://arithmetic?digits=1&n=200&split=train"}}
rollout: {{engine: hf, max_new_tokens: 3, cpus_per_worker: 0.5}}
learner: {{micro_batch_size: 16, lr: 3.0e-2, cpus_per_worker: 1}}
train: {{steps: 4, batch_size: 16, max_length: 16, log_every: 1, eval_every: 0, checkpoint_every: 4}}
export: {{enabled: false}}
""")
    assert main(["run", str(recipe), f"output_dir={root}", "--no-progress"]) == 0
    return root / "ema-run"


def _export(run: Path, out: Path, *extra: str) -> dict[str, torch.Tensor]:
    assert main(["export", str(run), "-o", str(out), *extra]) == 0
    return load_file(str(out / "model.safetensors"))


def test_policy_ema_and_liti_exports_are_what_they_claim(run, tmp_path):
    policy = _export(run, tmp_path / "policy")
    ema = _export(run, tmp_path / "ema", "--what", "ema")
    init = load_file(str(run / "init" / "model.safetensors"))
    assert policy.keys() == ema.keys() == init.keys()
    moved = max(float((policy[k] - init[k]).abs().max()) for k in policy)
    assert moved > 1e-3  # lr 3e-2 for 4 steps: the policy left its init
    # EMA with decay 0.5 after 4 updates lies strictly between init and policy on the moved coordinates
    k = max(policy, key=lambda n: float((policy[n] - init[n]).abs().max()))
    assert 0 < float((ema[k] - init[k]).abs().max()) < float((policy[k] - init[k]).abs().max())
    half = _export(run, tmp_path / "liti", "--merge", "liti", "--eta", "0.5")
    for name in policy:
        assert torch.allclose(half[name], init[name] + 0.5 * (policy[name] - init[name]), atol=1e-6)
    zero = _export(run, tmp_path / "liti0", "--what", "ema", "--merge", "liti", "--eta", "0")
    assert all(torch.equal(zero[n], init[n]) for n in init)


def test_exports_load_in_transformers_and_vllm_with_the_same_logprobs(run, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignrl.rollout.base import SamplingConfig
    from alignrl.rollout.factory import make_engine

    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    _export(run, tmp_path / "ema", "--what", "ema")
    folder = tmp_path / "ema"
    engine = make_engine("vllm", folder, kv_cache_gib=0.25)
    try:
        [[c]] = engine.generate([PROMPT], SamplingConfig(temperature=0.0, max_new_tokens=4, logprobs=True))
    finally:
        engine.close()
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    prompt = tok(PROMPT)["input_ids"]
    ids = torch.tensor([prompt + list(c.token_ids)])
    with torch.no_grad():
        logp = model(ids).logits[0, len(prompt) - 1:-1].log_softmax(-1)
    hf = logp.gather(-1, torch.tensor(c.token_ids)[:, None]).squeeze(-1)
    assert torch.allclose(hf, torch.tensor(c.logprobs), atol=1e-4)
    assert list(c.token_ids) == logp.argmax(-1).tolist()  # vLLM's greedy tokens are transformers' argmax


def test_bad_export_requests_are_refused(run, tmp_path, capsys):
    cases = [(["--what", "lora-merged"], "trained without LoRA"), (["--merge", "liti"], "needs --eta"),
             (["--merge", "liti", "--eta", "1.5"], "must be in [0, 1]"), (["--what", "ema", "--anchor", "x"],
                                                                         "not a moving anchor")]
    for extra, message in cases:
        assert main(["export", str(run), "-o", str(tmp_path / "never"), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
        assert not (tmp_path / "never").exists()
