"""Summary-field write-backs mirror the latest review: each review writes them, and a
newer one supersedes older ones not yet sent."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from app.db import utcnow
from app.writeback.models import WriteBack, WriteBackState, WriteBackTarget
from app.writeback.service import (
    Claim,
    Outcome,
    add_writeback,
    record,
    retry_now,
    superseded_rows,
)
from tests.storage.test_db import make_connection, make_review


def _summary(session: Session, connection_id: str, review_id: str, marker: str) -> WriteBack:
    row = add_writeback(
        session,
        review_id=review_id,
        connection_id=connection_id,
        deal_id="006A",
        target=WriteBackTarget.SUMMARY_FIELDS,
        marker=marker,
        payload={"fields": {"dealcoach_health": marker}},
    )
    assert row is not None
    return row


def test_a_newer_summary_supersedes_the_unsent_ones(session: Session) -> None:
    connection = make_connection(session)
    first = _summary(session, connection.id, make_review(session, connection).id, "dc1-a")
    failed = _summary(session, connection.id, make_review(session, connection).id, "dc1-b")
    failed.state, failed.attempts = WriteBackState.FAILED, 1
    held = _summary(session, connection.id, make_review(session, connection).id, "dc1-c")
    held.claimed_until = utcnow() + timedelta(minutes=5)  # a sender has it right now
    session.flush()

    newest = _summary(session, connection.id, make_review(session, connection).id, "dc1-d")

    session.refresh(first)
    session.refresh(failed)
    session.refresh(held)
    assert first.state == failed.state == WriteBackState.SUPERSEDED
    assert held.state == WriteBackState.PENDING  # left to its sender; the newest goes after
    assert newest.state == WriteBackState.PENDING


def test_a_deal_back_in_an_earlier_state_gets_that_summary_again(session: Session) -> None:
    connection = make_connection(session)
    earlier = _summary(session, connection.id, make_review(session, connection).id, "dc1-a")
    earlier.state = WriteBackState.WRITTEN
    session.flush()
    again = _summary(session, connection.id, make_review(session, connection).id, "dc1-a")
    assert again.id != earlier.id and again.state == WriteBackState.PENDING
    session.refresh(earlier)
    assert earlier.state == WriteBackState.WRITTEN  # what was sent stays recorded as sent


def test_notes_of_the_same_content_are_still_written_once(session: Session) -> None:
    connection = make_connection(session)
    for review in (make_review(session, connection), make_review(session, connection)):
        add_writeback(
            session,
            review_id=review.id,
            connection_id=connection.id,
            deal_id="006A",
            target=WriteBackTarget.NOTE,
            marker="dc1-same",
            payload={"title": "t", "html": "<p>h</p>", "text": "h"},
        )
    notes = session.query(WriteBack).filter_by(target=WriteBackTarget.NOTE).all()
    assert len(notes) == 1


def test_a_held_summary_that_fails_is_stopped_before_it_is_sent_again(session: Session) -> None:
    connection = make_connection(session)
    held = _summary(session, connection.id, make_review(session, connection).id, "dc1-a")
    held.attempts, held.claimed_until = 1, utcnow() + timedelta(minutes=5)
    session.flush()
    newer = _summary(session, connection.id, make_review(session, connection).id, "dc1-b")
    session.refresh(held)
    assert held.state == WriteBackState.PENDING  # its sender still holds it

    # Its send fails and it becomes due again: the check before any send stops it.
    held.state, held.claimed_until = WriteBackState.FAILED, None
    session.flush()
    assert superseded_rows(session, [held, newer]) == {held.id}

    record(session, [Outcome(Claim(held.id, held.attempts), superseded=True)], utcnow())
    session.refresh(held)
    assert held.state == WriteBackState.SUPERSEDED and held.next_attempt_at is None
    with pytest.raises(ValueError, match="newer review"):
        retry_now(session, held)
