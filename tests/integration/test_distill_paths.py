"""Distillation on the online-RL stack: a ScorerWorker actor serves a teacher's top-k log-probs exactly as
a direct HF forward gives them, and the reward-free ``distill`` algorithm (GKD's λ mixing student samples
and dataset completions) runs end to end, lowering the divergence to its teacher."""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from alignrl.actors.cluster import ray_session
from alignrl.actors.scorer import Scorer
from alignrl.cli import main
from alignrl.models.tiny import build_tiny_model
from alignrl.ops import token_logprobs
from alignrl.tracking import read_metrics
from alignrl.types import TokenBatch

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A second tiny model (another seed, same tokenizer) standing in for a teacher."""
    folder = tmp_path_factory.mktemp("teacher")
    build_tiny_model(folder, hidden=64, layers=2, heads=2, max_positions=32, seed=11, overwrite=True)
    return folder


def test_scorer_topk_matches_a_direct_hf_forward(teacher_dir):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 50, (5, 9), generator=g)
    attention = torch.ones_like(ids)
    attention[3, 6:] = 0  # a right-padded row
    batch = TokenBatch(ids, attention, attention.bool())
    with ray_session(None, 2):
        scorer = Scorer("teacher", [str(teacher_dir)], micro_batch_size=2, cpus=0.5)  # 3 micro-batches
        try:
            logp, top, idx = scorer.get(scorer.topk_logprobs_async(batch, 7), "scoring")
            plain = scorer.get(scorer.logprobs_async(batch), "scoring")
        finally:
            scorer.shutdown()
    model = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attention).logits
    dist = logits.log_softmax(-1)
    assert top.shape == idx.shape == (5, 9, 7) and idx.dtype == torch.long
    assert torch.all(top[:, 0] == 0)  # position 0 predicts nothing
    # position t holds the distribution token t was drawn from: that of logits t - 1
    assert torch.allclose(top[:, 1:], dist[:, :-1].topk(7, dim=-1).values, atol=1e-5)
    assert torch.allclose(dist[:, :-1].gather(-1, idx[:, 1:]), top[:, 1:], atol=1e-5)  # ids name those log-probs
    assert torch.all(top[:, 1:, :-1] >= top[:, 1:, 1:])  # sorted, most likely first
    assert torch.allclose(logp, token_logprobs(logits, ids), atol=1e-5)
    assert torch.allclose(plain, logp, atol=1e-6)


def _distill_recipe(tmp_path, name: str, seed: int, algorithm: str, anchor: str, rollout: str, steps: int):
    """A tiny reward-free distillation recipe on 1-digit addition (the two runs below differ in these knobs)."""
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(f"""\
name: {name}
seed: {seed}
policy: {{tiny: {{hidden: 64, layers: 2, heads: 2, max_positions: 32}}}}
algorithm: {algorithm}
anchors: [{anchor}]
data: {{train: "tasks://arithmetic?digits=1&n=200&split=train", eval: "tasks://arithmetic?digits=1&n=8&split=test"}}
rollout: {rollout}
learner: {{micro_batch_size: 8, lr: 1.0e-2, cpus_per_worker: 1}}
train: {{steps: {steps}, batch_size: 16, max_length: 16, log_every: 1, eval_every: 0, checkpoint_every: 0}}
eval: {{n: 8, k: 0, max_new_tokens: 3}}
""")
    return recipe


def test_distill_with_lmbda_trains_on_student_and_dataset_batches(tmp_path, teacher_dir):
    recipe = _distill_recipe(
        tmp_path, "distill", 2, "{name: distill, lmbda: 0.5, group_size: 2}",
        f"{{model: path, name: teacher, path: {teacher_dir}, divergence: {{name: generalized_jsd, beta: 0.5}}, "
        "estimator: topk, topk: 8, coef: 1.0}",
        "{engine: vllm, max_new_tokens: 3, cpus_per_worker: 0.5, kv_cache_gib: 0.1, overlap: true}", 12)
    assert main(["run", str(recipe), f"output_dir={tmp_path}", "--no-progress"]) == 0
    records = [r for r in read_metrics(tmp_path / "distill" / "metrics.jsonl") if "train/loss" in r]
    assert len(records) == 12
    for r in records:
        assert all(math.isfinite(v) for v in r.values() if isinstance(v, float)), r
    student = [r["train/from_student"] for r in records]
    assert 0 < sum(student) < 12  # λ = 0.5 mixes both kinds of batches
    for r in records:
        assert ("train/logp_mismatch_max" in r or "train/logp_offpolicy_diff_max" in r) == (r["train/from_student"] == 1)
        assert r["train/loss"] == pytest.approx(r["train/anchor/teacher"], rel=1e-4)  # coef 1, nothing else
    js = [r["train/anchor/teacher"] for r in records]
    assert sum(js[-3:]) / 3 < 0.5 * sum(js[:3]) / 3  # the student moved toward the teacher


def test_speculative_kd_rollouts_with_a_taid_anchor(tmp_path, teacher_dir):
    """SKD rollouts (the teacher replaces proposals outside its top-2) distilled by TAID (forward KL to the
    interpolation of student and teacher, t adapted per step)."""
    recipe = _distill_recipe(
        tmp_path, "skd", 4, "{name: distill, group_size: 2}",
        f"{{model: path, name: teacher, path: {teacher_dir}, divergence: forward_kl, estimator: topk, topk: 8, "
        "coef: 1.0, taid: {t_start: 0.4, alpha: 0.05}}",
        "{engine: hf, skd_top_k: 2, max_new_tokens: 3, cpus_per_worker: 0.5}", 6)
    assert main(["run", str(recipe), f"output_dir={tmp_path}", "--no-progress"]) == 0
    records = [r for r in read_metrics(tmp_path / "skd" / "metrics.jsonl") if "train/loss" in r]
    assert len(records) == 6
    replaced = [r["train/skd_replaced_frac"] for r in records]
    assert all(0.0 < f <= 1.0 for f in replaced), replaced  # two unrelated random models: many replacements
    # the rollout log-probs are still the student's own: the learner recomputes the same values
    assert max(r["train/logp_mismatch_max"] for r in records) < 1e-4
    t = [r["train/taid_t/teacher"] for r in records]
    assert t[0] == pytest.approx(0.4) and all(a <= b for a, b in zip(t, t[1:])) and t[-1] > 0.4
