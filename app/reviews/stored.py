"""Reviews as stored, read back for the pipeline agenda without reviewing again.

The agenda of the admin API is built from the latest stored review of each open
deal (the sync and the webhooks keep them current) joined with the deal's stored
snapshot (amount, close date, owner, stage and forecast category as last fetched).
Nothing is fetched from the CRM or re-reviewed, so the answer is one streamed query.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session

from app.coaching.agenda import Agenda, Period, pipeline_agenda
from app.coaching.engine import phase_for
from app.coaching.playbook import CompiledPlaybook
from app.coaching.results import DealReview, Health, Prompt, Signal
from app.deals.models import DealSnapshotRow
from app.deals.serialize import stage_from_json
from app.reviews.models import Review


def _signal(data: Mapping[str, Any]) -> Signal:
    return Signal(
        code=str(data.get("code", "")),
        severity=data.get("severity", "low"),
        message=str(data.get("message", "")),
        evidence=(),
        facts=dict(data.get("facts") or {}),
        element=data.get("element"),
        status=data.get("status"),
    )


def _prompt(data: Mapping[str, Any]) -> Prompt:
    return Prompt(
        id=str(data.get("id", "")),
        question_id=str(data.get("question_id", "")),
        audience=data.get("audience", "manager"),
        text=str(data.get("text", "")),
        why=str(data.get("why", "")),
        signal=str(data.get("signal", "")),
        severity=data.get("severity", "low"),
        score=float(data.get("score") or 0.0),
        shown_first=bool(data.get("shown_first")),
        element=data.get("element"),
    )


def stored_review(review: Review, deal: DealSnapshotRow, playbook: CompiledPlaybook) -> DealReview:
    """A stored review as the engine's result type, with the deal's stored facts (the
    evidence and the methodology judgements are not needed by the agenda: left empty)."""
    data = deal.data or {}
    stage = stage_from_json(data["stage"])
    prompts = [_prompt(p) for p in review.prompts or ()]
    return DealReview(
        deal_id=deal.external_id,
        deal_name=deal.name,
        owner_id=deal.owner_id,
        amount=deal.amount,
        currency=data.get("currency"),
        close_date=deal.close_date,
        stage_key=deal.stage_key,
        stage_label=stage.label,
        phase=phase_for(stage, playbook),
        is_open=not deal.is_closed,
        as_of=review.as_of,
        playbook=review.playbook_name,
        playbook_version=review.playbook_version,
        health=Health(score=review.health_score, band=review.health_band, penalties=()),  # type: ignore[arg-type]
        signals=tuple(_signal(s) for s in review.signals or ()),
        prompts=tuple(p for p in prompts if p.audience == "manager"),
        rep_prompts=tuple(p for p in prompts if p.audience == "rep"),
        methodology=(),
        summary=review.summary,
        forecast_category=data.get("forecast_category"),
    )


def _open_deals(connection_id: str, owner: str | None) -> Any:
    query = DealSnapshotRow.connection_id == connection_id, DealSnapshotRow.is_closed.is_(False)
    if owner is not None:
        return (*query, DealSnapshotRow.owner_id == owner)
    return query


def latest_stored_reviews(
    session: Session, connection_id: str, owner: str | None, playbook: CompiledPlaybook
) -> Iterator[DealReview]:
    """The latest stored review of each open deal of the connection (of ``owner``),
    streamed in batches."""
    ranked = (
        select(
            Review.id,
            func.row_number()
            .over(
                partition_by=Review.deal_external_id,
                order_by=(Review.created_at.desc(), Review.id.desc()),
            )
            .label("rank"),
        )
        .where(Review.connection_id == connection_id)
        .subquery()
    )
    query = (
        select(DealSnapshotRow, Review)
        .join(
            Review,
            and_(
                Review.connection_id == DealSnapshotRow.connection_id,
                Review.deal_external_id == DealSnapshotRow.external_id,
            ),
        )
        .join(ranked, and_(ranked.c.id == Review.id, ranked.c.rank == 1))
        .where(*_open_deals(connection_id, owner))
        .order_by(DealSnapshotRow.id)
        .execution_options(yield_per=500)
    )
    for deal, review in session.execute(query):
        yield stored_review(review, deal, playbook)


def unreviewed_open_deals(session: Session, connection_id: str, owner: str | None) -> int:
    """Open deals with no stored review yet (a first sync still under way)."""
    reviewed = exists().where(
        Review.connection_id == DealSnapshotRow.connection_id,
        Review.deal_external_id == DealSnapshotRow.external_id,
    )
    query = (
        select(func.count())
        .select_from(DealSnapshotRow)
        .where(*_open_deals(connection_id, owner), ~reviewed)
    )
    return int(session.scalar(query) or 0)


def stored_agenda(
    session: Session,
    connection_id: str,
    owner: str | None,
    playbook: CompiledPlaybook,
    as_of: datetime,
    period: Period = "quarter",
) -> Agenda:
    """The pipeline agenda of a connection from its stored reviews."""
    reviews = latest_stored_reviews(session, connection_id, owner, playbook)
    return pipeline_agenda(reviews, owner, as_of, period)
