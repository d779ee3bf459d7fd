# The commands the README names. Each one sets up what it needs first.
#
# Installs are reproducible: every package comes from a lock file with hashes
# (requirements/runtime.lock, requirements/dev.lock; pip --require-hashes), and the
# project itself is installed on top without dependencies. `make lock` regenerates
# both locks from pyproject.toml after a dependency changes (pip-tools).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed
LOCK_FLAGS := --quiet --generate-hashes --strip-extras --allow-unsafe \
	--no-emit-index-url --no-emit-find-links

.PHONY: install demo test lint types unit cards-test bench reliability clean lock hadolint

# The runtime alone (what the service and the demo need).
$(RUNTIME_STAMP): pyproject.toml requirements/runtime.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/runtime.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(RUNTIME_STAMP)

# Plus the development tools (tests, linters, type checker): `make test` only.
$(STAMP): $(RUNTIME_STAMP) requirements/dev.lock
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.lock
	touch $(STAMP)

install: $(STAMP)

## Regenerate the lock files from pyproject.toml (after adding or moving a dependency).
lock: $(STAMP)
	$(BIN)/pip-compile $(LOCK_FLAGS) -o requirements/runtime.lock pyproject.toml
	$(BIN)/pip-compile $(LOCK_FLAGS) --extra dev -o requirements/dev.lock pyproject.toml

## Lint the Dockerfile (hadolint from the dev tools).
hadolint: $(STAMP)
	$(BIN)/hadolint Dockerfile

## The main job end to end, set-up included, on the embedded default: `dealcoach demo`
## starts the Salesforce and HubSpot emulators (the CRM sandboxes), runs `dealcoach db
## upgrade` and `dealcoach serve` on a fresh SQLite data directory, connects both CRMs,
## syncs, writes notes back, reviews a stage change in each from its webhook, reads both
## CRMs back, and stops everything (docs/demo.md).
demo: $(RUNTIME_STAMP)
	$(BIN)/dealcoach demo

## Lint, types, the in-CRM cards' tests and lint, and the whole test suite (SQLite and a
## real PostgreSQL).
test: $(STAMP) lint types hadolint cards-test unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

## The in-CRM cards (Node.js 20+ and npm): the Salesforce package's LWC Jest tests and
## ESLint, the HubSpot project's card tests (Vitest) and ESLint. `npm ci` from the lock files
## when a lock file is newer than the installed node_modules.
CARD_PROJECTS := integrations/salesforce integrations/hubspot/project/src/app/cards
CARD_STAMPS := $(addsuffix /node_modules/.dealcoach-installed,$(CARD_PROJECTS))

%/node_modules/.dealcoach-installed: %/package-lock.json %/package.json
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' 2>/dev/null \
		|| { echo "cards-test needs Node.js 20 or newer and npm (node: $$(node --version 2>/dev/null || echo missing))"; exit 1; }
	cd $* && npm ci --no-audit --no-fund --loglevel=error
	touch $@

cards-test: $(CARD_STAMPS)
	cd integrations/salesforce && npm run --silent lint && npm test --silent
	cd integrations/hubspot/project/src/app/cards && npm run --silent lint && npm test --silent

bench: $(STAMP)
	$(BIN)/dealcoach bench --deals 10000 --cli --salesforce --hubspot --webhooks

## The reliability suite at full scale (`make test` runs it reduced): a table of what was
## tried against the service and what held, also written to bench/reliability.json.
reliability: $(STAMP)
	DEALCOACH_RELIABILITY=full DEALCOACH_RELIABILITY_REPORT=bench/reliability.json \
		$(BIN)/pytest tests/reliability -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(addsuffix /node_modules,$(CARD_PROJECTS))
