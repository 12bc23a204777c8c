# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make test` also installs the Ray extra (the scale tests start a real cluster); `make run`
# keeps to the core install.
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run ui test test-fast lint bench clean

# The constraints file pins torch to the CPU build (a plain `torch` pulls a multi-GB CUDA one).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,ray]"
	touch $(TEST_STAMP)

## The main job: train PPO on the reference scenario from what a company observes (beliefs over
## persona and stage kept from events), compare with every baseline, the belief baselines and
## the full-information optimum, record and register it in MLflow (./mlflow.db), print the table.
run: $(STAMP)
	$(BIN)/nba train --scenario retail --algo ppo --observation belief --timesteps 30000000 --eval-every 2000000 --register

## The MLflow UI on the local store, bound to 127.0.0.1.
ui: $(STAMP)
	$(BIN)/nba ui

## Lint, type-check (mypy, strict on the core: see [tool.mypy] in pyproject.toml), then the
## whole test suite (slow and integration tests included).
test: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

## The quick loop while developing: skips tests marked slow.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/twin_throughput.py
	$(BIN)/python benchmarks/env_throughput.py
	$(BIN)/python benchmarks/train_to_optimum.py
	$(BIN)/python benchmarks/serving_latency.py
	$(BIN)/python benchmarks/serving_fuzz.py
	$(BIN)/python benchmarks/http_service.py
	$(BIN)/python benchmarks/hostile_inputs.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache checkpoints nba-runs
