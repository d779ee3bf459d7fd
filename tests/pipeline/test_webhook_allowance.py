"""Webhook-driven reviews are under the same daily-allowance guard as syncs: forged or
noisy notifications cannot drain the CRM's API allowance (issue 12, finding 8)."""

from __future__ import annotations

import time

from app.ratelimit import paused_for
from app.reviews.models import Review
from app.webhooks.models import DeliveryStatus, WebhookDelivery

from .conftest import Service, sample_deal


def test_once_the_allowance_share_is_used_webhook_reviews_wait(service: Service) -> None:
    connection_id, crm = service.add_fake_connection()
    deals = [f"D{n}" for n in range(1, 7)]
    for number, deal_id in enumerate(deals, start=1):
        crm.put_deal(sample_deal(deal_id, number))
    crm.reset_calls()
    crm.set_daily_limit(4)  # the default share is half: two calls trip the guard

    for number, deal_id in enumerate(deals):
        body = service.webhook_body((f"e{number}", deal_id))
        assert service.post_webhook(connection_id, body) == 200

    service.wait_for(lambda: service.count(Review) >= 1)
    time.sleep(3)  # every review task has had its turn (the coalescing window is 1 s)

    assert crm.calls("fetch") < len(deals), "the guard stopped the fetches"
    assert paused_for(connection_id) > 600
    waiting = service.count(WebhookDelivery, WebhookDelivery.status == DeliveryStatus.RECEIVED)
    assert waiting >= len(deals) - crm.calls("fetch"), "the other events wait, none lost"
