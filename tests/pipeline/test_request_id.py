"""A request id follows a webhook through its review and its write-back, and every log
line can be one JSON object carrying it (issue 12, finding 4)."""

from __future__ import annotations

import json
import logging
import time

import pytest

from app.logs import JsonFormatter, RequestIdFilter
from app.writeback.models import WriteBack, WriteBackState
from integrations.fake.provider import sign_fake_webhook

from .conftest import WEBHOOK_SECRET, Service, sample_deal

REQUEST_ID = "req-test-0123456789"


def test_a_webhooks_request_id_reaches_its_review_and_write_back_log_lines(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(RequestIdFilter())
    connection_id, crm = service.add_fake_connection()
    crm.put_deal(sample_deal("D1"))
    body = service.webhook_body(("e1", "D1"))
    headers = sign_fake_webhook(body, WEBHOOK_SECRET, int(time.time()))
    headers.update({"content-type": "application/json", "X-Request-ID": REQUEST_ID})

    response = service.client.post(f"/webhooks/fake/{connection_id}", content=body, headers=headers)
    assert response.status_code == 200
    assert response.headers["x-request-id"] == REQUEST_ID
    service.wait_for(
        lambda: service.count(WriteBack, WriteBack.state == WriteBackState.WRITTEN) == 1
    )
    time.sleep(0.3)  # the sender logs right after recording

    def ids_of(logger: str) -> set[object]:
        return {getattr(r, "request_id", None) for r in caplog.records if r.name == logger}

    assert REQUEST_ID in ids_of("app.reviews.tasks"), caplog.text
    assert REQUEST_ID in ids_of("app.writeback.tasks"), caplog.text
    formatted = [
        json.loads(JsonFormatter().format(record))
        for record in caplog.records
        if record.name.startswith("app.")
    ]
    assert any(line.get("request_id") == REQUEST_ID for line in formatted)
    assert all(line["ts"].endswith("Z") and line["level"] for line in formatted)


def test_a_request_without_an_id_gets_one(service: Service) -> None:
    first = service.client.get("/healthz").headers["x-request-id"]
    second = service.client.get("/healthz", headers={"X-Request-ID": "<bad id>"})
    assert len(first) == 32 and second.headers["x-request-id"] != "<bad id>"
