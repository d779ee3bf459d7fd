"""The webhook benchmark: one real ``dealcoach serve`` on the embedded default, under load.

``dealcoach bench --webhooks`` (``make bench``) runs it and records the figures in
``bench/results.json`` (key ``webhook``) and ``docs/benchmarks.md``. The same
harness (:class:`ServeHarness`) runs the load test at a smaller scale in CI
(``tests/pipeline/test_webhook_load.py``).

What runs: the Salesforce emulator (TLS, in this process) seeded with
opportunities; ``dealcoach db upgrade``, ``dealcoach apikey create`` and
``dealcoach serve`` (SQLite database and queue, worker threads inside serve)
as an operator would start them; a connection created through the admin API.

What is measured, per CRM (Salesforce Outbound Messages now; see
:data:`CRM_SENDERS` for the hook the HubSpot route adds):

- **burst**: ``senders`` concurrent senders post ``messages`` Outbound Messages
  of ``per_message`` notifications while the worker reviews and writes notes:
  refused (any answer but 200, or none within the timeout), lost (acknowledged
  events not stored), events/s, ack latency p50/p99. ``closed`` senders post as
  fast as answers come (the capacity); ``paced`` senders post at a fixed total
  rate (the latency at that load; a CRM does not wait for one answer before
  sending the next change).
- **growth**: the accept time of a 100-event delivery with nothing waiting, and
  with ``waiting`` events waiting (connection paused), median of ``repeats``.
- **drain**: the connection resumes; events/s until nothing waits.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from integrations.salesforce.emulator.outbound import build_envelope
from integrations.salesforce.emulator.server import SalesforceEmulator

READY_TIMEOUT = 60.0
SOAP_HEADERS = {
    "Content-Type": "text/xml; charset=utf-8",
    "SOAPAction": '""',
    "User-Agent": "Jakarta Commons-HttpClient/3.1",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dealcoach() -> list[str]:
    script = Path(sys.executable).parent / "dealcoach"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main())"]


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used so far; None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], share: float) -> float:
    """The ``share`` percentile (nearest rank) of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
    return ordered[rank]


