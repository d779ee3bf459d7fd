"""The Outbound Message URL's token is a credential: admin keys see it, read keys (the
in-CRM cards) get it masked and cannot forge webhooks with what they see (issue 12,
finding 2)."""

from __future__ import annotations

from app.connections.service import MASKED_TOKEN
from tests.salesforce_webhooks.conftest import (
    OPP_1,
    Notification,
    SalesforceOrg,
    notification_id,
    outbound_message,
)


def test_a_read_key_sees_the_outbound_url_with_its_token_masked(sf: SalesforceOrg) -> None:
    service = sf.service
    token = sf.outbound_url.rsplit("/", 1)[1]
    assert len(token) >= 32 and token != MASKED_TOKEN

    read = service.auth(service.read_key)
    for response in (
        service.client.get(f"/api/v1/connections/{sf.connection_id}", headers=read),
        service.client.get("/api/v1/connections", headers=read),
    ):
        assert response.status_code == 200, response.text
        assert token not in response.text
        assert f"/outbound/{MASKED_TOKEN}" in response.text

    as_admin = service.client.get(f"/api/v1/connections/{sf.connection_id}", headers=service.auth())
    assert as_admin.json()["webhook_urls"]["outbound_message"] == sf.outbound_url


def test_the_masked_url_does_not_authenticate_a_webhook(sf: SalesforceOrg) -> None:
    masked = sf.outbound_url.rsplit("/", 1)[0] + f"/{MASKED_TOKEN}"
    response = sf.post_outbound(
        outbound_message(Notification(notification_id(1), OPP_1)), url=masked
    )
    assert response.status_code in (401, 403, 404), response.text
