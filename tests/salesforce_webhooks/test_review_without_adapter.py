"""A review job for a CRM without an adapter (``provider_for`` raises NotImplementedError,
as for Salesforce before its adapter) waits: it neither loses the event nor spins.
The ``sf`` fixture unregisters the Salesforce adapter for this."""

from __future__ import annotations

import logging

import pytest

from app.reviews.tasks import review_deal_events

from .conftest import OPP_1, SalesforceOrg, notification_id, outbound_message
from .conftest import Notification as N


def test_a_review_job_without_an_adapter_leaves_the_event_received(
    sf: SalesforceOrg, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="app.reviews.tasks")

    def about_us() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.name == "app.reviews.tasks" and sf.connection_id in r.getMessage()
        ]

    response = sf.post_outbound(outbound_message(N(notification_id(1), OPP_1)))
    assert response.status_code == 200

    # The embedded worker runs the job after the coalescing window (1 s in tests).
    sf.service.wait_for(lambda: len(about_us()) >= 1)
    review_deal_events.call_local(sf.connection_id, OPP_1)
    review_deal_events.call_local(sf.connection_id, OPP_1)

    [delivery] = sf.deliveries()
    assert delivery["status"] == "received"  # kept for the adapter (and the reconciler)
    assert delivery["attempts"] == 0
    records = about_us()
    assert [r.levelno for r in records].count(logging.WARNING) == 1  # logged once
    assert "no salesforce adapter" in records[0].getMessage()
    assert all(r.levelno <= logging.WARNING for r in records)
    crashed = [
        r
        for r in caplog.records
        if r.levelno >= logging.ERROR
        and r.exc_info
        and "app/reviews/tasks.py" in logging.Formatter().formatException(r.exc_info)
    ]
    assert crashed == []
    shown = sf.service.client.get(
        f"/api/v1/connections/{sf.connection_id}", headers=sf.service.auth()
    ).json()
    assert shown["status"] == "active"
