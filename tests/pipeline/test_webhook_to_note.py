"""Webhook -> inbox -> review -> write-back -> note, with the fake CRM."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from app.reviews.models import Review
from app.webhooks.models import WebhookDelivery
from app.writeback.models import WriteBack, WriteBackState

from .conftest import Service, sample_deal


def test_given_one_stage_change_when_the_webhook_arrives_then_one_note_is_written(
    service: Service,
) -> None:
    connection_id, crm = service.add_fake_connection()
    crm.put_deal(sample_deal("D1"))

    assert service.post_webhook(connection_id, service.webhook_body(("e1", "D1"))) == 200

    # The CRM holds the note first; the outbox records it a moment later.
    service.wait_for(
        lambda: service.count(WriteBack, WriteBack.state == WriteBackState.WRITTEN) == 1
    )
    assert len(crm.notes_on("D1")) == 1
    note = crm.notes_on("D1")[0]
    with_marker = service.client.get("/api/v1/writebacks", headers=service.auth()).json()
    assert with_marker["items"][0]["external_id"] == note.id
    assert with_marker["items"][0]["marker"] in note.html
    assert "<script" not in note.html


def test_given_the_same_delivery_50_times_concurrently_then_one_review_and_one_note(
    service: Service,
) -> None:
    connection_id, crm = service.add_fake_connection()
    crm.put_deal(sample_deal("D7"))
    body = service.webhook_body(("evt-42", "D7"))

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(lambda _: service.post_webhook(connection_id, body), range(50)))

    assert statuses == [200] * 50
    service.wait_for(
        lambda: service.count(WriteBack, WriteBack.state == WriteBackState.WRITTEN) == 1
    )
    time.sleep(1.5)  # anything still queued would show up now
    assert service.count(WebhookDelivery) == 1
    assert service.count(Review) == 1
    assert service.count(WriteBack) == 1
    assert len(crm.notes_on("D7")) == 1


def test_given_events_for_one_deal_within_the_window_then_they_share_one_review(
    service: Service,
) -> None:
    connection_id, crm = service.add_fake_connection()
    crm.put_deal(sample_deal("D3"))

    for event in ("a", "b", "c"):
        assert service.post_webhook(connection_id, service.webhook_body((event, "D3"))) == 200

    service.wait_for(lambda: len(crm.notes_on("D3")) == 1)
    time.sleep(1.0)
    assert service.count(WebhookDelivery) == 3
    assert service.count(Review) == 1
    assert crm.calls("fetch") == 1, "one review job fetched the deal for all three events"
    assert len(crm.notes_on("D3")) == 1


def test_given_a_bad_signature_then_401_and_nothing_is_stored(service: Service) -> None:
    connection_id, _ = service.add_fake_connection()
    body = service.webhook_body(("e1", "D1"))
    response = service.client.post(
        f"/webhooks/fake/{connection_id}",
        content=body,
        headers={
            "X-Fake-Signature": "sha256=" + "0" * 64,
            "X-Fake-Timestamp": str(int(time.time())),
        },
    )
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert service.count(WebhookDelivery) == 0
