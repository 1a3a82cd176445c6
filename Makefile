# The two commands of the README: `make run` and `make test`. Each bootstraps what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit deps test-deps bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

deps: $(STAMP)

## Portico on its embedded defaults (SQLite, local storage) in ./data
run: $(STAMP)
	$(BIN)/portico serve

## Test-only components: PostgreSQL server binaries, Azurite, the Azure CLI and the JavaScript SDK
test-deps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing postgresql (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
	@command -v chromedriver >/dev/null 2>&1 || { \
	  echo "installing chromium + chromium-driver (Debian packages; sign-in page tests)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@command -v npm >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
	@bash scripts/install-azurite.sh
	@bash scripts/install-azure-cli.sh  # the real clients of tests/e2e/test_real_clients.py (az ~1 GB, once)

lint: $(STAMP)
	$(BIN)/ruff check portico tests bench
	$(BIN)/ruff format --check portico tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

## Everything: lint, types, unit and end-to-end tests against SQLite, PostgreSQL and Azurite
test: $(STAMP) test-deps lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider

bench: $(STAMP) test-deps
	$(BIN)/python bench/backup_restore.py
	$(BIN)/python bench/management.py
	$(BIN)/python bench/gateway.py
	$(BIN)/python bench/gateway_cpu.py
	$(BIN)/python bench/gateway_reload.py

clean:
	rm -rf $(VENV) .test-deps
