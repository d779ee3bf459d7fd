"""``REQUEST_LIMIT_EXCEEDED`` in the middle of a sync: the connection pauses, the pages
already committed stay, and a later sync finishes with every opportunity reviewed once."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from app.connections.models import ConnectionStatus
from app.deals.models import DealSnapshotRow
from app.ratelimit import paused_for
from app.reviews.models import Review
from app.writeback.models import WriteBackState, WriteBackTarget
from integrations.salesforce.adapter import RATE_LIMIT_RETRY_AFTER
from tests.pipeline.conftest import Service

from .conftest import ServiceEmulator, connect, marker_of

PAGE = 4


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    """Salesforce pages of four opportunities (with subqueries): a sync of ten is three
    pages, i.e. a query and two ``nextRecordsUrl`` calls."""
    return {"subquery_page_size": PAGE}


def test_request_limit_exceeded_mid_sync_pauses_keeps_committed_pages_and_resumes(
    service: Service, emulator: ServiceEmulator
) -> None:
    seeded = emulator.seed(10)
    org = connect(service, emulator)
    refused: list[str] = []

    def refuse_the_second_page(method: str, path: str) -> None:
        if method == "GET" and "/query/01g" in path and not refused:
            refused.append(path)
            emulator.inject_rate_limit(1)

    emulator.before_request = refuse_the_second_page

    org.sync()

    assert refused, "the sync reached its second page"
    waiting = paused_for(org.connection_id)
    assert RATE_LIMIT_RETRY_AFTER - 10 < waiting <= RATE_LIMIT_RETRY_AFTER, "Salesforce's 60 s"
    by_stamp = sorted(seeded, key=lambda i: (emulator.record(i)["SystemModstamp"], i))  # type: ignore[index]
    first_page = set(by_stamp[:PAGE])
    assert {row.external_id for row in org.rows(DealSnapshotRow)} == first_page
    kept = {review.id: review.deal_external_id for review in org.rows(Review)}
    assert sorted(kept.values()) == sorted(first_page), "the first page was committed"
    pending = org.writebacks(WriteBackTarget.NOTE)
    assert {row.deal_external_id for row in pending} == first_page
    assert {row.state for row in pending} == {WriteBackState.PENDING}
    connection = org.connection()
    assert connection.status == ConnectionStatus.ACTIVE, "a rate limit is no credentials problem"
    assert connection.sync_watermark and connection.sync_watermark.get("watermark")
    assert "running_until" not in connection.sync_watermark

    # While the pause lasts, a sync makes no call.
    emulator.reset_calls()
    org.sync()
    assert emulator.call_counts() == {}
    assert service.count(DealSnapshotRow) == PAGE

    org.pause_expires()
    org.sync()

    assert sorted(row.external_id for row in org.rows(DealSnapshotRow)) == sorted(seeded)
    reviews = org.rows(Review)
    assert Counter(review.deal_external_id for review in reviews) == Counter(seeded), (
        "every opportunity reviewed exactly once"
    )
    assert {review.id: review.deal_external_id for review in reviews if review.id in kept} == kept
    for row in org.wait_until_sent():
        assert row.state == WriteBackState.WRITTEN
        [note] = org.notes_on(row.deal_external_id)
        assert marker_of(note) == row.marker
    assert org.live_note_count() == len(seeded)
    assert org.connection().last_error is None
