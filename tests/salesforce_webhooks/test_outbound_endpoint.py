"""POST /webhooks/salesforce/{connection_id}/outbound/{token}: Outbound Messages end to end."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx

from app.webhooks.models import WebhookDelivery

from .conftest import (
    ACCOUNT,
    OPP_1,
    OPP_2,
    OPP_3,
    ORG_15,
    OTHER_ORG,
    SalesforceOrg,
    add_salesforce_connection,
    notification_id,
    outbound_message,
)
from .conftest import Notification as N
from .test_parsers import HOSTILE

#: What Salesforce waits for, byte for byte (CRM_FACTS.md).
ACK = (
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    b'<soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    b"<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"
)


def assert_acked(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.content == ACK
    assert response.headers["content-type"] == "text/xml; charset=utf-8"


def test_the_urls_are_shown_on_the_connection(sf: SalesforceOrg) -> None:
    base = f"http://testserver/webhooks/salesforce/{sf.connection_id}"
    assert sf.outbound_url.startswith(f"{base}/outbound/")
    assert len(sf.outbound_url.rsplit("/", 1)[1]) == 40
    assert sf.events_url == f"{base}/events"


def test_a_message_with_several_notifications_is_stored_once_and_acked(sf: SalesforceOrg) -> None:
    body = outbound_message(
        N(notification_id(1), OPP_1),
        N(notification_id(2), OPP_2, stage="Closed Won"),
        N(notification_id(3), OPP_3[:15], stage="Proposal/Price Quote"),
    )

    assert_acked(sf.post_outbound(body))

    items = sf.deliveries()
    assert sorted(tuple(i["deal_ids"]) for i in items) == sorted(
        [(OPP_1,), (OPP_2,), (OPP_3[:15],)]
    )
    assert {i["status"] for i in items} == {"received"}
    assert {i["provider"] for i in items} == {"salesforce"}
    shown = sf.service.client.get(
        f"/api/v1/webhook-deliveries/{items[0]['id']}", headers=sf.service.auth()
    ).json()
    assert shown["headers"]["content-type"] == "text/xml; charset=utf-8"
    assert "soapaction" in shown["headers"]
    # Each delivery keeps its own notification, not the whole message three times.
    for item in items:
        body_of = sf.service.client.get(
            f"/api/v1/webhook-deliveries/{item['id']}", headers=sf.service.auth()
        ).json()["body"]
        mine = item["deal_ids"][0]
        assert mine in body_of and "Notification" in body_of
        assert all(other not in body_of for other in {OPP_1, OPP_2, OPP_3[:15]} - {mine})

    # Salesforce retries (the same notification ids): nothing new, still acknowledged.
    assert_acked(sf.post_outbound(body))
    assert_acked(sf.post_outbound(outbound_message(N(notification_id(2), OPP_2))))
    assert len(sf.deliveries()) == 3
    # A new notification in a retried batch is the only thing stored.
    retried = outbound_message(N(notification_id(1), OPP_1), N(notification_id(4), OPP_1))
    assert_acked(sf.post_outbound(retried))
    assert len(sf.deliveries()) == 4


def test_a_message_with_the_15_character_org_id_is_accepted(sf: SalesforceOrg) -> None:
    assert_acked(sf.post_outbound(outbound_message(N(notification_id(1), OPP_1), org_id=ORG_15)))
    assert len(sf.deliveries()) == 1


def test_a_notification_about_another_object_is_ignored_and_acked(sf: SalesforceOrg) -> None:
    body = outbound_message(
        N(notification_id(1), ACCOUNT, sobject_type="Account", name="Acme"),
        N(notification_id(2), "006' OR Name != '"),
    )

    assert_acked(sf.post_outbound(body))

    items = sf.deliveries()
    assert sorted((i["status"], tuple(i["deal_ids"])) for i in items) == [
        ("ignored", ("",)),
        ("ignored", (ACCOUNT,)),
    ]


def test_a_wrong_organization_is_403_and_stores_nothing(sf: SalesforceOrg) -> None:
    response = sf.post_outbound(outbound_message(N(notification_id(1), OPP_1), org_id=OTHER_ORG))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    assert sf.service.count(WebhookDelivery) == 0


def test_a_wrong_token_is_404_without_saying_why(sf: SalesforceOrg) -> None:
    body = outbound_message(N(notification_id(1), OPP_1))
    other = add_salesforce_connection(sf.service, org_id=OTHER_ORG)
    base = sf.outbound_url.rsplit("/", 1)[0]
    token = sf.outbound_url.rsplit("/", 1)[1]
    wrong_urls = [
        f"{base}/{'0' * 40}",
        f"{base}/{token[:-1]}",
        f"{base}/{token.upper()}",
        f"{base}/{other.outbound_url.rsplit('/', 1)[1]}",  # another connection's token
        other.outbound_url.replace(other.connection_id, "no-such-connection"),
        sf.outbound_url.replace(sf.connection_id, other.connection_id),
    ]
    details = set()
    for url in wrong_urls:
        response = sf.post_outbound(body, url=url)
        assert response.status_code == 404, url
        details.add(response.json()["detail"])
    assert details == {"no such webhook endpoint"}
    assert sf.service.count(WebhookDelivery) == 0
    # The signed-JSON endpoint is not an Outbound Message endpoint without a token.
    assert sf.post_outbound(body, url=f"{base}").status_code in (404, 405)


def test_a_connection_without_a_webhook_secret_has_no_outbound_url(sf: SalesforceOrg) -> None:
    bare = add_salesforce_connection(sf.service, org_id=OTHER_ORG, secret=None)
    assert bare.outbound_url == ""
    url = sf.outbound_url.replace(sf.connection_id, bare.connection_id)
    response = sf.post_outbound(outbound_message(N(notification_id(1), OPP_1)), url=url)
    assert response.status_code == 404


def test_malformed_xml_is_400(sf: SalesforceOrg) -> None:
    for body in (b"", b"<notifications>", b"<a/>", b'{"events": []}'):
        assert sf.post_outbound(body).status_code == 400
    assert sf.service.count(WebhookDelivery) == 0


def test_bombs_dtds_and_external_entities_are_400_and_quick(sf: SalesforceOrg) -> None:
    for name, body in HOSTILE.items():
        started = time.monotonic()
        response = sf.post_outbound(body)
        assert response.status_code == 400, name
        assert time.monotonic() - started < 2.0, name
    assert sf.service.count(WebhookDelivery) == 0
    # The process is fine: the next real message goes through.
    assert_acked(sf.post_outbound(outbound_message(N(notification_id(1), OPP_1))))
    assert sf.service.client.get("/healthz").status_code == 200


def test_an_oversize_body_is_413(sf: SalesforceOrg) -> None:
    body = outbound_message(N(notification_id(1), OPP_1))
    padded = body.replace(b"<soapenv:Body>", b"<soapenv:Body>" + b" " * (1 << 20))
    response = sf.post_outbound(padded)
    assert response.status_code == 413
    assert sf.service.count(WebhookDelivery) == 0


def test_an_oversize_body_without_a_content_length_is_413(sf: SalesforceOrg) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(17):
            yield b" " * 65536

    response = sf.service.client.post(
        sf.outbound_url, content=chunks(), headers={"Content-Type": "text/xml"}
    )
    assert response.status_code == 413
