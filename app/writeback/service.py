"""The write-back outbox: exactly one effect on the CRM per intended note.

1. A review creates one row per target with a unique ``dedupe_key``
   (connection, deal, target, marker): inserting it claims the write; the same
   review content never gets a second row. Each target has its own marker, so
   a note and a task of one review are told apart in the CRM.
2. A sender *claims* due rows: ``attempts`` + 1 (the claim's version) and a
   lease in ``claimed_until`` (and ``next_attempt_at``), guarded by the attempts
   it read, so two senders cannot claim one row; it commits before calling the CRM.
3. A row that may have been sent before (``attempts`` > 1) is first looked up
   in the CRM by its marker: a crash between "the CRM wrote it" and "we
   recorded it" is found, and recorded instead of written again.
4. Results are recorded only while the claim is still the sender's (``WHERE
   attempts = <claimed>``): a sender that outlived its lease changes nothing.
   ``written`` with the external id; ``failed`` with a jittered exponential
   backoff; ``dead`` for errors that retrying cannot fix, or once a row has
   been failing for :data:`GIVE_UP_AFTER`. Only the failed items of a batch
   are retried.

Services flush; the task that calls them owns the transactions.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session, aliased

from app.connections.models import Connection, Provider
from app.db import utcnow
from app.leases import gone_owners, process_id
from app.writeback.models import RetiredAccount, WriteBack, WriteBackState, WriteBackTarget
from integrations.base import (
    AuthError,
    CrmProvider,
    InvalidRequestError,
    NoteRequest,
    NoteResult,
    NotFoundError,
    ProviderError,
    RetriableError,
    SummaryResult,
    SummaryUpdate,
)

#: A claimed row is its sender's for this long; after it, another sender may take over.
#: One batch is one or two CRM calls (30 s read timeout each) plus marker lookups.
CLAIM_LEASE = timedelta(minutes=15)
#: A row still failing this long after it was created is given up on (``dead``).
GIVE_UP_AFTER = timedelta(hours=48)
BASE_BACKOFF_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 3600.0
_DUE_STATES = (WriteBackState.PENDING, WriteBackState.FAILED)


def dedupe_key(connection_id: str, deal_id: str, target: str, marker: str) -> str:
    """Unique per intended write; hashed so that long CRM ids never get truncated."""
    digest = hashlib.sha256(f"{connection_id}|{deal_id}|{target}|{marker}".encode()).hexdigest()
    return f"{target}:{digest}"


def marker_scope(connection: Connection) -> str:
    """What a note's marker is scoped to: the CRM account (Salesforce org, HubSpot
    portal), not our connection row, so a connection deleted and created again for
    the same account computes the same markers and finds its notes."""
    account = (connection.external_account_id or "").strip()
    if not account:
        return connection.id
    if connection.provider == Provider.SALESFORCE:
        account = account[:15]  # 15- and 18-character forms of one org id
    return f"{connection.provider}:{account}"


def retire_account(session: Session, connection: Connection) -> None:
    """Remember the connection's account before the connection is deleted."""
    key = marker_scope(connection)
    if key != connection.id and session.get(RetiredAccount, key) is None:
        session.add(RetiredAccount(account_key=key))
        session.flush()


