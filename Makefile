# The commands the README names. Each one sets up what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint types unit bench serve clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job on the embedded default: review the bundled CRM sample exports.
demo: $(STAMP)
	$(BIN)/dealcoach db upgrade
	$(BIN)/dealcoach review --provider salesforce --file samples/salesforce_opportunities.json \
		--as-of 2026-11-20T09:00:00Z --format text
	$(BIN)/dealcoach review --provider hubspot --file samples/hubspot_deals.json \
		--as-of 2026-11-20T09:00:00Z --format text

## Lint, types, and the whole test suite (SQLite and a real PostgreSQL).
test: $(STAMP) lint types unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/dealcoach bench --deals 10000

serve: $(STAMP)
	$(BIN)/dealcoach db upgrade
	$(BIN)/dealcoach serve

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
