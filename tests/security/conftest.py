"""Helpers for the security tests: the CLI with its own environment, fresh settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from app.config import Settings, get_settings

#: Variables that a developer's environment could set and that would change these tests.
_ISOLATED = (
    "DEALCOACH_DATABASE_URL",
    "DEALCOACH_DATA_DIR",
    "DEALCOACH_SECRET_KEYS",
    "DEALCOACH_SANDBOX",
)


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No inherited DEALCOACH_* secrets, and ``get_settings()`` re-read around each test."""
    for name in _ISOLATED:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


class Cli:
    """Runs ``dealcoach`` in-process with a given environment (settings re-read each time)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str, **extra_env: str) -> tuple[int, str, str]:
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(main, list(args), env={**self.env, **extra_env})
        finally:
            get_settings.cache_clear()
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def cli(db_settings: Settings, tmp_path: Path) -> Cli:
    """``dealcoach`` on the test database (SQLite or PostgreSQL), sandbox off, no keys."""
    assert db_settings.database_url is not None
    return Cli(
        {
            "DEALCOACH_DATABASE_URL": db_settings.database_url,
            "DEALCOACH_DATA_DIR": str(tmp_path / "cli-data"),
            "DEALCOACH_SANDBOX": "false",
        }
    )
