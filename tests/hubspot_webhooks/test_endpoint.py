"""POST /webhooks/hubspot on the running service (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import logging
import time

import pytest

from app.reviews.models import Review
from app.webhooks.models import WebhookDelivery
from app.writeback.models import WriteBack, WriteBackState
from tests.pipeline.conftest import Service, sample_deal

from .conftest import (
    CLIENT_SECRET,
    OTHER_PORTAL,
    PORTAL,
    HubSpotApp,
    add_hubspot_connection,
    batch,
    event,
    now_ms,
    signed,
)


def test_the_connection_shows_the_hubspot_webhook_url(hubspot: HubSpotApp) -> None:
    assert hubspot.url == "http://testserver/webhooks/hubspot"


def test_a_signed_stage_change_is_stored_once_and_duplicates_add_nothing(
    hubspot: HubSpotApp,
) -> None:
    body = batch(event(18765432137))
    first = hubspot.post(body)
    assert first.status_code == 200, first.text
    assert first.json() == {"received": 1}
    # A redelivery (HubSpot retries with a new attemptNumber, maybe a new eventId).
    again = batch(event(18765432137, attemptNumber=1, event_id=555))
    assert hubspot.post(again).status_code == 200
    assert hubspot.post(body).status_code == 200
    [delivery] = hubspot.deliveries()
    assert delivery["deal_ids"] == ["18765432137"]
    assert delivery["status"] == "received"
    assert delivery["provider"] == "hubspot"


def test_the_same_event_id_for_different_changes_is_two_events(hubspot: HubSpotApp) -> None:
    body = batch(
        event(11, value="appointmentscheduled", event_id=7),
        event(11, value="contractsent", event_id=7, occurred=1_764_226_900_000),
    )
    assert hubspot.post(body).status_code == 200
    assert len(hubspot.deliveries()) == 2


def test_deal_creation_and_the_generic_deal_events_are_handled_others_ignored(
    hubspot: HubSpotApp,
) -> None:
    body = batch(
        event(21, subscription="deal.creation", prop=None),
        event(22, subscription="object.propertyChange", objectTypeId="0-3"),
        event(23, subscription="object.creation", prop=None, objectTypeId="0-3"),
        event(24, subscription="object.propertyChange", objectTypeId="0-1"),  # a contact
        event(25, subscription="deal.propertyChange", prop="amount", value="100"),
        event(26, subscription="contact.creation", prop=None),
        event(27, subscription="deal.deletion", prop=None),
    )
    response = hubspot.post(body)
    assert response.status_code == 200
    assert response.json() == {"received": 7}
    status = {d["deal_ids"][0]: d["status"] for d in hubspot.deliveries()}
    assert status == {
        "21": "received",
        "22": "received",
        "23": "received",
        "24": "ignored",
        "25": "ignored",
        "26": "ignored",
        "27": "ignored",
    }


def test_refused_signatures_are_401_and_store_nothing(
    hubspot: HubSpotApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = batch(event(31))
    flipped = bytearray(body)
    flipped[body.index(b"31")] = ord("4")  # the deal id changes after signing
    attempts = [
        hubspot.post(bytes(flipped), headers=signed(CLIENT_SECRET, "POST", hubspot.url, body)),
        hubspot.post(body, secret="not-the-app-secret"),
        hubspot.post(body, timestamp=now_ms() - 6 * 60 * 1000),
        hubspot.post(body, timestamp=now_ms() + 10 * 60 * 1000),
        hubspot.post(body, signed_url="https://other.example/webhooks/hubspot"),
        hubspot.post(body, headers={"Content-Type": "application/json"}),
    ]
    assert [r.status_code for r in attempts] == [401] * len(attempts)
    for response in attempts:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert CLIENT_SECRET not in response.text
    assert hubspot.deliveries() == []
    for record in caplog.records:
        assert CLIENT_SECRET not in record.getMessage()
        assert CLIENT_SECRET not in repr(record.args)


def test_an_unknown_portal_without_a_deployment_secret_is_401(hubspot: HubSpotApp) -> None:
    # Nothing can verify a batch of a portal without a connection: it is refused.
    assert hubspot.post(batch(event(41, portal=OTHER_PORTAL))).status_code == 401


def test_an_unknown_portal_is_acknowledged_and_ignored_with_the_app_secret(
    app_secret_service: Service,
) -> None:
    svc = app_secret_service
    connection_id, urls = add_hubspot_connection(svc)
    app = HubSpotApp(svc, connection_id, urls["hubspot"])
    # A validly signed batch of a portal with no connection is answered 200 and not
    # stored (HubSpot would retry a 4xx for 24 hours); the known portal's event is.
    alone = app.post(batch(event(41, portal=OTHER_PORTAL)))
    assert alone.status_code == 200, alone.text
    mixed = app.post(batch(event(41, portal=OTHER_PORTAL), event(42)))
    assert mixed.status_code == 200, mixed.text
    assert [d["deal_ids"] for d in app.deliveries()] == [["42"]]
    assert svc.count(WebhookDelivery) == 1


def test_the_deployment_secret_serves_connections_without_their_own(
    app_secret_service: Service,
) -> None:
    svc = app_secret_service
    connection_id, urls = add_hubspot_connection(svc, portal="70001", secret=None)
    body = batch(event(51, portal="70001"))
    headers = signed(CLIENT_SECRET, "POST", urls["hubspot"], body)
    response = svc.client.post("/webhooks/hubspot", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert svc.count(WebhookDelivery, WebhookDelivery.connection_id == connection_id) == 1
    # A connection with its own secret does not take the deployment's instead.
    add_hubspot_connection(svc, portal="70002", secret="its-own-secret")
    other = batch(event(52, portal="70002"))
    headers = signed(CLIENT_SECRET, "POST", urls["hubspot"], other)
    assert svc.client.post("/webhooks/hubspot", content=other, headers=headers).status_code == 200
    assert svc.count(WebhookDelivery) == 1


def test_events_of_a_portal_are_refused_with_another_connections_secret(
    service: Service, hubspot: HubSpotApp
) -> None:
    add_hubspot_connection(service, portal=OTHER_PORTAL, secret="second-app-secret")
    body = batch(event(61, portal=OTHER_PORTAL), event(62))
    # Signed with the first app's secret: only the first portal's event is accepted.
    assert hubspot.post(body).status_code == 200
    assert service.count(WebhookDelivery) == 1
    assert [d["deal_ids"] for d in hubspot.deliveries()] == [["62"]]


def test_malformed_bodies_with_a_valid_signature_are_400(hubspot: HubSpotApp) -> None:
    for body in (
        b"{not json",
        b"\xff\xfe",
        b"{}",
        b"[]",
        b"[1, 2]",
        json.dumps([{"portalId": "x", "subscriptionType": "deal.creation"}]).encode(),
        json.dumps([{"portalId": int(PORTAL)}]).encode(),
    ):
        response = hubspot.post(body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["detail"]
    assert hubspot.deliveries() == []


def test_an_oversize_body_is_413(hubspot: HubSpotApp) -> None:
    body = b"[" + b" " * (1024 * 1024) + b"]"
    assert hubspot.post(body).status_code == 413


def test_a_100_event_batch_is_answered_within_hubspots_5_seconds(hubspot: HubSpotApp) -> None:
    body = batch(*(event(1000 + n, occurred=1_764_226_800_000 + n) for n in range(100)))
    started = time.perf_counter()
    response = hubspot.post(body)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert response.json() == {"received": 100}
    # HubSpot's limit is 5 s. Measured 1.3-2.9 s on a loaded 2-core test machine (4.7 s
    # once, with other test runs competing): most of it is the inbox's per-event commits
    # and its one-job-per-burst check (app/webhooks/service.py), which the inbox's bulk
    # insert is to cut.
    assert elapsed < 5.0, f"{elapsed:.2f} s"
    print(f"100-event HubSpot batch answered in {elapsed:.3f} s")
    assert len(hubspot.deliveries()) == 100
    # The same batch again: all duplicates, also fast.
    started = time.perf_counter()
    assert hubspot.post(body).status_code == 200
    assert time.perf_counter() - started < 5.0
    assert len(hubspot.deliveries()) == 100


def test_a_stage_change_is_reviewed_and_noted_through_the_provider(
    hubspot_fake: HubSpotApp,
) -> None:
    crm = hubspot_fake.crm
    assert crm is not None
    crm.put_deal(sample_deal("D123456"))
    response = hubspot_fake.post(batch(event(123456)))
    assert response.status_code == 200, response.text
    svc = hubspot_fake.service
    svc.wait_for(lambda: svc.count(WriteBack, WriteBack.state == WriteBackState.WRITTEN) == 1)
    assert svc.count(Review, Review.deal_external_id == "123456") == 1
    [note] = crm.notes_on("D123456")
    assert "dealcoach" in note.html.lower()
    [delivery] = hubspot_fake.deliveries()
    assert delivery["status"] == "processed"
