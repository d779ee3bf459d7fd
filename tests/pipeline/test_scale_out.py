"""Real processes: `dealcoach serve` alone on the embedded default (SQLite queue, worker
threads inside), and scale-out: `dealcoach serve --no-embedded-worker` plus a separate
`dealcoach worker` on a Redis or PostgreSQL queue. In each, a webhook becomes one note."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from integrations.fake.provider import sign_fake_webhook
from integrations.fake.store import FakeCrm

from .conftest import WEBHOOK_SECRET, sample_deal

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(params=["embedded", "redis", "postgresql"])
def queue_url(request: pytest.FixtureRequest, db_settings: Settings, tmp_path: Path) -> str:
    if request.param == "embedded":
        return f"sqlite:///{tmp_path / 'queue.db'}"
    if request.param == "redis":
        base: str = request.getfixturevalue("redis_url")
        return base.rstrip("/") + "/7"  # a database of its own on the shared server
    if not db_settings.resolved_database_url.startswith("postgresql"):
        pytest.skip("the PostgreSQL queue runs with the PostgreSQL data store")
    return db_settings.resolved_database_url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def processes(
    db_settings: Settings, queue_url: str, tmp_path: Path
) -> Iterator[tuple[str, dict[str, str]]]:
    port = _free_port()
    env = dict(os.environ)
    env.update(
        {
            "DEALCOACH_DATABASE_URL": db_settings.resolved_database_url,
            "DEALCOACH_DATA_DIR": str(tmp_path / "data"),
            "DEALCOACH_QUEUE_URL": queue_url,
            "DEALCOACH_SECRET_KEYS": db_settings.secret_keys or "",
            "DEALCOACH_SANDBOX": "true",
            "DEALCOACH_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "DEALCOACH_WEBHOOK_COALESCE_SECONDS": "0.5",
        }
    )
    log = (tmp_path / "processes.log").open("ab")
    embedded = queue_url.startswith("sqlite")
    serve = [str(BIN / "dealcoach"), "serve", "--port", str(port)]
    started = [
        subprocess.Popen(
            serve if embedded else [*serve, "--no-embedded-worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    ]
    if not embedded:
        started.append(
            subprocess.Popen(
                [str(BIN / "dealcoach"), "worker", "--threads", "2"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "processes.log").read_text()
            time.sleep(0.2)
        yield base, env
    finally:
        for process in started:
            process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()


def test_given_running_processes_then_a_webhook_becomes_one_note(
    processes: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    base, env = processes
    created = subprocess.run(
        [str(BIN / "dealcoach"), "apikey", "create", "--name", "e2e", "--scope", "admin"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = created.stdout.strip().splitlines()[-1]
    auth = {"Authorization": f"Bearer {key}"}
    crm = FakeCrm(tmp_path / "crm.db", account_id="acct-e2e")
    crm.put_deal(sample_deal("D5"))
    connection = httpx.post(
        f"{base}/api/v1/connections",
        headers=auth,
        json={
            "provider": "fake",
            "name": "E2E",
            "external_account_id": "acct-e2e",
            "instance_url": crm.instance_url,
            "credentials": crm.credentials(),
            "webhook_secret": WEBHOOK_SECRET,
        },
        timeout=10,
    )
    assert connection.status_code == 201, connection.text
    webhook_url = connection.json()["webhook_urls"]["webhook"]
    assert webhook_url.startswith(base)

    body = (
        b'{"events": [{"id": "e-1", "deal_id": "D5", "kind": "stage_change",'
        b' "occurred_at": "2026-11-27T08:00:00Z"}]}'
    )
    for _ in range(3):  # a redelivery or two change nothing
        headers = sign_fake_webhook(body, WEBHOOK_SECRET, int(time.time()))
        answer = httpx.post(webhook_url, content=body, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text

    deadline = time.monotonic() + 60
    while not crm.notes_on("D5"):
        assert time.monotonic() < deadline, (tmp_path / "processes.log").read_text()[-4000:]
        time.sleep(0.2)

    def states() -> list[str]:
        items = httpx.get(f"{base}/api/v1/writebacks", headers=auth, timeout=10).json()["items"]
        return [str(item["state"]) for item in items]

    while states() != ["written"]:  # the outbox records the note just after the CRM has it
        assert time.monotonic() < deadline, states()
        time.sleep(0.2)
    time.sleep(1.0)
    assert len(crm.notes_on("D5")) == 1
