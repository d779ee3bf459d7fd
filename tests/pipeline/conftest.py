"""A running service for pipeline and API tests: app, embedded worker, fake CRMs.

``service`` runs on SQLite and on PostgreSQL (through ``db_settings``), with
the task queue on a SQLite file and the consumer's worker threads inside the
test process, as ``dealcoach serve`` runs by default.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from app.admin.keys import create_api_key
from app.bench import generate_deals
from app.coaching.snapshot import DealSnapshot
from app.config import Settings
from app.connections.models import Connection
from app.db import session_scope
from app.jobs import configure_queue, reset_queue
from app.main import create_app
from app.runtime import Runtime, get_runtime, set_runtime
from integrations.fake.provider import sign_fake_webhook
from integrations.fake.store import FakeCrm

WEBHOOK_SECRET = "whsec-test-0123456789"


def sample_deal(deal_id: str, index: int = 1) -> DealSnapshot:
    """A realistic open deal (from the benchmark generator) under ``deal_id``."""
    for candidate in generate_deals(40, seed=11)[index:]:
        if candidate.is_open:
            return replace(candidate, id=deal_id)
    raise AssertionError("no open deal generated")


@dataclass
class Service:
    settings: Settings
    client: TestClient
    tmp: Path
    admin_key: str
    read_key: str
    app: FastAPI
    crms: dict[str, FakeCrm] = field(default_factory=dict)

    @property
    def runtime(self) -> Runtime:
        return get_runtime()

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.admin_key}"}

    def add_fake_connection(self, account: str = "acct-1", **settings: Any) -> tuple[str, FakeCrm]:
        crm = FakeCrm(self.tmp / f"crm-{account}.db", account_id=account)
        response = self.client.post(
            "/api/v1/connections",
            headers=self.auth(),
            json={
                "provider": "fake",
                "name": f"Fake {account}",
                "external_account_id": account,
                "instance_url": crm.instance_url,
                "credentials": crm.credentials(),
                "webhook_secret": WEBHOOK_SECRET,
                "settings": settings,
            },
        )
        assert response.status_code == 201, response.text
        connection_id = str(response.json()["id"])
        self.crms[connection_id] = crm
        # Tests drive syncs themselves: keep the reconciler from starting the
        # first sync of this new connection at a moment of its own choosing.
        with session_scope(self.runtime.sessions) as session:
            session.execute(
                update(Connection)
                .where(Connection.id == connection_id)
                .values(last_synced_at=datetime.now(UTC))
            )
        return connection_id, crm

    def webhook_body(self, *events: tuple[str, str]) -> bytes:
        """Events as (event id, deal id), all stage changes."""
        return json.dumps(
            {
                "events": [
                    {
                        "id": event_id,
                        "deal_id": deal_id,
                        "kind": "stage_change",
                        "occurred_at": "2026-11-27T07:00:00Z",
                    }
                    for event_id, deal_id in events
                ]
            }
        ).encode()

    def post_webhook(self, connection_id: str, body: bytes) -> int:
        headers = sign_fake_webhook(body, WEBHOOK_SECRET, int(time.time()))
        headers["content-type"] = "application/json"
        response = self.client.post(
            f"/webhooks/fake/{connection_id}", content=body, headers=headers
        )
        return response.status_code

    def count(self, model: Any, *where: Any) -> int:
        with session_scope(self.runtime.sessions) as session:
            return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    def wait_for(self, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for {condition}")


def service_settings(db_settings: Settings, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "sandbox": True,
        "data_dir": tmp_path / "data",
        "queue_url": f"sqlite:///{tmp_path / 'queue.db'}",
        "webhook_coalesce_seconds": 1.0,
        "worker_threads": 4,
        "public_url": "http://testserver",
    }
    values.update(overrides)
    return db_settings.model_copy(update=values)


@contextmanager
def running_service(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Service]:
    """The app with its embedded worker on ``settings``, an admin and a read key.

    Tests start syncs and write-back sends themselves: the reconciler (which Huey runs
    as soon as the consumer starts and then every minute, i.e. at any moment of a test)
    starts none, so a test's sync or send never races one of its own (a fault injected
    for the test's send must meet that send). It still re-rings stale webhook events.
    ``test_reconciler`` tests it."""
    monkeypatch.setattr("app.sync.tasks._due_for_sync", lambda _connection, _minutes: False)
    monkeypatch.setattr("app.sync.tasks.due_connection_ids", lambda _session, _now: [])
    configure_queue(settings)
    app = create_app(settings)
    try:
        with TestClient(app) as client:
            with session_scope(get_runtime().sessions) as session:
                _, admin = create_api_key(session, "admin", "admin")
                _, read = create_api_key(session, "reader", "read")
            yield Service(settings, client, tmp_path, admin, read, app)
    finally:
        reset_queue()
        set_runtime(None)


@pytest.fixture
def service(
    db_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Service]:
    """The service (:func:`running_service`) with fake CRMs, on SQLite and PostgreSQL."""
    with running_service(service_settings(db_settings, tmp_path), tmp_path, monkeypatch) as svc:
        yield svc


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]
