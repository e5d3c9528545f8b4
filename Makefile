# One command per job. Every target installs first (idempotent: a second `make install` takes seconds).
# Run `make help` for the list.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# No nvidia-smi -> pin the CPU wheel of torch, so pip never pulls a multi-GB CUDA build.
CONSTRAINTS := $(if $(shell command -v nvidia-smi 2>/dev/null),,-c constraints-cpu.txt)
# Projects that exist so far; a missing one breaks neither install nor test.
PROJECTS := $(patsubst %/requirements.txt,%,$(wildcard translation/requirements.txt quantization/requirements.txt moe_summarization/requirements.txt))
TEST_DIRS := shared_utils/tests $(wildcard $(addsuffix /tests,$(PROJECTS)))
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install test lint

help: ## List every target with one line each
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install shared_utils, the projects and their requirements

$(STAMP): constraints-cpu.txt requirements-dev.txt pyproject.toml shared_utils/pyproject.toml $(addsuffix /requirements.txt,$(PROJECTS))
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(CONSTRAINTS) \
		-r requirements-dev.txt $(addprefix -r ,$(addsuffix /requirements.txt,shared_utils $(PROJECTS)))
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e shared_utils -e .
	touch $(STAMP)

test: install ## Run every test (shared_utils and all projects) on the CPU
	$(PY) -m pytest $(TEST_DIRS) $(PYTEST_ARGS)

lint: install ## Lint the whole repository with ruff
	$(VENV)/bin/ruff check .
