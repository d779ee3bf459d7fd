"""``/metrics`` through prometheus-client: HTTP latency by route template, jobs by state,
queue depth, outbox age, task outcomes; cheap under a scrape storm; optionally behind a
token (issue 12, findings 4 and 8)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import event

from app.config import Settings
from app.writeback.models import WriteBack, WriteBackState

from .conftest import Service, running_service, sample_deal, service_settings


def _value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in the metrics")


def test_the_metrics_cover_http_jobs_queue_outbox_and_tasks(service: Service) -> None:
    connection_id, crm = service.add_fake_connection()
    crm.put_deal(sample_deal("D1"))
    assert service.post_webhook(connection_id, service.webhook_body(("e1", "D1"))) == 200
    service.wait_for(
        lambda: service.count(WriteBack, WriteBack.state == WriteBackState.WRITTEN) == 1
    )
    text = service.client.get("/metrics").text

    assert (
        _value(
            text,
            "dealcoach_http_request_duration_seconds_count",
            route="/webhooks/fake/{connection_id}",
            status="200",
        )
        >= 1
    )
    assert connection_id not in text, "route templates, never ids"
    assert _value(text, "dealcoach_jobs", kind="writeback", state="written") == 1
    assert _value(text, "dealcoach_jobs", kind="webhook_delivery", state="processed") == 1
    assert _value(text, "dealcoach_queue_depth") >= 0
    assert _value(text, "dealcoach_outbox_oldest_age_seconds") == 0
    assert _value(text, "dealcoach_tasks_total", task="review_deals_events", outcome="ok") >= 1


def test_a_scrape_storm_reads_the_database_once(service: Service) -> None:
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    engine = service.runtime.engine
    service.client.get("/metrics")  # fills the cache
    event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(20):
            assert service.client.get("/metrics").status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert not [s for s in statements if re.search(r"FROM (writebacks|webhook_deliveries)", s)]


def test_a_metrics_token_protects_the_scrape(
    db_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = service_settings(db_settings, tmp_path, metrics_token="scrape-secret-123")
    with running_service(settings, tmp_path, monkeypatch) as svc:
        assert svc.client.get("/metrics").status_code == 401
        wrong = svc.client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = svc.client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-123"})
        assert right.status_code == 200 and "dealcoach_jobs" in right.text