class ServeHarness:
    """The Salesforce emulator and one ``dealcoach serve`` on SQLite files in ``data_dir``."""

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        opportunities: int = 200,
        worker_threads: int = 2,
        env: dict[str, str] | None = None,
    ) -> None:
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="dealcoach-bench-")
        self.data_dir = Path(data_dir or self._tmp.name)  # type: ignore[union-attr]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.opportunities = opportunities
        self.worker_threads = worker_threads
        self.extra_env = env or {}
        self.emulator = SalesforceEmulator(seed=5)
        self.service: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.key = ""
        self.connection_id = ""
        self.outbound_url = ""
        self.opportunity_ids: list[str] = []
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()
        self._env: dict[str, str] = {}

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> ServeHarness:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def database(self) -> Path:
        return self.data_dir / "dealcoach.db"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "serve.log"

    def start(self) -> None:
        self.opportunity_ids = self.emulator.seed(self.opportunities)
        base = self.emulator.start()
        assert self.emulator.cert_path is not None
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEALCOACH_")}
        env.update(
            {
                "DEALCOACH_DATA_DIR": str(self.data_dir),
                "DEALCOACH_DATABASE_URL": f"sqlite:///{self.database}",
                "DEALCOACH_QUEUE_URL": f"sqlite:///{self.data_dir / 'queue.db'}",
                "DEALCOACH_DEV_MODE": "true",
                "DEALCOACH_PUBLIC_URL": self.url,
                "DEALCOACH_WORKER_THREADS": str(self.worker_threads),
                "DEALCOACH_CRM_CA_BUNDLE": str(self.emulator.cert_path),
                "DEALCOACH_SALESFORCE_LOGIN_URL": base,
                "DEALCOACH_SALESFORCE_CLIENT_ID": self.emulator.CLIENT_ID,
                "DEALCOACH_SALESFORCE_CLIENT_SECRET": self.emulator.CLIENT_SECRET,
                "DEALCOACH_LOG_LEVEL": "INFO",
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
            }
        )
        env.update(self.extra_env)
        self._env = env
        self._run("db", "upgrade")
        self.key = self._run("apikey", "create", "--name", "bench", "--scope", "admin")
        self.key = self.key.strip().splitlines()[-1]
        self.start_service()
        body = {
            "provider": "salesforce",
            "name": "Bench org",
            "external_account_id": self.emulator.org.org_id,
            "instance_url": base,
            "credentials": {
                "auth": "oauth",
                "access_token": self.emulator.issue_token(),
                "refresh_token": self.emulator.issue_refresh_token(),
                "instance_url": base,
            },
            "webhook_secret": secrets.token_urlsafe(24),
            "settings": {"sync_interval_minutes": 1440},
        }
        created = self.api("POST", "/api/v1/connections", json=body)
        self.connection_id = str(created["id"])
        self.outbound_url = str(created["webhook_urls"]["outbound_message"])

    def _run(self, *args: str) -> str:
        done = subprocess.run(  # noqa: S603 - our own command line
            [*_dealcoach(), *args],
            env=self._env,
            cwd=self.data_dir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"dealcoach {' '.join(args)}: {done.stderr.strip()[-500:]}")
        return done.stdout

    def start_service(self) -> None:
        """Start ``dealcoach serve`` (again, after :meth:`kill`) and wait until it is ready."""
        port = self.url.rsplit(":", 1)[1]
        log = self.log_path.open("ab")
        self.service = subprocess.Popen(  # noqa: S603 - our own command line
            [*_dealcoach(), "serve", "--host", "127.0.0.1", "--port", port],
            env=self._env,
            cwd=self.data_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT
        with httpx.Client(timeout=2.0, trust_env=False) as probe:
            while True:
                if self.service.poll() is not None:
                    raise RuntimeError(f"dealcoach serve exited: {self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if probe.get(f"{self.url}/readyz").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError("dealcoach serve did not get ready")
                time.sleep(0.2)

    def kill(self) -> None:
        """``kill -9`` the service."""
        if self.service is not None and self.service.poll() is None:
            os.kill(self.service.pid, signal.SIGKILL)
            self.service.wait(10)

    def close(self) -> None:
        service, self.service = self.service, None
        if service is not None and service.poll() is None:
            service.send_signal(signal.SIGTERM)
            try:
                service.wait(30)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait(10)
        with contextlib.suppress(Exception):
            self.emulator.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # ---------------------------------------------------------------- talking to it

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        with httpx.Client(timeout=30.0, trust_env=False) as client:
            response = client.request(
                method,
                f"{self.url}{path}",
                headers={"Authorization": f"Bearer {self.key}"},
                **kwargs,
            )
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    def pause(self) -> None:
        self.api("POST", f"/api/v1/connections/{self.connection_id}/pause")

    def resume(self) -> None:
        self.api("POST", f"/api/v1/connections/{self.connection_id}/resume")

    def outbound_message(
        self, count: int, opportunities: Sequence[str] | None = None
    ) -> tuple[bytes, int]:
        """An Outbound Message of ``count`` notifications (new notification ids; about
        ``opportunities`` or the seeded ones in turn); the body and its event count."""
        with self._ids_lock:
            numbers = [next(self._ids) for _ in range(count)]
        org = self.emulator.org
        about = list(opportunities or self.opportunity_ids)
        notifications = []
        for number in numbers:
            opportunity = about[number % len(about)]
            found = org.lookup(opportunity)
            assert found is not None
            notifications.append((f"04lBENCH{number:010d}", dict(found[1])))
        base = self.emulator.base_url
        envelope = build_envelope(
            organization_id=org.org_id,
            action_id=self.emulator.action_id,
            session_id=None,
            enterprise_url=f"{base}/services/Soap/c/59.0/{org.org_id[:15]}",
            partner_url=f"{base}/services/Soap/u/59.0/{org.org_id[:15]}",
            sobject=org.schema["opportunity"],
            notifications=notifications,
            fields=self.emulator.outbound_fields,
        )
        return envelope.encode(), count

    def stored(self, status: str | None = None) -> int:
        """Inbox rows of the connection (optionally in one status), read from the file."""
        query = "SELECT count(*) FROM webhook_deliveries WHERE connection_id = ?"
        params: list[str] = [self.connection_id]
        if status is not None:
            query += " AND status = ?"
            params.append(status)
        with contextlib.closing(sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)) as db:
            db.execute("PRAGMA busy_timeout = 10000")
            return int(db.execute(query, params).fetchone()[0])


# -------------------------------------------------------------------- measurements


@dataclass
class Burst:
    sent_events: int = 0
    acked_events: int = 0
    refused: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0


def burst(
    harness: ServeHarness,
    *,
    senders: int,
    messages: int,
    per_message: int,
    events_per_s: float | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """``senders`` threads post ``messages`` Outbound Messages in all; closed loop, or paced
    to ``events_per_s`` in total. Refused: any answer but 200, or none in ``timeout``."""
    before = harness.stored()
    pid = harness.service.pid if harness.service is not None else None
    cpu_before = cpu_seconds(pid) if pid else None
    result = Burst()
    lock = threading.Lock()
    counter = itertools.count()
    bodies = [harness.outbound_message(per_message) for _ in range(messages)]
    interval = None if events_per_s is None else senders * per_message / events_per_s
    start = time.monotonic()

    def sender(number: int) -> None:
        next_at = start + (interval or 0) * number / senders
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            while True:
                index = next(counter)
                if index >= messages:
                    return
                if interval is not None:
                    pause = next_at - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    next_at += interval
                body, events = bodies[index]
                began = time.monotonic()
                try:
                    answer = client.post(harness.outbound_url, content=body, headers=SOAP_HEADERS)
                    status = str(answer.status_code)
                    ok = answer.status_code == 200 and b"<Ack>true</Ack>" in answer.content
                except httpx.HTTPError as exc:
                    status, ok = type(exc).__name__, False
                took = time.monotonic() - began
                with lock:
                    result.sent_events += events
                    result.statuses[status] = result.statuses.get(status, 0) + 1
                    result.latencies.append(took)
                    if ok:
                        result.acked_events += events
                    else:
                        result.refused += 1

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.monotonic() - start
    cpu_after = cpu_seconds(pid) if pid else None
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    stored = harness.stored() - before
    return {
        # The service's CPU time over the burst (request path, worker and all), and the
        # events it stored per CPU-second: the capacity of one free core, whatever else
        # the machine was doing meanwhile.
        "server_cpu_s": None if cpu is None else round(cpu, 2),
        "events_per_server_cpu_s": round(result.acked_events / cpu) if cpu else None,
        "senders": senders,
        "messages": messages,
        "notifications_per_message": per_message,
        "mode": "closed" if events_per_s is None else f"paced {events_per_s:.0f} events/s",
        "seconds": round(result.seconds, 2),
        "refused": result.refused,
        "statuses": result.statuses,
        "lost": max(0, result.acked_events - stored),
        "events_per_s": round(result.acked_events / result.seconds, 1) if result.seconds else 0,
        "ack_p50_ms": round(percentile(result.latencies, 0.50) * 1000, 1),
        "ack_p99_ms": round(percentile(result.latencies, 0.99) * 1000, 1),
        "ack_max_ms": round(max(result.latencies, default=0) * 1000, 1),
    }


def accept_time(harness: ServeHarness, events: int = 100, repeats: int = 5) -> float:
    """Median seconds to accept one delivery of ``events`` events."""
    times = []
    with httpx.Client(timeout=60.0, trust_env=False) as client:
        for _ in range(repeats):
            body, _count = harness.outbound_message(events)
            began = time.monotonic()
            answer = client.post(harness.outbound_url, content=body, headers=SOAP_HEADERS)
            times.append(time.monotonic() - began)
            if answer.status_code != 200:
                raise RuntimeError(f"delivery refused: {answer.status_code} {answer.text[:200]}")
    return statistics.median(times)


def fill(harness: ServeHarness, events: int, senders: int = 8) -> None:
    """Post ``events`` events in deliveries of 100 (the connection is paused: they wait)."""
    burst(harness, senders=senders, messages=max(1, events // 100), per_message=100, timeout=60)


def growth(
    harness: ServeHarness, waiting: int, repeats: int = 5, events: int = 100
) -> dict[str, Any]:
    """Accept time of a delivery with nothing waiting vs ``waiting`` events waiting."""
    harness.pause()
    empty = accept_time(harness, events, repeats)
    fill(harness, waiting)
    waiting_now = harness.stored("received")
    full = accept_time(harness, events, repeats)
    return {
        "delivery_events": events,
        "waiting": waiting_now,
        "accept_ms_none_waiting": round(empty * 1000, 1),
        "accept_ms_waiting": round(full * 1000, 1),
        "ratio": round(full / empty, 2) if empty else None,
    }


def settle(harness: ServeHarness, timeout: float = 900.0) -> dict[str, Any]:
    """Wait until the worker has reviewed every event waiting (the connection active)."""
    waiting = harness.stored("received")
    began = time.monotonic()
    while harness.stored("received") > 0 and time.monotonic() - began < timeout:
        time.sleep(0.5)
    seconds = time.monotonic() - began
    return {"waiting": waiting, "left": harness.stored("received"), "seconds": round(seconds, 1)}


def drain(harness: ServeHarness, timeout: float = 600.0) -> dict[str, Any]:
    """Resume the connection; events/s until nothing waits."""
    waiting = harness.stored("received")
    began = time.monotonic()
    harness.resume()
    while harness.stored("received") > 0:
        if time.monotonic() - began > timeout:
            break
        time.sleep(0.25)
    seconds = time.monotonic() - began
    left = harness.stored("received")
    return {
        "waiting": waiting,
        "left": left,
        "deals": len(harness.opportunity_ids),
        "seconds": round(seconds, 2),
        "events_per_s": round((waiting - left) / seconds, 1) if seconds else 0,
    }


#: Per CRM: how the benchmark talks to its webhook route. Salesforce Outbound Messages
#: now; the HubSpot route adds ``"hubspot"`` here (a harness method that builds a signed
#: 100-event batch and its URL), and :func:`run_webhook_bench` measures it the same way.
CRM_SENDERS: dict[str, Callable[[ServeHarness, int], tuple[bytes, int]]] = {
    "salesforce": ServeHarness.outbound_message,
}


def run_webhook_bench(
    *,
    senders: int = 40,
    messages: int = 600,
    per_message: int = 10,
    paced_events_per_s: float = 1000.0,
    waiting: int = 8000,
    opportunities: int = 300,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The figures of ``dealcoach bench --webhooks`` (Salesforce, the embedded default)."""
    figures: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": "sqlite",
        "queue": "sqlite (embedded worker)",
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    with ServeHarness(opportunities=opportunities) as harness:
        echo("webhook bench: closed-loop burst")
        closed = burst(harness, senders=senders, messages=messages, per_message=per_message)
        echo(f"  {closed}")
        echo(f"webhook bench: paced burst at {paced_events_per_s:.0f} events/s")
        paced = burst(
            harness,
            senders=senders,
            messages=messages,
            per_message=per_message,
            events_per_s=paced_events_per_s,
        )
        echo(f"  {paced}")
        echo("webhook bench: waiting for the worker to review the bursts")
        settled = settle(harness)
        echo(f"  {settled}")
        echo(f"webhook bench: accept time with {waiting} waiting")
        grown = growth(harness, waiting)
        echo(f"  {grown}")
        echo("webhook bench: drain")
        drained = drain(harness)
        echo(f"  {drained}")
        locked = harness.log_text().count("database is locked")
    salesforce = {
        "closed": closed,
        "paced": paced,
        "growth": grown,
        "drain": drained,
        "bursts_reviewed": settled,
        "database_is_locked_lines": locked,
        "ingest_events_per_s": closed["events_per_s"],
        "ack_p99_ms": paced["ack_p99_ms"],
    }
    figures["salesforce"] = salesforce
    figures["ingest_events_per_s"] = salesforce["ingest_events_per_s"]
    figures["ack_p99_ms"] = salesforce["ack_p99_ms"]
    return figures


def webhook_rows(figures: dict[str, Any]) -> list[str]:
    """The markdown rows of ``docs/benchmarks.md`` for these figures."""
    rows = [
        f"Measured {figures['measured_at']} on {figures['cpus']} CPUs, Python "
        f"{figures['python']}: one `dealcoach serve`, SQLite database and queue, its "
        "embedded worker reviewing and writing notes to the Salesforce emulator meanwhile.",
        "",
        "| CRM | run | refused | lost | events/s | ack p50 ms | ack p99 ms | ack max ms "
        "| events per service CPU-second |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for crm in ("salesforce", "hubspot"):
        data = figures.get(crm)
        if not isinstance(data, dict):
            continue
        for run in ("closed", "paced"):
            b = data[run]
            rows.append(
                f"| {crm} | {b['senders']} senders x {b['messages']} messages of "
                f"{b['notifications_per_message']}, {b['mode']} | {b['refused']} | {b['lost']} "
                f"| {b['events_per_s']} | {b['ack_p50_ms']} | {b['ack_p99_ms']} "
                f"| {b['ack_max_ms']} | {b.get('events_per_server_cpu_s')} |"
            )
    rows.append("")
    rows.append(
        "| CRM | accept 100 events, none waiting | with N waiting | N | ratio "
        "| drain events/s | `database is locked` lines |"
    )
    rows.append("|---|---|---|---|---|---|---|")
    for crm in ("salesforce", "hubspot"):
        data = figures.get(crm)
        if not isinstance(data, dict):
            continue
        g, d = data["growth"], data["drain"]
        rows.append(
            f"| {crm} | {g['accept_ms_none_waiting']} ms | {g['accept_ms_waiting']} ms "
            f"| {g['waiting']} | {g['ratio']} | {d['events_per_s']} ({d['waiting']} events, "
            f"{d['deals']} deals, {d['seconds']} s) | {data['database_is_locked_lines']} |"
        )
    return rows


@contextlib.contextmanager
def harness(**kwargs: Any) -> Iterator[ServeHarness]:
    """A started :class:`ServeHarness` (tests)."""
    with ServeHarness(**kwargs) as running:
        yield running
