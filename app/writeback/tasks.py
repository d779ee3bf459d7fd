"""Write-back task: send a connection's due notes in batches, exactly once each."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select

from app.connections.models import Connection, ConnectionStatus
from app.connections.runner import Parked, park, refresh_once
from app.connections.service import context_for
from app.db import session_scope, utcnow
from app.failpoints import failpoint
from app.jobs import task
from app.ratelimit import pause, paused_for
from app.runtime import Runtime, get_runtime
from app.writeback.models import WriteBack
from app.writeback.service import (
    Claim,
    Outcome,
    claim,
    due_writebacks,
    record,
    release,
    send,
    superseded_rows,
    to_look_up,
)
from integrations.base import AuthError, RetriableError
from integrations.registry import provider_for

logger = logging.getLogger(__name__)
DEFAULT_RETRY_SECONDS = 30.0
MAX_BATCHES_PER_RUN = 50


def _release(runtime: Runtime, claims: list[Claim], delay: float, error: str) -> None:
    """Claimed rows not sent: due again after ``delay`` instead of the lease's end."""
    with session_scope(runtime.sessions) as session:
        release(session, claims, timedelta(seconds=delay), error)


@task()
def send_writebacks(connection_id: str) -> None:
    """Send every due write-back of the connection, batch after batch.

    Each batch is claimed and committed before the CRM call (see
    ``app/writeback/service.py``); results are recorded in a second
    transaction, only while the claims are still ours. A crash in between
    leaves claimed rows that another sender takes over after the lease,
    looking the marker up before writing again.
    """
    runtime = get_runtime()
    batch_size = runtime.settings.write_batch_size
    for _ in range(MAX_BATCHES_PER_RUN):
        waiting = paused_for(connection_id)
        if waiting > 0:
            send_writebacks.enqueue_in(waiting, connection_id)
            return
        now = utcnow()
        with session_scope(runtime.sessions) as session:
            connection = session.get(Connection, connection_id)
            if connection is None or connection.status != ConnectionStatus.ACTIVE:
                return
            stale = connection.credentials_encrypted
            context = context_for(runtime.box, connection)
            claims = claim(session, due_writebacks(session, connection_id, now, batch_size), now)
        if not claims:
            return
        try:
            with session_scope(runtime.sessions) as session:
                ids = [c.id for c in claims]
                rows = list(session.scalars(select(WriteBack).where(WriteBack.id.in_(ids))))
                replaced = superseded_rows(session, rows)
                look_up = to_look_up(session, connection, rows)
            claim_of = {c.id: c for c in claims}
            outcomes = [Outcome(claim_of[row_id], superseded=True) for row_id in replaced]
            fresh = [row for row in rows if row.id not in replaced]
            if fresh:
                # No transaction is open during the CRM calls.
                provider = provider_for(context, runtime.settings)
                failpoint("before_crm_call")
                outcomes += send(provider, fresh, claims, look_up)
                failpoint("after_crm_call")
            with session_scope(runtime.sessions) as session:
                written, recovered, failed = record(session, outcomes, utcnow())
            logger.info(
                "connection %s: %d written, %d recovered, %d failed",
                connection_id,
                written,
                recovered,
                failed,
            )
        except AuthError as exc:
            _release(runtime, claims, 0, f"AuthError: {exc}")
            if not exc.refreshable:
                park(runtime, connection_id, str(exc))
                return
            try:
                refresh_once(runtime, connection_id, stale)
            except Parked:
                return
            except RetriableError as retry:
                send_writebacks.enqueue_in(
                    retry.retry_after or DEFAULT_RETRY_SECONDS, connection_id
                )
                return
        except RetriableError as exc:
            delay = exc.retry_after or DEFAULT_RETRY_SECONDS
            pause(connection_id, delay)
            _release(runtime, claims, delay, f"{type(exc).__name__}: {exc}")
            send_writebacks.enqueue_in(delay, connection_id)
            return
        except Exception as exc:
            # A bug or an unexpected failure must not strand the claimed rows: they
            # go back to the queue with a backoff and the error on them.
            logger.exception("connection %s: sending write-backs failed", connection_id)
            _release(runtime, claims, DEFAULT_RETRY_SECONDS, f"{type(exc).__name__}: {exc}")
            return
