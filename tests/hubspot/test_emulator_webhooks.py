"""Webhooks: stage changes become v3-signed event batches, retried until acknowledged."""

from __future__ import annotations

import httpx
from hubspot import HubSpot
from hubspot.crm.deals import BatchInputSimplePublicObjectBatchInput, SimplePublicObjectInput
from hubspot.utils.signature import Signature

from integrations.hubspot.emulator import HubSpotEmulator, sign_v3

from .conftest import Received, Sink

SECRET = "app-client-secret-for-tests"


def _verified(received: Received, url: str, secret: str = SECRET) -> bool:
    return Signature.is_valid(
        signature=received.headers["x-hubspot-signature-v3"],
        client_secret=secret,
        request_body=received.body.decode(),
        http_uri=url,
        http_method="POST",
        signature_version="v3",
        timestamp=received.headers["x-hubspot-request-timestamp"],
    )


def test_sign_v3_matches_the_sdks_signature() -> None:
    body = b'[{"eventId":1}]'
    expected = Signature.get_signature(
        SECRET, body.decode(), "v3", "https://svc.example/hooks?x=1", "POST", "1700000000000"
    )
    assert (
        sign_v3(SECRET, "POST", "https://svc.example/hooks?x=1", body, "1700000000000") == expected
    )


def test_given_a_stage_change_through_the_control_api_then_a_signed_event_arrives(
    seeded: HubSpotEmulator, sink: Sink
) -> None:
    seeded.configure_webhooks(sink.url, client_secret=SECRET)
    deal_id = seeded.deal_ids()[0]
    answer = httpx.post(
        f"{seeded.base_url}/__emulator/deals/{deal_id}/stage", json={"stage": "closedwon"}
    )
    assert answer.status_code == 200
    [received] = sink.wait_for(1)
    assert received.path == "/webhooks/hubspot?tenant=acme"
    assert _verified(received, sink.url)
    assert not _verified(received, sink.url, "another secret")
    [event] = received.events
    assert event["subscriptionType"] == "object.propertyChange"
    assert event["objectTypeId"] == "0-3"
    assert event["objectId"] == int(deal_id)
    assert event["propertyName"] == "dealstage" and event["propertyValue"] == "closedwon"
    assert event["portalId"] == seeded.portal_id and event["appId"] == seeded.app_id
    assert event["attemptNumber"] == 0 and event["changeSource"] == "CRM_UI"
    history = seeded.history(deal_id, "dealstage")
    assert event["occurredAt"] == _millis(history[0]["timestamp"])
    assert {"eventId", "subscriptionId"} <= set(event)


def _millis(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def test_given_a_patch_of_the_stage_then_an_integration_event(
    seeded: HubSpotEmulator, sink: Sink
) -> None:
    seeded.configure_webhooks(sink.url, client_secret=SECRET, style="both")
    hs = HubSpot(access_token=seeded.issue_token(), host=seeded.base_url)
    deal_id = seeded.deal_ids()[2]
    hs.crm.deals.basic_api.update(
        deal_id, SimplePublicObjectInput(properties={"dealstage": "contractsent"})
    )
    hs.crm.deals.basic_api.update(  # not a stage change: no event
        deal_id, SimplePublicObjectInput(properties={"dealcoach_summary": "x"})
    )
    assert seeded.wait_for_webhooks()
    events = [event for received in sink.wait_for(1) for event in received.events]
    assert sorted(e["subscriptionType"] for e in events) == [
        "deal.propertyChange",
        "object.propertyChange",
    ]
    assert all(e["changeSource"] == "INTEGRATION" for e in events)
    assert "objectTypeId" not in next(
        e for e in events if e["subscriptionType"].startswith("deal.")
    )


def test_given_150_stage_changes_then_batches_of_at_most_100(
    seeded: HubSpotEmulator, sink: Sink
) -> None:
    seeded.seed(150 - 18)
    seeded.configure_webhooks(sink.url, client_secret=SECRET)
    hs = HubSpot(access_token=seeded.issue_token(), host=seeded.base_url)
    ids = seeded.deal_ids()
    for start in range(0, 150, 100):
        hs.crm.deals.batch_api.update(
            BatchInputSimplePublicObjectBatchInput(
                inputs=[
                    {"id": d, "properties": {"dealstage": "closedlost"}}
                    for d in ids[start : start + 100]
                    if (seeded.deal(d) or {}).get("pipeline") == "default"
                ]
            )
        )
    assert seeded.wait_for_webhooks(10)
    received = sink.wait_for(2)
    sizes = [len(r.events) for r in received]
    assert max(sizes) <= 100 and len(sizes) >= 2
    objects = [e["objectId"] for r in received for e in r.events]
    assert len(objects) == len(set(objects))
    expected = [d for d in ids if (seeded.deal(d) or {}).get("pipeline") == "default"]
    closed_before = 0  # seeded lost deals already closedlost do not change again
    assert len(objects) + closed_before <= len(expected)
    assert all(_verified(r, sink.url) for r in received)


def test_given_failures_and_a_slow_answer_then_retried_with_growing_attempt_numbers(
    seeded: HubSpotEmulator, sink: Sink
) -> None:
    seeded.configure_webhooks(
        sink.url, client_secret=SECRET, max_attempts=5, backoff=0.05, timeout=0.5
    )
    sink.statuses = [500, 404]
    sink.delay = 0.8  # used once delay_count is set below
    deal_id = seeded.deal_ids()[0]

    seeded.set_stage(deal_id, "qualifiedtobuy")
    received = sink.wait_for(3)
    assert [r.events[0]["attemptNumber"] for r in received] == [0, 1, 2]
    assert all(_verified(r, sink.url) for r in received)
    stamps = [r.headers["x-hubspot-request-timestamp"] for r in received]
    assert stamps == sorted(stamps)
    assert seeded.wait_for_webhooks()
    delivery = seeded.deliveries[-1]
    assert delivery.delivered and delivery.statuses == [500, 404, 200]

    sink.delay_count = 1  # the next answer is later than the timeout: sent again
    seeded.set_stage(deal_id, "closedwon")
    assert seeded.wait_for_webhooks(10)
    delivery = seeded.deliveries[-1]
    assert delivery.delivered and delivery.attempts == 2
    assert delivery.statuses[0] is None  # no answer within the timeout


def test_given_a_receiver_that_never_accepts_then_attempts_are_bounded(
    seeded: HubSpotEmulator, sink: Sink
) -> None:
    seeded.configure_webhooks(sink.url, client_secret=SECRET, max_attempts=3, backoff=0.01)
    sink.statuses = [503] * 10
    seeded.set_stage(seeded.deal_ids()[0], "closedwon")
    assert seeded.wait_for_webhooks()
    delivery = seeded.deliveries[-1]
    assert not delivery.delivered and delivery.statuses == [503, 503, 503]
    state = httpx.get(f"{seeded.base_url}/__emulator/deliveries").json()
    assert state["results"][-1]["attempts"] == 3
