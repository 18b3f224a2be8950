# Everything a fresh machine needs: `make demo` and `make test` set up the virtualenv and the
# services (the machine's Redis and Postgres when they answer, otherwise ones started in .s2/).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STATE := .s2
WITH_SERVICES := set -a && . $(STATE)/services.env && set +a &&

.PHONY: install services services-down browser demo test lint typecheck pytest bench clean openapi

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(VENV)/.installed

services: install
	$(BIN)/python deploy/dev/services.py up

services-down:
	$(BIN)/python deploy/dev/services.py down

# The browser tests drive Debian's chromium through Playwright (never `playwright install`:
# no browser download). Installed here when missing and this machine lets us (root and apt);
# otherwise one line says how, and the browser tests fail (never skip) without it.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "make: installing chromium (Debian's package) for the browser tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends chromium >/dev/null \
	      || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends chromium >/dev/null; } \
	      || echo "make: could not install chromium; the browser tests will fail" >&2; \
	  else \
	    echo "make: no chromium: run 'sudo apt-get install chromium' (the browser tests need it)" >&2; \
	  fi; }

demo: services
	$(WITH_SERVICES) $(BIN)/system2 migrate && $(BIN)/system2 demo

# The HTTP contract, checked in, and the Python client generated from it: a change to either
# is a reviewed diff (tests/test_contract.py fails while they differ from what is served).
openapi: install
	$(BIN)/system2 openapi > docs/openapi.json
	$(BIN)/openapi-python-client generate --path docs/openapi.json --meta none \
		--output-path system2_client --config docs/openapi-client.yml --overwrite

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: install
	$(BIN)/mypy

# Two test processes (pytest-xdist, a file each at a time: a module's servers start once),
# each with its own scratch database and Redis database; then the benchmarks, alone (marker
# `serial`: they measure CPU and time). PYTEST_ARGS takes paths and options, MARK a marker
# expression (`make pytest MARK=slow`): pytest keeps only the last -m. With PYTEST_ARGS or MARK
# set, a half with nothing to run ("no tests ran", exit 5) is fine; in a full run (CI) it
# fails, as any other error does.
MARK ?=
SELECT = $(if $(MARK), and ($(MARK)))
EMPTY_OK = $(if $(PYTEST_ARGS)$(MARK),|| [ $$? -eq 5 ])
pytest: services browser
	$(WITH_SERVICES) $(BIN)/pytest -n 2 --dist loadfile -m "not serial$(SELECT)" $(PYTEST_ARGS) $(EMPTY_OK)
	$(WITH_SERVICES) $(BIN)/pytest -m "serial$(SELECT)" $(PYTEST_ARGS) $(EMPTY_OK)

test: lint typecheck pytest

BENCHMARKS := capacity throughput consumption latency audit_writer guard vault cancel fairness redelivery soak cost

bench: services
	$(WITH_SERVICES) for b in $(BENCHMARKS); do echo "== bench/$$b.py"; $(BIN)/python -m bench.$$b || exit 1; done

clean:
	test ! -x $(BIN)/python || $(BIN)/python deploy/dev/services.py down
	rm -rf $(VENV) $(STATE) .mypy_cache .ruff_cache .pytest_cache .hypothesis
