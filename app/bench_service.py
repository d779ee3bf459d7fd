"""Service benchmarks: the real `dealcoach serve` (embedded default) against the
Salesforce emulator, measured from outside as an operator would.

- ``e2e``: a stage change in the org to its coaching note stored in the org. The
  emulator's record-triggered Flow posts the Outbound Message; the time runs from the
  stage change (the message leaves at once) until the opportunity's new note is linked.
  Measured with the coalescing window at its default (5 s) and at 0.
- ``sync_scale``: a first sync of N opportunities (Bulk API 2.0 above 5,000), each
  reviewed and its note written, wall time and the service process's peak RSS
  (``VmHWM``), at two sizes side by side to show memory is flat in N.

Run by ``dealcoach bench --service`` (``make bench``); figures in bench/results.json
and docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from integrations.salesforce.emulator import DEFAULT_STAGES, SalesforceEmulator

DEFAULT_WINDOW_S = 5.0
_OPEN_STAGES = [stage.api_name for stage in DEFAULT_STAGES if not stage.is_closed]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class _Rig:
    """One emulator org and one `dealcoach serve` on a fresh data directory."""

    def __init__(self, workdir: Path, opportunities: int, window_s: float) -> None:
        self.workdir = workdir
        self.emulator = SalesforceEmulator(workdir / "salesforce", seed=5)
        self.emulator.seed(opportunities)
        self.emulator.start()
        assert self.emulator.cert_path is not None
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEALCOACH_")}
        env.update(
            {
                "DEALCOACH_DATA_DIR": str(workdir),
                "DEALCOACH_DATABASE_URL": f"sqlite:///{workdir / 'dealcoach.db'}",
                "DEALCOACH_QUEUE_URL": f"sqlite:///{workdir / 'queue.db'}",
                "DEALCOACH_DEV_MODE": "true",
                "DEALCOACH_PUBLIC_URL": self.url,
                "DEALCOACH_WEBHOOK_COALESCE_SECONDS": str(window_s),
                "DEALCOACH_CRM_CA_BUNDLE": str(self.emulator.cert_path),
                "DEALCOACH_SALESFORCE_LOGIN_URL": self.emulator.base_url,
                "DEALCOACH_SALESFORCE_CLIENT_ID": self.emulator.CLIENT_ID,
                "DEALCOACH_SALESFORCE_CLIENT_SECRET": self.emulator.CLIENT_SECRET,
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
            }
        )
        self.env = env
        self._dealcoach("db", "upgrade")
        self.log = (workdir / "serve.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own command line
            [self._bin(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=workdir,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    break
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dealcoach serve did not start (log: {workdir}/serve.log)")
            time.sleep(0.2)
        key = self._dealcoach("apikey", "create", "--name", "bench", "--scope", "admin")
        self.client = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key.strip().splitlines()[-1]}"},
            timeout=30,
        )
        created = self.client.post(
            "/api/v1/connections",
            json={
                "provider": "salesforce",
                "name": "Bench org",
                "external_account_id": self.emulator.org.org_id,
                "instance_url": self.emulator.base_url,
                "credentials": {
                    "auth": "oauth",
                    "access_token": self.emulator.issue_token(),
                    "refresh_token": self.emulator.issue_refresh_token(),
                    "instance_url": self.emulator.base_url,
                },
                "webhook_secret": secrets.token_urlsafe(24),
                "settings": {"sync_interval_minutes": 1440},
            },
        )
        if created.status_code != 201:
            raise RuntimeError(f"connection refused: {created.status_code} {created.text}")
        self.connection = created.json()
        self.connection_id = str(self.connection["id"])

    @staticmethod
    def _bin() -> str:
        return str(Path(sys.executable).with_name("dealcoach"))

    def _dealcoach(self, *args: str) -> str:
        done = subprocess.run(  # noqa: S603 - our own command line
            [self._bin(), *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    def _db(self, sql: str) -> int:
        with contextlib.closing(sqlite3.connect(self.workdir / "dealcoach.db", timeout=30)) as db:
            return int(db.execute(sql).fetchone()[0])

    def settled(self, opportunities: int) -> bool:
        """Every opportunity reviewed and no write-back left to send (read from the
        service's database file: paging the API over 100,000 deals every poll would
        load the service more than the sync does)."""
        reviewed = self._db("SELECT count(DISTINCT deal_external_id) FROM reviews")
        waiting = self._db(
            "SELECT count(*) FROM writebacks WHERE state NOT IN ('written', 'superseded', 'dead')"
        )
        return reviewed >= opportunities and waiting == 0

    def links_on(self, opportunity_id: str) -> int:
        prefix = opportunity_id[:15]
        return sum(
            1
            for link in self.emulator.records("ContentDocumentLink")
            if str(link.get("LinkedEntityId", ""))[:15] == prefix
        )

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
        return float("nan")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()
        self.emulator.stop()


@contextlib.contextmanager
def _rig(opportunities: int, window_s: float) -> Iterator[_Rig]:
    with tempfile.TemporaryDirectory(prefix="dealcoach-bench-") as folder:
        rig = _Rig(Path(folder), opportunities, window_s)
        try:
            yield rig
        finally:
            rig.close()


def _sync_and_settle(rig: _Rig, opportunities: int, timeout_s: float) -> float:
    started = time.monotonic()
    answer = rig.client.post(f"/api/v1/connections/{rig.connection_id}/sync")
    if answer.status_code != 202:
        raise RuntimeError(f"sync refused: {answer.status_code} {answer.text}")
    while not rig.settled(opportunities):
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"the sync of {opportunities} did not settle in {timeout_s} s")
        time.sleep(0.5)
    return time.monotonic() - started


def _stage_changes(rig: _Rig, changes: int) -> list[float]:
    """Change the stage of ``changes`` open opportunities one at a time (latency, not a
    burst: `dealcoach bench --webhooks` measures bursts): the seconds from each change
    until its new note is linked. A deal with nothing to ask gets no note: not counted."""
    emulator = rig.emulator
    emulator.configure_outbound(rig.connection["webhook_urls"]["outbound_message"])
    candidates = [r for r in emulator.records("Opportunity") if not r["IsClosed"]][:changes]
    latencies: list[float] = []
    for record in candidates:
        opportunity_id = record["Id"]
        before = rig.links_on(opportunity_id)
        stage = _OPEN_STAGES[(_OPEN_STAGES.index(record["StageName"]) + 1) % len(_OPEN_STAGES)]
        started = time.monotonic()
        emulator.update("Opportunity", opportunity_id, {"StageName": stage})
        deadline = started + 30 + DEFAULT_WINDOW_S
        while time.monotonic() < deadline:
            if rig.links_on(opportunity_id) > before:
                latencies.append(time.monotonic() - started)
                break
            time.sleep(0.02)
    emulator.configure_outbound(None)
    return latencies


def run_e2e_bench(changes: int = 12) -> dict[str, Any]:
    """Stage change to note, at the default coalescing window and at 0."""
    figures: dict[str, Any] = {"changes": changes}
    for label, window in (("window_default", DEFAULT_WINDOW_S), ("window_0", 0.0)):
        with _rig(60, window) as rig:
            _sync_and_settle(rig, 60, 300)
            latencies = _stage_changes(rig, changes)
        ms = [value * 1000 for value in latencies]
        figures[label] = {
            "window_s": window,
            "noted": len(ms),
            "stage_change_to_note_ms_p50": round(_percentile(ms, 0.5)) if ms else None,
            "stage_change_to_note_ms_p95": round(_percentile(ms, 0.95)) if ms else None,
            "beyond_window_ms_p95": round(_percentile(ms, 0.95) - window * 1000) if ms else None,
        }
    return {"e2e": figures}


def run_sync_scale_bench(sizes: tuple[int, ...] = (10_000, 100_000)) -> dict[str, Any]:
    """First sync, review and write-back of N opportunities; wall time and peak RSS."""
    figures: dict[str, Any] = {}
    for size in sizes:
        with _rig(size, DEFAULT_WINDOW_S) as rig:
            wall = _sync_and_settle(rig, size, timeout_s=3600)
            figures[f"n_{size}"] = {
                "opportunities": size,
                "wall_s": round(wall, 1),
                "peak_rss_mb": rig.peak_rss_mb(),
                "deals_per_s": round(size / wall),
            }
    return {"sync_scale": figures}
