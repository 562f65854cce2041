# The two commands: `make run` and `make test`. Each works on a fresh machine.
# The venv is built on a Python every user can execute (Debian's, not one under
# /root), because workers run user code as an unprivileged user (docs/security.md).
PYTHON ?= $(shell test -x /usr/bin/python3.11 && echo /usr/bin/python3.11 || echo python3.11)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= ./epe-data
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run test lint bench clean postgresql

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import ensurepip' 2>/dev/null || (apt-get update -q && apt-get install -y -q python3.11-venv)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/epe demo --data-dir $(DATA_DIR)
	$(BIN)/epe serve --data-dir $(DATA_DIR) --host $(HOST) --port $(PORT)

# The tests start a real PostgreSQL server (tests/pgserver.py): Debian's package, when missing.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql)

test: $(STAMP) postgresql
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/do_eval_latency.py

clean:
	rm -rf $(VENV) $(DATA_DIR) .pytest_cache .mypy_cache .ruff_cache
