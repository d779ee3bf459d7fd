"""Incremental sync: pull changed deals page by page, checkpoint after every page.

The watermark is the provider's opaque checkpoint, stored on the connection
after each page in the same transaction as that page's snapshots and
reviews, so a crash resumes from the last committed page. A deal whose
snapshot did not change (same fingerprint) is not reviewed again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.orm import Session

from app.connections.models import Connection
from app.db import utcnow
from app.deals.service import get_snapshot_row, store_snapshot
from app.reviews.models import ReviewTrigger
from app.reviews.pipeline import review_snapshot
from integrations.base import CrmProvider, QuotaExhaustedError


@dataclass(slots=True)
class SyncReport:
    pages: int = 0
    deals: int = 0
    reviewed: int = 0
    unchanged: int = 0
    deleted: int = 0
    writebacks: int = 0
    deal_ids_with_writebacks: list[str] = field(default_factory=list)


def current_watermark(connection: Connection) -> str | None:
    stored = connection.sync_watermark or {}
    value = stored.get("watermark")
    return str(value) if value is not None else None


def check_quota(provider: CrmProvider, share: float) -> None:
    """Stop before the sync eats more than ``share`` of the CRM's daily allowance.

    Raises:
        QuotaExhaustedError: the CRM reports usage at or above the share.
    """
    usage = provider.api_usage()
    if usage is not None and usage.share >= share:
        raise QuotaExhaustedError(
            f"daily API allowance guard: {usage.used} of {usage.limit} calls used, "
            f"the sync may use up to {share:.0%}"
        )


def sync_connection(
    session: Session,
    connection: Connection,
    provider: CrmProvider,
    *,
    commit: Callable[[], None],
    quota_share: float = 1.0,
    lease: timedelta | None = None,
) -> SyncReport:
    """Run one incremental sync. ``commit`` is called after each page (the caller's
    transaction), which makes the page's watermark durable. Before the first page
    and after each one the daily-allowance guard is checked (:func:`check_quota`);
    a stop keeps every committed page. With ``lease``, every page also extends the
    sync's lease (``running_until``) to that long from now: a long first load keeps it."""
    report = SyncReport()
    check_quota(provider, quota_share)
    for page in provider.iter_changed_deals(current_watermark(connection)):
        report.pages += 1
        for deal in page.deals:
            report.deals += 1
            stored = store_snapshot(session, connection.id, deal)
            if not stored.changed:
                report.unchanged += 1
                continue
            result = review_snapshot(session, connection, deal, trigger=ReviewTrigger.SYNC)
            report.reviewed += 1
            if result.writebacks:
                report.writebacks += len(result.writebacks)
                report.deal_ids_with_writebacks.append(deal.id)
        for deal_id in page.deleted_ids:
            row = get_snapshot_row(session, connection.id, deal_id)
            if row is not None:
                session.delete(row)
                report.deleted += 1
        state = dict(connection.sync_watermark or {})  # also holds the lease
        if page.watermark is not None:
            state["watermark"] = page.watermark
        if lease is not None and "running_until" in state:
            state["running_until"] = (utcnow() + lease).isoformat()
        connection.sync_watermark = state
        connection.last_synced_at = utcnow()
        session.flush()
        commit()
        check_quota(provider, quota_share)
    if report.pages == 0:
        connection.last_synced_at = utcnow()
        session.flush()
        commit()
    return report
