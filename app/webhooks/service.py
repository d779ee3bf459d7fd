"""The webhook inbox: store each delivery once, answer fast, enqueue only what is new.

A provider endpoint verifies and parses the request (``integrations``), then
calls :func:`store_events` and commits: one short write per request, whatever
waits in the inbox.

- All events of the delivery go in one ``INSERT ... ON CONFLICT DO NOTHING``
  (unique on provider and identity): a redelivery, even a concurrent one, adds
  nothing and needs no read first.
- Each deal with new events rings its *doorbell* (``webhook_inbox_deals``, one
  row per deal, inserted with ``ON CONFLICT DO NOTHING``): only a deal whose
  doorbell was silent gets a review job, after the commit. A burst of events
  about one deal is one job; a deal whose job is on its way adds nothing.
- The review job (``app/reviews/tasks.py``) claims the deal's received events
  through the ``(connection_id, deal_external_id, status)`` index and then
  silences the doorbell (:func:`finish_deal`), ringing it again if events
  arrived meanwhile.

Nothing here reads "every waiting event": the cost of a new event does not grow
with the number waiting. A paused or parked connection stores events without
ringing; the reconciler (and a resume) rings for them when it is active again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.connections.models import Connection, ConnectionStatus, Provider
from app.db import Base, new_id, utcnow
from app.webhooks.models import DeliveryStatus, InboxDeal, WebhookDelivery
from integrations.base import WebhookEvent

#: Headers worth keeping for debugging; signatures and auth headers are never stored.
_KEPT_HEADERS = frozenset(
    {"content-type", "user-agent", "x-hubspot-request-timestamp", "x-fake-timestamp", "soapaction"}
)
MAX_STORED_BODY = 256 * 1024
#: Deals per review job enqueued by one delivery (a 100-event delivery is 2 jobs).
DEALS_PER_JOB = 50


def safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v[:500] for k, v in headers.items() if k.lower() in _KEPT_HEADERS}


def _insert(session: Session, model: type[Base]) -> Any:
    """``INSERT`` with the dialect's ``ON CONFLICT`` (PostgreSQL or SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        return pg_insert(model)
    return sqlite_insert(model)


@dataclass(frozen=True, slots=True)
class StoredEvents:
    """What one delivery added: the new rows' ids, their deals (received events only),
    the events already stored before, and the deals whose review job was enqueued."""

    new: tuple[str, ...]
    new_deal_ids: tuple[str, ...]
    duplicates: int
    enqueued: tuple[str, ...] = ()


def store_events(
    session: Session,
    connection: Connection,
    events: Iterable[WebhookEvent],
    headers: Mapping[str, str],
    body: bytes,
) -> StoredEvents:
    """Store a delivery's events and ring their deals' doorbells; the caller commits.

    The one function a webhook route calls after verifying and parsing (every
    CRM's route): one ``INSERT ... ON CONFLICT DO NOTHING`` for all events, one
    for the doorbells, and the review jobs of newly rung deals registered to be
    enqueued after the caller's commit (a rolled-back request enqueues nothing).
    Each row keeps its event's own part of the request (``detail``), or the body
    when the parser gives none. The caller commits; nothing here commits.
    """
    now = utcnow()
    kept_headers = safe_headers(headers)
    text_body: str | None = None
    provider = Provider(connection.provider).value
    rows: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.identity in rows:
            continue
        if event.detail is None and text_body is None:
            text_body = body[:MAX_STORED_BODY].decode("utf-8", errors="replace")
        ignored = event.kind == "ignored"
        rows[event.identity] = {
            "id": new_id(),
            "connection_id": connection.id,
            "provider": provider,
            "identity": event.identity,
            "received_at": now,
            "headers": kept_headers,
            "body": text_body if event.detail is None else event.detail[:MAX_STORED_BODY],
            "status": (DeliveryStatus.IGNORED if ignored else DeliveryStatus.RECEIVED).value,
            "attempts": 0,
            "deal_external_ids": [event.deal_id],
            "deal_external_id": event.deal_id or None,
        }
    if not rows:
        return StoredEvents((), (), 0)
    stmt = (
        _insert(session, WebhookDelivery)
        .on_conflict_do_nothing(index_elements=["provider", "identity"])
        .returning(WebhookDelivery.id, WebhookDelivery.deal_external_id, WebhookDelivery.status)
    )
    inserted = session.execute(stmt, list(rows.values())).all()
    new_ids = tuple(str(row[0]) for row in inserted)
    deals: dict[str, None] = {}
    for _id, deal_id, status in inserted:
        if deal_id and status == DeliveryStatus.RECEIVED:
            deals.setdefault(str(deal_id), None)
    deal_ids = tuple(deals)
    enqueued: tuple[str, ...] = ()
    if deal_ids and connection.status == ConnectionStatus.ACTIVE:
        enqueued = tuple(ring(session, connection.id, deal_ids, now))
        enqueue_reviews_after_commit(session, connection.id, enqueued, delay=None)
    return StoredEvents(new_ids, deal_ids, len(rows) - len(new_ids), enqueued)


