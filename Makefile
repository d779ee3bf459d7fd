# The commands the README names. Each one sets up what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint types unit bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job end to end, set-up included, on the embedded default: `dealcoach demo`
## starts the Salesforce emulator (the Salesforce sandbox), runs `dealcoach db upgrade` and
## `dealcoach serve` on a fresh SQLite data directory, connects, syncs, writes notes back,
## reviews a stage change, reviews the HubSpot sample offline (no HubSpot sandbox yet), and
## stops everything (docs/demo.md).
demo: $(STAMP)
	$(BIN)/dealcoach demo

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
	$(BIN)/dealcoach bench --deals 10000 --cli --salesforce

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
