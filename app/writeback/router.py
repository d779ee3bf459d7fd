"""Admin API: write-backs (the outbox) and retrying one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select

from app.api.deps import AdminKey, ReadKey, SessionDep, page_of
from app.api.problems import PROBLEM_RESPONSES, Problem
from app.jobs import enqueue_after_commit
from app.writeback.models import WriteBack, WriteBackState
from app.writeback.service import BeingSent, retry_now
from app.writeback.tasks import send_writebacks

router = APIRouter(prefix="/api/v1/writebacks", tags=["write-backs"], responses=PROBLEM_RESPONSES)


def writeback_out(row: WriteBack) -> dict[str, Any]:
    return {
        "id": row.id,
        "review_id": row.review_id,
        "connection_id": row.connection_id,
        "deal_id": row.deal_external_id,
        "target": str(row.target),
        "marker": row.marker,
        "state": str(row.state),
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at.isoformat() if row.next_attempt_at else None,
        "claimed_until": row.claimed_until.isoformat() if row.claimed_until else None,
        "last_error": row.last_error,
        "external_id": row.external_id,
        "created_at": row.created_at.isoformat(),
        "written_at": row.written_at.isoformat() if row.written_at else None,
    }


@router.get("")
def list_writebacks(
    session: SessionDep,
    key: ReadKey,
    connection_id: str | None = None,
    state: WriteBackState | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    query = select(WriteBack)
    query = key.visible(query, WriteBack.connection_id, connection_id)
    if state is not None:
        query = query.where(WriteBack.state == state)
    return page_of(session, query, WriteBack.id, limit, cursor, writeback_out)


def _writeback(session: SessionDep, key: ReadKey, writeback_id: str) -> WriteBack:
    return key.get(session, WriteBack, writeback_id, "write-back")


@router.get("/{writeback_id}")
def get_writeback(writeback_id: str, session: SessionDep, key: ReadKey) -> dict[str, Any]:
    return writeback_out(_writeback(session, key, writeback_id))


@router.post("/{writeback_id}/retry", status_code=202)
def retry(writeback_id: str, session: SessionDep, key: AdminKey) -> dict[str, Any]:
    """Make a failed or dead write-back due now and send it."""
    row = _writeback(session, key, writeback_id)
    try:
        retry_now(session, row)
    except (ValueError, BeingSent) as exc:
        raise Problem(409, str(exc)) from None
    enqueue_after_commit(session, send_writebacks, row.connection_id)
    session.commit()
    return writeback_out(row)
