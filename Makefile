# Two commands on a fresh machine: `make run` and `make test`. Each creates .venv and installs
# what it needs; a stamp file skips the install until pyproject.toml or the version (in
# codexgate/__init__.py) changes. `make test` also
# installs the pinned real Codex CLI (tests/client, needs Node.js 20+ and npm) for tests/e2e, and
# Debian's chromium (with a CJK font for the Chinese pages) for tests/browser, openssl and
# PostgreSQL when they are missing: the browser tests drive Chromium with Playwright, which never
# downloads a browser of its own, and the PostgreSQL tests start a throwaway server of their own
# with Debian's programs (tests/helpers/postgres.py), never a system one.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
ARGS ?=
CLIENT := tests/client
# Debian packages the tests need: the browser and a CJK font (tests/browser), openssl (the
# self-signed certificate of the SMTP STARTTLS test, tests/helpers/smtp.py), PostgreSQL's server
# programs in /usr/lib/postgresql/NN/bin (tests/helpers/postgres.py), nginx and HAProxy in
# /usr/sbin (the load balancers of docs/deployment.md, tests/process/test_deployment_examples.py),
# systemd for systemd-analyze (deploy/systemd, tests/process/test_systemd_unit.py), prometheus for
# promtool (deploy/prometheus, tests/process/test_monitoring_kit.py), binutils for PyInstaller's
# objcopy and strip (make dist, tests/process/test_dist.py), docker.io and mmdebstrap for a
# docker daemon of the test's own and a base image made from Debian packages
# (tests/process/test_container.py). The packages' own services (PostgreSQL's "main" cluster,
# nginx, haproxy, prometheus, docker) are left alone; without systemd they are started only where
# policy-rc.d allows it.
TEST_PACKAGES := chromium fonts-wqy-zenhei openssl postgresql nginx haproxy systemd prometheus binutils docker.io mmdebstrap
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-fast lint bench clean test-packages screenshots dist

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stamp-run: pyproject.toml codexgate/__init__.py | $(PY)
	$(PIP) -e '.[fast]'
	touch $@

$(VENV)/.stamp-test: pyproject.toml codexgate/__init__.py | $(PY)
	$(PIP) -e '.[fast,test]'
	touch $@

$(VENV)/.stamp-dist: pyproject.toml codexgate/__init__.py | $(PY)
	$(PIP) -e '.[dist]'
	touch $@

$(CLIENT)/node_modules/.stamp: $(CLIENT)/package.json $(CLIENT)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "make test: npm not found; install Node.js 20+ with npm, it installs the Codex CLI the end-to-end tests run ($(CLIENT))" >&2; exit 1; }
	npm ci --prefix $(CLIENT) --no-audit --no-fund
	touch $@

test-packages:
	@if command -v chromium >/dev/null 2>&1 && fc-list :lang=zh 2>/dev/null | grep -q . && command -v openssl >/dev/null 2>&1 \
		&& ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		&& { command -v nginx || [ -x /usr/sbin/nginx ]; } >/dev/null 2>&1 \
		&& { command -v haproxy || [ -x /usr/sbin/haproxy ]; } >/dev/null 2>&1 \
		&& [ -x /usr/bin/systemd-analyze ] && command -v promtool >/dev/null 2>&1 \
		&& command -v objcopy >/dev/null 2>&1 && command -v dockerd >/dev/null 2>&1 \
		&& command -v mmdebstrap >/dev/null 2>&1; then :; else \
		command -v apt-get >/dev/null 2>&1 || { echo "make test: chromium, openssl, PostgreSQL, nginx, haproxy, systemd-analyze, promtool, objcopy, dockerd or mmdebstrap not found and no apt-get; install Chromium and openssl so that both are on PATH, PostgreSQL so that /usr/lib/postgresql/NN/bin holds initdb and postgres, nginx and haproxy in /usr/sbin, systemd so that /usr/bin/systemd-analyze exists, Prometheus's promtool, binutils' objcopy, dockerd and mmdebstrap on PATH" >&2; exit 1; }; \
		echo "installing Debian's $(TEST_PACKAGES) for the tests"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(TEST_PACKAGES) >/dev/null; \
	fi

run: $(VENV)/.stamp-run
	$(PY) -m codexgate $(ARGS)

# pytest-xdist, one worker per core, a module's tests on one worker (its fixtures built once):
# the suite waits on servers and builds more than it computes, so two workers on two cores take
# about 8 minutes where one took 14.
TEST_WORKERS ?= auto
test: lint $(CLIENT)/node_modules/.stamp test-packages
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# The inner loop: the in-process tests (unit, the storage contract suite and app, on SQLite and
# a throwaway PostgreSQL); no lint, browser, real Codex CLI, subprocess or reliability runs.
test-fast: $(VENV)/.stamp-test test-packages
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests/unit tests/storage tests/app $(ARGS)

lint: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The dashboard screenshots in docs/dashboard.md, taken by a browser test (first screen only).
screenshots: $(VENV)/.stamp-test test-packages
	$(PY) -m pytest -q tests/browser/test_docs_screenshots.py
	mkdir -p docs/images
	cp test-artifacts/docs-*.png docs/images/

# The wheel, the sdist, codexgate.pyz and the standalone binary codexgate, into dist/ (or
# DIST=folder); the intermediate files go to build/. release/dist.py says how each is made.
DIST ?= dist
dist: $(VENV)/.stamp-dist
	$(PY) -m release.dist --out $(DIST)

bench: $(VENV)/.stamp-test
	$(PY) -m bench

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache test-artifacts \
		$(CLIENT)/node_modules
