"""The write-back outbox: exactly one effect on the CRM per intended note.

1. A review creates one row per target with a unique ``dedupe_key`` (connection,
   deal, target, marker): inserting it claims the write; the same review
   content never gets a second row.
2. A sender *claims* due rows (``attempts`` + 1 and a lease in
   ``next_attempt_at``, guarded by the attempts it read, so two senders cannot
   claim one row) and commits before calling the CRM.
3. A row claimed before (``attempts`` > 1) may have reached the CRM without
   being recorded (a crash between the two): the sender looks its marker up
   in the CRM first and records what it finds instead of writing again.
4. Results: ``written`` with the external id; ``failed`` with a jittered
   exponential backoff; ``dead`` after :data:`MAX_ATTEMPTS` or an error that
   retrying cannot fix. Only the failed items of a batch are retried.

Services flush; the task that calls them owns the transactions.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db import utcnow
from app.writeback.models import WriteBack, WriteBackState, WriteBackTarget
from integrations.base import (
    AuthError,
    CrmProvider,
    InvalidRequestError,
    NoteRequest,
    NoteResult,
    NotFoundError,
    ProviderError,
    RetriableError,
)

#: A claimed row is someone's for this long; after it, the reconciler may take it over.
CLAIM_LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 8
BASE_BACKOFF_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 6 * 3600.0
_DUE_STATES = (WriteBackState.PENDING, WriteBackState.FAILED)


def dedupe_key(connection_id: str, deal_id: str, target: str, marker: str) -> str:
    return f"{connection_id}:{target}:{marker}:{deal_id}"[:255]


def add_writeback(
    session: Session,
    *,
    review_id: str,
    connection_id: str,
    deal_id: str,
    target: WriteBackTarget,
    marker: str,
    payload: dict[str, object],
) -> WriteBack | None:
    """Create the outbox row unless this exact write was already intended (returns None)."""
    key = dedupe_key(connection_id, deal_id, target.value, marker)
    if session.scalar(select(WriteBack.id).where(WriteBack.dedupe_key == key)) is not None:
        return None
    row = WriteBack(
        review_id=review_id,
        connection_id=connection_id,
        deal_external_id=deal_id,
        target=target,
        dedupe_key=key,
        marker=marker,
        payload=payload,
        state=WriteBackState.PENDING,
        attempts=0,
        next_attempt_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def due_writebacks(
    session: Session, connection_id: str | None, now: datetime, limit: int
) -> list[WriteBack]:
    query = select(WriteBack).where(
        WriteBack.state.in_(_DUE_STATES), WriteBack.next_attempt_at <= now
    )
    if connection_id is not None:
        query = query.where(WriteBack.connection_id == connection_id)
    return list(session.scalars(query.order_by(WriteBack.next_attempt_at).limit(limit)))


def due_connection_ids(session: Session, now: datetime) -> list[str]:
    """Connections with write-backs due now (for the reconciler)."""
    query = (
        select(WriteBack.connection_id)
        .where(WriteBack.state.in_(_DUE_STATES), WriteBack.next_attempt_at <= now)
        .distinct()
    )
    return list(session.scalars(query))


def claim(session: Session, rows: Sequence[WriteBack], now: datetime) -> list[WriteBack]:
    """Claim rows for sending: only those no one else claimed since they were read."""
    claimed = []
    for row in rows:
        result = session.execute(
            update(WriteBack)
            .where(
                WriteBack.id == row.id,
                WriteBack.attempts == row.attempts,
                WriteBack.state.in_(_DUE_STATES),
            )
            .values(attempts=row.attempts + 1, next_attempt_at=now + CLAIM_LEASE)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            session.refresh(row)
            claimed.append(row)
    return claimed


def backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    """Jittered exponential backoff; never sooner than the CRM's ``Retry-After``."""
    exponential = min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * 2 ** max(0, attempts - 1))
    delay = random.uniform(exponential / 2, exponential)  # noqa: S311 - jitter, not security
    return timedelta(seconds=max(delay, retry_after or 0.0))


def mark_written(row: WriteBack, external_id: str | None, now: datetime) -> None:
    row.state = WriteBackState.WRITTEN
    row.external_id = external_id
    row.written_at = now
    row.next_attempt_at = None
    row.last_error = None


def mark_failed(row: WriteBack, error: ProviderError, now: datetime) -> None:
    """Failed now: retried later, or dead when retrying cannot help."""
    row.last_error = f"{type(error).__name__}: {error}"[:2000]
    hopeless = isinstance(error, InvalidRequestError | NotFoundError)
    if hopeless or row.attempts >= MAX_ATTEMPTS:
        row.state = WriteBackState.DEAD
        row.next_attempt_at = None
        return
    row.state = WriteBackState.FAILED
    retry_after = error.retry_after if isinstance(error, RetriableError) else None
    row.next_attempt_at = now + backoff(row.attempts, retry_after)


@dataclass(frozen=True, slots=True)
class SendOutcome:
    written: int
    recovered: int
    failed: int


def note_request(row: WriteBack) -> NoteRequest:
    payload = row.payload
    return NoteRequest(
        deal_id=row.deal_external_id,
        marker=row.marker,
        title=str(payload.get("title", "")),
        html=str(payload.get("html", "")),
        text=str(payload.get("text", "")),
        kind="task" if row.target == WriteBackTarget.TASK else "note",
    )


def send(provider: CrmProvider, rows: Sequence[WriteBack], now: datetime) -> SendOutcome:
    """Send claimed rows through the provider and record each result on its row.

    Rows claimed before are looked up by marker first. Notes and tasks go in one
    batch call; summary fields one call per deal. ``AuthError`` and a
    whole-call ``RetriableError`` are raised for the task to handle (the rows
    stay claimed and are retried after the lease).
    """
    written = recovered = failed = 0
    to_write: list[WriteBack] = []
    for row in rows:
        if row.target == WriteBackTarget.SUMMARY_FIELDS:
            try:
                fields = row.payload.get("fields", {})
                provider.update_summary(
                    row.deal_external_id, {k: str(v) for k, v in fields.items()}
                )
            except (AuthError, RetriableError):
                raise
            except ProviderError as exc:
                mark_failed(row, exc, now)
                failed += 1
            else:
                mark_written(row, None, now)
                written += 1
            continue
        if row.attempts > 1:
            found = provider.find_note(row.deal_external_id, row.marker)
            if found is not None:
                mark_written(row, found, now)
                recovered += 1
                continue
        to_write.append(row)
    if to_write:
        results: list[NoteResult] = provider.write_notes([note_request(r) for r in to_write])
        by_marker = {result.marker: result for result in results}
        for row in to_write:
            result = by_marker.get(row.marker)
            if result is None:
                mark_failed(row, ProviderError("the CRM returned no result for this note"), now)
                failed += 1
            elif result.error is None:
                mark_written(row, result.external_id, now)
                written += 1
            else:
                mark_failed(row, result.error, now)
                failed += 1
    return SendOutcome(written=written, recovered=recovered, failed=failed)


def retry_now(session: Session, row: WriteBack) -> None:
    """An admin's retry: a failed or dead row becomes due now (attempts kept)."""
    if row.state == WriteBackState.WRITTEN:
        raise ValueError("this write-back was already written")
    row.state = WriteBackState.FAILED if row.attempts else WriteBackState.PENDING
    row.next_attempt_at = utcnow()
    session.flush()
