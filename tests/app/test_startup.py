"""Start-up failures are one line naming the cause and the fix, with a distinct exit status:
no secret key, a schema behind head, an unreachable database or queue (issue 12, finding 1)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from app.cli import EXIT_ERROR, EXIT_USAGE, main
from app.config import Settings, get_settings
from app.db import head_revisions, upgrade_database
from tests.conftest import TEST_SECRET_KEY


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=stdin)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def one_line(err: str, *needles: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """A clean environment: a fresh data directory, a secret key, nothing migrated."""
    import os

    for name in list(os.environ):
        if name.startswith("DEALCOACH_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEALCOACH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DEALCOACH_SECRET_KEYS", TEST_SECRET_KEY)
    get_settings.cache_clear()

    import uvicorn

    def no_server(*args: object, **kwargs: object) -> None:
        raise AssertionError("the server must not start")

    monkeypatch.setattr(uvicorn, "run", no_server)
    yield monkeypatch
    get_settings.cache_clear()


def migrate(tmp_path: Path) -> None:
    upgrade_database(Settings(data_dir=tmp_path / "data"))


def test_given_no_secret_keys_then_serve_fails_in_one_line_naming_the_variable(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    migrate(tmp_path)
    env.delenv("DEALCOACH_SECRET_KEYS")
    code, _, err = run("serve")
    assert code == EXIT_ERROR
    one_line(err, "DEALCOACH_SECRET_KEYS", "dealcoach keys generate")


def test_given_a_malformed_secret_key_then_worker_fails_in_one_line(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    migrate(tmp_path)
    env.setenv("DEALCOACH_SECRET_KEYS", "not-a-key")
    code, _, err = run("worker")
    assert code == EXIT_ERROR
    one_line(err, "DEALCOACH_SECRET_KEYS")
    assert "not-a-key" not in err


@pytest.mark.parametrize(
    "command",
    [
        ["serve"],
        ["worker", "--queue-wait", "0"],
        ["apikey", "create", "--name", "ops", "--scope", "admin"],
        ["apikey", "list"],
        ["apikey", "revoke", "dc_nope"],
        ["keys", "rotate"],
        ["db", "check"],
    ],
)
def test_given_a_database_never_migrated_then_commands_refuse_and_say_db_upgrade(
    env: pytest.MonkeyPatch, command: list[str]
) -> None:
    code, out, err = run(*command)
    assert code == EXIT_ERROR
    one_line(err, "run: dealcoach db upgrade")
    assert "no such table" not in err and out == ""


def test_given_a_schema_one_revision_behind_then_apikey_create_refuses(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    migrate(tmp_path)
    assert run("db", "downgrade", "--yes", "--", "-1")[0] == 0
    code, _, err = run("apikey", "create", "--name", "ops", "--scope", "admin")
    assert code == EXIT_ERROR
    one_line(err, "behind", head_revisions()[0], "run: dealcoach db upgrade")


def test_given_an_unreachable_database_then_serve_fails_in_one_line_without_the_password(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv(
        "DEALCOACH_DATABASE_URL", "postgresql://nobody:s3cret@127.0.0.1:1/none?connect_timeout=2"
    )
    code, _, err = run("serve")
    assert code == EXIT_ERROR
    one_line(err, "cannot reach the database", "127.0.0.1", "DEALCOACH_DATABASE_URL")
    assert "s3cret" not in err


def test_given_an_env_file_that_cannot_be_read_then_one_line_usage_error(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_bytes(b"DEALCOACH_LOG_LEVEL=\xff\xfe\n")  # not UTF-8
    code, _, err = run("serve")
    assert code == EXIT_USAGE
    one_line(err, ".env")


def test_given_redis_unreachable_then_the_worker_exits_after_the_wait_in_one_line(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    migrate(tmp_path)
    env.setenv("DEALCOACH_QUEUE_URL", "redis://:pw@127.0.0.1:1/0")
    started = time.monotonic()
    code, _, err = run("worker", "--queue-wait", "2")
    elapsed = time.monotonic() - started
    assert code == EXIT_ERROR
    one_line(err, "task queue", "did not answer within 2 s", "DEALCOACH_QUEUE_URL")
    assert "pw@" not in err
    assert 1.5 < elapsed < 15


def test_readyz_is_503_while_the_schema_is_behind_and_ok_after_upgrade(tmp_path: Path) -> None:
    from app.main import create_app

    settings = Settings(data_dir=tmp_path / "data", secret_keys=TEST_SECRET_KEY)
    with TestClient(create_app(settings, embedded_worker=False)) as client:
        behind = client.get("/readyz")
        upgrade_database(settings)
        ready = client.get("/readyz")
    assert behind.status_code == 503
    assert "dealcoach db upgrade" in behind.json()["database"]
    assert ready.status_code == 200, ready.text


# --- db current / check / downgrade -------------------------------------------------------


def test_db_current_and_check_report_the_revision(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    code, out, _ = run("db", "current", "--format", "json")
    assert code == 0
    assert json.loads(out) == {"current": [], "head": list(head_revisions()), "up_to_date": False}
    migrate(tmp_path)
    code, out, _ = run("db", "current")
    assert code == 0 and out.strip() == f"{head_revisions()[0]} (head)"
    code, out, _ = run("db", "check")
    assert code == 0 and "at head" in out


def test_db_downgrade_asks_first_and_does_nothing_when_refused(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    migrate(tmp_path)
    code, _, err = run("db", "downgrade", "base", stdin="n\n")
    assert code == EXIT_USAGE
    assert "every table" in err and "not confirmed" in err
    assert run("db", "check")[0] == 0  # nothing changed
    code, _, err = run("db", "downgrade", "base", stdin="y\n")
    assert code == 0, err
    assert run("db", "check")[0] == EXIT_ERROR


# --- listings as JSON ---------------------------------------------------------------------


def test_apikey_list_as_json_never_shows_a_secret(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    migrate(tmp_path)
    code, out, _ = run("apikey", "create", "--name", "cards", "--scope", "read")
    assert code == 0
    secret = out.strip().splitlines()[-1]
    code, out, _ = run("apikey", "list", "--format", "json")
    assert code == 0
    items = json.loads(out)["items"]
    assert [(item["name"], item["scope"], item["revoked_at"]) for item in items] == [
        ("cards", "read", None)
    ]
    assert items[0]["created_at"].endswith("Z")
    assert secret not in out


def test_serve_runs_uvicorn_with_the_documented_limits(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn

    migrate(tmp_path)
    env.setenv("DEALCOACH_HTTP_MAX_CONNECTIONS", "123")
    seen: dict[str, object] = {}

    def fake_run(app: object, **options: object) -> None:
        seen.update(options)

    env.setattr(uvicorn, "run", fake_run)
    code, _, err = run("serve", "--port", "8123")
    assert code == 0, err
    assert seen["limit_concurrency"] == 123
    assert seen["port"] == 8123
    for option in ("backlog", "timeout_keep_alive", "h11_max_incomplete_event_size"):
        assert isinstance(seen[option], int) and seen[option] > 0, option
