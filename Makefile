# Two commands on a fresh machine: `make quickstart` and `make test`. Each creates .venv and
# installs what it needs first (pip only reinstalls when pyproject.toml changes).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install -q --disable-pip-version-check

.PHONY: quickstart test live-test lint typecheck unit docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.examples: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[examples]'
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[dev]'
	touch $@ $(VENV)/.examples

# Azurite (the Azure Blob emulator the Azure ML tests start) is an npm package; no npm: those tests skip.
AZURITE_VERSION := 3.37.0
$(VENV)/azurite/.installed-$(AZURITE_VERSION): | $(BIN)/python
	@if command -v npm >/dev/null; then npm install --silent --no-audit --no-fund --prefix $(VENV)/azurite azurite@$(AZURITE_VERSION) && touch $@; \
	else echo "npm not found: the Azure ML tests that need Azurite will be skipped"; fi

## Run the quickstart job on the local provider with 3 injected preemptions, and prove the
## result is bit-identical to an uninterrupted run.
quickstart: $(VENV)/.examples
	$(BIN)/python examples/quickstart/run.py

## Lint, type-check, build the docs, and run every test (emulators included).
test: $(VENV)/.dev $(VENV)/azurite/.installed-$(AZURITE_VERSION) lint typecheck
	$(BIN)/python -m pytest

## Opt-in tests on real cloud accounts (they cost money; never in CI): docs/live-tests.md.
## `make test` deselects them (pytest marker `live`); each skips without MULTISPOT_LIVE=1 and its settings.
live-test: $(VENV)/.dev
	$(BIN)/python -m pytest tests/live -m live -rs -v

lint: $(VENV)/.dev
	$(BIN)/ruff check multispot adapters tests examples bench
	$(BIN)/ruff format --check multispot adapters tests examples bench

typecheck: $(VENV)/.dev
	$(BIN)/mypy multispot $(wildcard adapters/*/)

docs: $(VENV)/.dev
	$(BIN)/mkdocs build --strict

bench: $(VENV)/.dev
	@for b in bench/*.py; do [ -e "$$b" ] || continue; echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) site .mypy_cache .ruff_cache .pytest_cache

# PostgreSQL's server binaries, for the job store's tests on PostgreSQL (tests/helpers/postgres.py
# starts a throwaway server with them). Installed from the OS packages when missing; where that is
# not possible (no apt-get, no root), those tests skip and say why.
.PHONY: postgres-bin
test: postgres-bin
postgres-bin:
	@if command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
		($$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null) \
		|| echo "could not install postgresql: the PostgreSQL job store tests will be skipped"; \
	else echo "initdb not found and no apt-get: the PostgreSQL job store tests will be skipped"; fi

# The dashboard tests drive the OS's Chromium through Playwright (tests/dashboard/). Installed here
# when absent; without apt (or root) this only warns and those tests skip, saying why.
.PHONY: chromium
chromium:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	elif command -v apt-get >/dev/null; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
		($$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null) \
		|| echo "could not install chromium: the dashboard browser tests will be skipped"; \
	else echo "chromium not found and no apt-get: the dashboard browser tests will be skipped"; fi
test: chromium
