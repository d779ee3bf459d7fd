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

.PHONY: install demo test lint types unit bench clean lock hadolint

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
## starts the Salesforce emulator, runs `dealcoach db upgrade` and
## `dealcoach serve` on a fresh SQLite data directory, connects, syncs, writes notes back,
## reviews a stage change, reviews the HubSpot sample offline (no HubSpot emulator yet), and
## stops everything (docs/demo.md).
demo: $(RUNTIME_STAMP)
	$(BIN)/dealcoach demo

## Lint, types, and the whole test suite (SQLite and a real PostgreSQL).
test: $(STAMP) lint types hadolint unit

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
