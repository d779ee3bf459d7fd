"""A slow token endpoint holds no database lock: while one connection's refresh waits on
the CRM, every other webhook and the admin API answer at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.connections.runner import with_provider
from app.webhooks.models import DeliveryStatus, WebhookDelivery
from integrations.fake.provider import FakeProvider

from .conftest import Service, running_service, sample_deal, service_settings

SLOW_REFRESH_SECONDS = 4.0


@pytest.fixture
def quick_lock_service(
    db_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Service]:
    """The service with a 1.5 s lock wait: a lock held across the 4 s refresh would fail
    the requests that need it, as it did with the default 5 s and a 15 s token timeout."""
    settings = service_settings(db_settings, tmp_path, sqlite_busy_timeout_ms=1500)
    with running_service(settings, tmp_path, monkeypatch) as svc:
        yield svc


def test_a_slow_token_refresh_leaves_other_webhooks_and_the_admin_api_unaffected(
    quick_lock_service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = quick_lock_service
    slow_id, slow_crm = service.add_fake_connection("acct-slow")
    other_id, other_crm = service.add_fake_connection("acct-other")
    slow_crm.put_deal(sample_deal("D1"))
    for number in range(1, 6):
        other_crm.put_deal(sample_deal(f"D{number + 10}", number))
    slow_crm.expire_token()
    refreshing = threading.Event()
    original = FakeProvider.refresh_credentials

    def slow_refresh(self: FakeProvider) -> Mapping[str, Any]:
        refreshing.set()
        time.sleep(SLOW_REFRESH_SECONDS)  # the token endpoint takes its time
        return original(self)

    monkeypatch.setattr(FakeProvider, "refresh_credentials", slow_refresh)
    refresher = threading.Thread(
        target=lambda: with_provider(
            service.runtime, slow_id, lambda _s, _c, provider: provider.fetch_deal("D1")
        )
    )
    refresher.start()
    try:
        assert refreshing.wait(10), "the refresh started"
        timings: list[tuple[str, int, float]] = []
        for number in range(1, 6):
            began = time.monotonic()
            status = service.post_webhook(
                other_id, service.webhook_body((f"o-{number}", f"D{number + 10}"))
            )
            timings.append(("webhook", status, time.monotonic() - began))
        began = time.monotonic()
        patched = service.client.patch(
            f"/api/v1/connections/{slow_id}", headers=service.auth(), json={"name": "Renamed"}
        )
        timings.append(("admin patch", patched.status_code, time.monotonic() - began))
        began = time.monotonic()
        own = service.post_webhook(slow_id, service.webhook_body(("s-1", "D1")))
        timings.append(("webhook of the refreshing connection", own, time.monotonic() - began))
        still_refreshing = refresher.is_alive()
    finally:
        refresher.join(30)

    assert still_refreshing, "every request above ran while the refresh was waiting"
    for what, status, seconds in timings:
        assert status == 200, f"{what}: {status}"
        assert seconds < 1.0, f"{what} took {seconds:.2f} s"
    assert slow_crm.calls("refresh") == 1
    service.wait_for(
        lambda: (
            service.count(
                WebhookDelivery,
                WebhookDelivery.connection_id == other_id,
                WebhookDelivery.status == DeliveryStatus.PROCESSED,
            )
            == 5
        ),
        timeout=30,
    )
    service.wait_for(lambda: len(slow_crm.notes_on("D1")) == 1, timeout=30)
