"""Duplicate deliveries and a webhook outage, against the Salesforce emulator.

- Each stage change's Outbound Message is delivered five times, all at once, the way
  Salesforce redelivers a message whose Ack it never saw: exactly one note per
  opportunity, counted in the emulator's org.
- No webhook arrives for 25 hours (the Outbound Message endpoint was unreachable and
  Salesforce gave up): the reconciler's sync finds every opportunity whose stage
  changed, reviews it and writes its note.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from app.connections.models import Connection
from app.db import session_scope
from app.reviews.models import Review, ReviewTrigger
from app.sync import tasks as sync_tasks
from app.writeback.models import WriteBackState, WriteBackTarget
from integrations.salesforce.emulator import DEFAULT_STAGES
from tests.pipeline.conftest import Service
from tests.salesforce_service.conftest import ServiceEmulator, connect, marker_of

from .conftest import Trial, scale

# The reconciler's own rules, kept before ``running_service`` stubs them for other tests.
_DUE_FOR_SYNC = sync_tasks._due_for_sync
_DUE_CONNECTION_IDS = sync_tasks.due_connection_ids
_OPEN_STAGES = [stage.api_name for stage in DEFAULT_STAGES if not stage.is_closed]


def _next_open_stage(stage: str) -> str:
    return _OPEN_STAGES[(_OPEN_STAGES.index(stage) + 1) % len(_OPEN_STAGES)]


def _move_stage(emulator: ServiceEmulator, opportunity_id: str) -> str:
    record = emulator.record(opportunity_id)
    assert record is not None
    stage = _next_open_stage(record["StageName"])
    emulator.update("Opportunity", opportunity_id, {"StageName": stage})
    return stage


def _open_ids(emulator: ServiceEmulator, ids: list[str]) -> list[str]:
    open_ids = []
    for record_id in ids:
        record = emulator.record(record_id)
        assert record is not None
        if not record["IsClosed"]:
            open_ids.append(record_id)
    return open_ids


def test_each_outbound_message_delivered_five_times_at_once_writes_one_note(
    service: Service, emulator: ServiceEmulator, reliability: list[Trial]
) -> None:
    count = scale(ci=20, full=100)
    seeded = emulator.seed(count + count // 2)
    opportunity_ids = _open_ids(emulator, seeded)[:count]
    assert len(opportunity_ids) == count, "the seed has enough open opportunities"
    org = connect(service, emulator)
    envelopes: list[bytes] = []
    for opportunity_id in opportunity_ids:
        _move_stage(emulator, opportunity_id)
        [delivery] = emulator.send_outbound_messages(
            "http://127.0.0.1:9/unreachable",  # built, never acknowledged: we deliver it
            [opportunity_id],
            max_attempts=1,
            backoff=0,
        )
        envelopes.append(delivery.envelope.encode())
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}

    def post(body: bytes) -> int:
        return service.client.post(org.outbound_url, content=body, headers=headers).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(post, [body for body in envelopes for _ in range(5)]))
    accepted_s = time.monotonic() - started
    assert statuses == [200] * (5 * count), "every delivery acknowledged"

    def all_noted() -> bool:
        reviewed = org.rows(Review, Review.trigger == ReviewTrigger.WEBHOOK)
        rows = org.writebacks(WriteBackTarget.NOTE)
        return len(reviewed) >= count and all(row.state == WriteBackState.WRITTEN for row in rows)

    service.wait_for(all_noted, timeout=60 + count)
    reviews = org.rows(Review, Review.trigger == ReviewTrigger.WEBHOOK)
    assert sorted(review.deal_external_id for review in reviews) == sorted(opportunity_ids)
    # A deal with nothing to ask gets no note; every other deal gets exactly one.
    noted = {row.deal_external_id: row.marker for row in org.writebacks(WriteBackTarget.NOTE)}
    assert len(noted) >= count // 2, "most seeded deals have a question to ask"
    notes = {deal_id: org.notes_on(deal_id) for deal_id in opportunity_ids}
    assert {deal_id: len(found) for deal_id, found in notes.items()} == {
        deal_id: int(deal_id in noted) for deal_id in opportunity_ids
    }, "exactly one note per reviewed opportunity with a question, counted in the org"
    assert all(marker_of(notes[deal_id][0]) == marker for deal_id, marker in noted.items())
    assert org.live_note_count() == len(noted)
    reliability.append(
        Trial(
            "duplicate deliveries",
            f"{count} Outbound Messages, each delivered 5 times concurrently",
            f"{len(reviews)} reviews, {org.live_note_count()} notes in the org "
            f"({len(noted)} expected), 0 duplicates",
            {"deliveries": 5 * count, "accept_s": round(accepted_s, 2)},
        )
    )


def test_after_25_hours_without_webhooks_the_reconciler_sync_reviews_every_changed_deal(
    service: Service,
    emulator: ServiceEmulator,
    reliability: list[Trial],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    count = scale(ci=30, full=200)
    seeded = emulator.seed(count)
    org = connect(service, emulator)
    org.sync()
    org.wait_until_sent(timeout=60 + count)
    open_ids = _open_ids(emulator, seeded)
    notes_before = {deal_id: len(org.notes_on(deal_id)) for deal_id in open_ids}
    changed = {deal_id: _move_stage(emulator, deal_id) for deal_id in open_ids[::3]}
    reviews_before = {review.id for review in org.rows(Review)}

    # 25 hours pass with no Outbound Message delivered; then the reconciler runs with
    # its real rules (the test service stubs them so other tests drive syncs).
    with session_scope(service.runtime.sessions) as session:
        session.execute(
            update(Connection)
            .where(Connection.id == org.connection_id)
            .values(last_synced_at=datetime.now(UTC) - timedelta(hours=25))
        )
    monkeypatch.setattr(sync_tasks, "_due_for_sync", _DUE_FOR_SYNC)
    monkeypatch.setattr(sync_tasks, "due_connection_ids", _DUE_CONNECTION_IDS)
    sync_tasks.reconcile.call_local()

    def reviewed_all() -> bool:
        new = [r for r in org.rows(Review) if r.id not in reviews_before]
        return {r.deal_external_id for r in new} >= set(changed)

    service.wait_for(reviewed_all, timeout=60 + count)
    org.wait_until_sent(timeout=60 + count)
    new_reviews = [r for r in org.rows(Review) if r.id not in reviews_before]
    assert {r.deal_external_id for r in new_reviews} == set(changed), "only the changed deals"
    new_ids = {review.id for review in new_reviews}
    noted = {
        row.deal_external_id
        for row in org.writebacks(WriteBackTarget.NOTE)
        if row.review_id in new_ids and row.state == WriteBackState.WRITTEN
    }
    assert len(noted) >= len(changed) // 2, "most changed deals have a question to ask"
    for deal_id in changed:
        expected = notes_before[deal_id] + int(deal_id in noted)
        assert len(org.notes_on(deal_id)) == expected, deal_id
    reliability.append(
        Trial(
            "webhook outage",
            f"{len(changed)} of {len(open_ids)} open opportunities changed stage "
            "with no webhook for 25 hours",
            f"the reconciler's sync reviewed all {len(changed)} (and no other) and "
            f"wrote one note on each of the {len(noted)} with a question",
            {"changed": len(changed), "reviewed": len(new_reviews)},
        )
    )
