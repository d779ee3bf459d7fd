"""The FastAPI application: ``create_app()``.

The admin API under ``/api/v1`` (API keys as bearer tokens; errors as
problem+json), the CRM webhook endpoints under ``/webhooks``, the health
probes and ``/metrics``; on the embedded default, the task-queue consumer
runs inside this process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from app.api.limits import BodyLimit
from app.api.metrics import router as metrics_router
from app.api.problems import install_problem_handlers
from app.api.responses import ApiJSONResponse
from app.cards.router import admin_router as card_keys_router
from app.cards.router import router as cards_router
from app.config import Settings, get_settings
from app.connections.oauth_router import router as oauth_router
from app.connections.router import router as connections_router
from app.deals.router import router as deals_router
from app.feedback.router import router as feedback_router
from app.logs import RequestIdMiddleware
from app.metrics import MetricsMiddleware
from app.playbooks.router import router as playbooks_router
from app.reviews.router import router as reviews_router
from app.runtime import Runtime, build_runtime, set_runtime
from app.sync.router import router as sync_jobs_router
from app.webhooks.hubspot import receiver as hubspot_webhook_receiver
from app.webhooks.router import receiver as webhook_receiver
from app.webhooks.router import router as deliveries_router
from app.writeback.router import router as writebacks_router

ROUTERS = (
    connections_router,
    oauth_router,
    deals_router,
    reviews_router,
    writebacks_router,
    deliveries_router,
    playbooks_router,
    sync_jobs_router,
    webhook_receiver,
    hubspot_webhook_receiver,
    cards_router,
    card_keys_router,
    feedback_router,
    metrics_router,
)


def _key_is_valid(runtime: Runtime, presented: str) -> bool:
    """The API key is active (checked before a body is read; the route checks it again
    with its scope)."""
    from app.admin.keys import authenticate

    with runtime.sessions() as session:
        valid = authenticate(session, presented) is not None
        session.commit()  # last_used_at
    return valid


def operation_id(route: APIRoute) -> str:
    """``<tag>.<function>`` (``connections.create``, ``connections.list_connections``): one
    scheme for every route, stable as long as the function keeps its name."""
    tag = str(route.tags[0]) if route.tags else "service"
    return f"{tag}.{route.name}"


def create_app(settings: Settings | None = None, embedded_worker: bool | None = None) -> FastAPI:
    """Build the application for ``settings`` (default: the environment's).

    ``embedded_worker``: run the task-queue consumer (worker threads and the
    scheduler) inside this process for the app's lifespan. ``None`` (default) means
    on when the queue is the SQLite file (the one-process default) and off on
    Redis/PostgreSQL, where ``dealcoach worker`` processes do the work.
    """
    settings = settings or get_settings()
    runtime = build_runtime(settings)
    set_runtime(runtime)  # tasks running in this process use the same database and keys
    engine = runtime.engine
    if embedded_worker is None:
        embedded_worker = settings.resolved_queue_url.startswith("sqlite")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from app.jobs import ensure_queue, start_embedded_consumer
        from app.logs import install_redaction

        install_redaction()  # after the server configured its loggers: no URL secret in logs
        queue = ensure_queue(settings)  # tasks enqueued by requests go to this backend
        consumer = None
        stop_heartbeat = None
        if embedded_worker and not queue.immediate:
            from app.leases import start_heartbeat

            # Before the consumer: work this process claims carries a live owner.
            stop_heartbeat = start_heartbeat(runtime.sessions)
            consumer = start_embedded_consumer(settings)
        app.state.embedded_worker = consumer
        try:
            yield
        finally:
            if consumer is not None:
                await asyncio.to_thread(consumer.stop)
            if stop_heartbeat is not None:
                stop_heartbeat()
            engine.dispose()

    app = FastAPIOffline(  # Swagger UI and ReDoc from files in the wheel, no CDN
        title="dealcoach",
        summary="Deal coaching inside the CRM.",
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=ApiJSONResponse,
        generate_unique_id_function=operation_id,
        static_url="/docs-static",
    )
    app.state.embedded_worker = None  # the EmbeddedConsumer while the lifespan runs
    app.state.runtime = runtime
    install_problem_handlers(app)
    app.add_middleware(
        BodyLimit,
        default=settings.max_other_body_bytes,
        limits=[
            ("/webhooks/", settings.max_webhook_body_bytes),
            ("/api/", settings.max_api_body_bytes),
        ],
        read_timeout=settings.http_read_timeout_seconds,
        key_is_valid=lambda key: run_in_threadpool(_key_is_valid, runtime, key),
    )
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestIdMiddleware)  # outermost: every line of a request has its id
    for router in ROUTERS:
        app.include_router(router)

    @app.get("/healthz", tags=["health"], summary="The process is up.")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    heads: list[tuple[str, ...]] = []  # the migrations' heads, read on first use

    @app.get(
        "/readyz",
        tags=["health"],
        summary="The database answers at the schema's head, and the task queue answers.",
    )
    def readyz(response: Response) -> dict[str, str]:
        from app.db import SchemaNotCurrent, check_schema, head_revisions
        from app.jobs import ensure_queue

        result = {"status": "ok", "database": "ok", "queue": "ok"}
        try:
            if not heads:
                heads.append(head_revisions())
            check_schema(engine, heads[0])
        except SchemaNotCurrent:
            result["database"] = "schema not at head: run dealcoach db upgrade"
        except (SQLAlchemyError, OSError) as exc:
            result["database"] = type(exc).__name__
        try:
            ensure_queue(settings).pending_count()
        except Exception as exc:  # any backend failure (redis, psycopg, sqlite3) is "not ready"
            result["queue"] = type(exc).__name__
        if result["database"] != "ok" or result["queue"] != "ok":
            response.status_code = 503
            result["status"] = "unavailable"
        return result

    return app
