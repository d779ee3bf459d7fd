"""``/metrics`` in the Prometheus text format (prometheus-client; :mod:`app.metrics`).

Counters and the latency histogram are this process's; the job, queue and outbox
figures are read from the database and the queue at most every 15 s, whatever the
scrape rate. With ``DEALCOACH_METRICS_TOKEN`` set, a scrape needs
``Authorization: Bearer <token>`` (compared in constant time).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import func, select

from app.api.problems import Problem
from app.db import utcnow
from app.metrics import REGISTRY, StateCollector
from app.runtime import Runtime
from app.webhooks.models import WebhookDelivery
from app.writeback.models import WriteBack, WriteBackState

router = APIRouter(tags=["health"])
logger = logging.getLogger(__name__)
_UNWRITTEN = (WriteBackState.PENDING, WriteBackState.FAILED)


def state_reader(runtime: Runtime) -> StateCollector:
    """The collector of database and queue figures for ``runtime``."""

    def read() -> list[GaugeMetricFamily]:
        jobs = GaugeMetricFamily(
            "dealcoach_jobs",
            "Write-backs and webhook deliveries by state.",
            labels=["kind", "state"],
        )
        oldest = GaugeMetricFamily(
            "dealcoach_outbox_oldest_age_seconds",
            "Age of the oldest write-back not yet written (0 when none).",
        )
        depth = GaugeMetricFamily("dealcoach_queue_depth", "Tasks waiting in the task queue.")
        with runtime.sessions() as session:
            for kind, column in (
                ("writeback", WriteBack.state),
                ("webhook_delivery", WebhookDelivery.status),
            ):
                model = WriteBack if kind == "writeback" else WebhookDelivery
                rows = session.execute(
                    select(column, func.count()).select_from(model).group_by(column)
                )
                for state, count in rows:
                    jobs.add_metric([kind, str(state)], count)
            first = session.scalar(
                select(func.min(WriteBack.created_at)).where(WriteBack.state.in_(_UNWRITTEN))
            )
        oldest.add_metric([], (utcnow() - first).total_seconds() if first else 0.0)
        try:
            from app.jobs import ensure_queue

            depth.add_metric([], float(ensure_queue(runtime.settings).pending_count()))
        except Exception as exc:  # the queue is down: no figure rather than a failed scrape
            logger.debug("queue depth unavailable: %s", exc)
        return [jobs, oldest, depth]

    return StateCollector(read)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    token = runtime.settings.metrics_token
    if token:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise Problem(
                401,
                "a metrics token is required: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
    collector: StateCollector | None = getattr(request.app.state, "metrics_state", None)
    if collector is None:
        collector = request.app.state.metrics_state = state_reader(runtime)
    body = generate_latest(REGISTRY) + generate_latest(_OneCollector(collector))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class _OneCollector:
    """A registry-like view of one collector, for ``generate_latest``."""

    def __init__(self, collector: StateCollector) -> None:
        self._collector = collector

    def collect(self) -> Iterator[Metric]:
        return self._collector.collect()
