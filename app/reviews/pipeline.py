"""The review pipeline for one deal of one connection.

fetch through the provider -> store the snapshot (diff -> own history) ->
engine -> review row -> write-back rows. The caller (a task, or an API
request) owns the transaction and enqueues the write-back after commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.coaching.engine import review_deal, review_fingerprint, snapshot_fingerprint
from app.coaching.render import (
    NOTE_AUDIENCES,
    note_marker,
    note_title,
    render_note_html,
    render_note_text,
)
from app.coaching.results import DealReview
from app.coaching.snapshot import DealSnapshot
from app.connections.models import Connection
from app.db import utcnow
from app.deals.service import store_snapshot, with_observed_history
from app.feedback.service import review_for_writeback
from app.playbooks.service import compiled_playbook
from app.reviews.models import Review, ReviewTrigger
from app.writeback.models import WriteBack, WriteBackTarget
from app.writeback.service import add_writeback, marker_scope
from integrations.base import CrmProvider

DEFAULT_TARGETS = ("note",)


@dataclass(frozen=True, slots=True)
class PipelineResult:
    review: Review
    result: DealReview
    writebacks: tuple[WriteBack, ...]
    snapshot_changed: bool


def connection_setting(connection: Connection, key: str, default: Any) -> Any:
    return (connection.settings or {}).get(key, default)


def note_audience(connection: Connection) -> str:
    """The connection's ``note_audience`` setting: ``manager`` (default), ``rep``, ``both``."""
    value = str(connection_setting(connection, "note_audience", "manager"))
    return value if value in NOTE_AUDIENCES else "manager"


def summary_fields(result: DealReview, marker: str, audience: str = "manager") -> dict[str, str]:
    """The rolling summary written to the deal's custom fields (when enabled): the top
    prompts are the rep's with ``audience`` ``rep``, else the manager's."""
    prompts = result.rep_prompts if audience == "rep" else result.prompts
    top = [p.text for p in prompts if p.shown_first]
    return {
        "dealcoach_health": str(result.health.score),
        "dealcoach_band": result.health.band,
        "dealcoach_summary": result.summary[:1000],
        "dealcoach_prompts": "\n".join(top)[:4000],
        "dealcoach_marker": marker,
    }


def review_snapshot(
    session: Session,
    connection: Connection,
    deal: DealSnapshot,
    *,
    trigger: ReviewTrigger,
    as_of: datetime | None = None,
    dry_run: bool = False,
    snapshot_changed: bool = True,
) -> PipelineResult:
    """Review a stored snapshot and record the review (and write-backs unless dry run)."""
    playbook = compiled_playbook(
        session, str(connection_setting(connection, "playbook", "meddpicc"))
    )
    enriched = with_observed_history(session, connection.id, deal)
    moment = as_of or utcnow()
    result = review_deal(enriched, playbook, moment)
    fingerprint = review_fingerprint(result)
    scope = marker_scope(connection)  # the CRM account: a re-created connection agrees
    audience = note_audience(connection)
    # The manager's note keeps the marker it always had; another audience's note is
    # another note (switching the setting writes the new version on the next review).
    basis = fingerprint if audience == "manager" else f"{fingerprint}:audience={audience}"
    marker = note_marker(scope, deal.id, basis)
    row = Review(
        connection_id=connection.id,
        deal_external_id=deal.id,
        as_of=moment,
        trigger=trigger,
        playbook_name=playbook.name,
        playbook_version=playbook.version,
        input_fingerprint=snapshot_fingerprint(enriched),
        content_fingerprint=fingerprint,
        marker=marker,
        health_score=result.health.score,
        health_band=result.health.band,
        signals=[signal.to_dict() for signal in result.signals],
        prompts=[prompt.to_dict() for prompt in (*result.prompts, *result.rep_prompts)],
        summary=result.summary,
        dry_run=dry_run,
    )
    session.add(row)
    session.flush()
    writebacks: list[WriteBack] = []
    mode = connection_setting(connection, "writeback_mode", "auto")
    # Notes show what feedback leaves of the prompts (app/feedback): the stored review
    # and its marker stay the engine's, so a verdict alone never writes a new note.
    shown = (
        review_for_writeback(session, connection.id, deal.id, result)
        if not dry_run and mode == "auto" and result.is_open
        else result
    )
    if not dry_run and mode == "auto" and result.is_open and shown.prompts:
        for target_name in connection_setting(connection, "writeback_targets", DEFAULT_TARGETS):
            target = WriteBackTarget(target_name)
            # Each target carries its own marker: a note and a task of one review
            # must be told apart when they are looked up in the CRM.
            target_marker = (
                marker
                if target == WriteBackTarget.NOTE
                else note_marker(scope, deal.id, f"{basis}:{target.value}")
            )
            if target == WriteBackTarget.SUMMARY_FIELDS:
                payload: dict[str, object] = {"fields": summary_fields(shown, marker, audience)}
            else:
                payload = {
                    "title": note_title(shown),
                    "html": render_note_html(shown, target_marker, audience),
                    "text": render_note_text(shown, target_marker, audience),
                }
            created = add_writeback(
                session,
                review_id=row.id,
                connection_id=connection.id,
                deal_id=deal.id,
                target=target,
                marker=target_marker,
                payload=payload,
            )
            if created is not None:
                writebacks.append(created)
    return PipelineResult(row, result, tuple(writebacks), snapshot_changed)


