"""Admin API: deals from the snapshot store, and the pipeline-review agenda."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy import bindparam, exists, func, select

from app.api.deps import ReadKey, SessionDep, decode_cursor, encode_cursor
from app.api.problems import PROBLEM_RESPONSES, Problem
from app.connections.models import Connection
from app.deals.models import DealHistoryRow, DealSnapshotRow
from app.playbooks.service import compiled_playbook
from app.reviews.models import Review
from app.reviews.stored import stored_agenda, unreviewed_open_deals

router = APIRouter(prefix="/api/v1", tags=["deals"], responses=PROBLEM_RESPONSES)


def deal_out(row: DealSnapshotRow, review: Review | None = None) -> dict[str, Any]:
    return {
        "id": row.id,
        "connection_id": row.connection_id,
        "deal_id": row.external_id,
        "name": row.name,
        "owner_id": row.owner_id,
        "stage_key": row.stage_key,
        "amount": row.amount,
        "close_date": row.close_date.isoformat() if row.close_date else None,
        "is_closed": row.is_closed,
        "fetched_at": row.fetched_at.isoformat(),
        "latest_review": review_summary(review) if review else None,
    }


def review_summary(review: Review) -> dict[str, Any]:
    return {
        "id": review.id,
        "created_at": review.created_at.isoformat(),
        "health": {"score": review.health_score, "band": review.health_band},
        "signals": [s.get("code") for s in review.signals],
        "summary": review.summary,
    }


def latest_review(session: SessionDep, connection_id: str, deal_id: str) -> Review | None:
    return session.scalar(
        select(Review)
        .where(Review.connection_id == connection_id, Review.deal_external_id == deal_id)
        .order_by(Review.created_at.desc(), Review.id.desc())
        .limit(1)
    )


@router.get("/deals")
def list_deals(
    session: SessionDep,
    key: ReadKey,
    connection_id: str | None = None,
    owner: str | None = None,
    stage: str | None = None,
    signal: Annotated[str | None, Query(description="a signal code of the latest review")] = None,
    band: Literal["healthy", "at_risk", "critical"] | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Deals in the snapshot store, in a stable order; ``next_cursor`` continues the list.

    One SQL query per page: each deal is joined to its latest review, and ``band`` and
    ``signal`` filter in the database (never a query per deal)."""
    latest = (
        select(Review.id)
        .where(
            Review.connection_id == DealSnapshotRow.connection_id,
            Review.deal_external_id == DealSnapshotRow.external_id,
        )
        .order_by(Review.created_at.desc(), Review.id.desc())
        .limit(1)
        .correlate(DealSnapshotRow)
        .scalar_subquery()
    )
    query = (
        select(DealSnapshotRow, Review)
        .outerjoin(Review, Review.id == latest)
        .order_by(DealSnapshotRow.id)
    )
    query = key.visible(query, DealSnapshotRow.connection_id, connection_id)
    if owner is not None:
        query = query.where(DealSnapshotRow.owner_id == owner)
    if stage is not None:
        query = query.where(DealSnapshotRow.stage_key == stage)
    if band is not None:
        query = query.where(Review.health_band == band)
    if signal is not None:
        query = query.where(_has_signal(session, signal))
    if cursor is not None:
        query = query.where(DealSnapshotRow.id > decode_cursor(cursor))
    rows = session.execute(query.limit(limit + 1)).all()
    more = len(rows) > limit
    page = rows[:limit]
    items = [deal_out(row, review) for row, review in page]
    next_cursor = encode_cursor(page[-1][0].id) if more and page else None
    return {"items": items, "next_cursor": next_cursor}


def _has_signal(session: SessionDep, code: str) -> Any:
    """SQL: the joined review's ``signals`` (a JSON list of objects) has one with ``code``."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        wanted = bindparam("signal_filter", [{"code": code}], type_=JSONB)
        return Review.signals.op("@>")(wanted)
    each = func.json_each(Review.signals).table_valued("value")
    return exists().select_from(each).where(func.json_extract(each.c.value, "$.code") == code)


@router.get("/connections/{connection_id}/deals/{deal_id}")
def get_deal(connection_id: str, deal_id: str, session: SessionDep, key: ReadKey) -> dict[str, Any]:
    """One deal: its snapshot, its latest review in full, and the history we hold."""
    key.check(connection_id, "deal")
    row = session.scalar(
        select(DealSnapshotRow).where(
            DealSnapshotRow.connection_id == connection_id,
            DealSnapshotRow.external_id == deal_id,
        )
    )
    if row is None:
        raise Problem(404, "no such deal")
    review = latest_review(session, connection_id, deal_id)
    history = session.scalars(
        select(DealHistoryRow)
        .where(
            DealHistoryRow.connection_id == connection_id,
            DealHistoryRow.deal_external_id == deal_id,
        )
        .order_by(DealHistoryRow.changed_at)
    ).all()
    out = deal_out(row, review)
    out["snapshot"] = row.data
    out["latest_review"] = review_full(review) if review else None
    out["history"] = [
        {
            "field": h.field,
            "old": h.old_value,
            "new": h.new_value,
            "changed_at": h.changed_at.isoformat(),
            "source": str(h.source),
        }
        for h in history
    ]
    return out


def review_full(
    review: Review, audience: Literal["manager", "rep"] | None = None
) -> dict[str, Any]:
    """A stored review in full; ``audience`` keeps only the manager's questions or the
    rep's self-review (default: both)."""
    prompts = review.prompts
    if audience is not None:
        prompts = [p for p in prompts if p.get("audience") == audience]
    return {
        "id": review.id,
        "connection_id": review.connection_id,
        "deal_id": review.deal_external_id,
        "as_of": review.as_of.isoformat(),
        "created_at": review.created_at.isoformat(),
        "trigger": str(review.trigger),
        "playbook": {"name": review.playbook_name, "version": review.playbook_version},
        "health": {"score": review.health_score, "band": review.health_band},
        "signals": review.signals,
        "audience": audience,
        "prompts": prompts,
        "summary": review.summary,
        "marker": review.marker,
        "dry_run": review.dry_run,
    }


@router.get("/agenda")
def agenda(
    session: SessionDep,
    key: ReadKey,
    connection_id: str,
    owner: str | None = None,
    period: Literal["quarter", "month"] = "quarter",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The pipeline-review agenda of one connection, for one owner (or all): exceptions
    only, deals closing in the period first (past-due and commit mismatches leading),
    then by risk x amount; built from the latest stored review of each open deal (none
    is fetched or reviewed again). ``items`` is one page in rank order; ``owners``
    groups the whole agenda by owner; ``next_cursor`` continues the list."""
    key.check(connection_id, "connection")
    connection = session.get(Connection, connection_id)
    if connection is None:
        raise Problem(404, "no such connection")
    playbook = compiled_playbook(
        session, str((connection.settings or {}).get("playbook", "meddpicc"))
    )
    start = _agenda_offset(cursor) if cursor is not None else 0
    built = stored_agenda(session, connection_id, owner, playbook, datetime.now(UTC), period)
    page = built.items[start : start + limit]
    more = start + limit < len(built.items)
    return {
        **built.head_dict(),
        "connection_id": connection_id,
        "unreviewed_deals": unreviewed_open_deals(session, connection_id, owner),
        "items": [item.to_dict() for item in page],
        "next_cursor": encode_cursor(f"agenda:{start + limit}") if more else None,
    }


def _agenda_offset(cursor: str) -> int:
    kind, _, value = decode_cursor(cursor).partition(":")
    if kind != "agenda" or not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise Problem(422, "cursor: not a cursor this API returned", errors=[])
    return int(value)
