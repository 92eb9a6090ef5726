"""Speculative KD sampling on two tiny Llamas (student 2 layers, teacher 3 layers, different seeds):
the limits K = 1 (the teacher's greedy decode) and K = V (the student's), the student log-probs against a
teacher-forced forward, left padding, and the HF engine's switch between plain and SKD sampling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from alignrl.errors import UserError
from alignrl.rollout.base import SamplingConfig
from alignrl.rollout.hf_engine import HFEngine
from alignrl.rollout.speculative_kd import sample_from_logits, speculative_kd_generate

PROMPTS = ["12+34=", "7+8=", "hello world", "a"]  # different lengths: left padding matters
MAX_NEW = 8


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from alignrl.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("skd")
    return (build_tiny_model(root / "student", hidden=64, layers=2, seed=1),
            build_tiny_model(root / "teacher", hidden=96, layers=3, seed=2))


@pytest.fixture(scope="module")
def engines(models) -> tuple[HFEngine, HFEngine]:
    student, teacher = models
    return HFEngine(student, skd_top_k=1, teacher_dir=teacher), HFEngine(teacher)


def _skd(engine: HFEngine, top_k: int, temperature: float = 0.0):
    batch = engine.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    return speculative_kd_generate(engine.model, engine.teacher, batch["input_ids"], batch["attention_mask"],
                                   top_k=top_k, max_new_tokens=MAX_NEW, temperature=temperature, top_p=1.0,
                                   eos_ids=engine.eos_ids, pad_id=engine.tokenizer.pad_token_id)


def _texts(engine: HFEngine, sample) -> list[str]:
    return [engine._completion(sample.new_ids[i], None).text for i in range(len(PROMPTS))]


def _greedy_texts(engine: HFEngine) -> list[str]:
    out = engine.generate(PROMPTS, SamplingConfig(temperature=0.0, max_new_tokens=MAX_NEW))
    return [group[0].text for group in out]


def test_top_1_greedy_is_the_teachers_greedy_decode(engines):
    student, teacher = engines
    sample = _skd(student, top_k=1)
    assert _texts(student, sample) == _greedy_texts(teacher)
    assert _greedy_texts(student) != _greedy_texts(teacher)  # else the test could not tell them apart
    assert bool(sample.replaced.any())


def test_top_vocabulary_keeps_every_student_token(engines):
    student, _ = engines
    vocab = student.model.config.vocab_size
    sample = _skd(student, top_k=vocab)
    assert not bool(sample.replaced.any())
    assert _texts(student, sample) == _greedy_texts(student)


def test_student_logprobs_match_a_teacher_forced_forward(engines):
    student, _ = engines
    sample = _skd(student, top_k=3, temperature=1.0)
    for i, prompt in enumerate(PROMPTS):
        prompt_ids = student.tokenizer(prompt, return_tensors="pt")["input_ids"][0]
        new = sample.new_ids[i][sample.valid[i]]
        ids = torch.cat([prompt_ids, new])[None]
        with torch.no_grad():
            logp = student.model(ids).logits[0, len(prompt_ids) - 1:-1].float().log_softmax(-1)
        expected = logp.gather(-1, new[:, None]).squeeze(-1)
        torch.testing.assert_close(sample.student_logp[i][sample.valid[i]], expected, atol=1e-4, rtol=1e-4)


def test_engine_samples_by_skd_only_when_asked(engines):
    student, _ = engines
    plain = SamplingConfig(n=2, temperature=1.0, max_new_tokens=MAX_NEW, seed=3, logprobs=True)
    skd = SamplingConfig(n=2, temperature=1.0, max_new_tokens=MAX_NEW, seed=3, logprobs=True, teacher_in_loop=True)
    plain_out = [c for g in student.generate(PROMPTS, plain) for c in g]
    skd_out = [c for g in student.generate(PROMPTS, skd) for c in g]
    assert all("skd_replaced" not in c.extra for c in plain_out)
    assert all(0 <= c.extra["skd_replaced"] <= len(c.token_ids) for c in skd_out)
    assert sum(c.extra["skd_replaced"] for c in skd_out) > 0  # K = 1 with a random teacher replaces most tokens
    again = [c for g in student.generate(PROMPTS, skd) for c in g]
    assert [c.token_ids for c in again] == [c.token_ids for c in skd_out]  # seeded
    assert all(len(c.logprobs) == len(c.token_ids) for c in skd_out)


def test_a_teacher_with_another_tokenizer_is_refused(models, tmp_path):
    from alignrl.models.tiny import build_tiny_model

    student, _ = models
    other = build_tiny_model(tmp_path / "other", hidden=64, layers=1, chars="0123456789+=")
    with pytest.raises(UserError, match="another tokenizer"):
        HFEngine(student, skd_top_k=4, teacher_dir=other)
    with pytest.raises(UserError, match="skd_top_k"):
        HFEngine(student, teacher_dir=other)


def test_nucleus_sampling_never_draws_outside_the_top_p_set():
    torch.manual_seed(0)
    logits = torch.tensor([[4.0, 3.0, 0.0, -1.0]]).repeat(2000, 1)  # p ≈ .72, .26, .01, .004
    drawn = sample_from_logits(logits, temperature=1.0, top_p=0.9)
    assert set(drawn.tolist()) == {0, 1}
    assert sample_from_logits(logits[:1], temperature=0.0, top_p=1.0).item() == 0
