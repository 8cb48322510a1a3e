# A fresh Debian/Ubuntu machine: `make test` builds everything it needs; `make demo` only the
# virtualenv and redis-server.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install redis-server test-deps test test-fast soak-rabbitmq lint docs bench bench-peers demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# setuptools' "Editable installation" notice (a warning pip shows even with --quiet) says nothing to act on
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP) redis-server

# The one system package `make install` and `make demo` may install: redis-server (Debian's, with
# apt-get, through sudo when not root), only when it is missing.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing the Debian package: redis-server" >&2; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; }
	@command -v redis-server >/dev/null 2>&1 || { echo "redis-server is still missing: apt-get install redis-server" >&2; exit 1; }

# What only the test-suite (and `make bench`) needs, each installed when missing: openssl (a throw-away
# TLS CA), prometheus (promtool checks /metrics), prometheus-node-exporter and prometheus-alertmanager
# (private instances on free loopback ports), chromium + chromium-driver (doorman-serve's page in a
# headless browser), rabbitmq-server (the one the tests share: started, management plugin enabled).
test-deps:
	@missing=""; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	command -v prometheus-node-exporter >/dev/null 2>&1 || missing="$$missing prometheus-node-exporter"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null 2>&1 || missing="$$missing prometheus-alertmanager"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	[ -x /usr/sbin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null 2>&1 || missing="$$missing rabbitmq-server"; \
	if [ -n "$$missing" ]; then \
	  echo "installing the Debian package(s) the test-suite needs:$$missing" >&2; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@# RabbitMQ: the tests use the machine's server (one throw-away vhost each) and its management API
	@PATH="$$PATH:/usr/sbin"; SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	$(PYTHON) -c "import socket; socket.create_connection(('127.0.0.1', 5672), 2)" 2>/dev/null || { \
	  echo "starting rabbitmq-server" >&2; \
	  $$SUDO service rabbitmq-server start >/dev/null 2>&1 || $$SUDO systemctl start rabbitmq-server; }; \
	$$SUDO rabbitmq-plugins is_enabled rabbitmq_management >/dev/null 2>&1 || { \
	  echo "enabling RabbitMQ's management plugin" >&2; \
	  $$SUDO rabbitmq-plugins enable rabbitmq_management >/dev/null; } || \
	  { echo "RabbitMQ's management plugin could not be enabled: rabbitmq-plugins enable rabbitmq_management" >&2; exit 1; }

test: install test-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest tests -m "not known_gap"

# The five-minute chaos soak on RabbitMQ alone (make test runs it beside the rest: docs/reliability.md)
soak-rabbitmq: install test-deps
	$(BIN)/pytest tests/test_chaos_rabbitmq.py

# The quick answer while editing (under 2 minutes on 2 cores): ruff and the tests no marker sets
# aside. No server beyond the one redis-server the session starts (no Celery worker, RabbitMQ,
# Prometheus, Alertmanager, Chromium, no chaos soak); `make test` still runs everything.
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -m "not e2e and not soak and not browser and not slow" tests

# config.example.yaml and docs/configuration.md are generated from the declared settings
docs: $(STAMP)
	$(BIN)/python -m doorman.config.docgen

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# Every benchmark, one report (markdown on stdout, bench-results/report.json); `make bench-peers` first
# adds Flower and celery-exporter to the comparison. One benchmark alone: python -m bench.run NAME
bench: install test-deps
	$(BIN)/python -m bench.report

# Flower and celery-exporter in their own virtualenvs (.venv-flower, .venv-exporter), from PyPI
bench-peers: install
	PYTHON=$(PYTHON) MAIN_PY=$(BIN)/python bash bench/peers/setup.sh

demo: install
	$(BIN)/doorman-simulate --workers 0 --enqueue 5

clean:
	rm -rf $(VENV) .pytest_cache
