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

.PHONY: run test test-fast test-image image podman lint bench clean chromium postgresql jq slapd nodejs console-assets console-check console-screenshots

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

# The sign-in tests start a real OpenLDAP (tests/ldapserver.py) and a real OpenID provider,
# oidc-provider from npm under Node.js (tests/oidcprovider.py): Debian's packages, when missing.
slapd:
	@test -x /usr/sbin/slapd || (apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q slapd)

nodejs:
	@command -v npm >/dev/null || (apt-get update -q && apt-get install -y -q nodejs npm)
	test -d tests/oidc/node_modules/oidc-provider || \
		(cd tests/oidc && npm ci --no-audit --no-fund)

# EPE_TEST_IMAGE=1: the container image's test too (tests/release/test_image.py, minutes).
test: $(STAMP) chromium postgresql jq slapd nodejs podman
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	EPE_TEST_IMAGE=1 $(BIN)/python -m pytest

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

# A subset for developers, under 5 minutes on 2 cores: the checks, the unit tests and one
# acceptance module per main area (do-eval, the four applies, an async job, errors,
# grants, queries on both table backends, datastores, users, an operation a plugin adds),
# against real servers like the rest. `make test` runs everything; CI runs `make test`.
FAST_TESTS := tests/unit tests/acceptance/test_smoke.py tests/acceptance/test_do_eval.py \
	tests/acceptance/test_apply.py tests/acceptance/test_errors.py \
	tests/acceptance/test_grants.py tests/acceptance/test_query.py \
	tests/acceptance/test_datastores.py tests/acceptance/test_users.py \
	tests/acceptance/test_plugin_operation.py

test-fast: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q $(FAST_TESTS)

# Run the browser tests and keep their screenshots as docs/images/console-*.png.
console-screenshots: $(STAMP) chromium
	EPE_CONSOLE_SCREENSHOTS=docs/images $(BIN)/python -m pytest tests/browser

# The container image (Containerfile, deploy/build-image.sh; docs/deploy.md): podman, its
# runtime runc and mmdebstrap from Debian, when missing (no recommends: none is needed).
podman:
	@command -v podman >/dev/null && command -v runc >/dev/null && command -v mmdebstrap >/dev/null || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends podman runc mmdebstrap)

# localhost/epe:VERSION from this checkout: the wheel, a wheelhouse of it and everything it
# needs, then the image from a Debian base made by mmdebstrap, nothing pulled.
# IMAGE_EXTRAS=postgres,ray IMAGE=localhost/epe-ray:VERSION: the image KubeRay's nodes run.
VERSION = $(shell $(PYTHON) -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
IMAGE_BUILD := build/image
IMAGE_EXTRAS ?= postgres
IMAGE ?= localhost/epe:$(VERSION)
image: $(STAMP) podman
	rm -rf $(IMAGE_BUILD)
	$(BIN)/python -m build --outdir $(IMAGE_BUILD)/dist .
	$(BIN)/python -m pip wheel --quiet --wheel-dir $(IMAGE_BUILD)/wheelhouse \
		"$$(ls $(IMAGE_BUILD)/dist/epe-*.whl)[$(IMAGE_EXTRAS)]"
	EPE_IMAGE_EXTRAS=$(IMAGE_EXTRAS) deploy/build-image.sh $(IMAGE_BUILD) $(IMAGE)

# The image's test alone (tests/release/test_image.py; `make test` runs it too).
test-image: $(STAMP) podman
	EPE_TEST_IMAGE=1 $(BIN)/python -m pytest tests/release/test_image.py

bench: $(STAMP)
	$(BIN)/python bench/do_eval_latency.py

clean:
	rm -rf $(VENV) $(DATA_DIR) .pytest_cache .mypy_cache .ruff_cache console/node_modules
