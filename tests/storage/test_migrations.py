"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import Engine, event, inspect, text

import app.db
from app.cli import main
from app.config import Settings, get_settings
from app.db import alembic_config, create_engine_for, downgrade_database, upgrade_database
from app.models import Base

EXPECTED_TABLES = {
    "api_keys",
    "card_feedback",
    "card_keys",
    "connections",
    "deal_history",
    "deal_snapshots",
    "leases",
    "oauth_attempts",
    "playbooks",
    "process_heartbeats",
    "prompt_feedback",
    "retired_accounts",
    "sync_jobs",
    "reviews",
    "webhook_deliveries",
    "webhook_inbox_deals",
    "writebacks",
}


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def _current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _schema_differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_migrations_have_one_head_and_date_slug_file_names() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    assert len(scripts.get_heads()) == 1
    for revision in scripts.walk_revisions():
        assert revision.path is not None
        name = Path(revision.path).name
        assert name[:11].replace("_", "").isdigit(), name


def test_given_empty_database_when_upgrade_then_all_tables_exist_at_head(
    database_url: str,
) -> None:
    settings = Settings(database_url=database_url)
    upgrade_database(settings)

    engine = create_engine_for(settings)
    try:
        assert _tables(engine) == EXPECTED_TABLES
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert _current_revision(engine) == head
    finally:
        engine.dispose()


def test_given_head_when_downgrade_to_base_and_upgrade_again_then_schema_is_rebuilt(
    database_url: str,
) -> None:
    settings = Settings(database_url=database_url)
    upgrade_database(settings)
    downgrade_database(settings, "base")

    engine = create_engine_for(settings)
    try:
        assert _tables(engine) == set()
        assert _current_revision(engine) is None

        upgrade_database(settings, "head")
        assert _tables(engine) == EXPECTED_TABLES
        assert _schema_differences(engine) == []
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    assert _schema_differences(engine) == []


def test_upgrade_is_idempotent(db_settings: Settings, engine: Engine) -> None:
    before = _current_revision(engine)
    upgrade_database(db_settings)
    assert _current_revision(engine) == before


def test_json_is_jsonb_on_postgresql_and_timestamps_keep_time_zones(
    engine: Engine, backend: str
) -> None:
    columns = {column["name"]: column for column in inspect(engine).get_columns("reviews")}
    if backend == "postgresql":
        assert type(columns["signals"]["type"]).__name__ == "JSONB"
        assert getattr(columns["created_at"]["type"], "timezone", False) is True
    else:
        assert type(columns["signals"]["type"]).__name__ == "JSON"


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Environment for the CLI: no database URL, no .env, settings read afresh."""
    for name in (
        "DEALCOACH_DATABASE_URL",
        "DEALCOACH_DATA_DIR",
        "DEALCOACH_SQLITE_BUSY_TIMEOUT_MS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_cli_db_upgrade_creates_the_sqlite_file_in_wal_mode(
    clean_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = clean_settings / "nested" / "data"
    env = {"DEALCOACH_DATA_DIR": str(data_dir), "DEALCOACH_SQLITE_BUSY_TIMEOUT_MS": "1234"}
    seen: list[tuple[Any, ...]] = []
    real_create_engine_for = app.db.create_engine_for

    def spying_create_engine_for(settings: Settings, **kwargs: Any) -> Engine:
        engine = real_create_engine_for(settings, **kwargs)

        @event.listens_for(engine, "connect")
        def _record(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            pragmas = ("journal_mode", "busy_timeout", "foreign_keys")
            seen.append(tuple(cursor.execute(f"PRAGMA {p}").fetchone()[0] for p in pragmas))
            cursor.close()

        return engine

    monkeypatch.setattr(app.db, "create_engine_for", spying_create_engine_for)

    result = CliRunner().invoke(main, ["db", "upgrade"], env=env)

    assert result.exit_code == 0, result.output
    # The migration connection itself ran in WAL mode with the configured busy timeout.
    assert seen and all(pragmas[:2] == ("wal", 1234) for pragmas in seen), seen
    database = data_dir / "dealcoach.db"
    assert database.exists()
    assert "database at head" in result.output
    raw = sqlite3.connect(database)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
        assert tables >= EXPECTED_TABLES
    finally:
        raw.close()

    engine = create_engine_for(Settings(data_dir=data_dir, sqlite_busy_timeout_ms=1234))
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 1234
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        engine.dispose()

    downgraded = CliRunner().invoke(main, ["db", "downgrade", "base", "--yes"], env=env)
    assert downgraded.exit_code == 0, downgraded.output


def test_cli_db_upgrade_with_bad_setting_exits_with_the_variable_name(
    clean_settings: Path,
) -> None:
    result = CliRunner().invoke(
        main, ["db", "upgrade"], env={"DEALCOACH_DATABASE_URL": "mysql://nope"}
    )

    assert result.exit_code == 2
    assert "DEALCOACH_DATABASE_URL" in result.output
