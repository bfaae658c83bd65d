# Every target does its own set-up: a fresh clone needs only python3 (3.11+), go and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: help venv lint unit test demo clean

help:
	@echo "make demo   - the main job: convert the legacy GPU examples (see README)"
	@echo "make test   - lint, type-check and run the whole test suite"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check webhook kubectl_dra tests bench hack
	$(BIN)/ruff format --check webhook kubectl_dra tests bench hack
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -m "not e2e" -q

test: lint
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/python hack/demo.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
