"""Events of a paused connection wait in silence: the reconciler rings for none of them
(no job and no log line per waiting deal per minute), and a resume rings for all."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from sqlalchemy import update

from app.db import session_scope, utcnow
from app.sync.tasks import reconcile
from app.webhooks.models import DeliveryStatus, InboxDeal, WebhookDelivery
from app.webhooks.service import enqueue_reviews_after_commit

from .conftest import Service, sample_deal


def test_the_reconciler_skips_a_paused_connection_and_a_resume_drains_it(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection_id, crm = service.add_fake_connection("acct-paused")
    for number in range(1, 4):
        crm.put_deal(sample_deal(f"D{number}", number))
    paused = service.client.post(
        f"/api/v1/connections/{connection_id}/pause", headers=service.auth()
    )
    assert paused.status_code == 200, paused.text
    events = [(f"e-{n}-{k}", f"D{n}") for n in range(1, 4) for k in range(5)]
    assert service.post_webhook(connection_id, service.webhook_body(*events)) == 200
    assert service.count(WebhookDelivery, WebhookDelivery.status == DeliveryStatus.RECEIVED) == 15
    assert service.count(InboxDeal) == 0, "no doorbell while paused"
    with session_scope(service.runtime.sessions) as session:
        session.execute(
            update(WebhookDelivery).values(received_at=utcnow() - timedelta(minutes=30))
        )

    rung: list[tuple[str, Sequence[str]]] = []

    def record(session: object, connection: str, deal_ids: Sequence[str], **kw: object) -> None:
        rung.append((connection, list(deal_ids)))

    monkeypatch.setattr("app.sync.tasks.enqueue_reviews_after_commit", record)
    for _minute in range(3):
        reconcile.call_local()
    assert rung == [], "a paused connection's waiting deals get no job"
    assert crm.calls("fetch") == 0
    monkeypatch.setattr("app.sync.tasks.enqueue_reviews_after_commit", enqueue_reviews_after_commit)

    resumed = service.client.post(
        f"/api/v1/connections/{connection_id}/resume", headers=service.auth()
    )
    assert resumed.status_code == 200, resumed.text
    service.wait_for(
        lambda: (
            service.count(WebhookDelivery, WebhookDelivery.status == DeliveryStatus.PROCESSED) == 15
        ),
        timeout=30,
    )
    assert crm.calls("fetch") == 3, "one review per deal, however many events waited"
    service.wait_for(lambda: service.count(InboxDeal) == 0, timeout=10)
