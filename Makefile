# Two commands on a fresh machine: `make run` and `make test`. Each creates .venv and installs
# what it needs; a stamp file skips the install until pyproject.toml changes. `make test` also
# installs the pinned real Codex CLI (tests/client, needs Node.js 20+ and npm) for tests/e2e.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
ARGS ?=
CLIENT := tests/client

.PHONY: run test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stamp-run: pyproject.toml | $(PY)
	$(PIP) -e '.[fast]'
	touch $@

$(VENV)/.stamp-test: pyproject.toml | $(PY)
	$(PIP) -e '.[fast,test]'
	touch $@

$(CLIENT)/node_modules/.stamp: $(CLIENT)/package.json $(CLIENT)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "make test: npm not found; install Node.js 20+ with npm, it installs the Codex CLI the end-to-end tests run ($(CLIENT))" >&2; exit 1; }
	npm ci --prefix $(CLIENT) --no-audit --no-fund
	touch $@

run: $(VENV)/.stamp-run
	$(PY) -m codexgate $(ARGS)

test: lint $(CLIENT)/node_modules/.stamp
	$(PY) -m pytest

lint: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(VENV)/.stamp-test
	$(PY) -m bench

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache test-artifacts \
		$(CLIENT)/node_modules
