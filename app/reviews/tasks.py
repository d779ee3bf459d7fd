"""Review tasks: a deal's webhook events become one review (and its write-back)."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session

from app.connections.models import Connection
from app.connections.runner import Parked, with_provider
from app.db import is_lock_error, session_scope, utcnow
from app.failpoints import failpoint
from app.jobs import enqueue_after_commit, task
from app.ratelimit import pause, paused_for
from app.reviews.models import ReviewTrigger
from app.reviews.pipeline import store_and_review
from app.runtime import get_runtime
from app.sync.service import check_quota
from app.webhooks.models import DeliveryStatus
from app.webhooks.service import (
    claim_deal_events,
    enqueue_reviews_after_commit,
    finish_deal,
    has_received_events,
    mark_deal_events,
    record_deal_failure,
)
from app.writeback.tasks import send_writebacks
from integrations.base import (
    CrmProvider,
    InvalidRequestError,
    NotFoundError,
    QuotaExhaustedError,
    RetriableError,
)

logger = logging.getLogger(__name__)
DEFAULT_RETRY_SECONDS = 30.0
MAX_EVENT_ATTEMPTS = 10
#: Seconds before a review that met a busy database writer runs again.
LOCK_RETRY_SECONDS = 2.0
#: How long a connection's webhook reviews wait once the daily-allowance guard trips.
QUOTA_PAUSE_SECONDS = 3600.0
#: Connections whose provider has no adapter yet, already logged by this process.
_NO_ADAPTER_LOGGED: set[str] = set()
_NO_ADAPTER_LOCK = threading.Lock()


def _log_no_adapter(connection_id: str, exc: NotImplementedError) -> None:
    with _NO_ADAPTER_LOCK:
        first = connection_id not in _NO_ADAPTER_LOGGED
        _NO_ADAPTER_LOGGED.add(connection_id)
    level = logging.WARNING if first else logging.DEBUG
    logger.log(level, "reviews of connection %s wait for an adapter: %s", connection_id, exc)


def _lock_retry(deal_ids: list[str], connection_id: str) -> None:
    """The database's writer was busy too long: try again soon, not counted as a failure."""
    logger.info("review of %d deal(s) of %s waits for the database", len(deal_ids), connection_id)
    review_deals_events.enqueue_in(LOCK_RETRY_SECONDS, connection_id, deal_ids)


@task()
def review_deals_events(connection_id: str, deal_ids: list[str]) -> None:
    """Review each of these deals for the webhook events waiting about it (the job the
    receiver enqueues: one per delivery and up to 50 deals, rather than one per deal).

    A pause of the connection (a rate limit met on the way) sends the deals not yet
    reviewed back to the queue for when it ends.
    """
    for index, deal_id in enumerate(deal_ids):
        waiting = paused_for(connection_id)
        if waiting > 0:
            review_deals_events.enqueue_in(waiting, connection_id, deal_ids[index:])
            return
        if not _review_deal(connection_id, deal_id):
            return  # the connection is parked: its doorbells wait for it


@task()
def review_deal_events(connection_id: str, deal_id: str) -> None:
    """Review ``deal_id`` for every webhook event received about it, once."""
    review_deals_events.call_local(connection_id, [deal_id])


def _review_deal(connection_id: str, deal_id: str) -> bool:
    """Review one deal for its waiting events; False if the connection is parked.

    The run claims all received deliveries of the deal (so events that arrived
    within the coalescing window share one review) and then silences the deal's
    doorbell, ringing again if events arrived during the fetch. A failure rolls
    the claim back: the deliveries stay received and the retry (or the
    reconciler) picks them up again. No transaction is open during the fetch.
    """
    runtime = get_runtime()
    over_allowance: list[str] = []  # set by work(): the CRM's usage passed the guard

    def work(session: Session, connection: Connection, provider: CrmProvider) -> int:
        if not has_received_events(session, connection.id, deal_id):
            if finish_deal(session, connection.id, deal_id):
                enqueue_reviews_after_commit(session, connection.id, [deal_id], delay=None)
            return 0  # another run reviewed them already
        # Fetch with no transaction open: a write lock held across the CRM call would
        # stall every other writer (the webhook receiver first).
        session.commit()
        fetched_at = utcnow()
        deal = provider.fetch_deal(deal_id)
        try:  # the same daily-allowance guard as syncs: forged or noisy webhooks cannot
            check_quota(provider, runtime.settings.daily_quota_share)  # drain the CRM's API
        except QuotaExhaustedError as exc:
            over_allowance.append(str(exc))
        claimed = claim_deal_events(session, connection.id, deal_id, received_by=fetched_at)
        if claimed:
            result = store_and_review(
                session, connection, deal, trigger=ReviewTrigger.WEBHOOK, skip_unchanged=True
            )
            if result is not None and result.writebacks:
                enqueue_after_commit(session, send_writebacks, connection.id)
            logger.info(
                "deal %s of connection %s reviewed for %d webhook events (%d notes queued)",
                deal_id,
                connection.id,
                len(claimed),
                len(result.writebacks) if result is not None else 0,
            )
        if finish_deal(session, connection.id, deal_id):
            # Events that arrived during the fetch: one more review, after the window.
            enqueue_reviews_after_commit(session, connection.id, [deal_id], delay=None)
        return len(claimed)

    try:
        with_provider(runtime, connection_id, work)
        failpoint("after_review")
        if over_allowance:
            # This review is done; the connection's next calls wait for the allowance.
            pause(connection_id, QUOTA_PAUSE_SECONDS)
            logger.warning(
                "webhook reviews of connection %s paused for %.0f s: %s",
                connection_id,
                QUOTA_PAUSE_SECONDS,
                over_allowance[0],
            )
    except Parked as parked:
        logger.debug("review of %s waits: %s", deal_id, parked)
        return False
    except NotImplementedError as exc:
        # No adapter for this CRM yet (provider_for): nothing was claimed, the
        # deliveries stay received, and the reconciler's doorbell finds them once
        # an adapter exists. Not retried here, so it cannot spin.
        _log_no_adapter(connection_id, exc)
        return False
    except RetriableError as exc:
        delay = exc.retry_after or DEFAULT_RETRY_SECONDS
        pause(connection_id, delay)
        review_deals_events.enqueue_in(delay, connection_id, [deal_id])
    except (NotFoundError, InvalidRequestError) as exc:
        with session_scope(runtime.sessions) as session:
            claimed = claim_deal_events(session, connection_id, deal_id)
            mark_deal_events(
                session, claimed, DeliveryStatus.FAILED, f"{type(exc).__name__}: {exc}"
            )
            finish_deal(session, connection_id, deal_id)
        logger.warning("review of deal %s failed for good: %s", deal_id, exc)
    except Exception as exc:
        if is_lock_error(exc):
            _lock_retry([deal_id], connection_id)
            return True
        # A bug, a bad playbook, a record the mapping refuses: the events stay
        # received (the reconciler retries them) with the error and a count on
        # them, and fail for good after MAX_EVENT_ATTEMPTS tries.
        logger.exception("review of deal %s failed", deal_id)
        try:
            with session_scope(runtime.sessions) as session:
                record_deal_failure(
                    session,
                    connection_id,
                    deal_id,
                    f"{type(exc).__name__}: {exc}",
                    MAX_EVENT_ATTEMPTS,
                )
        except Exception as again:
            if not is_lock_error(again):
                raise
            _lock_retry([deal_id], connection_id)
    return True