def enqueue_reviews_after_commit(
    session: Session, connection_id: str, deal_ids: Sequence[str], delay: float | None = 0
) -> None:
    """Register the review jobs of these deals (in jobs of :data:`DEALS_PER_JOB` deals)
    to be enqueued after the session's commit; ``delay`` None = the coalescing window."""
    from app.jobs import enqueue_after_commit
    from app.reviews.tasks import review_deals_events
    from app.runtime import get_runtime

    if not deal_ids:
        return
    seconds = get_runtime().settings.webhook_coalesce_seconds if delay is None else delay
    for start in range(0, len(deal_ids), DEALS_PER_JOB):
        chunk = list(deal_ids[start : start + DEALS_PER_JOB])
        enqueue_after_commit(session, review_deals_events.enqueue_in, seconds, connection_id, chunk)


def ring(
    session: Session, connection_id: str, deal_ids: Iterable[str], now: datetime | None = None
) -> list[str]:
    """Ring these deals' doorbells; returns the deals whose doorbell was silent (they
    need a review job; the others have one on its way)."""
    moment = now or utcnow()
    values = [
        {"connection_id": connection_id, "deal_external_id": deal_id, "rung_at": moment}
        for deal_id in dict.fromkeys(deal_ids)
        if deal_id
    ]
    if not values:
        return []
    stmt = (
        _insert(session, InboxDeal)
        .on_conflict_do_nothing(index_elements=["connection_id", "deal_external_id"])
        .returning(InboxDeal.deal_external_id)
    )
    return [str(deal_id) for deal_id in session.scalars(stmt, values)]


def _waiting(connection_id: str, deal_id: str) -> Any:
    return and_(
        WebhookDelivery.connection_id == connection_id,
        WebhookDelivery.deal_external_id == deal_id,
        WebhookDelivery.status == DeliveryStatus.RECEIVED,
    )


def has_received_events(session: Session, connection_id: str, deal_id: str) -> bool:
    """Whether any delivery about this deal waits to be reviewed (one index lookup)."""
    return bool(session.scalar(select(exists().where(_waiting(connection_id, deal_id)))))


def finish_deal(session: Session, connection_id: str, deal_id: str) -> bool:
    """Silence the deal's doorbell, unless events still wait: then it rings again and
    the caller enqueues a job after its commit (returns True).

    The doorbell is deleted *before* the check, so a receiver that rang it
    meanwhile (PostgreSQL: its insert waits on the delete's row lock) either
    inserts a new one and enqueues itself, or its event is seen here.
    """
    session.execute(
        delete(InboxDeal).where(
            InboxDeal.connection_id == connection_id, InboxDeal.deal_external_id == deal_id
        )
    )
    if not has_received_events(session, connection_id, deal_id):
        return False
    return bool(ring(session, connection_id, [deal_id]))


