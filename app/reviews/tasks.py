"""Review tasks: a deal's webhook events become one review (and its write-back)."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session

from app.connections.models import Connection
from app.connections.runner import Parked, with_provider
from app.db import session_scope, utcnow
from app.jobs import enqueue_after_commit, task
from app.ratelimit import pause, paused_for
from app.reviews.models import ReviewTrigger
from app.reviews.pipeline import store_and_review
from app.runtime import get_runtime
from app.sync.service import check_quota
from app.webhooks.models import DeliveryStatus
from app.webhooks.service import (
    claim_deal_events,
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


@task()
def review_deal_events(connection_id: str, deal_id: str) -> None:
    """Review ``deal_id`` for every webhook event received about it, once.

    The first run claims all received deliveries of the deal (so events that
    arrived within the coalescing window share one review); later runs find
    nothing to claim and stop. A failure rolls the claim back: the deliveries
    stay received and the retry (or the reconciler) picks them up again.
    """
    runtime = get_runtime()
    waiting = paused_for(connection_id)
    if waiting > 0:
        review_deal_events.enqueue_in(waiting, connection_id, deal_id)
        return
    over_allowance: list[str] = []  # set by work(): the CRM's usage passed the guard

    def work(session: Session, connection: Connection, provider: CrmProvider) -> int:
        if not has_received_events(session, connection.id, deal_id):
            return 0  # another run reviewed them already
        # Fetch with no transaction open: on SQLite a write lock held across the
        # CRM call would stall every other writer (the webhook receiver first).
        session.commit()
        fetched_at = utcnow()
        deal = provider.fetch_deal(deal_id)
        try:  # the same daily-allowance guard as syncs: forged or noisy webhooks cannot
            check_quota(provider, runtime.settings.daily_quota_share)  # drain the CRM's API
        except QuotaExhaustedError as exc:
            over_allowance.append(str(exc))
        claimed = claim_deal_events(session, connection.id, deal_id, received_by=fetched_at)
        if not claimed:
            return 0
        result = store_and_review(
            session, connection, deal, trigger=ReviewTrigger.WEBHOOK, skip_unchanged=True
        )
        if has_received_events(session, connection.id, deal_id):
            # Events that arrived during the fetch: one more review, after the window.
            enqueue_after_commit(
                session,
                review_deal_events.enqueue_in,
                runtime.settings.webhook_coalesce_seconds,
                connection.id,
                deal_id,
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
        return len(claimed)

    try:
        with_provider(runtime, connection_id, work)
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
        logger.info("review of %s waits: %s", deal_id, parked)
    except NotImplementedError as exc:
        # No adapter for this CRM yet (provider_for): nothing was claimed, the
        # deliveries stay received, and the reconciler's doorbell finds them once
        # an adapter exists. Not retried here, so it cannot spin.
        _log_no_adapter(connection_id, exc)
    except RetriableError as exc:
        delay = exc.retry_after or DEFAULT_RETRY_SECONDS
        pause(connection_id, delay)
        review_deal_events.enqueue_in(delay, connection_id, deal_id)
    except (NotFoundError, InvalidRequestError) as exc:
        with session_scope(runtime.sessions) as session:
            claimed = claim_deal_events(session, connection_id, deal_id)
            mark_deal_events(
                session, claimed, DeliveryStatus.FAILED, f"{type(exc).__name__}: {exc}"
            )
        logger.warning("review of deal %s failed for good: %s", deal_id, exc)
    except Exception as exc:
        # A bug, a bad playbook, a record the mapping refuses: the events stay
        # received (the reconciler retries them) with the error and a count on
        # them, and fail for good after MAX_EVENT_ATTEMPTS tries.
        logger.exception("review of deal %s failed", deal_id)
        with session_scope(runtime.sessions) as session:
            record_deal_failure(
                session, connection_id, deal_id, f"{type(exc).__name__}: {exc}", MAX_EVENT_ATTEMPTS
            )
