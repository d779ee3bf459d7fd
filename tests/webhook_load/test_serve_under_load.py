"""The webhook path of a real ``dealcoach serve`` on the embedded default (SQLite database
and queue, worker threads inside serve), under load, at CI scale.

The benchmark (``app/bench_webhooks.py``, ``make bench``) runs the same harness at full
scale; these tests keep its behaviour: nothing refused, nothing lost, no lock error,
the accept time independent of what waits, and work resumed after a ``kill -9``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import closing
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from app.bench_webhooks import SOAP_HEADERS, ServeHarness, accept_time, burst, fill


@pytest.fixture(scope="module")
def harness() -> Iterator[ServeHarness]:
    with ServeHarness(opportunities=60, worker_threads=2) as running:
        yield running


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _query(harness: ServeHarness, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"file:{harness.database}?mode=ro", uri=True)) as db:
        db.execute("PRAGMA busy_timeout = 10000")
        return list(db.execute(sql, params).fetchall())


def test_a_burst_of_outbound_messages_is_all_acknowledged_stored_and_reviewed(
    harness: ServeHarness,
) -> None:
    figures = burst(harness, senders=16, messages=80, per_message=10, timeout=30)

    assert figures["refused"] == 0, figures
    assert figures["statuses"] == {"200": 80}, figures
    assert figures["lost"] == 0, figures
    assert harness.stored() >= 800
    _wait(lambda: harness.stored("received") == 0, 180, "the worker to review every event")
    assert harness.stored("failed") == 0
    log = harness.log_text()
    assert "database is locked" not in log
    assert "Traceback" not in log


def test_a_redelivered_burst_stores_nothing_new(harness: ServeHarness) -> None:
    body, _count = harness.outbound_message(10)
    stored = harness.stored()
    with httpx.Client(timeout=30, trust_env=False) as client:
        answers = [
            client.post(harness.outbound_url, content=body, headers=SOAP_HEADERS).status_code
            for _ in range(5)
        ]
    assert answers == [200] * 5
    assert harness.stored() == stored + 10


def test_over_limit_deliveries_get_a_clear_4xx(harness: ServeHarness) -> None:
    full, _count = harness.outbound_message(100)
    extra, _one = harness.outbound_message(1)
    notification = extra[extra.index(b"<Notification>") : extra.index(b"</notifications>")]
    too_many = full.replace(b"</notifications>", notification + b"</notifications>")
    with httpx.Client(timeout=30, trust_env=False) as client:
        refused = client.post(harness.outbound_url, content=too_many, headers=SOAP_HEADERS)
        huge = client.post(
            harness.outbound_url, content=b"<a>" + b"x" * (2 << 20) + b"</a>", headers=SOAP_HEADERS
        )
    assert refused.status_code == 400 and "100 notifications" in refused.json()["detail"]
    assert huge.status_code == 413, huge.text


def test_accept_time_with_thousands_waiting_stays_within_a_small_factor_of_none(
    harness: ServeHarness,
) -> None:
    """The connection is paused, so events pile up; the accept time of a 100-event
    delivery must not grow with them (it grew 60-fold with 8,000 waiting before)."""
    harness.pause()
    try:
        empty = accept_time(harness, events=100, repeats=5)
        fill(harness, 3000)
        assert harness.stored("received") >= 3000
        full = accept_time(harness, events=100, repeats=5)
    finally:
        harness.resume()
    assert full < 4 * empty + 0.05, f"{full:.3f} s with 3,000 waiting vs {empty:.3f} s with none"
    # Resumed: the waiting events drain (grouped per deal: one review per deal at a time).
    _wait(lambda: harness.stored("received") == 0, 240, "the waiting events to drain")
    assert "database is locked" not in harness.log_text()


def test_kill_9_with_a_note_claim_held_then_the_restarted_serve_resumes_within_a_minute(
    harness: ServeHarness,
) -> None:
    """The CRM wrote the note, the answer never reached the service (killed meanwhile):
    the restarted service takes the dead process's claim over at once (no 15-minute
    lease), finds the note by its marker and records it; one note in the org."""
    emulator = harness.emulator
    original = emulator.handle
    held = threading.Event()
    release = threading.Event()

    def handle(method: str, target: str, headers: Mapping[str, str], body: bytes) -> Any:
        answer = original(method, target, headers, body)
        if method == "POST" and urlsplit(target).path.endswith("/composite"):
            held.set()
            release.wait(60)  # done in the org; the answer hangs until the kill
        return answer

    emulator.handle = handle  # type: ignore[method-assign]
    try:
        # The review has not seen this stage yet: a new note is due.
        opportunity = harness.opportunity_ids[7]
        current = emulator.org.lookup(opportunity)
        assert current is not None
        stage = "Negotiation/Review"
        if current[1].get("StageName") == stage:
            stage = "Proposal/Price Quote"
        emulator.update("Opportunity", opportunity, {"StageName": stage})
        message, _count = harness.outbound_message(1, [opportunity])
        with httpx.Client(timeout=30, trust_env=False) as client:
            sent = client.post(harness.outbound_url, content=message, headers=SOAP_HEADERS)
        assert sent.status_code == 200
        assert held.wait(90), "the note batch reached the org"
        claimed = _query(
            harness,
            "SELECT id, marker FROM writebacks WHERE claimed_until IS NOT NULL "
            "AND claimed_by IS NOT NULL AND state IN ('pending', 'failed')",
        )
        assert claimed, "the batch's rows are claimed by the running service"
        harness.kill()
    finally:
        emulator.handle = original  # type: ignore[method-assign]
        release.set()

    killed_at = time.monotonic()
    harness.start_service()
    ids = [row[0] for row in claimed]
    marks = ",".join("?" for _ in ids)

    def recorded() -> bool:
        rows = _query(harness, f"SELECT state FROM writebacks WHERE id IN ({marks})", *ids)
        return all(state == "written" for (state,) in rows)

    _wait(recorded, 60, "the claimed write-backs to be recorded after the restart")
    assert time.monotonic() - killed_at < 60
    for _row_id, marker in claimed:
        notes = [
            record
            for record in emulator.records("ContentNote")
            if str(record.get("Title", "")).endswith(f"[{marker}]")
        ]
        assert len(notes) == 1, "the note the org holds, recorded, not written again"
