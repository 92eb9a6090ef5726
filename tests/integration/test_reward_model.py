"""Bradley-Terry reward-model training on the real stack (Ray + DeepSpeed, tiny model): the run's metrics, and
an export that transformers loads as a sequence classifier and that scores the held-out pairs exactly as the
run's own evaluation did; TRL's conversational preference format goes through the chat template."""

from __future__ import annotations

import json

import pytest
import torch

from alignrl.cli import main

pytestmark = pytest.mark.integration


def _recipe(tmp_path, model_dir, train: str, eval_: str, steps: int = 20) -> str:
    path = tmp_path / "rm.yaml"
    path.write_text(f"""\
name: rm
seed: 1
policy: {{path: {model_dir}}}
algorithm: {{name: bradley_terry, center_rewards_coefficient: 0.01}}
data: {{train: "{train}", eval: "{eval_}"}}
learner: {{micro_batch_size: 8, lr: 1.0e-3, cpus_per_worker: 1}}
train: {{steps: {steps}, batch_size: 16, max_length: 48, log_every: 5, eval_every: 10, checkpoint_every: 0}}
eval: {{n: 64}}
""")
    return str(path)


def _score(model, tokenizer, prompt: str, completion: str) -> float:
    ids = tokenizer(prompt)["input_ids"] + tokenizer(completion, add_special_tokens=False)["input_ids"]
    ids.append(tokenizer.eos_token_id)
    return float(model(input_ids=torch.tensor([ids])).logits[0, 0])


def test_reward_model_run_exports_a_sequence_classifier(tmp_path, tiny_model_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from alignrl.data.sources import load_preference_examples

    eval_uri = "prefs://arithmetic?digits=2&n=64&split=test&gold=digits"
    recipe = _recipe(tmp_path, tiny_model_dir, "prefs://arithmetic?digits=2&n=400&split=train&gold=digits", eval_uri)
    assert main(["run", recipe, f"output_dir={tmp_path}", "--no-progress"]) == 0
    run = tmp_path / "rm"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/accuracy" in r]
    assert [r["step"] for r in evals] == [0, 10, 20]
    assert all(0.0 <= r["eval/accuracy"] <= 1.0 and r["eval/n"] == 64 for r in evals)
    assert any("train/margin" in r and "train/grad_norm" in r for r in rows)
    assert (run / "learning_curves.png").is_file() and (run / "eval.json").is_file()
    # the export is a plain HF sequence classifier whose scores reproduce the run's last evaluation
    model = AutoModelForSequenceClassification.from_pretrained(run / "export").eval()
    tokenizer = AutoTokenizer.from_pretrained(run / "export")
    assert model.config.num_labels == 1 and model.config.pad_token_id == tokenizer.pad_token_id
    with torch.no_grad():
        diffs = [_score(model, tokenizer, p.prompt, p.chosen) - _score(model, tokenizer, p.prompt, p.rejected)
                 for p in load_preference_examples(eval_uri)]
    accuracy = sum(d > 0 for d in diffs) / len(diffs)
    assert accuracy == pytest.approx(evals[-1]["eval/accuracy"], abs=1e-6)
    assert sum(diffs) / len(diffs) == pytest.approx(evals[-1]["eval/margin"], abs=1e-4)
    # training moved the head: the final scores differ from the seeded initial head's
    assert evals[-1]["eval/margin"] != pytest.approx(evals[0]["eval/margin"], abs=1e-6)


def test_conversational_preferences_go_through_the_chat_template(tmp_path, tiny_model_dir):
    rows = []
    for a in range(10):
        for b in range(4):
            prompt = [{"role": "user", "content": f"{a}+{b}="}]
            rows.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": str(a + b)}],
                         "rejected": [{"role": "assistant", "content": str(a + b + 1)}]})
    data = tmp_path / "prefs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["run", _recipe(tmp_path, tiny_model_dir, str(data), str(data), steps=10),
                 f"output_dir={tmp_path}", "--no-progress"]) == 0
    evals = [json.loads(line) for line in (tmp_path / "rm" / "metrics.jsonl").read_text().splitlines()]
    assert [r["eval/n"] for r in evals if "eval/n" in r] == [40.0, 40.0]


def test_lora_ensemble_on_one_backbone_exports_members_and_the_diversity_term_acts(tmp_path, tiny_model_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from alignrl.data.sources import load_preference_examples

    eval_uri = "prefs://arithmetic?digits=2&n=32&split=test&gold=digits"
    recipe = _recipe(tmp_path, tiny_model_dir, "prefs://arithmetic?digits=2&n=400&split=train&gold=digits", eval_uri,
                     steps=10)
    lora = "learner.lora={r: 4, alpha: 8, target_modules: [q_proj, v_proj]}"
    norms = {}
    for diversity in (0.0, 1.0):
        out = tmp_path / f"div{diversity:g}"
        assert main(["run", recipe, f"output_dir={out}", lora, "algorithm.members=2", "learner.lr=1e-2",
                     f"algorithm.diversity={diversity}", "--no-progress"]) == 0
        rows = [json.loads(line) for line in (out / "rm" / "metrics.jsonl").read_text().splitlines()]
        norms[diversity] = [r["train/nuclear_norm"] for r in rows if "train/nuclear_norm" in r]
    # maximizing the members' spread raises the nuclear norm relative to the same run without the term
    assert norms[1.0][-1] > norms[0.0][-1] + 0.05
    run = tmp_path / "div1" / "rm"
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in evals if "eval/member1/accuracy" in r][-1]
    pairs = load_preference_examples(eval_uri)
    margins = []
    for k in range(2):  # each exported member is a plain classifier that reproduces its in-run evaluation
        model = AutoModelForSequenceClassification.from_pretrained(run / f"member{k}" / "export").eval()
        tok = AutoTokenizer.from_pretrained(run / f"member{k}" / "export")
        with torch.no_grad():
            diffs = [_score(model, tok, p.prompt, p.chosen) - _score(model, tok, p.prompt, p.rejected) for p in pairs]
        assert sum(d > 0 for d in diffs) / len(diffs) == pytest.approx(last[f"eval/member{k}/accuracy"], abs=1e-6)
        margins.append(sum(diffs) / len(diffs))
        assert margins[-1] == pytest.approx(last[f"eval/member{k}/margin"], abs=1e-4)
    assert margins[0] != pytest.approx(margins[1], abs=1e-6)  # two members, two models
