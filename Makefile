# Two commands on a fresh machine (only Python, pip and make needed):
#   make demo   Meltano runs the tap against the bundled CleverTap sandbox into DuckDB, twice
#   make test   every check: lint, format, types, and all tests (Meltano, singer-check-tap and
#               PyAirbyte too)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Meltano and singer-tools pin libraries that clash with singer-sdk: each gets its own venv.
MELTANO_VENV ?= .venv-meltano
CHECK_TAP_VENV ?= .venv-singer-tools
AIRBYTE_VENV ?= .venv-airbyte
PIP_QUIET ?= -q
ECOSYSTEM_ENV = MELTANO_BIN=$(abspath $(MELTANO_VENV))/bin/meltano \
	SINGER_CHECK_TAP_BIN=$(abspath $(CHECK_TAP_VENV))/bin/singer-check-tap \
	PYAIRBYTE_PYTHON=$(abspath $(AIRBYTE_VENV))/bin/python

.PHONY: demo test lint pytest venv ecosystem clean

# Exact versions from the lock file, then the package itself (its own dependencies are in
# the lock, checked by tests/test_packaging.py).
$(VENV)/.installed: pyproject.toml requirements/dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_QUIET) --upgrade pip
	$(BIN)/python -m pip install $(PIP_QUIET) -r requirements/dev.lock
	$(BIN)/python -m pip install $(PIP_QUIET) --no-deps -e .
	touch $@

$(MELTANO_VENV)/.installed:
	$(PYTHON) -m venv $(MELTANO_VENV)
	$(MELTANO_VENV)/bin/python -m pip install $(PIP_QUIET) 'meltano==4.4.1'
	touch $@

$(CHECK_TAP_VENV)/.installed:
	$(PYTHON) -m venv $(CHECK_TAP_VENV)
	$(CHECK_TAP_VENV)/bin/python -m pip install $(PIP_QUIET) 'singer-tools==0.4.1'
	touch $@

# PyAirbyte runs source-clevertap as a local executable (tests/test_pyairbyte.py).
$(AIRBYTE_VENV)/.installed:
	$(PYTHON) -m venv $(AIRBYTE_VENV)
	$(AIRBYTE_VENV)/bin/python -m pip install $(PIP_QUIET) 'airbyte==0.71.3'
	touch $@

venv: $(VENV)/.installed

ecosystem: $(MELTANO_VENV)/.installed $(CHECK_TAP_VENV)/.installed $(AIRBYTE_VENV)/.installed

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

pytest: venv ecosystem
	$(ECOSYSTEM_ENV) REQUIRE_ECOSYSTEM=1 $(BIN)/pytest

test: lint pytest

demo: venv $(MELTANO_VENV)/.installed
	$(ECOSYSTEM_ENV) $(BIN)/python scripts/demo.py

clean:
	rm -rf $(VENV) $(MELTANO_VENV) $(CHECK_TAP_VENV) $(AIRBYTE_VENV) .meltano .demo output events.duckdb
