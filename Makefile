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

.PHONY: run test lint bench clean chromium postgresql jq console-assets console-check console-screenshots

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

test: $(STAMP) chromium postgresql jq
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

# OML's REST notebook (tests/client/test_oml_notebooks.py) pipes curl into jq, as a user does.
jq:
	command -v jq >/dev/null || (apt-get update -q && apt-get install -y -q jq)

# The browser tests (tests/browser) drive Debian's Chromium through Playwright:
# Playwright's own browser download is not used.
chromium:
	command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)

# Rebuild the console's committed bundle (src/epe/console/static/) from console/.
console-assets:
	cd console && npm ci --no-audit --no-fund && npm run build

# Fail if the committed bundle is not what console/ builds (needs Node and npm).
console-check: console-assets
	git diff --exit-code --stat -- src/epe/console/static

# Run the browser tests and keep their screenshots as docs/images/console-*.png.
console-screenshots: $(STAMP) chromium
	EPE_CONSOLE_SCREENSHOTS=docs/images $(BIN)/python -m pytest tests/browser

bench: $(STAMP)
	$(BIN)/python bench/do_eval_latency.py

clean:
	rm -rf $(VENV) $(DATA_DIR) .pytest_cache .mypy_cache .ruff_cache console/node_modules
