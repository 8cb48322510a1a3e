# A fresh Debian/Ubuntu machine: `make test` builds everything it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install redis-server test lint docs bench bench-peers demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP) redis-server

# Tests start their own redis-server on a free port (and make a throw-away TLS CA with openssl):
# install the Debian packages when they are missing.
redis-server:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
	  echo "installing the Debian package(s):$$missing" >&2; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v redis-server >/dev/null 2>&1 || { echo "redis-server is still missing: apt-get install redis-server" >&2; exit 1; }

test: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest tests

# config.example.yaml and docs/configuration.md are generated from the declared settings
docs: $(STAMP)
	$(BIN)/python -m doorman.docgen

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# Every benchmark, one report (markdown on stdout, bench-results/report.json); `make bench-peers` first
# adds Flower and celery-exporter to the comparison. One benchmark alone: python -m tests.bench.run NAME
bench: install
	$(BIN)/python -m tests.bench.report

# Flower and celery-exporter in their own virtualenvs (.venv-flower, .venv-exporter), from PyPI
bench-peers: install
	PYTHON=$(PYTHON) MAIN_PY=$(BIN)/python bash tests/bench/peers/setup.sh

demo: install
	$(BIN)/doorman-simulate --workers 0 --enqueue 5

clean:
	rm -rf $(VENV) .pytest_cache
