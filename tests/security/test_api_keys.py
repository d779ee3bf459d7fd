"""API keys: creation, authentication, revocation, storage, and the ``apikey`` commands."""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from app.admin.keys import (
    KEY_PATTERN,
    ApiKeyNotFound,
    Scope,
    authenticate,
    create_api_key,
    find_api_key,
    list_api_keys,
    parse_api_key,
    revoke_api_key,
)
from app.admin.models import ApiKey
from app.db import session_scope, utcnow
from tests.security.conftest import Cli


def secret_of(plaintext: str) -> str:
    parsed = parse_api_key(plaintext)
    assert parsed is not None
    return parsed[1]


def test_given_a_name_and_scope_when_a_key_is_created_then_only_a_digest_is_stored(
    session: Session,
) -> None:
    key, plaintext = create_api_key(session, "  CI deploys  ", Scope.ADMIN)

    assert KEY_PATTERN.match(plaintext)
    prefix, secret = plaintext.split("_", 2)[1], secret_of(plaintext)
    assert key.prefix == prefix and len(prefix) == 8
    assert key.name == "CI deploys"
    assert key.scope is Scope.ADMIN
    assert key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert key.revoked_at is None and key.last_used_at is None

    row = session.execute(text("SELECT * FROM api_keys WHERE id = :id"), {"id": key.id}).one()
    stored = " ".join(str(value) for value in row)
    windows = {secret[i : i + 8] for i in range(len(secret) - 7)}
    assert not [window for window in windows if window in stored]
    assert plaintext not in stored


def test_given_keys_when_created_then_prefixes_and_secrets_are_all_different(
    session: Session,
) -> None:
    made = [create_api_key(session, f"key {n}", "read") for n in range(20)]

    assert len({key.prefix for key, _ in made}) == 20
    assert len({plaintext for _, plaintext in made}) == 20


@pytest.mark.parametrize(
    ("name", "scope", "message"),
    [
        ("", "read", "needs a name"),
        ("   ", "admin", "needs a name"),
        ("x" * 201, "read", "at most 200"),
        ("ok", "owner", "unknown scope"),
    ],
)
def test_given_a_bad_name_or_scope_when_a_key_is_created_then_it_is_refused(
    session: Session, name: str, scope: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        create_api_key(session, name, scope)
    assert session.scalars(select(ApiKey)).all() == []


def test_given_a_key_when_presented_then_it_authenticates_and_its_use_is_recorded(
    session: Session,
) -> None:
    key, plaintext = create_api_key(session, "card", Scope.READ)

    found = authenticate(session, plaintext)

    assert found is not None and found.id == key.id
    assert found.last_used_at is not None
    assert utcnow() - found.last_used_at < timedelta(minutes=1)


def test_given_a_key_just_used_when_presented_again_then_last_used_is_not_rewritten(
    session: Session,
) -> None:
    key, plaintext = create_api_key(session, "card", Scope.READ)
    first = authenticate(session, plaintext)
    assert first is not None
    stamp = first.last_used_at

    again = authenticate(session, plaintext)

    assert again is not None and again.last_used_at == stamp
    key.last_used_at = utcnow() - timedelta(hours=1)
    later = authenticate(session, plaintext)
    assert later is not None and later.last_used_at is not None
    assert later.last_used_at > utcnow() - timedelta(minutes=1)


def test_given_a_wrong_secret_or_unknown_prefix_when_presented_then_nothing_authenticates(
    session: Session,
) -> None:
    key, plaintext = create_api_key(session, "card", Scope.READ)
    secret = secret_of(plaintext)
    other_secret = ("A" if secret[0] != "A" else "B") + secret[1:]
    unknown_prefix = ("Z" if key.prefix[0] != "Z" else "Y") + key.prefix[1:]

    assert authenticate(session, f"dck_{key.prefix}_{other_secret}") is None
    assert authenticate(session, f"dck_{unknown_prefix}_{secret}") is None
    assert key.last_used_at is None


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "dck_",
        "dck__",
        "Bearer dck_abcdefgh_" + "a" * 43,
        "dck_abcdefgh_" + "a" * 42,
        "dck_abcdefgh_" + "a" * 44,
        "dck_abcdefg_" + "a" * 43,
        "dck_abcdefgh-" + "a" * 43,
        "dck_abc!efgh_" + "a" * 43,
        "xyz_abcdefgh_" + "a" * 43,
        "DCK_abcdefgh_" + "a" * 43,
        "dck_abcdefgh_" + "a" * 42 + "=",
        "dck_abcdefgh_" + "a" * 43 + "\n",
        " dck_abcdefgh_" + "a" * 43,
        "dck_abcdefgh_" + "\u00e4" * 43,
        "dck_abcdefgh_" + "a" * 10_000,
    ],
)
def test_given_a_malformed_string_when_presented_then_it_is_refused(
    session: Session, presented: str
) -> None:
    create_api_key(session, "card", Scope.READ)

    assert authenticate(session, presented) is None