def record_deal_failure(
    session: Session, connection_id: str, deal_id: str, error: str, max_attempts: int
) -> None:
    """Note a failed review on the deal's waiting deliveries; fail them after ``max_attempts``."""
    session.execute(
        update(WebhookDelivery)
        .where(_waiting(connection_id, deal_id))
        .values(attempts=WebhookDelivery.attempts + 1, error=error[:2000])
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(WebhookDelivery)
        .where(_waiting(connection_id, deal_id), WebhookDelivery.attempts >= max_attempts)
        .values(status=DeliveryStatus.FAILED, processed_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def claim_deal_events(
    session: Session, connection_id: str, deal_id: str, received_by: datetime | None = None
) -> list[str]:
    """Mark the received deliveries of this deal as processed (by this review); their ids.

    ``received_by``: only deliveries received by then (the moment the deal was
    fetched), so an event that arrived during the fetch waits for a fresh one.
    One conditional ``UPDATE``: a concurrent claim of the same rows gets none of them.
    """
    condition = _waiting(connection_id, deal_id)
    if received_by is not None:
        condition = and_(condition, WebhookDelivery.received_at <= received_by)
    result = session.execute(
        update(WebhookDelivery)
        .where(condition)
        .values(
            status=DeliveryStatus.PROCESSED,
            processed_at=utcnow(),
            attempts=WebhookDelivery.attempts + 1,
        )
        .returning(WebhookDelivery.id)
        .execution_options(synchronize_session=False)
    )
    return [str(row_id) for row_id in result.scalars()]


def mark_deal_events(
    session: Session, ids: Iterable[str], status: DeliveryStatus, error: str | None
) -> None:
    ids = list(ids)
    if not ids:
        return
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids))
        .values(status=status, error=error, processed_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def waiting_deal_ids(session: Session, connection_id: str) -> list[str]:
    """Deals of this connection with received deliveries nobody reviewed yet."""
    rows = session.scalars(
        select(WebhookDelivery.deal_external_id)
        .where(
            WebhookDelivery.connection_id == connection_id,
            WebhookDelivery.status == DeliveryStatus.RECEIVED,
            WebhookDelivery.deal_external_id.is_not(None),
        )
        .distinct()
    ).all()
    return [str(deal_id) for deal_id in rows if deal_id]


def wake_connection(session: Session, connection_id: str) -> list[str]:
    """Ring for every deal of this (active again) connection with events waiting; their
    jobs go after the commit (a doorbell left from before the pause rings anew: its job
    stopped when it found the connection parked). Returns those deals."""
    deal_ids = waiting_deal_ids(session, connection_id)
    ring(session, connection_id, deal_ids)
    session.execute(
        update(InboxDeal)
        .where(InboxDeal.connection_id == connection_id)
        .values(rung_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    enqueue_reviews_after_commit(session, connection_id, deal_ids, delay=0)
    return deal_ids


def unrung_waiting(
    session: Session, older_than: datetime, limit: int = 10_000
) -> list[tuple[str, str]]:
    """(connection id, deal id) with events received by ``older_than`` on an *active*
    connection and no doorbell (stored while the connection was paused or parked, or a
    doorbell lost to a crash). Paused and parked connections are skipped."""
    rung = exists().where(
        InboxDeal.connection_id == WebhookDelivery.connection_id,
        InboxDeal.deal_external_id == WebhookDelivery.deal_external_id,
    )
    rows = session.execute(
        select(WebhookDelivery.connection_id, WebhookDelivery.deal_external_id)
        .join(Connection, Connection.id == WebhookDelivery.connection_id)
        .where(
            WebhookDelivery.status == DeliveryStatus.RECEIVED,
            WebhookDelivery.received_at <= older_than,
            WebhookDelivery.deal_external_id.is_not(None),
            Connection.status == ConnectionStatus.ACTIVE,
            ~rung,
        )
        .distinct()
        .limit(limit)
    ).all()
    return [(str(c), str(d)) for c, d in rows if d]


def stale_doorbells(
    session: Session, older_than: datetime, limit: int = 10_000
) -> list[tuple[str, str]]:
    """Doorbells of active connections rung before ``older_than`` and still ringing
    (their job was lost, or waited out a pause): rung again now, returned for a job."""
    rows = session.execute(
        select(InboxDeal.connection_id, InboxDeal.deal_external_id)
        .join(Connection, Connection.id == InboxDeal.connection_id)
        .where(InboxDeal.rung_at <= older_than, Connection.status == ConnectionStatus.ACTIVE)
        .order_by(InboxDeal.rung_at)
        .limit(limit)
    ).all()
    pairs = [(str(c), str(d)) for c, d in rows]
    now = utcnow()
    for connection_id in {c for c, _ in pairs}:
        deal_ids = [d for c, d in pairs if c == connection_id]
        session.execute(
            update(InboxDeal)
            .where(
                InboxDeal.connection_id == connection_id,
                InboxDeal.deal_external_id.in_(deal_ids),
            )
            .values(rung_at=now)
            .execution_options(synchronize_session=False)
        )
    return pairs


def waiting_count(session: Session, connection_id: str | None = None) -> int:
    """Events received and not yet reviewed (all connections, or one)."""
    query = select(func.count()).where(WebhookDelivery.status == DeliveryStatus.RECEIVED)
    if connection_id is not None:
        query = query.where(WebhookDelivery.connection_id == connection_id)
    return int(session.scalar(query) or 0)


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
