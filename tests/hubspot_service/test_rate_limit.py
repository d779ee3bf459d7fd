"""A storm of 429s in the middle of the service's work: short ``Retry-After`` waits are
waited in place (a bounded number of times per call), then the connection pauses and
the work resumes; nothing is reviewed or written twice, and no call is made while the
pause lasts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from app.deals.models import DealSnapshotRow
from app.ratelimit import paused_for
from app.reviews.models import Review
from app.writeback.models import WriteBackState, WriteBackTarget
from integrations.hubspot.adapter import MAX_ATTEMPTS
from tests.pipeline.conftest import Service

from .conftest import ServiceEmulator, connect, marker_of

STORM = 7


class StormEmulator(ServiceEmulator):
    """Every injected 429 carries ``Retry-After: 0.2``."""

    def handle(self, method: str, target: str, headers: Any, body: bytes) -> Any:
        response = super().handle(method, target, headers, body)
        if response.status == 429:
            response.headers["Retry-After"] = "0.2"
        return response


@pytest.fixture
def emulator() -> Iterator[ServiceEmulator]:
    with StormEmulator(seed=11) as running:
        yield running


def test_a_429_storm_mid_sync_is_waited_out_paused_and_resumed(
    service: Service, emulator: ServiceEmulator
) -> None:
    seeded = emulator.seed(10)
    portal = connect(service, emulator, page_size=4)
    calls: list[str] = []

    def storm_on_the_second_page(method: str, path: str) -> None:
        calls.append(path)
        if path.endswith("/deals/search") and calls.count(path) == 2:
            emulator.inject_rate_limit(STORM)

    emulator.before_request = storm_on_the_second_page

    portal.sync()  # the first page commits; the second meets the storm

    counts = emulator.call_counts()
    assert counts.get("rate_limited") == MAX_ATTEMPTS, "one call, retried in place, gave up"
    assert paused_for(portal.connection_id) > 0, "the connection pauses"
    first_page = {row.external_id for row in portal.rows(DealSnapshotRow)}
    assert len(first_page) == 4
    assert portal.connection().sync_watermark.get("watermark")  # type: ignore[union-attr]

    # The embedded worker runs the re-enqueued sync once the pause is over.
    service.wait_for(lambda: service.count(DealSnapshotRow) == len(seeded), timeout=60)
    assert emulator.call_counts().get("rate_limited") == STORM, "no 429 beyond the storm"
    reviews = portal.rows(Review)
    assert Counter(review.deal_external_id for review in reviews) == Counter(seeded), (
        "every deal reviewed exactly once"
    )
    for row in portal.wait_until_sent():
        assert row.state == WriteBackState.WRITTEN
        if row.target == WriteBackTarget.NOTE:
            [note] = portal.notes_on(row.deal_external_id)
            assert marker_of(note) == row.marker
    assert portal.connection().last_error is None
