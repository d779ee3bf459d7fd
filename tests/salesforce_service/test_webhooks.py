"""A stage change in the org reaches a review and a note through the webhook path.

Outbound Message: the emulator's record-triggered Flow sends the SOAP message itself
when a user changes the stage (``configure_outbound``); its HTTP client is pointed at
the service's TestClient, so the service's answer is checked as Salesforce checks it
(the ``Ack``). Signed JSON: the body and headers the org's Apex action would send.
Either way the embedded worker fetches the opportunity again over REST, reviews it
and writes exactly one note.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.deals.models import DealSnapshotRow
from app.reviews.models import Review, ReviewTrigger
from app.webhooks.models import DeliveryStatus, WebhookDelivery
from app.writeback.models import WriteBackState, WriteBackTarget
from integrations.salesforce.emulator import DEFAULT_STAGES
from integrations.salesforce.emulator import outbound as outbound_module
from integrations.salesforce.webhooks import sign_salesforce_json
from tests.contract.suite import CrmNote
from tests.pipeline.conftest import Service

from .conftest import SECRET, SalesforceOrg, ServiceEmulator, connect, marker_of


class _HttpxToService:
    """What the emulator's Outbound Message sender sees as ``httpx``: its client is the
    service's TestClient (left open: the test owns it)."""

    HTTPError = httpx.HTTPError

    def __init__(self, client: TestClient) -> None:
        self._client = client

    def Client(self, **_options: Any) -> contextlib.nullcontext[TestClient]:
        return contextlib.nullcontext(self._client)


def _next_open_stage(stage: str) -> str:
    names = [s.api_name for s in DEFAULT_STAGES if not s.is_closed]
    return names[(names.index(stage) + 1) % len(names)]


def _webhook_review(org: SalesforceOrg, deal_id: str) -> Review:
    """Wait for the review the webhook caused and for its note to be written."""
    org.service.wait_for(
        lambda: any(
            review.trigger == ReviewTrigger.WEBHOOK
            for review in org.rows(Review, Review.deal_external_id == deal_id)
        )
    )
    org.wait_until_sent()
    [review] = org.rows(
        Review, Review.deal_external_id == deal_id, Review.trigger == ReviewTrigger.WEBHOOK
    )
    return review


def _deliveries(service: Service, connection_id: str) -> list[dict[str, Any]]:
    response = service.client.get(
        "/api/v1/webhook-deliveries",
        params={"connection_id": connection_id},
        headers=service.auth(),
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_stage_change_reaches_one_note_through_an_outbound_message(
    service: Service, emulator: ServiceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded = emulator.seed(6)
    org = connect(service, emulator)
    org.sync()
    org.wait_until_sent()
    synced = {review.id for review in org.rows(Review)}
    notes_before = {deal_id: org.notes_on(deal_id) for deal_id in seeded}
    monkeypatch.setattr(outbound_module, "httpx", _HttpxToService(service.client))
    # The Outbound Message of the docs: the opportunity's Id and StageName only.
    emulator.configure_outbound(org.outbound_url, fields=["Id", "StageName"])
    changed = seeded[3]
    record = emulator.record(changed)
    assert record is not None
    stage = _next_open_stage(record["StageName"])
    amount = record["Amount"] + 25_000  # not in the message: only a REST fetch sees it
    emulator.reset_calls()

    emulator.update("Opportunity", changed, {"StageName": stage, "Amount": amount})

    assert emulator.wait_for_outbound(10)
    [delivery] = emulator.deliveries
    assert delivery.acked and delivery.statuses == [200], "the service answered the Ack"
    assert delivery.record_ids == (changed,)
    assert f"<sf:StageName>{stage}</sf:StageName>" in delivery.envelope
    assert "Amount" not in delivery.envelope
    review = _webhook_review(org, changed)
    assert review.id not in synced
    assert emulator.call_counts().get("query", 0) >= 1, "the worker fetched it over REST"
    snapshot = {row.external_id: row for row in org.rows(DealSnapshotRow)}[changed]
    assert (snapshot.stage_key, snapshot.amount) == (stage, amount)
    [row] = [row for row in org.writebacks(WriteBackTarget.NOTE) if row.review_id == review.id]
    assert row.state == WriteBackState.WRITTEN and row.marker == review.marker
    notes = org.notes_on(changed)
    new: list[CrmNote] = [note for note in notes if note not in notes_before[changed]]
    assert [marker_of(note) for note in new] == [review.marker], "exactly one new note"
    assert new[0].external_id == row.external_id
    for deal_id in set(seeded) - {changed}:
        assert org.notes_on(deal_id) == notes_before[deal_id]
    assert [item["status"] for item in _deliveries(service, org.connection_id)] == [
        DeliveryStatus.PROCESSED.value
    ]

    # Salesforce redelivers the same message (a lost Ack): nothing new.
    again = service.client.post(
        org.outbound_url,
        content=delivery.envelope.encode(),
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
    )
    assert again.status_code == 200 and "<Ack>true</Ack>" in again.text
    # The next sync finds the change already reviewed.
    reviews = service.count(Review)
    org.sync()
    assert service.count(Review) == reviews
    assert service.count(WebhookDelivery) == 1
    assert len(org.notes_on(changed)) == len(notes_before[changed]) + 1


def test_a_stage_change_reaches_one_note_through_signed_json(
    service: Service, emulator: ServiceEmulator
) -> None:
    seeded = emulator.seed(4)
    org = connect(service, emulator)
    changed = seeded[1]
    record = emulator.record(changed)
    assert record is not None
    stage = _next_open_stage(record["StageName"])
    emulator.update("Opportunity", changed, {"StageName": stage})
    stamp = emulator.record(changed)["SystemModstamp"]  # type: ignore[index]
    body = json.dumps(
        {
            "events": [
                {
                    "id": f"{changed}-{stamp}",
                    "opportunityId": changed,
                    "stageName": stage,
                    "occurredAt": stamp,
                }
            ]
        }
    ).encode()
    emulator.reset_calls()

    for _attempt in range(2):  # the second is the callout's retry: stored once
        headers = sign_salesforce_json(body, SECRET, int(time.time()))
        response = service.client.post(
            org.events_url, content=body, headers={**headers, "Content-Type": "application/json"}
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"received": 1}

    review = _webhook_review(org, changed)
    assert emulator.call_counts().get("query", 0) >= 1, "the worker fetched it over REST"
    assert service.count(Review) == 1, "only the changed opportunity, once"
    [row] = org.writebacks(WriteBackTarget.NOTE)
    assert row.review_id == review.id and row.state == WriteBackState.WRITTEN
    [note] = org.notes_on(changed)
    assert marker_of(note) == review.marker and note.external_id == row.external_id
    assert all(org.notes_on(deal_id) == [] for deal_id in set(seeded) - {changed})
    [stored] = org.rows(DealSnapshotRow)
    assert (stored.external_id, stored.stage_key) == (changed, stage)
    assert [item["status"] for item in _deliveries(service, org.connection_id)] == [
        DeliveryStatus.PROCESSED.value
    ]
