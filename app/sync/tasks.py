"""Scheduled work: incremental sync per connection, and the reconciler.

The reconciler runs every minute on every consumer. It is a doorbell for work
the database holds: due write-backs, webhook deliveries nobody processed, and
connections due for a sync. A lost queue message therefore delays work by at
most a minute or so; it never loses it. Running it twice at once is harmless
(every task it enqueues claims its work in the database).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.connections.models import Connection, ConnectionStatus
from app.connections.runner import Parked, lock_connection_row, with_provider
from app.db import session_scope, utcnow
from app.jobs import crontab, enqueue_after_commit, periodic_task, task
from app.leases import gone_owners, process_id
from app.ratelimit import pause, paused_for
from app.runtime import get_runtime
from app.sync.models import SyncJob, SyncJobState
from app.sync.service import SyncReport, sync_connection
from app.webhooks.service import (
    enqueue_reviews_after_commit,
    ring,
    stale_doorbells,
    unrung_waiting,
)
from app.writeback.service import due_connection_ids
from app.writeback.tasks import send_writebacks
from integrations.base import CrmProvider, NotReadyError, QuotaExhaustedError, RetriableError

logger = logging.getLogger(__name__)
SYNC_LEASE = timedelta(minutes=10)
DEFAULT_RETRY_SECONDS = 60.0
QUOTA_RETRY_SECONDS = 3600.0
#: A doorbell still ringing this long after it was rung gets a new job (the first was lost,
#: e.g. with a process killed mid-job). A second job is harmless: each claims its events.
DOORBELL_STALE = timedelta(seconds=60)


def _take_sync_lease(connection_id: str) -> bool:
    """Only one sync per connection at a time, across processes (a lease on its row,
    with its holder: a holder that is gone, killed or crashed, loses it at once)."""
    runtime = get_runtime()
    now = utcnow()
    with session_scope(runtime.sessions) as session:
        connection = lock_connection_row(session, connection_id)
        if connection is None or connection.status != ConnectionStatus.ACTIVE:
            return False
        state = dict(connection.sync_watermark or {})
        running_until = state.get("running_until")
        holder = state.get("running_by")
        if (
            running_until
            and running_until > now.isoformat()
            and holder not in gone_owners(session, now)
        ):
            return False
        state["running_until"] = (now + SYNC_LEASE).isoformat()
        state["running_by"] = process_id()
        connection.sync_watermark = state
    return True


def _drop_sync_lease(connection_id: str) -> None:
    with session_scope(get_runtime().sessions) as session:
        connection = session.get(Connection, connection_id)
        if connection is not None and connection.sync_watermark:
            state = dict(connection.sync_watermark)
            state.pop("running_until", None)
            state.pop("running_by", None)
            connection.sync_watermark = state


@task()
def sync_connection_task(connection_id: str, job_id: str | None = None) -> None:
    """Incremental sync of one connection; reviews changed deals; sends their notes.

    ``job_id``: the :class:`~app.sync.models.SyncJob` an admin's request created; its
    state follows the run (``GET /api/v1/sync-jobs/{id}``).
    """
    runtime = get_runtime()
    waiting = paused_for(connection_id)
    if waiting > 0:
        _job(job_id, SyncJobState.QUEUED, f"the connection is paused for {waiting:.0f} s")
        _again(waiting, connection_id, job_id)
        return
    if not _take_sync_lease(connection_id):
        _job(job_id, SyncJobState.SKIPPED, "a sync of this connection was already running")
        return
    _job(job_id, SyncJobState.RUNNING)

    def work(session: Session, connection: Connection, provider: CrmProvider) -> SyncReport:
        report = sync_connection(
            session,
            connection,
            provider,
            commit=session.commit,
            quota_share=runtime.settings.daily_quota_share,
            lease=SYNC_LEASE,
        )
        if report.writebacks:
            enqueue_after_commit(session, send_writebacks, connection.id)
        return report

    try:
        report = with_provider(runtime, connection_id, work)
        summary = (
            f"{report.pages} pages, {report.deals} deals, {report.reviewed} reviewed, "
            f"{report.unchanged} unchanged, {report.deleted} deleted"
        )
        logger.info("sync %s: %s", connection_id, summary)
        _job(job_id, SyncJobState.SUCCEEDED, summary)
    except Parked as parked:
        logger.info("sync of %s waits: %s", connection_id, parked)
        _job(job_id, SyncJobState.FAILED, "the connection is not active (paused or parked)")
    except NotImplementedError as exc:
        # No adapter for this CRM yet: nothing to sync; say so once on the connection.
        _note_error(connection_id, f"sync waits for an adapter: {exc}")
        _job(job_id, SyncJobState.FAILED, "no adapter for this CRM yet")
    except NotReadyError as exc:
        # The CRM is still preparing a bulk load: come back, without throttling the
        # connection's reviews and write-backs meanwhile.
        delay = exc.retry_after or DEFAULT_RETRY_SECONDS
        logger.info("sync of %s waits %.0f s: %s", connection_id, delay, exc)
        _job(job_id, SyncJobState.QUEUED, f"the CRM prepares a bulk load; again in {delay:.0f} s")
        _again(delay, connection_id, job_id)
    except RetriableError as exc:
        delay = exc.retry_after or DEFAULT_RETRY_SECONDS
        pause(connection_id, delay)
        _job(job_id, SyncJobState.QUEUED, f"the CRM is unavailable; again in {delay:.0f} s")
        _again(delay, connection_id, job_id)
    except QuotaExhaustedError as exc:
        # Webhook reviews go on; the sync waits for the allowance to roll over.
        _note_error(connection_id, str(exc))
        _job(job_id, SyncJobState.FAILED, str(exc))
        sync_connection_task.enqueue_in(QUOTA_RETRY_SECONDS, connection_id)
        logger.warning("sync of %s stopped: %s", connection_id, exc)
    except Exception:
        _job(job_id, SyncJobState.FAILED, "an internal error; the service log has the details")
        raise
    finally:
        _drop_sync_lease(connection_id)


def _again(delay: float, connection_id: str, job_id: str | None) -> None:
    """Run the sync again in ``delay`` seconds, for the same job when there is one."""
    if job_id is None:
        sync_connection_task.enqueue_in(delay, connection_id)
    else:
        sync_connection_task.enqueue_in(delay, connection_id, job_id)


def _job(job_id: str | None, state: SyncJobState, detail: str | None = None) -> None:
    """Record a sync job's state (nothing without a job)."""
    if job_id is None:
        return
    with session_scope(get_runtime().sessions) as session:
        job = session.get(SyncJob, job_id)
        if job is None:
            return
        now = utcnow()
        job.state = state
        job.detail = detail[:2000] if detail else None
        if state == SyncJobState.RUNNING and job.started_at is None:
            job.started_at = now
        if state in (SyncJobState.SUCCEEDED, SyncJobState.FAILED, SyncJobState.SKIPPED):
            job.finished_at = now


