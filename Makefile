# The commands the README names. Each one sets up what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The bundled samples were written for a review on this date.
DEMO_AS_OF := 2026-11-20T09:00:00Z

.PHONY: install demo test lint types unit bench clean

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
		--stages samples/salesforce_stages.json --as-of $(DEMO_AS_OF)
	$(BIN)/dealcoach review --provider hubspot --file samples/hubspot_deals.json \
		--stages samples/hubspot_pipelines.json --as-of $(DEMO_AS_OF)
	$(BIN)/dealcoach agenda --provider salesforce --file samples/salesforce_opportunities.json \
		--stages samples/salesforce_stages.json --as-of $(DEMO_AS_OF)

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
	$(BIN)/dealcoach bench --deals 10000 --salesforce

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
