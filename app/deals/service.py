"""The snapshot store: keep each deal's latest snapshot and the history we observe.

CRMs and orgs without field history still get a history: each stored
snapshot is compared with the previous one and real changes of stage,
amount, close date and owner are recorded as ``observed`` history rows.
Before a review, a snapshot whose own history is empty for a field is
completed from those rows (:func:`with_observed_history`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.coaching.engine import snapshot_fingerprint
from app.coaching.snapshot import Change, DealSnapshot, Stage
from app.db import utcnow
from app.deals.models import DealHistoryRow, DealSnapshotRow, HistorySource
from app.deals.serialize import (
    snapshot_from_json,
    snapshot_to_json,
    stage_from_json,
    stage_to_json,
)

logger = logging.getLogger(__name__)

#: The fields whose changes we observe between snapshots.
OBSERVED_FIELDS = ("stage", "amount", "close_date", "owner")


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    row: DealSnapshotRow
    changed: bool
    observed: tuple[DealHistoryRow, ...]


def _value(deal: DealSnapshot, field: str) -> str | None:
    if field == "stage":
        return json.dumps(stage_to_json(deal.stage), sort_keys=True)
    if field == "amount":
        return None if deal.amount is None else repr(float(deal.amount))
    if field == "close_date":
        return None if deal.close_date is None else deal.close_date.isoformat()
    return deal.owner_id


def get_snapshot_row(session: Session, connection_id: str, deal_id: str) -> DealSnapshotRow | None:
    return session.scalar(
        select(DealSnapshotRow).where(
            DealSnapshotRow.connection_id == connection_id,
            DealSnapshotRow.external_id == deal_id,
        )
    )


def _older(deal: DealSnapshot, row: DealSnapshotRow) -> bool:
    """Whether ``deal`` is an older read than the stored one (both stamps known; with
    equal stamps the later read wins, and the next sync's overlap reads it again)."""
    stored = (row.data or {}).get("modified_at")
    if deal.modified_at is None or not isinstance(stored, str):
        return False
    try:
        return deal.modified_at < datetime.fromisoformat(stored)
    except ValueError:
        return False


def store_snapshot(
    session: Session, connection_id: str, deal: DealSnapshot, fetched_at: datetime | None = None
) -> StoredSnapshot:
    """Insert or update the deal's snapshot; record observed changes. Flushes only."""
    now = fetched_at or utcnow()
    fingerprint = snapshot_fingerprint(deal)
    row = get_snapshot_row(session, connection_id, deal.id)
    observed: list[DealHistoryRow] = []
    if row is not None and _older(deal, row):
        # A read that started before the stored one (a sync page fetched before a
        # webhook's fetch, committed after it): keep the newer snapshot.
        logger.info(
            "connection %s: an older read of deal %s was not stored", connection_id, deal.id
        )
        return StoredSnapshot(row, False, ())
    if row is None:
        row = DealSnapshotRow(connection_id=connection_id, external_id=deal.id)
        session.add(row)
        changed = True
    elif row.fingerprint == fingerprint:
        row.fetched_at = now
        session.flush()
        return StoredSnapshot(row, False, ())
    else:
        changed = True
        previous = snapshot_from_json(row.data)
        for field in OBSERVED_FIELDS:
            old, new = _value(previous, field), _value(deal, field)
            if old != new:
                observed.append(
                    DealHistoryRow(
                        connection_id=connection_id,
                        deal_external_id=deal.id,
                        field=field,
                        old_value=old,
                        new_value=new,
                        changed_at=now,
                        source=HistorySource.OBSERVED,
                    )
                )
        session.add_all(observed)
    row.name = deal.name[:500]
    row.owner_id = deal.owner_id
    row.stage_key = deal.stage.key
    row.amount = deal.amount
    row.close_date = deal.close_date
    row.is_closed = deal.stage.is_closed
    row.data = snapshot_to_json(deal)
    row.fingerprint = fingerprint
    row.fetched_at = now
    session.flush()
    return StoredSnapshot(row, changed, tuple(observed))


def _decode(field: str, value: str | None) -> Any:
    if value is None:
        return None
    if field == "stage":
        return stage_from_json(json.loads(value))
    if field == "amount":
        return float(value)
    if field == "close_date":
        return date.fromisoformat(value)
    return value


def with_observed_history(session: Session, connection_id: str, deal: DealSnapshot) -> DealSnapshot:
    """The snapshot with our observed history filling each history the CRM left empty."""
    rows = session.scalars(
        select(DealHistoryRow)
        .where(
            DealHistoryRow.connection_id == connection_id,
            DealHistoryRow.deal_external_id == deal.id,
            DealHistoryRow.source == HistorySource.OBSERVED,
        )
        .order_by(DealHistoryRow.changed_at)
    ).all()
    if not rows:
        return deal
    by_field: dict[str, list[Change[Any]]] = {field: [] for field in OBSERVED_FIELDS}
    for row in rows:
        by_field[row.field].append(
            Change(
                row.changed_at, _decode(row.field, row.old_value), _decode(row.field, row.new_value)
            )
        )
    updates: dict[str, Any] = {}
    stage_changes: list[Change[Stage]] = by_field["stage"]
    if not deal.stage_history and stage_changes:
        updates["stage_history"] = tuple(stage_changes)
    if not deal.amount_history and by_field["amount"]:
        updates["amount_history"] = tuple(by_field["amount"])
    if not deal.close_date_history and by_field["close_date"]:
        updates["close_date_history"] = tuple(by_field["close_date"])
    if not deal.owner_history and by_field["owner"]:
        updates["owner_history"] = tuple(by_field["owner"])
    return replace(deal, **updates) if updates else deal
