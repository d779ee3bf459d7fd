"""A replaced webhook secret (and the Outbound Message URL token derived from it) is
accepted for a grace period, so deliveries signed or queued before the rotation land;
after it, or once the secret is cleared, only the new one is."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import update

from app.connections.models import Connection
from app.connections.service import WEBHOOK_SECRET_GRACE
from app.db import session_scope, utcnow
from integrations.salesforce.webhooks import sign_salesforce_json

from .conftest import (
    OPP_1,
    OPP_2,
    OPP_3,
    SECRET,
    SalesforceOrg,
    json_events,
    notification_id,
    outbound_message,
)
from .conftest import Notification as N

NEW_SECRET = "sf-whsec-rotated-fedcba9876543210"


def _rotate(sf: SalesforceOrg, secret: str | None) -> str:
    response = sf.service.client.put(
        f"/api/v1/connections/{sf.connection_id}/credentials",
        headers=sf.service.auth(),
        json={"webhook_secret": secret},
    )
    assert response.status_code == 200, response.text
    shown = sf.service.client.get(
        f"/api/v1/connections/{sf.connection_id}", headers=sf.service.auth()
    ).json()
    return str(shown["webhook_urls"].get("outbound_message", ""))


def _post_json(sf: SalesforceOrg, body: bytes, secret: str) -> int:
    headers = {**sign_salesforce_json(body, secret, int(time.time()))}
    headers["Content-Type"] = "application/json"
    return int(sf.service.client.post(sf.events_url, content=body, headers=headers).status_code)


def _outbound(sf: SalesforceOrg, number: int, opportunity: str, url: str) -> int:
    body = outbound_message(N(notification_id(number), opportunity))
    return int(sf.post_outbound(body, url=url).status_code)


def _end_the_grace(sf: SalesforceOrg) -> None:
    with session_scope(sf.service.runtime.sessions) as session:
        session.execute(
            update(Connection)
            .where(Connection.id == sf.connection_id)
            .values(webhook_secret_rotated_at=utcnow() - WEBHOOK_SECRET_GRACE - timedelta(1))
        )


def test_the_old_secret_and_url_work_until_the_grace_ends(sf: SalesforceOrg) -> None:
    old_url = sf.outbound_url
    new_url = _rotate(sf, NEW_SECRET)
    assert new_url and new_url != old_url

    assert _post_json(sf, json_events(("e1", OPP_1)), SECRET) == 200
    assert _post_json(sf, json_events(("e2", OPP_2)), NEW_SECRET) == 200
    queued = outbound_message(N(notification_id(1), OPP_1))
    assert sf.post_outbound(queued, url=old_url).status_code == 200  # queued before
    assert (
        sf.post_outbound(outbound_message(N(notification_id(2), OPP_2)), new_url).status_code == 200
    )

    _end_the_grace(sf)
    assert _post_json(sf, json_events(("e3", OPP_3)), SECRET) == 401
    assert (
        sf.post_outbound(outbound_message(N(notification_id(3), OPP_3)), old_url).status_code == 404
    )
    assert _post_json(sf, json_events(("e4", OPP_3)), NEW_SECRET) == 200
    assert len(sf.deliveries()) == 5


def test_clearing_the_secret_ends_every_grace(sf: SalesforceOrg) -> None:
    old_url = sf.outbound_url
    _rotate(sf, NEW_SECRET)
    _rotate(sf, None)
    assert _post_json(sf, json_events(("e1", OPP_1)), SECRET) == 401
    assert _post_json(sf, json_events(("e2", OPP_1)), NEW_SECRET) == 401
    assert (
        sf.post_outbound(outbound_message(N(notification_id(1), OPP_1)), old_url).status_code == 404
    )
    assert sf.deliveries() == []


def test_setting_the_same_secret_again_starts_no_grace(sf: SalesforceOrg) -> None:
    _rotate(sf, SECRET)
    with session_scope(sf.service.runtime.sessions) as session:
        connection = session.get(Connection, sf.connection_id)
        assert connection is not None
        assert connection.previous_webhook_secret_encrypted is None
        assert connection.webhook_secret_rotated_at is None
