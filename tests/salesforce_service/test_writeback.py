"""Write-backs to the emulated org under faults: a crash between Salesforce's write and
ours, and a batch in which some notes fail."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from app.db import utcnow
from app.writeback.models import WriteBack, WriteBackState
from app.writeback.service import Outcome, record
from tests.pipeline.conftest import Service

from .conftest import ServiceEmulator, connect, marker_of


class WorkerKilled(BaseException):
    """The process died here: nothing after this point ran, not even the task's handlers."""


@pytest.mark.parametrize("crash", ["killed", "failed"])
def test_a_crash_after_salesforce_wrote_the_notes_is_recovered_by_marker(
    service: Service, emulator: ServiceEmulator, monkeypatch: pytest.MonkeyPatch, crash: str
) -> None:
    """``killed``: the worker dies before recording (the claims wait for their lease);
    ``failed``: recording raises and the task releases the rows with a backoff."""
    seeded = emulator.seed(4)
    org = connect(service, emulator)
    assert org.sync_without_sending().writebacks == len(seeded)
    recorded: list[int] = []

    def record_after_a_crash(
        session: Session, outcomes: Sequence[Outcome], now: datetime
    ) -> tuple[int, int, int]:
        recorded.append(len(outcomes))
        if len(recorded) == 1:
            if crash == "killed":
                raise WorkerKilled
            raise RuntimeError("the database went away")
        return record(session, outcomes, now)

    monkeypatch.setattr("app.writeback.tasks.record", record_after_a_crash)

    if crash == "killed":
        with pytest.raises(WorkerKilled):
            org.send()
    else:
        org.send()

    # Salesforce holds every note; the outbox recorded none of them.
    written = {deal_id: org.notes_on(deal_id) for deal_id in seeded}
    assert all(len(notes) == 1 for notes in written.values())
    rows = org.writebacks()
    assert all(row.external_id is None and row.attempts == 1 for row in rows)
    assert all(row.next_attempt_at is not None and row.next_attempt_at > utcnow() for row in rows)
    if crash == "killed":
        assert {row.state for row in rows} == {WriteBackState.PENDING}
        assert all(
            row.claimed_until is not None and row.claimed_until > utcnow() + timedelta(minutes=5)
            for row in rows
        ), "left claimed until the lease runs out"
    else:
        assert {row.state for row in rows} == {WriteBackState.FAILED}
        assert all(row.claimed_until is None for row in rows)
        assert all("RuntimeError" in (row.last_error or "") for row in rows)

    # The lease (or the backoff) runs out; a sender takes the rows again.
    org.make_due_now()
    emulator.reset_calls()
    org.send()

    assert recorded == [len(seeded), len(seeded)]
    calls = emulator.call_counts()
    assert calls.get("composite", 0) == 0 and calls.get("composite_sobjects", 0) == 0, (
        "nothing was written a second time"
    )
    assert calls.get("api") == 2 * len(rows), "find_note: the ContentNote search, the link check"
    for row in org.writebacks():
        [note] = org.notes_on(row.deal_external_id)
        assert row.state == WriteBackState.WRITTEN and row.attempts == 2
        assert row.external_id == note.external_id, "recovered: the note Salesforce holds"
        assert marker_of(note) == row.marker
        assert note == written[row.deal_external_id][0]
    assert org.live_note_count() == len(seeded)


def test_a_partial_failure_retries_only_the_failed_note(
    service: Service, emulator: ServiceEmulator
) -> None:
    seeded = emulator.seed(6)
    org = connect(service, emulator)
    assert org.sync_without_sending().writebacks == len(seeded)
    locked, gone = seeded[2], seeded[4]
    emulator.lock_links(locked)  # another transaction holds it: UNABLE_TO_LOCK_ROW
    emulator.delete("Opportunity", gone)  # deleted by a user after the review

    org.send()

    assert emulator.locked_links_left() == 0, "the fault was used"
    rows = {row.deal_external_id: row for row in org.writebacks()}
    failed, dead = rows.pop(locked), rows.pop(gone)
    assert failed.state == WriteBackState.FAILED and failed.external_id is None
    assert failed.last_error is not None and "UNABLE_TO_LOCK_ROW" in failed.last_error
    assert failed.next_attempt_at is not None and failed.next_attempt_at > utcnow()
    assert dead.state == WriteBackState.DEAD and dead.external_id is None
    assert dead.last_error is not None and "ENTITY_IS_DELETED" in dead.last_error
    assert all(row.state == WriteBackState.WRITTEN and row.external_id for row in rows.values())
    assert org.notes_on(locked) == []
    # One composite call for the batch (a ContentNote and its link per note), one that
    # deleted the two ContentNotes left without a link.
    assert [len(call) for call in emulator.composites] == [2 * len(seeded), 2]
    assert {item["method"] for item in emulator.composites[1]} == {"DELETE"}
    assert org.live_note_count() == len(rows)

    org.make_due_now(WriteBack.state == WriteBackState.FAILED)  # its backoff ran out
    emulator.composites.clear()
    org.send()

    # Only the failed note went out again: one ContentNote and its link.
    [retry] = emulator.composites
    assert [item["url"].rsplit("/", 1)[1] for item in retry] == [
        "ContentNote",
        "ContentDocumentLink",
    ]
    assert retry[0]["body"]["Title"].endswith(f"[{failed.marker}]")
    assert retry[1]["body"]["LinkedEntityId"] == locked
    final = {row.deal_external_id: row for row in org.writebacks()}
    assert final[locked].state == WriteBackState.WRITTEN and final[locked].attempts == 2
    assert final[gone].state == WriteBackState.DEAD and final[gone].attempts == 1
    assert all(final[deal_id].attempts == 1 for deal_id in rows)
    for deal_id in set(seeded) - {gone}:
        [note] = org.notes_on(deal_id)
        assert marker_of(note) == final[deal_id].marker
        assert note.external_id == final[deal_id].external_id
    assert org.live_note_count() == len(seeded) - 1
