"""The FastAPI application: ``create_app()``.

Today it serves the health probes; the admin API, the webhook endpoints and
the embedded worker arrive with the review pipeline (see the README).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.config import Settings, get_settings
from app.db import create_engine_for


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application for ``settings`` (default: the environment's)."""
    settings = settings or get_settings()
    engine = create_engine_for(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(
        title="dealcoach",
        summary="Deal coaching inside the CRM.",
        version="0.1.0",
        lifespan=lifespan,
    )

    @app.get("/healthz", tags=["health"], summary="The process is up.")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="The database answers.")
    def readyz(response: Response) -> dict[str, str]:
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError) as exc:
            response.status_code = 503
            return {"status": "unavailable", "database": type(exc).__name__}
        return {"status": "ok", "database": "ok"}

    return app
