"""The reliability suite: what was tried against the service, and what held.

Each test measures and asserts, and records one row (what was tried, what held,
the figures) with the ``reliability`` fixture. At the end of the session the rows
are printed as a table and, when ``DEALCOACH_RELIABILITY_REPORT`` names a file,
written there as JSON (``make reliability`` writes ``bench/reliability.json``).

Scale: ``DEALCOACH_RELIABILITY=full`` runs the full counts (``make reliability``);
otherwise the reduced counts that ``make test`` (and so CI) runs. The figures of a
full run are recorded in docs/reliability.md.

The service is the real app with its embedded worker, on SQLite and PostgreSQL
(``tests/pipeline``'s ``running_service``), with a Salesforce connection whose
adapter is the real simple-salesforce client talking TLS to the emulator
(``tests/salesforce_service``'s fixtures, imported here).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.salesforce_service.conftest import (  # noqa: F401 - fixtures used by the tests
    emulator,
    emulator_options,
    service,
)

FULL = os.environ.get("DEALCOACH_RELIABILITY", "").lower() == "full"


def scale(ci: int, full: int) -> int:
    """The count for this run: ``full`` under ``DEALCOACH_RELIABILITY=full``, else ``ci``."""
    return full if FULL else ci


@dataclass
class Trial:
    """One row of the table: what was tried, what held, and the measured figures."""

    name: str
    tried: str
    held: str
    figures: dict[str, Any] = field(default_factory=dict)
    database: str = ""


_TRIALS: list[Trial] = []


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Iterator[list[Trial]]:
    """Append a :class:`Trial` to record it (the database is filled in from the test id)."""
    recorded: list[Trial] = []
    yield recorded
    database = "postgresql" if "postgres" in request.node.name else "sqlite"
    for trial in recorded:
        trial.database = database
        _TRIALS.append(trial)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _TRIALS:
        return
    write = terminalreporter.write_line
    write("")
    write(f"reliability ({'full' if FULL else 'reduced'} run): what was tried, and what held")
    for trial in _TRIALS:
        figures = ", ".join(f"{key}={value}" for key, value in trial.figures.items())
        write(f"- [{trial.database}] {trial.name}: {trial.tried} -> {trial.held} ({figures})")
    target = os.environ.get("DEALCOACH_RELIABILITY_REPORT")
    if target:
        payload = {
            "scale": "full" if FULL else "reduced",
            "trials": [asdict(trial) for trial in _TRIALS],
        }
        Path(target).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
