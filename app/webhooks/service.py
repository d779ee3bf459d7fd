"""The webhook inbox: store each delivery once, answer fast, enqueue only what is new.

A provider endpoint verifies and parses the request (``integrations``), then
:func:`store_events` inserts one row per event, unique on (provider,
identity). A redelivery finds its row and adds nothing. The review task later
*claims* every received row of its deal (:func:`claim_deal_events`), so
several events for one deal within the coalescing window become one review.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.connections.models import Connection, Provider
from app.db import utcnow
from app.webhooks.models import DeliveryStatus, WebhookDelivery
from integrations.base import WebhookEvent

#: Headers worth keeping for debugging; signatures and auth headers are never stored.
_KEPT_HEADERS = frozenset(
    {"content-type", "user-agent", "x-hubspot-request-timestamp", "x-fake-timestamp", "soapaction"}
)
MAX_STORED_BODY = 256 * 1024


def safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v[:500] for k, v in headers.items() if k.lower() in _KEPT_HEADERS}


@dataclass(frozen=True, slots=True)
class StoredEvents:
    new: tuple[WebhookDelivery, ...]
    duplicates: int

    @property
    def new_deal_ids(self) -> list[str]:
        seen: dict[str, None] = {}
        for row in self.new:
            if row.status == DeliveryStatus.RECEIVED:
                for deal_id in row.deal_external_ids:
                    seen.setdefault(deal_id, None)
        return list(seen)


def store_events(
    session: Session,
    connection: Connection,
    events: Iterable[WebhookEvent],
    headers: Mapping[str, str],
    body: bytes,
) -> StoredEvents:
    """Insert each event not seen before. Commits per event, so that concurrent
    redeliveries of the same event race on the unique constraint, not on a read.
    Each row keeps its event's own part of the request (``detail``), or the body
    when the parser gives none."""
    new: list[WebhookDelivery] = []
    duplicates = 0
    kept_headers = safe_headers(headers)
    text_body = body[:MAX_STORED_BODY].decode("utf-8", errors="replace")
    provider = Provider(connection.provider)
    for event in events:
        exists = session.scalar(
            select(WebhookDelivery.id).where(
                WebhookDelivery.provider == provider, WebhookDelivery.identity == event.identity
            )
        )
        if exists is not None:
            duplicates += 1
            continue
        row = WebhookDelivery(
            connection_id=connection.id,
            provider=provider,
            identity=event.identity,
            headers=kept_headers,
            body=text_body if event.detail is None else event.detail[:MAX_STORED_BODY],
            status=(DeliveryStatus.IGNORED if event.kind == "ignored" else DeliveryStatus.RECEIVED),
            deal_external_ids=[event.deal_id],
        )
        session.add(row)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            duplicates += 1
            continue
        new.append(row)
    return StoredEvents(tuple(new), duplicates)


def _received_rows(session: Session, connection_id: str, deal_id: str) -> list[WebhookDelivery]:
    rows = session.scalars(
        select(WebhookDelivery).where(
            WebhookDelivery.connection_id == connection_id,
            WebhookDelivery.status == DeliveryStatus.RECEIVED,
        )
    ).all()
    return [row for row in rows if deal_id in (row.deal_external_ids or [])]


def has_received_events(session: Session, connection_id: str, deal_id: str) -> bool:
    """Whether any delivery about this deal waits to be reviewed."""
    return bool(_received_rows(session, connection_id, deal_id))


def deals_needing_a_job(
    session: Session, connection_id: str, new: Iterable[WebhookDelivery]
) -> list[str]:
    """Of the deals of these new deliveries, those that had no delivery waiting before:
    a review job is already on its way for the others (one job per burst)."""
    needed: dict[str, None] = {}
    for row in new:
        if row.status != DeliveryStatus.RECEIVED:
            continue
        for deal_id in row.deal_external_ids or []:
            waiting = [
                other
                for other in _received_rows(session, connection_id, deal_id)
                if other.id != row.id and other.received_at <= row.received_at
            ]
            if not waiting:
                needed.setdefault(deal_id, None)
    return list(needed)


def record_deal_failure(
    session: Session, connection_id: str, deal_id: str, error: str, max_attempts: int
) -> None:
    """Note a failed review on the deal's waiting deliveries; fail them after ``max_attempts``."""
    for row in _received_rows(session, connection_id, deal_id):
        row.attempts += 1
        row.error = error[:2000]
        if row.attempts >= max_attempts:
            row.status = DeliveryStatus.FAILED
            row.processed_at = utcnow()
    session.flush()


def claim_deal_events(
    session: Session, connection_id: str, deal_id: str, received_by: datetime | None = None
) -> list[WebhookDelivery]:
    """Mark the received deliveries of this deal as processed (by this review).

    ``received_by``: only deliveries received by then (the moment the deal was
    fetched), so an event that arrived during the fetch waits for a fresh one.
    """
    now = utcnow()
    claimed = []
    for row in _received_rows(session, connection_id, deal_id):
        if received_by is not None and row.received_at > received_by:
            continue
        result = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == row.id, WebhookDelivery.status == DeliveryStatus.RECEIVED)
            .values(status=DeliveryStatus.PROCESSED, processed_at=now, attempts=row.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            claimed.append(row)
    return claimed


def mark_deal_events(
    session: Session, rows: Iterable[WebhookDelivery], status: DeliveryStatus, error: str | None
) -> None:
    for row in rows:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == row.id)
            .values(status=status, error=error, processed_at=utcnow())
            .execution_options(synchronize_session=False)
        )


def waiting_deal_ids(session: Session, connection_id: str) -> list[str]:
    """Deals of this connection with received deliveries nobody reviewed yet."""
    rows = session.scalars(
        select(WebhookDelivery.deal_external_ids).where(
            WebhookDelivery.connection_id == connection_id,
            WebhookDelivery.status == DeliveryStatus.RECEIVED,
        )
    ).all()
    seen: dict[str, None] = {}
    for deal_ids in rows:
        for deal_id in deal_ids or []:
            seen.setdefault(str(deal_id), None)
    return list(seen)


def stale_received(session: Session, older_than: datetime) -> list[tuple[str, str]]:
    """(connection id, deal id) of received deliveries nobody processed (reconciler)."""
    rows = session.execute(
        select(WebhookDelivery.connection_id, WebhookDelivery.deal_external_ids).where(
            WebhookDelivery.status == DeliveryStatus.RECEIVED,
            WebhookDelivery.received_at <= older_than,
            WebhookDelivery.connection_id.is_not(None),
        )
    ).all()
    pairs: dict[tuple[str, str], None] = {}
    for connection_id, deal_ids in rows:
        for deal_id in deal_ids or []:
            pairs.setdefault((str(connection_id), str(deal_id)), None)
    return list(pairs)


def replay(session: Session, delivery: WebhookDelivery) -> None:
    """An admin's replay: the delivery is received again, and its deals reviewed."""
    delivery.status = DeliveryStatus.RECEIVED
    delivery.error = None
    delivery.processed_at = None
    session.flush()


def body_preview(delivery: WebhookDelivery, limit: int = 2000) -> str:
    try:
        return json.dumps(json.loads(delivery.body))[:limit]
    except ValueError:
        return delivery.body[:limit]
