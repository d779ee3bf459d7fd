"""Prometheus metrics (prometheus-client), one registry per process.

Counted where they happen (per process; scrape every API replica at ``/metrics`` and
every ``dealcoach worker --metrics-port``):

- ``dealcoach_http_request_duration_seconds{method, route, status}`` (histogram);
- ``dealcoach_crm_calls_total{connection, status}`` and
  ``dealcoach_crm_rate_limited_total{connection}`` (CRM answers of 429, or a CRM's own
  rate-limit error code);
- ``dealcoach_tasks_total{task, outcome}`` (queue tasks run by this process).

Read at scrape time, from the database and the queue, at most every
:data:`STATE_CACHE_SECONDS` (so a scrape storm costs one query set, and ``/metrics``
stays cheap): ``dealcoach_jobs{kind, state}`` (write-backs by state, webhook deliveries
by status), ``dealcoach_queue_depth`` (tasks waiting in the queue) and
``dealcoach_outbox_oldest_age_seconds`` (the oldest write-back not yet written).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REGISTRY = CollectorRegistry(auto_describe=True)
STATE_CACHE_SECONDS = 15.0

HTTP_DURATION = Histogram(
    "dealcoach_http_request_duration_seconds",
    "HTTP request latency by route template.",
    ("method", "route", "status"),
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CRM_CALLS = Counter(
    "dealcoach_crm_calls_total",
    "CRM API calls by connection and HTTP status.",
    ("connection", "status"),
    registry=REGISTRY,
)
CRM_RATE_LIMITED = Counter(
    "dealcoach_crm_rate_limited_total",
    "CRM answers that were rate limits (429 or the CRM's own limit code), by connection.",
    ("connection",),
    registry=REGISTRY,
)
TASKS = Counter(
    "dealcoach_tasks_total",
    "Queue tasks run by this process, by task and outcome.",
    ("task", "outcome"),
    registry=REGISTRY,
)


def record_crm_call(connection_id: str, status: int) -> None:
    """One CRM HTTP answer (adapters call this for every response)."""
    CRM_CALLS.labels(connection_id, str(status)).inc()
    if status == 429:
        CRM_RATE_LIMITED.labels(connection_id).inc()


def record_crm_rate_limit(connection_id: str) -> None:
    """A rate limit the CRM signalled without a 429 (Salesforce's 403 REQUEST_LIMIT...)."""
    CRM_RATE_LIMITED.labels(connection_id).inc()


class MetricsMiddleware:
    """ASGI: the latency of every HTTP request, labelled by its route *template*
    (``/api/v1/reviews/{review_id}``, never the id), method and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            HTTP_DURATION.labels(scope.get("method", "?"), template, str(status)).observe(
                time.perf_counter() - started
            )


class StateCollector(Collector):
    """Figures read from the database and the queue at scrape time, cached briefly."""

    def __init__(self, read: Callable[[], list[GaugeMetricFamily]]) -> None:
        self._read = read
        self._lock = threading.Lock()
        self._cached: list[GaugeMetricFamily] = []
        self._at = 0.0

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if time.monotonic() - self._at > STATE_CACHE_SECONDS:
                self._cached = self._read()
                self._at = time.monotonic()
            yield from self._cached

    def describe(self) -> Iterator[Metric]:
        return iter(())
