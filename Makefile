# Two commands for a newcomer: `make demo` and `make test`. See README.md.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: help install up down demo test test-unit bench bench-smoke status clean

help:
	@echo "make demo    install what is missing, start Kafka/Flink/Redis, submit the job, start producer + server"
	@echo "make test    install what is missing, run unit + integration tests against real services"
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

test: install
	$(PY) -m pytest -q tests

test-unit: install
	$(PY) -m pytest -q tests -m "not integration"

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