def test_given_an_unknown_prefix_when_presented_then_a_digest_is_still_compared(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []
    real_compare = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)

    assert authenticate(session, "dck_Unknown1_" + "a" * 43) is None

    assert len(calls) == 1
    presented_digest, compared_with = calls[0]
    assert presented_digest == hashlib.sha256(b"a" * 43).hexdigest()
    assert len(compared_with) == 64


def test_given_a_revoked_key_when_presented_then_it_is_refused_and_revocation_is_idempotent(
    session: Session,
) -> None:
    key, plaintext = create_api_key(session, "old", Scope.ADMIN)

    revoked = revoke_api_key(session, key.id)
    first_time = revoked.revoked_at
    again = revoke_api_key(session, key.id)

    assert first_time is not None and again.revoked_at == first_time
    assert authenticate(session, plaintext) is None
    with pytest.raises(ApiKeyNotFound):
        revoke_api_key(session, "no-such-id")


def test_given_keys_when_listed_or_found_then_every_key_is_there_by_id_prefix_or_full_key(
    session: Session,
) -> None:
    first, first_plain = create_api_key(session, "one", Scope.ADMIN)
    second, _ = create_api_key(session, "two", Scope.READ)
    revoke_api_key(session, second.id)

    assert {key.id for key in list_api_keys(session)} == {first.id, second.id}
    assert [key.id for key in list_api_keys(session, include_revoked=False)] == [first.id]
    assert find_api_key(session, first.id) is first
    assert find_api_key(session, first.prefix) is first
    assert find_api_key(session, first_plain) is first
    assert find_api_key(session, "nothing") is None


def test_given_a_service_call_when_it_returns_then_it_has_only_flushed(
    session_factory: sessionmaker[Session],
) -> None:
    session = session_factory()
    try:
        create_api_key(session, "uncommitted", Scope.READ)
        session.rollback()
        assert session.scalars(select(ApiKey)).all() == []
    finally:
        session.close()


# --- the CLI -------------------------------------------------------------------------------


def test_given_the_cli_when_a_key_is_created_then_it_is_alone_on_the_last_line_and_works(
    cli: Cli, session_factory: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    code, out, err = cli("apikey", "create", "--name", "CI deploys", "--scope", "admin")

    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    plaintext = lines[-1]
    assert KEY_PATTERN.match(plaintext)
    assert "admin" in lines[0] and "CI deploys" in lines[0] and plaintext[4:12] in lines[0]
    secret = secret_of(plaintext)
    assert secret not in lines[0] and secret not in err

    list_code, listing, list_err = cli("apikey", "list")
    assert list_code == 0, list_err
    assert plaintext[4:12] in listing and "CI deploys" in listing
    with session_scope(session_factory) as session:
        key = authenticate(session, plaintext)
        assert key is not None and key.scope is Scope.ADMIN

    revoke_code, revoked, revoke_err = cli("apikey", "revoke", plaintext[4:12])
    assert revoke_code == 0, revoke_err
    assert "revoked" in revoked
    with session_scope(session_factory) as session:
        assert authenticate(session, plaintext) is None

    again_code, again, _ = cli("apikey", "revoke", key.id)
    assert again_code == 0 and "already revoked" in again

    for output in (listing, list_err, revoked, revoke_err, again):
        assert secret not in output
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in repr(record.args)


def test_given_the_cli_when_an_unknown_key_is_revoked_then_one_line_and_status_2(
    cli: Cli,
) -> None:
    code, out, err = cli("apikey", "revoke", "nosuchkey")

    assert code == 2
    assert out == ""
    assert err == "dealcoach: no API key with that id or prefix\n"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--name", "x", "--scope", "owner"], "owner"),
        (["--scope", "read"], "--name"),
        (["--name", "   ", "--scope", "read"], "needs a name"),
    ],
)
def test_given_bad_create_options_when_run_then_it_fails_with_status_2(
    cli: Cli, args: list[str], fragment: str
) -> None:
    code, out, err = cli("apikey", "create", *args)

    assert code == 2
    assert out == ""
    assert fragment in err
