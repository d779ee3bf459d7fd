"""Write-backs to the emulated portal under faults: a 207 in which two notes fail, and a
crash between HubSpot's write and ours."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from app.db import utcnow
from app.writeback.models import WriteBack, WriteBackState, WriteBackTarget
from app.writeback.service import Outcome, record
from tests.pipeline.conftest import Service

from .conftest import ServiceEmulator, connect, marker_of


def _inputs(batch: bytes) -> list[dict[str, object]]:
    inputs = json.loads(batch)["inputs"]
    assert isinstance(inputs, list)
    return inputs


def test_a_207_with_two_failed_notes_retries_only_those_two(
    service: Service, emulator: ServiceEmulator
) -> None:
    emulator.seed(10)
    portal = connect(service, emulator)
    portal.sync_without_sending()
    rows = portal.writebacks(WriteBackTarget.NOTE)
    assert len(rows) >= 4
    failing = sorted(row.deal_external_id for row in rows)[1:3]
    emulator.fail_writes_for(failing)

    portal.send()

    [batch] = emulator.note_batches
    assert len(_inputs(batch)) == len(rows), "one batch create for every note"
    by_deal = {row.deal_external_id: row for row in portal.writebacks()}
    for deal_id, row in by_deal.items():
        if deal_id in failing:
            assert row.state == WriteBackState.FAILED and row.external_id is None
            assert row.last_error and "INTERNAL_ERROR" in row.last_error
            assert row.next_attempt_at is not None and row.next_attempt_at > utcnow()
            assert portal.notes_on(deal_id) == []
        else:
            assert row.state == WriteBackState.WRITTEN and row.external_id
            [note] = portal.notes_on(deal_id)
            assert note.external_id == row.external_id and marker_of(note) == row.marker

    emulator.clear_faults()
    portal.make_due_now(WriteBack.state == WriteBackState.FAILED)  # the backoff ran out
    emulator.note_batches.clear()
    portal.send()

    [retry] = emulator.note_batches
    retried = _inputs(retry)
    assert sorted(str(item["objectWriteTraceId"]) for item in retried) == sorted(
        by_deal[deal_id].marker for deal_id in failing
    ), "only the two failed notes went out again"
    final = {row.deal_external_id: row for row in portal.writebacks()}
    assert all(row.state == WriteBackState.WRITTEN for row in final.values())
    assert {final[d].attempts for d in failing} == {2}
    assert {row.attempts for d, row in final.items() if d not in failing} == {1}
    for deal_id, row in final.items():
        [note] = portal.notes_on(deal_id)
        assert note.external_id == row.external_id and marker_of(note) == row.marker
    assert portal.note_count() == len(rows)


class WorkerKilled(BaseException):
    """The process died here: nothing after this point ran, not even the task's handlers."""


def test_a_crash_after_hubspot_wrote_the_notes_is_recovered_by_marker(
    service: Service, emulator: ServiceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.seed(5)
    portal = connect(service, emulator)
    portal.sync_without_sending()
    rows = portal.writebacks(WriteBackTarget.NOTE)
    assert rows
    recorded: list[int] = []

    def record_after_a_crash(
        session: Session, outcomes: Sequence[Outcome], now: datetime
    ) -> tuple[int, int, int]:
        recorded.append(len(outcomes))
        if len(recorded) == 1:
            raise WorkerKilled
        return record(session, outcomes, now)

    monkeypatch.setattr("app.writeback.tasks.record", record_after_a_crash)

    with pytest.raises(WorkerKilled):
        portal.send()

    written = {row.deal_external_id: portal.notes_on(row.deal_external_id) for row in rows}
    assert all(len(notes) == 1 for notes in written.values()), "HubSpot holds every note"
    left = portal.writebacks(WriteBackTarget.NOTE)
    assert all(row.external_id is None and row.attempts == 1 for row in left)
    assert all(
        row.claimed_until is not None and row.claimed_until > utcnow() + timedelta(minutes=5)
        for row in left
    ), "left claimed until the lease runs out"

    portal.make_due_now()
    emulator.reset_calls()
    portal.send()

    assert recorded == [len(rows), len(rows)]
    calls = emulator.call_counts()
    assert calls.get("notes_batch_create", 0) == 0, "nothing was written a second time"
    assert calls.get("notes_search") == len(rows), "find_note: one note search each"
    for row in portal.writebacks(WriteBackTarget.NOTE):
        [note] = portal.notes_on(row.deal_external_id)
        assert row.state == WriteBackState.WRITTEN and row.attempts == 2
        assert row.external_id == note.external_id, "recovered: the note HubSpot holds"
        assert note == written[row.deal_external_id][0]
    assert portal.note_count() == len(rows)