def to_look_up(session: Session, connection: Connection, rows: Sequence[WriteBack]) -> set[str]:
    """Ids of the note and task rows to look up by marker before their first write:
    when the account had another connection (deleted, or alive beside this one), a
    deal's notes until this connection has written one there may exist already."""
    notes = [row for row in rows if row.target != WriteBackTarget.SUMMARY_FIELDS]
    if not notes:
        return set()
    key = marker_scope(connection)
    shared = session.get(RetiredAccount, key) is not None or (
        key != connection.id
        and session.scalar(
            select(Connection.id).where(
                Connection.id != connection.id,
                Connection.provider == connection.provider,
                Connection.external_account_id == connection.external_account_id,
            )
        )
        is not None
    )
    if not shared:
        return set()
    deals = {row.deal_external_id for row in notes}
    written = set(
        session.scalars(
            select(WriteBack.deal_external_id)
            .where(
                WriteBack.connection_id == connection.id,
                WriteBack.deal_external_id.in_(deals),
                WriteBack.state == WriteBackState.WRITTEN,
                WriteBack.target != WriteBackTarget.SUMMARY_FIELDS,
            )
            .distinct()
        )
    )
    return {row.id for row in notes if row.deal_external_id not in written}


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
    """Create the outbox row unless this exact write was already intended (returns None).

    Notes and tasks are deduplicated on their content's marker: a review whose content
    was already written (or is on its way) adds nothing. Summary fields mirror the
    latest review, so each review writes them (a deal back in an earlier state gets
    that state's summary again), and a newer summary supersedes the older ones not yet
    sent (:func:`supersede_summaries`).
    """
    identity = marker if target != WriteBackTarget.SUMMARY_FIELDS else f"{marker}:{review_id}"
    key = dedupe_key(connection_id, deal_id, target.value, identity)
    if session.scalar(select(WriteBack.id).where(WriteBack.dedupe_key == key)) is not None:
        return None
    if target == WriteBackTarget.SUMMARY_FIELDS:
        supersede_summaries(session, connection_id, deal_id, utcnow())
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


