"""The write-back outbox under the awkward cases: two targets, lost leases,
retries during a send, failures of a whole batch."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from app.connections.runner import with_provider
from app.db import session_scope, utcnow
from app.reviews.models import ReviewTrigger
from app.reviews.pipeline import fetch_and_review
from app.writeback.models import WriteBack, WriteBackState, WriteBackTarget
from app.writeback.service import (
    Outcome,
    claim,
    due_writebacks,
    record,
)
from app.writeback.tasks import send_writebacks

from .conftest import Service, sample_deal


def _rows(service: Service) -> list[WriteBack]:
    with session_scope(service.runtime.sessions) as session:
        rows = list(session.scalars(select(WriteBack).order_by(WriteBack.target)))
        for row in rows:
            session.expunge(row)
        return rows


def _review(service: Service, connection_id: str, deal_id: str) -> None:
    """Review the deal and create its write-back rows, without ringing the sender."""
    result = with_provider(
        service.runtime,
        connection_id,
        lambda session, connection, provider: fetch_and_review(
            session, connection, provider, deal_id, trigger=ReviewTrigger.API
        ),
    )
    assert result is not None and result.writebacks


def test_given_a_note_and_a_task_when_only_the_note_fails_then_each_row_tells_its_own_story(
    service: Service,
) -> None:
    connection_id, crm = service.add_fake_connection(writeback_targets=["note", "task"])
    crm.put_deal(sample_deal("D2"))
    _review(service, connection_id, "D2")
    rows = _rows(service)
    assert [r.target for r in rows] == [WriteBackTarget.NOTE, WriteBackTarget.TASK]
    assert rows[0].marker != rows[1].marker, "each target has its own marker"
    crm.fail_note(rows[0].marker, ("invalid",))

    send_writebacks.call_local(connection_id)

    note, task = _rows(service)
    assert note.state == WriteBackState.DEAD and note.external_id is None
    assert task.state == WriteBackState.WRITTEN and task.external_id
    kinds = [n.kind for n in crm.notes_on("D2")]
    assert kinds == ["task"]


def test_a_sender_whose_claim_was_taken_over_records_nothing(service: Service) -> None:
    connection_id, crm = service.add_fake_connection()
    crm.put_deal(sample_deal("D1"))
    _review(service, connection_id, "D1")
    now = utcnow()
    with session_scope(service.runtime.sessions) as session:
        first = claim(session, due_writebacks(session, connection_id, now, 10), now)
    assert len(first) == 1
    # The lease runs out; a second sender claims the row.
    with session_scope(service.runtime.sessions) as session:
        session.execute(update(WriteBack).values(next_attempt_at=now - timedelta(seconds=1)))
    with session_scope(service.runtime.sessions) as session:
        second = claim(session, due_writebacks(session, connection_id, utcnow(), 10), utcnow())
    assert len(second) == 1 and second[0].attempts == 2

    with session_scope(service.runtime.sessions) as session:
        late = record(session, [Outcome(first[0], external_id="N-late")], utcnow())
    assert late == (0, 0, 0), "the first sender's result is not recorded"
    with session_scope(service.runtime.sessions) as session:
        current = record(session, [Outcome(second[0], external_id="N-2")], utcnow())
    assert current == (1, 0, 0)
    assert _rows(service)[0].external_id == "N-2"


def test_retrying_a_write_back_while_it_is_being_sent_is_refused(service: Service) -> None:
    connection_id, crm = service.add_fake_connection()
    crm.put_deal(sample_deal("D1"))
    _review(service, connection_id, "D1")
    now = utcnow()
    with session_scope(service.runtime.sessions) as session:
        assert claim(session, due_writebacks(session, connection_id, now, 10), now)
    row_id = _rows(service)[0].id

    response = service.client.post(f"/api/v1/writebacks/{row_id}/retry", headers=service.auth())

    assert response.status_code == 409
    assert "being sent" in response.json()["detail"]


def test_a_failure_of_the_whole_batch_leaves_the_rows_retriable_with_the_error(
    service: Service,
) -> None:
    connection_id, crm = service.add_fake_connection()
    crm.put_deal(sample_deal("D1"))
    _review(service, connection_id, "D1")
    with session_scope(service.runtime.sessions) as session:
        session.execute(update(WriteBack).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    crm.fail_next("write", ("server_error",))
    send_writebacks.call_local(connection_id)

    row = _rows(service)[0]
    assert row.state == WriteBackState.FAILED
    assert row.claimed_until is None, "released, not stranded until the lease ends"
    assert row.last_error and "RetriableError" in row.last_error
    assert row.next_attempt_at is not None and row.next_attempt_at > utcnow()
    assert crm.notes_on("D1") == []
