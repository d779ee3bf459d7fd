"""Secrets at rest: encryption, tampering, key configuration, the sandbox key, rotation."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.connections.models import Connection, Provider
from app.db import session_scope
from app.security.crypto import (
    DEV_KEY_FILE_NAME,
    SecretBox,
    SecretDecryptError,
    SecretKeyInvalid,
    SecretKeysMissing,
    generate_key,
    rotate_secrets,
)
from tests.security.conftest import Cli

CREDENTIALS = {"access_token": "00Dxx!AQ-access-token-plaintext", "refresh_token": "5Aep-refresh"}
WEBHOOK_SECRET = "whsec-plaintext-ümlaut"


def box_for(*keys: str, sandbox: bool = False, data_dir: Path | None = None) -> SecretBox:
    settings = Settings(
        secret_keys=",".join(keys) or None,
        sandbox=sandbox,
        data_dir=data_dir or Path("/nonexistent-dealcoach-data"),
    )
    return SecretBox.from_settings(settings)


# --- encryption --------------------------------------------------------------------------


def test_given_a_key_when_json_and_text_are_encrypted_then_they_decrypt_to_the_same_values() -> (
    None
):
    box = box_for(generate_key())

    token = box.encrypt_json(CREDENTIALS)
    text_token = box.encrypt_text(WEBHOOK_SECRET)

    assert box.decrypt_json(token) == CREDENTIALS
    assert box.decrypt_text(text_token) == WEBHOOK_SECRET
    assert b"plaintext" not in token and b"plaintext" not in text_token
    assert box.encrypt_text(WEBHOOK_SECRET) != text_token  # a fresh IV every time


@pytest.mark.parametrize("position", [0, 10, 40, -5, -1])
def test_given_a_tampered_token_when_decrypted_then_it_fails_without_key_material(
    position: int,
) -> None:
    key = generate_key()
    box = box_for(key)
    token = bytearray(box.encrypt_text(WEBHOOK_SECRET))
    token[position] = ord("A") if token[position] != ord("A") else ord("B")

    with pytest.raises(SecretDecryptError) as caught:
        box.decrypt_text(bytes(token))

    assert key not in str(caught.value)
    assert WEBHOOK_SECRET not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_given_another_key_when_decrypting_then_it_fails() -> None:
    token = box_for(generate_key()).encrypt_json(CREDENTIALS)

    with pytest.raises(SecretDecryptError):
        box_for(generate_key()).decrypt_json(token)


def test_given_a_text_token_when_read_as_json_then_it_fails_clearly() -> None:
    box = box_for(generate_key())

    with pytest.raises(SecretDecryptError, match="JSON object"):
        box.decrypt_json(box.encrypt_text("not json"))
    with pytest.raises(SecretDecryptError, match="JSON object"):
        box.decrypt_json(box.encrypt_text("[1, 2]"))


def test_given_keys_b_then_a_when_a_token_of_a_is_rotated_then_b_alone_decrypts_it() -> None:
    key_a, key_b = generate_key(), generate_key()
    token = box_for(key_a).encrypt_json(CREDENTIALS)

    rotated = box_for(key_b, key_a).rotate(token)

    assert box_for(key_b).decrypt_json(rotated) == CREDENTIALS
    with pytest.raises(SecretDecryptError):
        box_for(key_a).decrypt_json(rotated)


# --- key configuration -------------------------------------------------------------------


def test_given_no_keys_outside_sandbox_when_a_box_is_built_then_the_error_says_how_to_fix_it(
    tmp_path: Path,
) -> None:
    with pytest.raises(SecretKeysMissing) as caught:
        box_for(data_dir=tmp_path)

    message = str(caught.value)
    assert "DEALCOACH_SECRET_KEYS" in message
    assert "dealcoach keys generate" in message
    assert not (tmp_path / DEV_KEY_FILE_NAME).exists()


@pytest.mark.parametrize(
    ("value", "position"),
    [
        ("not-a-fernet-key", "key 1 of 1"),
        (f"{Fernet.generate_key().decode()},c2hvcnQ=", "key 2 of 2"),
        ("ключ", "key 1 of 1"),
        ("A" * 44, "key 1 of 1"),  # valid base64, but 33 bytes
    ],
)
def test_given_a_malformed_key_when_a_box_is_built_then_the_error_names_the_variable_not_the_key(
    value: str, position: str
) -> None:
    with pytest.raises(SecretKeyInvalid) as caught:
        SecretBox.from_settings(Settings(secret_keys=value))

    message = str(caught.value)
    assert "DEALCOACH_SECRET_KEYS" in message
    assert position in message
    assert "dealcoach keys generate" in message
    for entry in value.split(","):
        assert entry not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_given_spaces_and_a_trailing_comma_when_keys_are_read_then_they_are_ignored() -> None:
    key_a, key_b = generate_key(), generate_key()

    box = SecretBox.from_settings(Settings(secret_keys=f" {key_b} , {key_a} ,"))

    assert box.key_count == 2
    assert box_for(key_b).decrypt_text(box.encrypt_text("x")) == "x"


# --- the sandbox development key ---------------------------------------------------------


def test_given_sandbox_without_keys_when_boxes_are_built_then_one_0600_dev_key_is_shared(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    data_dir = tmp_path / "data"

    first = box_for(sandbox=True, data_dir=data_dir)
    second = box_for(sandbox=True, data_dir=data_dir)

    path = data_dir / DEV_KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert second.decrypt_json(first.encrypt_json(CREDENTIALS)) == CREDENTIALS
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "development key" in warnings[0].getMessage()
    key = path.read_text().strip()
    assert all(key not in record.getMessage() for record in caplog.records)
    assert list(data_dir.iterdir()) == [path]  # no temporary file left behind


def test_given_a_world_readable_dev_key_when_used_then_its_mode_is_tightened(
    tmp_path: Path,
) -> None:
    path = tmp_path / DEV_KEY_FILE_NAME
    key = generate_key()
    path.write_text(key + "\n")
    path.chmod(0o644)

    box = box_for(sandbox=True, data_dir=tmp_path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert box_for(key).decrypt_text(box.encrypt_text("x")) == "x"


def test_given_sandbox_with_keys_when_a_box_is_built_then_the_keys_are_used_and_no_file_made(
    tmp_path: Path,
) -> None:
    key = generate_key()

    box = box_for(key, sandbox=True, data_dir=tmp_path)

    assert box_for(key).decrypt_text(box.encrypt_text("x")) == "x"
    assert not (tmp_path / DEV_KEY_FILE_NAME).exists()


# --- rotation over the database (SQLite and PostgreSQL) -----------------------------------


def add_connections(session: Session, box: SecretBox) -> list[str]:
    rows = [
        Connection(
            provider=Provider.SALESFORCE,
            name="Acme org",
            external_account_id="00D000000000001",
            credentials_encrypted=box.encrypt_json(CREDENTIALS),
            webhook_secret_encrypted=box.encrypt_text(WEBHOOK_SECRET),
            # the secret it replaced, still accepted for a grace period
            previous_webhook_secret_encrypted=box.encrypt_text("previous-plaintext"),
        ),
        Connection(
            provider=Provider.HUBSPOT,
            name="Acme portal",
            external_account_id="4412345",
            credentials_encrypted=box.encrypt_json({"access_token": "pat-na1-plaintext"}),
            webhook_secret_encrypted=box.encrypt_text("hubspot-client-secret-plaintext"),
        ),
        Connection(  # nothing encrypted yet: skipped, not counted
            provider=Provider.FAKE, name="Sandbox", external_account_id="fake-1"
        ),
    ]
    session.add_all(rows)
    session.flush()
    return [row.id for row in rows]


def test_given_secrets_under_key_a_when_rotated_to_b_then_key_b_alone_decrypts_every_secret(
    session_factory: sessionmaker[Session],
    cli: Cli,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key_a, key_b = generate_key(), generate_key()
    with session_scope(session_factory) as session:
        add_connections(session, box_for(key_a))

    code, out, err = cli("keys", "rotate", DEALCOACH_SECRET_KEYS=f"{key_b},{key_a}")

    assert code == 0, err
    assert out.strip() == "5 secrets re-encrypted with the newest key"
    box_b = box_for(key_b)
    with session_scope(session_factory) as session:
        connections = session.scalars(select(Connection).order_by(Connection.name)).all()
        decrypted = {
            row.name: (
                box_b.decrypt_json(row.credentials_encrypted)
                if row.credentials_encrypted
                else None,
                box_b.decrypt_text(row.webhook_secret_encrypted)
                if row.webhook_secret_encrypted
                else None,
            )
            for row in connections
        }
        previous = [
            box_b.decrypt_text(row.previous_webhook_secret_encrypted)
            for row in connections
            if row.previous_webhook_secret_encrypted
        ]
    assert previous == ["previous-plaintext"]
    assert decrypted == {
        "Acme org": (CREDENTIALS, WEBHOOK_SECRET),
        "Acme portal": ({"access_token": "pat-na1-plaintext"}, "hubspot-client-secret-plaintext"),
        "Sandbox": (None, None),
    }
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (key_a, key_b, "plaintext", WEBHOOK_SECRET):
        assert secret not in logged
        assert secret not in out + err


def test_given_a_secret_no_key_opens_when_rotating_then_nothing_changes_and_the_cli_says_so(
    session_factory: sessionmaker[Session], cli: Cli
) -> None:
    key_a, key_b, stranger = generate_key(), generate_key(), generate_key()
    with session_scope(session_factory) as session:
        add_connections(session, box_for(key_a))
        session.add(
            Connection(
                provider=Provider.SALESFORCE,
                name="Foreign",
                external_account_id="00D000000000002",
                credentials_encrypted=box_for(stranger).encrypt_json({"k": "v"}),
            )
        )
    with session_scope(session_factory) as session:
        before = {row.id: row.credentials_encrypted for row in session.scalars(select(Connection))}

    code, out, err = cli("keys", "rotate", DEALCOACH_SECRET_KEYS=f"{key_b},{key_a}")

    assert code == 1  # an operational error (exit codes: docs/deploy.md)
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("dealcoach: connection ")
    assert "could not be decrypted" in err
    with session_scope(session_factory) as session:
        after = {row.id: row.credentials_encrypted for row in session.scalars(select(Connection))}
    assert after == before


def test_given_a_session_when_rotate_secrets_runs_then_it_counts_and_only_flushes(
    session: Session,
) -> None:
    key_a, key_b = generate_key(), generate_key()
    add_connections(session, box_for(key_a))

    count = rotate_secrets(session, box_for(key_b, key_a))

    assert count == 5
    assert session.in_transaction()  # the caller commits
    for row in session.scalars(select(Connection)):
        if row.credentials_encrypted is not None:
            box_for(key_b).decrypt_json(row.credentials_encrypted)


def test_given_no_keys_outside_sandbox_when_rotating_then_one_clear_line_and_status_1(
    cli: Cli,
) -> None:
    code, out, err = cli("keys", "rotate")

    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert "DEALCOACH_SECRET_KEYS is not set" in err and "dealcoach keys generate" in err


def test_given_a_malformed_key_when_rotating_then_the_key_is_not_echoed(cli: Cli) -> None:
    code, _out, err = cli("keys", "rotate", DEALCOACH_SECRET_KEYS="s3cr3t-but-not-fernet")

    assert code == 1
    assert "DEALCOACH_SECRET_KEYS" in err
    assert "s3cr3t" not in err


def test_when_a_key_is_generated_then_it_is_one_valid_fernet_key_per_call() -> None:
    from click.testing import CliRunner

    from app.cli import main

    first = CliRunner().invoke(main, ["keys", "generate"])
    second = CliRunner().invoke(main, ["keys", "generate"])

    assert first.exit_code == 0
    Fernet(first.stdout.strip().encode())
    assert first.stdout.count("\n") == 1
    assert first.stdout != second.stdout
