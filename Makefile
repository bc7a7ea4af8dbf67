# Two commands for a newcomer: `make demo` and `make test`. See README.md.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: help install up down demo test test-unit bench status clean

help:
	@echo "make demo    install what is missing, start Kafka/Flink/Redis, submit the job, start producer + server"
	@echo "make test    install what is missing, run unit + integration tests against real services"
	@echo "make up      start Redis, Kafka and Flink only      make down   stop everything we started"
	@echo "make status  what runs                              make clean  stop and delete all state"

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

status:
	@bash stack/status.sh

clean: down
	rm -rf .state
