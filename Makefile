# tritonkit — set-up, demo, tests and benchmarks. Every target sets up what it needs first.
#   make demo    the main job: generated data -> trained models -> repository -> local Triton -> eval, perf, validate
#   make test    the default test suite (fast + real-server tests; slow ones excluded)
#   make bench   side-by-side benchmarks -> reports/bench/bench.json and BENCHMARKS.md

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
PYTEST_ARGS ?=

.PHONY: setup demo test test-all test-slow bench lint clean

# Idempotent: re-runs only when requirements.txt or pyproject.toml change.
setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml scripts/setup.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup.sh
	touch $(STAMP)

demo: setup
	$(PY) -m tritonkit demo --out reports/demo

test: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) -m benchmarks.bench --out reports/bench

lint: setup
	$(VENV)/bin/hadolint Dockerfile

clean:
	rm -rf reports build .cache .pytest_cache