def supersede_summaries(session: Session, connection_id: str, deal_id: str, now: datetime) -> int:
    """Older summary-field writes of the deal that are due and not held by a sender
    become ``superseded`` at once. One a sender holds is left alone here; if it fails
    or loses its claim, :func:`superseded_rows` stops it before it is sent again."""
    result = session.execute(
        update(WriteBack)
        .where(
            WriteBack.connection_id == connection_id,
            WriteBack.deal_external_id == deal_id,
            WriteBack.target == WriteBackTarget.SUMMARY_FIELDS,
            WriteBack.state.in_(_DUE_STATES),
            or_(WriteBack.claimed_until.is_(None), WriteBack.claimed_until <= now),
        )
        .values(state=WriteBackState.SUPERSEDED, next_attempt_at=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def superseded_rows(session: Session, rows: Sequence[WriteBack]) -> set[str]:
    """Ids of the summary rows among ``rows`` whose deal has a newer summary row: sent,
    they would put an older summary over a newer one. Checked right before each send,
    so a row that failed or lost its claim after a newer one was queued is caught too."""
    newer = aliased(WriteBack)
    ids = [row.id for row in rows if row.target == WriteBackTarget.SUMMARY_FIELDS]
    if not ids:
        return set()
    query = (
        select(WriteBack.id)
        .where(WriteBack.id.in_(ids))
        .where(
            select(newer.id)
            .where(
                newer.connection_id == WriteBack.connection_id,
                newer.deal_external_id == WriteBack.deal_external_id,
                newer.target == WriteBackTarget.SUMMARY_FIELDS,
                newer.created_at > WriteBack.created_at,
            )
            .exists()
        )
    )
    return set(session.scalars(query))


def _due(session: Session, now: datetime) -> ColumnElement[bool]:
    """Due rows: their time has come, or their claim is held by a process that is gone
    (killed, crashed): taken over at once rather than at the end of the lease."""
    gone = gone_owners(session, now)
    when = WriteBack.next_attempt_at <= now
    if gone:
        when = or_(when, WriteBack.claimed_by.in_(gone))
    return and_(WriteBack.state.in_(_DUE_STATES), when)


def due_writebacks(
    session: Session, connection_id: str | None, now: datetime, limit: int
) -> list[WriteBack]:
    query = select(WriteBack).where(_due(session, now))
    if connection_id is not None:
        query = query.where(WriteBack.connection_id == connection_id)
    return list(session.scalars(query.order_by(WriteBack.next_attempt_at).limit(limit)))


def due_connection_ids(session: Session, now: datetime) -> list[str]:
    """Connections with write-backs due now (for the reconciler)."""
    query = select(WriteBack.connection_id).where(_due(session, now)).distinct()
    return list(session.scalars(query))


@dataclass(frozen=True, slots=True)
class Claim:
    """A row a sender holds: ``attempts`` is the claim's version."""

    id: str
    attempts: int


def claim(session: Session, rows: Sequence[WriteBack], now: datetime) -> list[Claim]:
    """Claim rows for sending: only those no one else claimed since they were read."""
    claimed = []
    lease_end = now + CLAIM_LEASE
    owner = process_id()
    for row in rows:
        result = session.execute(
            update(WriteBack)
            .where(
                WriteBack.id == row.id,
                WriteBack.attempts == row.attempts,
                WriteBack.state.in_(_DUE_STATES),
            )
            .values(
                attempts=row.attempts + 1,
                next_attempt_at=lease_end,
                claimed_until=lease_end,
                claimed_by=owner,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            claimed.append(Claim(row.id, row.attempts + 1))
    return claimed


def backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    """Jittered exponential backoff; never sooner than the CRM's ``Retry-After``."""
    exponential = min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * 2 ** max(0, attempts - 1))
    delay = random.uniform(exponential / 2, exponential)  # noqa: S311 - jitter, not security
    return timedelta(seconds=max(delay, retry_after or 0.0))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one claimed row."""

    claim: Claim
    external_id: str | None = None
    error: ProviderError | None = None
    recovered: bool = False
    superseded: bool = False  # a summary a newer review's summary replaced: not sent


def _guarded(session: Session, claim_: Claim, **values: object) -> bool:
    """Update the row only if the claim is still ours (no one re-claimed it)."""
    result = session.execute(
        update(WriteBack)
        .where(WriteBack.id == claim_.id, WriteBack.attempts == claim_.attempts)
        .values(claimed_until=None, claimed_by=None, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def record(session: Session, outcomes: Sequence[Outcome], now: datetime) -> tuple[int, int, int]:
    """Record each outcome on its row, if the claim is still ours. (written, recovered, failed)."""
    written = recovered = failed = 0
    for outcome in outcomes:
        if outcome.superseded:
            _guarded(
                session,
                outcome.claim,
                state=WriteBackState.SUPERSEDED,
                next_attempt_at=None,
                last_error="superseded by a newer review's summary",
            )
            continue
        if outcome.error is None:
            if _guarded(
                session,
                outcome.claim,
                state=WriteBackState.WRITTEN,
                external_id=outcome.external_id,
                written_at=now,
                next_attempt_at=None,
                last_error=None,
            ):
                recovered += outcome.recovered
                written += not outcome.recovered
            continue
        row = session.get(WriteBack, outcome.claim.id)
        if row is None:
            continue
        error = outcome.error
        hopeless = isinstance(error, InvalidRequestError | NotFoundError)
        too_old = now - row.created_at >= GIVE_UP_AFTER
        retry_after = error.retry_after if isinstance(error, RetriableError) else None
        dead = hopeless or too_old
        if _guarded(
            session,
            outcome.claim,
            state=WriteBackState.DEAD if dead else WriteBackState.FAILED,
            last_error=f"{type(error).__name__}: {error}"[:2000],
            next_attempt_at=None if dead else now + backoff(outcome.claim.attempts, retry_after),
        ):
            failed += 1
    session.flush()
    return written, recovered, failed


def release(session: Session, claims: Sequence[Claim], delay: timedelta, error: str) -> None:
    """Claimed rows not sent (the whole call failed): due again after ``delay``."""
    for claim_ in claims:
        _guarded(
            session,
            claim_,
            state=WriteBackState.FAILED,
            last_error=error[:2000],
            next_attempt_at=utcnow() + delay,
        )
    session.flush()


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


def send(
    provider: CrmProvider,
    rows: Sequence[WriteBack],
    claims: Sequence[Claim],
    look_up: Collection[str] = (),
) -> list[Outcome]:
    """Send claimed rows through the provider; one outcome per row.

    Rows that may have been sent before (a retry, or an id in ``look_up``: see
    :func:`to_look_up`) are looked up by marker first. Notes
    and tasks go in one batch call (results in the batch's order), summary
    fields in another. ``AuthError`` and a whole-call ``RetriableError`` are
    raised for the task, which releases the claims; any other error of a
    whole call fails every row of it.
    """
    claim_of = {claim_.id: claim_ for claim_ in claims}
    outcomes: list[Outcome] = []
    to_write: list[WriteBack] = []
    summaries: list[WriteBack] = []
    for row in rows:
        claim_ = claim_of[row.id]
        if row.target == WriteBackTarget.SUMMARY_FIELDS:
            summaries.append(row)  # rewriting the same values is harmless: no lookup
            continue
        if claim_.attempts > 1 or row.id in look_up:
            try:
                found = provider.find_note(row.deal_external_id, row.marker)
            except (AuthError, RetriableError):
                raise
            except ProviderError as exc:
                outcomes.append(Outcome(claim_, error=exc))
                continue
            if found is not None:
                outcomes.append(Outcome(claim_, external_id=found, recovered=True))
                continue
        to_write.append(row)
    if summaries:
        updates = [
            SummaryUpdate(
                row.deal_external_id,
                {k: str(v) for k, v in row.payload.get("fields", {}).items()},
            )
            for row in summaries
        ]
        outcomes.extend(_batch(summaries, claim_of, lambda: provider.update_summaries(updates)))
    if to_write:
        requests = [note_request(r) for r in to_write]
        outcomes.extend(_batch(to_write, claim_of, lambda: provider.write_notes(requests)))
    return outcomes


def _batch(
    rows: Sequence[WriteBack],
    claim_of: Mapping[str, Claim],
    call: Callable[[], Sequence[NoteResult | SummaryResult]],
) -> list[Outcome]:
    """Outcomes of one batch call, matched to its rows by order (and marker or deal)."""
    try:
        results = call()
    except (AuthError, RetriableError):
        raise
    except ProviderError as exc:
        return [Outcome(claim_of[r.id], error=exc) for r in rows]
    outcomes: list[Outcome] = []
    for index, row in enumerate(rows):
        result = results[index] if index < len(results) else None
        matches = (
            result.marker == row.marker
            if isinstance(result, NoteResult)
            else result is not None and result.deal_id == row.deal_external_id
        )
        if result is None or not matches:
            error = ProviderError("the CRM's answer does not match the batch")
            outcomes.append(Outcome(claim_of[row.id], error=error))
        elif result.error is not None:
            outcomes.append(Outcome(claim_of[row.id], error=result.error))
        elif isinstance(result, NoteResult):
            outcomes.append(Outcome(claim_of[row.id], external_id=result.external_id))
        else:
            outcomes.append(Outcome(claim_of[row.id]))
    return outcomes


class BeingSent(Exception):
    """The write-back is claimed by a sender right now."""


def retry_now(session: Session, row: WriteBack) -> None:
    """An admin's retry: a failed or dead row becomes due now (attempts kept).

    Raises:
        ValueError: it was already written.
        BeingSent: a sender holds it now.
    """
    if row.state == WriteBackState.WRITTEN:
        raise ValueError("this write-back was already written")
    if row.state == WriteBackState.SUPERSEDED:
        raise ValueError("a newer review's summary replaced this write-back: it is not sent")
    if row.claimed_until is not None and row.claimed_until > utcnow():
        raise BeingSent("this write-back is being sent right now")
    row.state = WriteBackState.FAILED if row.attempts else WriteBackState.PENDING
    row.next_attempt_at = utcnow()
    session.flush()
