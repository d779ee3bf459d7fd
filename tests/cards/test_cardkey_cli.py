"""``dealcoach cardkey create|list|revoke``: shown once, stored hashed, one line on errors."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.cards.keys import KEY_PATTERN, authenticate_card_key
from app.cards.models import CardKey
from app.connections.models import Connection, Provider
from app.db import session_scope
from tests.salesforce_webhooks.conftest import ORG_ID
from tests.security.conftest import Cli, _fresh_settings, cli  # noqa: F401  (fixtures)


def test_a_card_key_is_created_once_listed_and_revoked(
    cli: Cli,  # noqa: F811
    session_factory: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with session_scope(session_factory) as session:
        connection = Connection(
            provider=Provider.SALESFORCE, name="Acme", external_account_id=ORG_ID
        )
        session.add(connection)
        session.flush()
        connection_id = connection.id

    code, out, err = cli("cardkey", "create", "--connection", connection_id)
    assert code == 0, err
    lines = out.splitlines()
    plaintext = lines[-1]
    assert KEY_PATTERN.match(plaintext) and len(lines) == 2
    secret = plaintext.split("_", 2)[2]
    assert secret not in lines[0] and connection_id in lines[0]
    with session_scope(session_factory) as session:
        row = session.scalars(select(CardKey)).one()
        assert secret not in row.secret_hash and row.connection_id == connection_id
        assert authenticate_card_key(session, plaintext) is not None

    list_code, listing, _ = cli("cardkey", "list", "--connection", connection_id)
    assert list_code == 0 and plaintext[4:12] in listing and secret not in listing

    revoke_code, revoked, _ = cli("cardkey", "revoke", plaintext[4:12])
    assert revoke_code == 0 and "revoked" in revoked
    with session_scope(session_factory) as session:
        assert authenticate_card_key(session, plaintext) is None
    for record in caplog.records:
        assert secret not in record.getMessage()


def test_cli_errors_are_one_line(cli: Cli) -> None:  # noqa: F811
    code, out, err = cli("cardkey", "create", "--connection", "nope")
    assert (code, out, err) == (2, "", "dealcoach: no connection 'nope'\n")
    code, out, err = cli("cardkey", "revoke", "nope")
    assert (code, out, err) == (2, "", "dealcoach: no card key with that id or prefix\n")
