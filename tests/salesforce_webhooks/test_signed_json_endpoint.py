"""POST /webhooks/salesforce/{connection_id}/events: signed JSON end to end."""

from __future__ import annotations

import time

from app.webhooks.models import WebhookDelivery
from integrations.salesforce.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER

from .conftest import (
    ACCOUNT,
    OPP_1,
    OPP_2,
    OTHER_ORG,
    SalesforceOrg,
    add_salesforce_connection,
    json_events,
)


def test_valid_events_are_stored_and_answered(sf: SalesforceOrg) -> None:
    body = json_events(("evt-1", OPP_1), ("evt-2", OPP_2), ("evt-3", ACCOUNT))

    response = sf.post_json(body)

    assert response.status_code == 200, response.text
    assert response.json() == {"received": 3}
    items = sf.deliveries()
    assert sorted((i["status"], tuple(i["deal_ids"])) for i in items) == sorted(
        [("received", (OPP_1,)), ("received", (OPP_2,)), ("ignored", (ACCOUNT,))]
    )


def test_a_replay_is_answered_and_stores_nothing_new(sf: SalesforceOrg) -> None:
    body = json_events(("evt-1", OPP_1))
    assert sf.post_json(body).status_code == 200
    # The same event again, freshly signed (a Flow retry) or the very same request.
    assert sf.post_json(body).status_code == 200
    assert sf.post_json(json_events(("evt-1", OPP_1), ("evt-9", OPP_2))).status_code == 200
    assert sorted(tuple(i["deal_ids"]) for i in sf.deliveries()) == [(OPP_1,), (OPP_2,)]


def test_a_tampered_body_is_401(sf: SalesforceOrg) -> None:
    signed = json_events(("evt-1", OPP_1))
    response = sf.post_json(json_events(("evt-1", OPP_2)), signed_body=signed)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert sf.service.count(WebhookDelivery) == 0


def test_a_tampered_signature_is_401(sf: SalesforceOrg) -> None:
    from integrations.salesforce.webhooks import sign_salesforce_json

    body = json_events(("evt-1", OPP_1))
    headers = sign_salesforce_json(body, "sf-whsec-test-0123456789abcdef", int(time.time()))
    digest = headers[SIGNATURE_HEADER]
    flipped = digest[:-1] + ("0" if digest[-1] != "0" else "1")
    for signature in (flipped, digest.replace("sha256=", "sha1="), digest[7:], "", "sha256="):
        response = sf.post_json(body, headers={**headers, SIGNATURE_HEADER: signature})
        assert response.status_code == 401, signature
    wrong_secret = sign_salesforce_json(body, "another secret", int(time.time()))
    assert sf.post_json(body, headers=wrong_secret).status_code == 401
    assert sf.service.count(WebhookDelivery) == 0


def test_stale_and_future_timestamps_are_401(sf: SalesforceOrg) -> None:
    body = json_events(("evt-1", OPP_1))
    now = int(time.time())
    assert sf.post_json(body, timestamp=now - 360).status_code == 401
    assert sf.post_json(body, timestamp=now + 360).status_code == 401
    assert sf.service.count(WebhookDelivery) == 0
    assert sf.post_json(body, timestamp=now - 240).status_code == 200


def test_missing_headers_are_401(sf: SalesforceOrg) -> None:
    body = json_events(("evt-1", OPP_1))
    from integrations.salesforce.webhooks import sign_salesforce_json

    full = sign_salesforce_json(body, "sf-whsec-test-0123456789abcdef", int(time.time()))
    for missing in (SIGNATURE_HEADER, TIMESTAMP_HEADER):
        headers = {k: v for k, v in full.items() if k != missing}
        assert sf.post_json(body, headers=headers).status_code == 401
    assert sf.post_json(body, headers={}).status_code == 401
    assert sf.service.count(WebhookDelivery) == 0


def test_a_connection_without_a_secret_refuses_everything(sf: SalesforceOrg) -> None:
    bare = add_salesforce_connection(sf.service, org_id=OTHER_ORG, secret=None)
    assert bare.post_json(json_events(("evt-1", OPP_1))).status_code == 401


def test_malformed_json_after_a_valid_signature_is_400(sf: SalesforceOrg) -> None:
    for body in (b"not json", b'{"events": "nope"}', b'{"events": [{"id": "e"}]}'):
        assert sf.post_json(body).status_code == 400
    assert sf.service.count(WebhookDelivery) == 0


def test_an_oversize_body_is_413(sf: SalesforceOrg) -> None:
    assert sf.post_json(b" " * ((1 << 20) + 1)).status_code == 413


def test_unknown_connections_and_other_providers_are_404(sf: SalesforceOrg) -> None:
    body = json_events(("evt-1", OPP_1))
    fake_id, _ = sf.service.add_fake_connection()
    for connection_id in ("no-such-connection", fake_id):
        url = sf.events_url.replace(sf.connection_id, connection_id)
        response = sf.service.client.post(url, content=body)
        assert response.status_code == 404
