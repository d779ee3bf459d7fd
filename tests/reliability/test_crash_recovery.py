"""Crash recovery: `dealcoach serve` (the embedded default: API and worker in one
process) dies by SIGKILL at each failpoint of a webhook's path (``app/failpoints.py``),
then starts again. Every deal of every webhook is reviewed and noted, each note
exactly once, counted in the (file-backed, cross-process) fake CRM.

The points: after the inbox insert, after the review, before the CRM call, after the
CRM call and before our commit, and in the middle of a run of batches (the second
batch written by the CRM, the first one recorded, the third not sent).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from integrations.fake.provider import sign_fake_webhook
from integrations.fake.store import FakeCrm
from tests.pipeline.conftest import WEBHOOK_SECRET, sample_deal

from .conftest import FULL, Trial, scale

BIN = Path(sys.executable).parent
DEALS_PER_WEBHOOK = 5
POINTS = {
    "after the inbox insert": "after_inbox_insert",
    "after the review": "after_review",
    "before the CRM call": "before_crm_call",
    "after the CRM call, before the commit": "after_crm_call",
    "in the middle of a batch run": "after_crm_call@2",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Serve:
    """Starts `dealcoach serve` on one data directory, again and again."""

    env: dict[str, str]
    base: str
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, failpoints: str = "") -> None:
        env = {**self.env, "DEALCOACH_FAILPOINTS": failpoints}
        with self.log.open("ab") as log:
            port = self.base.rsplit(":", 1)[1]
            self.process = subprocess.Popen(
                [str(BIN / "dealcoach"), "serve", "--port", port],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, self.tail()
            assert time.monotonic() < deadline, self.tail()
            time.sleep(0.1)

    def wait_killed(self, timeout: float) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("the failpoint never fired\n" + self.tail()) from None

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def serve(db_settings: Settings, tmp_path: Path) -> Iterator[Serve]:
    port = _free_port()
    env = dict(os.environ)
    env.update(
        {
            "DEALCOACH_DATABASE_URL": db_settings.resolved_database_url,
            "DEALCOACH_DATA_DIR": str(tmp_path / "data"),
            "DEALCOACH_QUEUE_URL": f"sqlite:///{tmp_path / 'queue.db'}",
            "DEALCOACH_SECRET_KEYS": db_settings.secret_keys or "",
            "DEALCOACH_DEV_MODE": "true",
            "DEALCOACH_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "DEALCOACH_WEBHOOK_COALESCE_SECONDS": "0",
            "DEALCOACH_WRITE_BATCH_SIZE": "2",
        }
    )
    running = Serve(env, f"http://127.0.0.1:{port}", tmp_path / "serve.log")
    try:
        yield running
    finally:
        running.stop()


def _admin_key(env: dict[str, str]) -> str:
    created = subprocess.run(
        [str(BIN / "dealcoach"), "apikey", "create", "--name", "crash", "--scope", "admin"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return created.stdout.strip().splitlines()[-1]


def _post_webhook(url: str, cycle: int, deal_ids: list[str]) -> None:
    body = json.dumps(
        {
            "events": [
                {
                    "id": f"c{cycle}-{deal_id}",
                    "deal_id": deal_id,
                    "kind": "stage_change",
                    "occurred_at": "2026-12-03T08:00:00Z",
                }
                for deal_id in deal_ids
            ]
        }
    ).encode()
    headers = {
        **sign_fake_webhook(body, WEBHOOK_SECRET, int(time.time())),
        "content-type": "application/json",
    }
    try:
        answer = httpx.post(url, content=body, headers=headers, timeout=10)
    except httpx.TransportError:
        # The process died before its answer left (``after_inbox_insert``, or a worker
        # thread quicker than the reply). The CRM would deliver again; the test does
        # not, so what recovers is what the inbox holds.
        return
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("point", list(POINTS))
def test_a_process_killed_at_each_point_loses_and_duplicates_no_note(
    serve: Serve,
    db_settings: Settings,
    tmp_path: Path,
    point: str,
    reliability: list[Trial],
) -> None:
    if not FULL and db_settings.resolved_database_url.startswith("postgresql"):
        pytest.skip("the reduced run kills the embedded default (SQLite); make reliability both")
    cycles = scale(ci=1, full=20)
    serve.start()
    key = _admin_key(serve.env)
    auth = {"Authorization": f"Bearer {key}"}
    crm = FakeCrm(tmp_path / "crm.db", account_id="acct-crash")
    created = httpx.post(
        f"{serve.base}/api/v1/connections",
        headers=auth,
        json={
            "provider": "fake",
            "name": "Crash test",
            "external_account_id": "acct-crash",
            "instance_url": crm.instance_url,
            "credentials": crm.credentials(),
            "webhook_secret": WEBHOOK_SECRET,
            "settings": {"sync_interval_minutes": 1440},
        },
        timeout=10,
    )
    assert created.status_code == 201, created.text
    webhook_url = created.json()["webhook_urls"]["webhook"]
    connection_url = f"{serve.base}/api/v1/connections/{created.json()['id']}"
    # The first sync now, on an empty CRM: the reconciler starts no other one during the
    # cycles (the interval is a day), so only the webhooks bring the deals in.
    synced = httpx.post(f"{connection_url}/sync", headers=auth, timeout=10)
    assert synced.status_code == 202, synced.text
    deadline = time.monotonic() + 30
    while httpx.get(connection_url, headers=auth, timeout=10).json()["last_synced_at"] is None:
        assert time.monotonic() < deadline, serve.tail()
        time.sleep(0.2)
    serve.stop()

    recoveries: list[float] = []
    all_deals: list[str] = []
    for cycle in range(cycles):
        deal_ids = [f"D{cycle * 100 + k + 1}" for k in range(DEALS_PER_WEBHOOK)]
        for index, deal_id in enumerate(deal_ids, start=1):
            # Past its close date: every deal has a question, so every deal gets a note.
            crm.put_deal(replace(sample_deal(deal_id, index), close_date=date(2026, 10, 1)))
        all_deals += deal_ids
        serve.start(POINTS[point])
        _post_webhook(webhook_url, cycle, deal_ids)
        assert serve.wait_killed(60) == -signal.SIGKILL, serve.tail()
        restarted = time.monotonic()
        serve.start()
        deadline = restarted + 180  # a lost job's doorbell is rung again after 60 s
        while True:
            states = [
                item["state"]
                for item in httpx.get(
                    f"{serve.base}/api/v1/writebacks",
                    params={"limit": 200},
                    headers=auth,
                    timeout=10,
                ).json()["items"]
            ]
            noted = {deal_id for deal_id in deal_ids if crm.notes_on(deal_id)}
            if noted == set(deal_ids) and states and set(states) == {"written"}:
                break
            assert time.monotonic() < deadline, (
                f"cycle {cycle}: {sorted(noted)} noted, write-backs {states}\n{serve.tail()}"
            )
            time.sleep(0.2)
        recoveries.append(time.monotonic() - restarted)
        serve.stop()

    counts = {deal_id: len(crm.notes_on(deal_id)) for deal_id in all_deals}
    assert counts == dict.fromkeys(all_deals, 1), "every deal noted exactly once"
    reliability.append(
        Trial(
            f"crash {point}",
            f"`dealcoach serve` SIGKILLed {point} ({POINTS[point]}), {cycles} times, "
            f"{DEALS_PER_WEBHOOK} deals a webhook, then restarted",
            f"{len(all_deals)} deals, {sum(counts.values())} notes: 0 lost, 0 duplicates",
            {
                "kills": cycles,
                "recovery_s_max": round(max(recoveries), 1),
                "recovery_s_median": round(sorted(recoveries)[len(recoveries) // 2], 1),
            },
        )
    )
