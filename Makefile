# Two commands for a newcomer: `make demo` and `make test`. See README.md.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: help install lint up down demo test test-unit bench bench-smoke status clean

help:
	@echo "make demo    install what is missing, start Kafka/Flink/Redis, submit the job, start producer + server"
	@echo "make test    install what is missing, lint, run unit + integration tests against real services"
	@echo "make lint    ruff + mypy (configured in pyproject.toml)"
	@echo "make up      start Redis, Kafka and Flink only      make down   stop everything we started"
	@echo "make status  what runs                              make clean  stop and delete all state"
	@echo "make bench   benchmarks against the running stack (after make up): tables + bench/results/*.json"

install:
	@bash stack/install.sh

up: install
	@bash stack/up.sh

down:
	@bash stack/down.sh

demo:
	@bash stack/demo.sh

# The gates (pyproject.toml): ruff (pyflakes, pycodestyle, isort, pyupgrade, bugbear) and mypy;
# the board's JavaScript (static/*.js, not the vendored libraries) must parse: node --check.
lint: install
	.venv/bin/ruff check .
	.venv/bin/mypy
	@for f in static/*.js; do node --check "$$f" || exit 1; done; echo "node --check: static/*.js parse"

# lint first: CI gates on it. Then unit tests, doctests of online_ml/ and integration tests.
test: lint
	$(PY) -m pytest -q

test-unit: install
	$(PY) -m pytest -q -m "not integration"

# Benchmarks need the stack (`make up`); BENCH_ARGS passes flags, e.g. BENCH_ARGS="--only serving".
bench: install
	$(PY) bench/run.py $(BENCH_ARGS)

# CI size: each benchmark runs and writes its JSON; the numbers mean nothing.
bench-smoke: install
	$(PY) bench/run.py --smoke $(BENCH_ARGS)

status:
	@bash stack/status.sh

clean: down
	rm -rf .state