def already_reviewed(session: Session, connection: Connection, deal: DealSnapshot) -> bool:
    """Whether the latest review of this deal saw exactly this input with this playbook."""
    latest = session.scalar(
        select(Review)
        .where(Review.connection_id == connection.id, Review.deal_external_id == deal.id)
        .order_by(Review.created_at.desc(), Review.id.desc())
        .limit(1)
    )
    if latest is None or latest.dry_run:
        return False
    playbook = compiled_playbook(
        session, str(connection_setting(connection, "playbook", "meddpicc"))
    )
    enriched = with_observed_history(session, connection.id, deal)
    return (
        latest.input_fingerprint == snapshot_fingerprint(enriched)
        and latest.playbook_name == playbook.name
        and latest.playbook_version == playbook.version
    )


def fetch_and_review(
    session: Session,
    connection: Connection,
    provider: CrmProvider,
    deal_id: str,
    *,
    trigger: ReviewTrigger,
    as_of: datetime | None = None,
    dry_run: bool = False,
    skip_unchanged: bool = False,
) -> PipelineResult | None:
    """Fetch the deal (never trusting a webhook's copy), store it, and review it.

    With ``skip_unchanged`` (webhooks), a deal whose snapshot is unchanged and
    was already reviewed as it is (a sync got there first) is not reviewed
    again: None. Raises whatever the provider raises (integrations.base).
    """
    deal = provider.fetch_deal(deal_id)
    return store_and_review(
        session,
        connection,
        deal,
        trigger=trigger,
        as_of=as_of,
        dry_run=dry_run,
        skip_unchanged=skip_unchanged,
    )


def store_and_review(
    session: Session,
    connection: Connection,
    deal: DealSnapshot,
    *,
    trigger: ReviewTrigger,
    as_of: datetime | None = None,
    dry_run: bool = False,
    skip_unchanged: bool = False,
) -> PipelineResult | None:
    """Store a freshly fetched deal and review it (see :func:`fetch_and_review`)."""
    stored = store_snapshot(session, connection.id, deal)
    if skip_unchanged and not stored.changed and already_reviewed(session, connection, deal):
        return None
    return review_snapshot(
        session,
        connection,
        deal,
        trigger=trigger,
        as_of=as_of,
        dry_run=dry_run,
        snapshot_changed=stored.changed,
    )
