"""Faults: rate limits, expired and revoked credentials."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.connections.models import Connection, ConnectionStatus
from app.connections.runner import Parked, with_provider
from app.db import session_scope
from app.ratelimit import paused_for
from app.reviews.models import Review
from app.webhooks.models import DeliveryStatus, WebhookDelivery

from .conftest import Service, sample_deal


def _review_times(service: Service, connection_id: str) -> list[float]:
    with session_scope(service.runtime.sessions) as session:
        rows = session.query(Review).filter(Review.connection_id == connection_id).all()
        return [row.created_at.timestamp() for row in rows]


def test_given_a_429_with_retry_after_7_then_that_connection_waits_7_s_and_another_goes_on(
    service: Service,
) -> None:
    slow_id, slow_crm = service.add_fake_connection("slow")
    fast_id, fast_crm = service.add_fake_connection("fast")
    slow_crm.put_deal(sample_deal("D1"))
    fast_crm.put_deal(sample_deal("D2", 2))
    slow_crm.fail_next("fetch", ("rate_limit", 7))

    started = time.time()
    assert service.post_webhook(slow_id, service.webhook_body(("s1", "D1"))) == 200
    assert service.post_webhook(fast_id, service.webhook_body(("f1", "D2"))) == 200

    service.wait_for(lambda: slow_crm.calls("fetch") >= 1, timeout=10)  # the 429
    assert paused_for(slow_id) > 5, "the rate-limited connection is paused"
    service.wait_for(lambda: bool(_review_times(service, fast_id)), timeout=10)
    fast_done = _review_times(service, fast_id)[0]
    assert fast_done - started < 6, "the other connection must not wait for the pause"
    service.wait_for(lambda: bool(_review_times(service, slow_id)), timeout=30)
    slow_done = _review_times(service, slow_id)[0]
    assert slow_done - started >= 7
    assert slow_crm.calls("fetch") == 2  # the refused call and the one after the pause
    service.wait_for(lambda: len(slow_crm.notes_on("D1")) == 1)


def test_given_an_expired_token_when_20_jobs_need_it_at_once_then_one_refresh(
    service: Service,
) -> None:
    connection_id, crm = service.add_fake_connection()
    for number in range(1, 21):
        crm.put_deal(sample_deal(f"D{number}", number))
    crm.expire_token()
    crm.reset_calls()
    barrier = threading.Barrier(20)

    def job(number: int) -> str:
        barrier.wait()
        return with_provider(
            service.runtime,
            connection_id,
            lambda _session, _connection, provider: provider.fetch_deal(f"D{number}").id,
        )

    with ThreadPoolExecutor(max_workers=20) as pool:
        fetched = sorted(pool.map(job, range(1, 21)), key=lambda x: int(x[1:]))

    assert fetched == [f"D{n}" for n in range(1, 21)]
    assert crm.calls("refresh") == 1
    with session_scope(service.runtime.sessions) as session:
        connection = session.get(Connection, connection_id)
        assert connection is not None
        assert connection.status == ConnectionStatus.ACTIVE


def test_given_revoked_credentials_then_the_connection_needs_reauth_and_its_jobs_wait(
    service: Service,
) -> None:
    connection_id, crm = service.add_fake_connection()
    crm.put_deal(sample_deal("D1"))
    crm.revoke()

    assert service.post_webhook(connection_id, service.webhook_body(("e1", "D1"))) == 200

    def parked() -> bool:
        with session_scope(service.runtime.sessions) as session:
            connection = session.get(Connection, connection_id)
            return connection is not None and connection.status == ConnectionStatus.NEEDS_REAUTH

    service.wait_for(parked)
    time.sleep(1.0)
    fetches = crm.calls("fetch")
    time.sleep(2.0)
    assert crm.calls("fetch") == fetches, "a parked connection is not retried hot"
    assert service.count(WebhookDelivery, WebhookDelivery.status == DeliveryStatus.RECEIVED) == 1, (
        "the event waits for re-authorisation; it is not lost"
    )
    with pytest.raises(Parked):
        with_provider(service.runtime, connection_id, lambda *_: None)
    status = service.client.get(f"/api/v1/connections/{connection_id}", headers=service.auth())
    assert status.json()["status"] == "needs_reauth"
    assert status.json()["last_error"]

    # New credentials bring it back; the waiting event is reviewed then.
    crm.authorize()
    response = service.client.put(
        f"/api/v1/connections/{connection_id}/credentials",
        headers=service.auth(),
        json={"credentials": crm.credentials()},
    )
    assert response.status_code == 200 and response.json()["status"] == "active"
    service.wait_for(lambda: len(crm.notes_on("D1")) == 1, timeout=30)
