# The commands the README names. Each one sets up what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint types unit cards-test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job end to end, set-up included, on the embedded default: `dealcoach demo`
## starts the Salesforce and HubSpot emulators (the CRM sandboxes), runs `dealcoach db
## upgrade` and `dealcoach serve` on a fresh SQLite data directory, connects both CRMs,
## syncs, writes notes back, reviews a stage change in each from its webhook, reads both
## CRMs back, and stops everything (docs/demo.md).
demo: $(STAMP)
	$(BIN)/dealcoach demo

## Lint, types, the in-CRM cards' tests and lint, and the whole test suite (SQLite and a
## real PostgreSQL).
test: $(STAMP) lint types cards-test unit

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

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(addsuffix /node_modules,$(CARD_PROJECTS))
