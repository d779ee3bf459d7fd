"""Settings that would fail later fail at start-up, naming the variable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import SettingsError, get_settings, load_settings


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No .env from the working directory, no cached settings before or after."""
    monkeypatch.chdir(tmp_path)
    for name in ("DEALCOACH_DATABASE_URL", "DEALCOACH_DEFAULT_PLAYBOOK"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///data/dealcoach.db",
        "sqlite://",
        "postgresql://dealcoach:secret@db:5432/dealcoach",
        "postgresql+psycopg://dealcoach@db/dealcoach",
    ],
)
def test_given_a_supported_database_url_then_it_is_accepted(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("DEALCOACH_DATABASE_URL", url)

    assert load_settings().database_url == url


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("mysql://root@localhost/dealcoach", "driver 'mysql'"),
        ("postgresql+asyncpg://u@h/db", "driver 'postgresql+asyncpg'"),
        ("postgresql+psycopg2://u@h/db", "driver 'postgresql+psycopg2'"),
        ("sqlite+pysqlcipher:///x.db", "driver 'sqlite+pysqlcipher'"),
        ("postgresqlx://u@h/db", "driver 'postgresqlx'"),
        ("not a url", "not a database URL"),
        ("postgresql://u@h:port/db", "not a database URL"),
    ],
)
def test_given_an_unsupported_database_url_then_settings_fail_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, url: str, needle: str
) -> None:
    monkeypatch.setenv("DEALCOACH_DATABASE_URL", url)

    with pytest.raises(SettingsError) as caught:
        load_settings()

    assert "DEALCOACH_DATABASE_URL" in str(caught.value) and needle in str(caught.value)


@pytest.mark.parametrize("name", ["meddpicc", "BANT", "spiced", "core"])
def test_given_a_built_in_default_playbook_then_it_is_accepted(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("DEALCOACH_DEFAULT_PLAYBOOK", name)

    assert load_settings().default_playbook == name


def test_given_an_existing_playbook_file_as_default_then_it_is_accepted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "acme.yaml").write_text("name: acme\nextends: meddpicc\n")
    monkeypatch.setenv("DEALCOACH_DEFAULT_PLAYBOOK", "acme.yaml")

    assert load_settings().default_playbook == "acme.yaml"


@pytest.mark.parametrize("value", ["medpicc", "missing.yaml", "."])
def test_given_a_default_playbook_typo_then_settings_fail_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("DEALCOACH_DEFAULT_PLAYBOOK", value)

    with pytest.raises(SettingsError) as caught:
        load_settings()

    message = str(caught.value)
    assert "DEALCOACH_DEFAULT_PLAYBOOK" in message
    assert "meddpicc, bant, spiced, core" in message


def test_dev_mode_is_the_name_and_sandbox_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.config import Settings, SettingsError, load_settings

    monkeypatch.delenv("DEALCOACH_SANDBOX", raising=False)
    monkeypatch.setenv("DEALCOACH_DEV_MODE", "true")
    assert Settings().sandbox is True
    monkeypatch.delenv("DEALCOACH_DEV_MODE")
    monkeypatch.setenv("DEALCOACH_SANDBOX", "true")  # the deprecated name
    assert Settings().sandbox is True
    monkeypatch.setenv("DEALCOACH_SANDBOX", "maybe")
    with pytest.raises(SettingsError, match=r"DEALCOACH_DEV_MODE: Input should be a valid"):
        load_settings()
