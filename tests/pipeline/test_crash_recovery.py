"""A worker killed (SIGKILL) between "the CRM wrote the note" and "we recorded it"."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.admin.keys import create_api_key
from app.config import Settings
from app.db import session_scope, utcnow
from app.jobs import configure_queue, reset_queue
from app.main import create_app
from app.runtime import get_runtime, set_runtime
from app.writeback.models import WriteBack, WriteBackState
from app.writeback.tasks import send_writebacks
from integrations.fake.store import FakeCrm

from .conftest import WEBHOOK_SECRET, sample_deal, service_settings

DEALCOACH = Path(sys.executable).with_name("dealcoach")


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DEALCOACH_DATABASE_URL": settings.resolved_database_url,
            "DEALCOACH_DATA_DIR": str(settings.data_dir),
            "DEALCOACH_QUEUE_URL": settings.resolved_queue_url,
            "DEALCOACH_SECRET_KEYS": settings.secret_keys or "",
            "DEALCOACH_SANDBOX": "true",
            "DEALCOACH_WORKER_THREADS": "1",
        }
    )
    return env


@pytest.fixture
def worker_settings(db_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    settings = service_settings(db_settings, tmp_path)
    configure_queue(settings)
    try:
        yield settings
    finally:
        reset_queue()
        set_runtime(None)


def _start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(DEALCOACH), "worker", "--threads", "1"],
        env=_env(settings),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def _writeback(settings: Settings) -> WriteBack:
    with session_scope(get_runtime().sessions) as session:
        row = session.query(WriteBack).one()
        session.expunge(row)
        return row


def _wait(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_given_a_worker_killed_after_the_crm_write_when_restarted_then_the_note_exists_once(
    worker_settings: Settings, tmp_path: Path
) -> None:
    settings = worker_settings
    crm = FakeCrm(tmp_path / "crm.db", account_id="acct-kill")
    crm.put_deal(sample_deal("D1"))
    app = create_app(settings, embedded_worker=False)
    with TestClient(app) as client:
        with session_scope(get_runtime().sessions) as session:
            _, key = create_api_key(session, "admin", "admin")
        auth = {"Authorization": f"Bearer {key}"}
        created = client.post(
            "/api/v1/connections",
            headers=auth,
            json={
                "provider": "fake",
                "name": "Kill test",
                "external_account_id": "acct-kill",
                "instance_url": crm.instance_url,
                "credentials": crm.credentials(),
                "webhook_secret": WEBHOOK_SECRET,
            },
        )
        assert created.status_code == 201, created.text
        connection_id = created.json()["id"]
        # The review queues the write-back; the worker is not running yet.
        reviewed = client.post(
            f"/api/v1/connections/{connection_id}/deals/D1/reviews", headers=auth, json={}
        )
        assert reviewed.status_code == 201, reviewed.text
        assert len(reviewed.json()["writebacks"]) == 1

    crm.pause_after_write(120)  # the CRM commits the note, then the call hangs
    log = tmp_path / "worker.log"
    worker = _start_worker(settings, log)
    try:
        _wait(lambda: crm.note_count() == 1, 60, "the CRM to hold the note")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()

    claimed = _writeback(settings)
    assert claimed.state == WriteBackState.PENDING, "the result was never recorded"
    assert claimed.attempts == 1 and claimed.external_id is None

    # Time passes: the claim's lease runs out, and a worker picks the row up again.
    crm.pause_after_write(0)
    with session_scope(get_runtime().sessions) as session:
        session.execute(update(WriteBack).values(next_attempt_at=utcnow()))
    worker = _start_worker(settings, log)
    try:
        send_writebacks(connection_id)
        _wait(lambda: _writeback(settings).state == WriteBackState.WRITTEN, 60, "the write-back")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()

    recorded = _writeback(settings)
    notes = crm.notes_on("D1")
    assert len(notes) == 1, "the note exists exactly once"
    assert recorded.external_id == notes[0].id
    assert recorded.attempts == 2
    assert crm.calls("write") == 1, "the second worker looked the marker up instead of writing"
