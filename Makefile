# Two commands on a fresh machine (only Python, pip and make needed):
#   make demo   the tap against the bundled CleverTap sandbox, then what landed
#   make test   every check: lint, format, types, tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP_QUIET ?= -q

.PHONY: demo test lint venv clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_QUIET) --upgrade pip
	$(BIN)/python -m pip install $(PIP_QUIET) -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

demo: venv
	$(BIN)/python scripts/demo.py

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
