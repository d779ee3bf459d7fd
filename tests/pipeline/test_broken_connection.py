"""A connection whose secrets no longer decrypt (its key was removed from
DEALCOACH_SECRET_KEYS) is isolated: listed with an error, its webhooks refused with a
clear 503, its work parked; every other connection is unaffected (issue 12, finding 8)."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import update

from app.connections.models import Connection, ConnectionStatus
from app.connections.runner import Parked, with_provider
from app.db import session_scope

from .conftest import Service, sample_deal


def _break(service: Service, connection_id: str) -> None:
    """Re-encrypt the connection's secrets under a key the service does not have."""
    lost = Fernet(Fernet.generate_key())
    with session_scope(service.runtime.sessions) as session:
        session.execute(
            update(Connection)
            .where(Connection.id == connection_id)
            .values(
                credentials_encrypted=lost.encrypt(b'{"token": "x"}'),
                webhook_secret_encrypted=lost.encrypt(b"whsec"),
            )
        )


def test_a_connection_whose_secrets_do_not_decrypt_is_isolated(service: Service) -> None:
    broken_id, _ = service.add_fake_connection("acct-broken")
    healthy_id, crm = service.add_fake_connection("acct-ok")
    crm.put_deal(sample_deal("D1"))
    _break(service, broken_id)

    listed = service.client.get("/api/v1/connections", headers=service.auth())
    assert listed.status_code == 200, listed.text
    by_id = {item["id"]: item for item in listed.json()["items"]}
    assert "DEALCOACH_SECRET_KEYS" in by_id[broken_id]["secrets_error"]
    assert by_id[healthy_id]["secrets_error"] is None
    one = service.client.get(f"/api/v1/connections/{broken_id}", headers=service.auth())
    assert one.status_code == 200

    refused = service.client.post(
        f"/webhooks/fake/{broken_id}",
        content=service.webhook_body(("e1", "D1")),
        headers={"content-type": "application/json"},
    )
    assert refused.status_code == 503
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "PUT .../credentials" in refused.json()["detail"]
    assert service.post_webhook(healthy_id, service.webhook_body(("e2", "D1"))) == 200

    with pytest.raises(Parked):
        with_provider(service.runtime, broken_id, lambda _s, _c, p: p.list_stages())
    after = service.client.get(f"/api/v1/connections/{broken_id}", headers=service.auth())
    assert after.json()["status"] == ConnectionStatus.NEEDS_REAUTH
    assert with_provider(service.runtime, healthy_id, lambda _s, _c, p: p.list_stages())
