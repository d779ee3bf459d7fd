"""Write-back task: send a connection's due notes in batches, exactly once each."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select, update

from app.connections.models import Connection, ConnectionStatus
from app.connections.runner import Parked, park, refresh_once
from app.connections.service import context_for
from app.db import session_scope, utcnow
from app.jobs import task
from app.ratelimit import pause, paused_for
from app.runtime import Runtime, get_runtime
from app.writeback.models import WriteBack
from app.writeback.service import claim, due_writebacks, send
from integrations.base import AuthError, RetriableError
from integrations.registry import provider_for

logger = logging.getLogger(__name__)
DEFAULT_RETRY_SECONDS = 30.0
MAX_BATCHES_PER_RUN = 50


def _release(runtime: Runtime, ids: list[str], delay: float) -> None:
    """Rows claimed but not sent: due again after ``delay`` instead of the lease."""
    with session_scope(runtime.sessions) as session:
        session.execute(
            update(WriteBack)
            .where(WriteBack.id.in_(ids))
            .values(next_attempt_at=utcnow() + timedelta(seconds=delay))
            .execution_options(synchronize_session=False)
        )


@task()
def send_writebacks(connection_id: str) -> None:
    """Send every due write-back of the connection, batch after batch.

    Each batch is claimed and committed before the CRM call (see
    ``app/writeback/service.py``); results are recorded in a second transaction.
    A crash in between leaves claimed rows that the reconciler retries after
    the lease, looking the marker up before writing again.
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
            due = due_writebacks(session, connection_id, now, batch_size)
            ids = [row.id for row in claim(session, due, now)]
        if not ids:
            return
        try:
            with session_scope(runtime.sessions) as session:
                rows = list(session.scalars(select(WriteBack).where(WriteBack.id.in_(ids))))
                outcome = send(provider_for(context), rows, utcnow())
            logger.info(
                "connection %s: %d written, %d recovered, %d failed",
                connection_id,
                outcome.written,
                outcome.recovered,
                outcome.failed,
            )
        except AuthError as exc:
            _release(runtime, ids, 0)
            if not exc.refreshable:
                park(runtime, connection_id, str(exc))
                return
            try:
                refresh_once(runtime, connection_id, stale)
            except Parked:
                return
        except RetriableError as exc:
            delay = exc.retry_after or DEFAULT_RETRY_SECONDS
            pause(connection_id, delay)
            _release(runtime, ids, delay)
            send_writebacks.enqueue_in(delay, connection_id)
            return
