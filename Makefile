# Cairn — run `make` for the list of targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_VERSION := 1.170.0
STAMP := $(VENV)/.installed

.PHONY: help install demo test lint typecheck unit validate local bench build deploy delete compile clean

help: ## show this help
	@echo "Cairn — marketing automation in your own AWS account"
	@echo
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python requirements.txt requirements-dev.txt pyproject.toml
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install cairn with its development tools

$(SAM):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli==$(SAM_VERSION)

demo: install ## play the canonical journeys end to end in local mode (no AWS, no Docker)
	$(BIN)/cairn demo

compile: install ## compile workflows/ into statemachines/
	$(BIN)/cairn compile

lint: install ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@for f in functions/*/app.py; do $(BIN)/mypy --no-error-summary $$f || exit 1; done

validate: $(SAM) ## sam validate --lint
	$(SAM) validate --lint --region us-east-1

test: install lint validate ## lint, types, template validation and the whole test suite
	$(BIN)/pytest -q

local: install ## run local mode on 127.0.0.1:3000
	$(BIN)/cairn local --port 3000

bench: install ## benchmarks (ratios measured in one run)
	$(BIN)/python -m bench

build: $(SAM) install ## sam build (needs a Python 3.13: PATH or pyenv)
	@py=$$(scripts/find-python313.sh) || exit 1; echo "sam build with $$py"; \
	$(BIN)/cairn compile && PATH="$$(dirname $$py):$$PATH" $(SAM) build

deploy: build ## sam deploy (guided the first time)
	@if [ -f samconfig.toml ]; then $(SAM) deploy; else $(SAM) deploy --guided; fi

delete: $(SAM) ## delete the deployed stack
	$(SAM) delete

clean: ## remove build output and virtual environments
	rm -rf .aws-sam $(VENV) $(SAM_VENV) .pytest_cache .mypy_cache .ruff_cache
