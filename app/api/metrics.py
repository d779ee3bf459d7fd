"""``/metrics`` in the Prometheus text format: counts read from the database at scrape time.

The database is the record of the work, so every process reports the same
figures; there are no per-process counters to add up.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy import func, select

from app.connections.models import Connection
from app.reviews.models import Review
from app.runtime import Runtime
from app.webhooks.models import WebhookDelivery
from app.writeback.models import WriteBack

router = APIRouter(tags=["health"])


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    lines: list[str] = []
    with runtime.sessions() as session:
        groups = (
            (
                "dealcoach_connections",
                "Connections by status.",
                Connection,
                Connection.status,
                "status",
            ),
            ("dealcoach_writebacks", "Write-backs by state.", WriteBack, WriteBack.state, "state"),
            (
                "dealcoach_webhook_deliveries",
                "Webhook deliveries by status.",
                WebhookDelivery,
                WebhookDelivery.status,
                "status",
            ),
        )
        for name, help_text, model, column, label in groups:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} gauge")
            rows = session.execute(select(column, func.count()).select_from(model).group_by(column))
            for value, count in rows:
                lines.append(f'{name}{{{label}="{_escape(value)}"}} {count}')
        reviews = session.scalar(select(func.count()).select_from(Review)) or 0
        lines.append("# HELP dealcoach_reviews_total Reviews stored.")
        lines.append("# TYPE dealcoach_reviews_total counter")
        lines.append(f"dealcoach_reviews_total {reviews}")
    return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