def _note_error(connection_id: str, error: str) -> None:
    with session_scope(get_runtime().sessions) as session:
        connection = session.get(Connection, connection_id)
        if connection is not None:
            connection.last_error = error[:2000]


def _due_for_sync(connection: Connection, default_minutes: int) -> bool:
    minutes = (connection.settings or {}).get("sync_interval_minutes") or default_minutes
    if connection.last_synced_at is None:
        return True
    return utcnow() - connection.last_synced_at >= timedelta(minutes=int(minutes))


@periodic_task(crontab(minute="*"))
def reconcile() -> None:
    """Find due work in the database and ring its doorbell.

    Paused and parked connections are skipped: their events wait, silently, until
    the connection is active again. A deal already rung is rung again only when its
    doorbell is older than :data:`DOORBELL_STALE` (its job was lost).
    """
    runtime = get_runtime()
    settings = runtime.settings
    now = utcnow()
    with session_scope(runtime.sessions) as session:
        for connection_id in due_connection_ids(session, now):
            enqueue_after_commit(session, send_writebacks, connection_id)
        grace = timedelta(seconds=settings.webhook_coalesce_seconds + 30)
        by_connection: dict[str, list[str]] = {}
        for connection_id, deal_id in unrung_waiting(session, now - grace):
            by_connection.setdefault(connection_id, []).append(deal_id)
        for connection_id, deal_ids in by_connection.items():
            rung = ring(session, connection_id, deal_ids, now)
            enqueue_reviews_after_commit(session, connection_id, rung)
        again: dict[str, list[str]] = {}
        for connection_id, deal_id in stale_doorbells(session, now - DOORBELL_STALE):
            again.setdefault(connection_id, []).append(deal_id)
        for connection_id, deal_ids in again.items():
            enqueue_reviews_after_commit(session, connection_id, deal_ids)
        active = session.scalars(
            select(Connection).where(Connection.status == ConnectionStatus.ACTIVE)
        ).all()
        for connection in active:
            if _due_for_sync(connection, settings.sync_interval_minutes):
                enqueue_after_commit(session, sync_connection_task, connection.id)
