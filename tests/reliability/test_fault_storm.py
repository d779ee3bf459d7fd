"""A fault storm: for a while the Salesforce emulator answers 30% of API calls with
``REQUEST_LIMIT_EXCEEDED`` (with ``Retry-After``), a 503, an answer slower than the
client's read timeout, or an expired session.

The service syncs and writes back through it, rung every half second the way the
reconciler rings it every minute (timings scaled down: backoffs and default retry
delays are a thirtieth of the real ones, the read timeout one second). Afterwards
every note is written exactly once (counted in the org), no write-back is dead, the
calls after a ``Retry-After`` waited for it, and no second saw more calls than the
service's worker threads can make.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from app.config import Settings
from app.connections.models import Connection
from app.db import session_scope
from app.reviews.models import Review
from app.sync.tasks import sync_connection_task
from app.writeback.models import WriteBackState, WriteBackTarget
from app.writeback.tasks import send_writebacks
from integrations.salesforce.emulator import DEFAULT_STAGES
from tests.pipeline.conftest import Service, running_service
from tests.salesforce_service.conftest import (
    ServiceEmulator,
    connect,
    marker_of,
    salesforce_settings,
)

from .conftest import Trial, scale

RETRY_AFTER_S = 2
FAULTS = ("rate_limit", "server_error", "slow", "expired_session")


class StormEmulator(ServiceEmulator):
    """The emulator with a storm switch: while on, each API call has a 30% chance of
    one of :data:`FAULTS`. Every API call's arrival time is logged, and so is every
    ``Retry-After`` refusal."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._storm_lock = threading.Lock()
        self._rng = random.Random(20261203)
        self.storming = False
        self.arrivals: list[float] = []
        self.refusals: list[float] = []
        self.injected: dict[str, int] = dict.fromkeys(FAULTS, 0)

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Any:
        if urlsplit(target).path.startswith("/services/data/"):
            now = time.monotonic()
            with self._storm_lock:
                self.arrivals.append(now)
                fault = None
                if self.storming and self._rng.random() < 0.3:
                    fault = self._rng.choice(FAULTS)
                    self.injected[fault] += 1
            if fault == "rate_limit":
                self.inject_rate_limit(1)
                self.retry_after = str(RETRY_AFTER_S)
                with self._storm_lock:
                    self.refusals.append(now)
            elif fault == "server_error":
                self.inject_errors(1, 503)
            elif fault == "slow":
                self.set_delay(2.0, count=1)  # the client gives up after 1 s
            elif fault == "expired_session":
                self.expire_sessions()
        return super().handle(method, target, headers, body)


@pytest.fixture
def storm_emulator() -> Iterator[StormEmulator]:
    with StormEmulator(seed=23) as running:
        assert isinstance(running, StormEmulator)
        yield running


@pytest.fixture
def storm_service(
    db_settings: Settings,
    tmp_path: Path,
    storm_emulator: StormEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Service]:
    monkeypatch.setattr("app.writeback.service.BASE_BACKOFF_SECONDS", 1.0)
    monkeypatch.setattr("app.writeback.tasks.DEFAULT_RETRY_SECONDS", 1.0)
    monkeypatch.setattr("app.sync.tasks.DEFAULT_RETRY_SECONDS", 1.0)
    monkeypatch.setattr("integrations.salesforce.adapter.READ_TIMEOUT", 1.0)
    # Small note batches: more calls, so more of them meet the storm.
    settings = salesforce_settings(db_settings, tmp_path, storm_emulator, write_batch_size=5)
    with running_service(settings, tmp_path, monkeypatch) as svc:
        yield svc


def _move_stage(emulator: StormEmulator, opportunity_id: str) -> None:
    record = emulator.record(opportunity_id)
    assert record is not None
    stages = [stage.api_name for stage in DEFAULT_STAGES if not stage.is_closed]
    following = stages[(stages.index(record["StageName"]) + 1) % len(stages)]
    emulator.update("Opportunity", opportunity_id, {"StageName": following})


def _busiest_second(arrivals: list[float]) -> int:
    busiest, start = 0, 0
    for end, at in enumerate(arrivals):
        while at - arrivals[start] >= 1.0:
            start += 1
        busiest = max(busiest, end - start + 1)
    return busiest


def _calls_inside_retry_after(arrivals: list[float], refusals: list[float]) -> int:
    """Calls that arrived while a ``Retry-After`` was running, more than half a second
    after it was given (a call already on its way may still land just after)."""
    return sum(
        1 for at in arrivals if any(r + 0.5 < at < r + RETRY_AFTER_S - 0.1 for r in refusals)
    )


def test_after_a_fault_storm_every_note_is_written_exactly_once(
    storm_service: Service, storm_emulator: StormEmulator, reliability: list[Trial]
) -> None:
    service, emulator = storm_service, storm_emulator
    count = scale(ci=40, full=200)
    storm_seconds = scale(ci=6, full=30)
    least_faults = scale(ci=12, full=60)
    seeded = emulator.seed(count)
    org = connect(service, emulator)
    open_ids = org.open_opportunity_ids()
    assert len(open_ids) >= count // 2 and len(seeded) == count

    started = time.monotonic()
    emulator.storming = True
    storm_end = started + storm_seconds
    rings = 0
    rng = random.Random(7)

    def last_sync_finished_after_the_storm() -> bool:
        with session_scope(service.runtime.sessions) as session:
            connection = session.scalars(
                select(Connection).where(Connection.id == org.connection_id)
            ).one()
            state = connection.sync_watermark or {}
        return "running_until" not in state and time.monotonic() > storm_end

    deadline = started + storm_seconds + scale(ci=120, full=300)
    while True:
        if emulator.storming and time.monotonic() > storm_end:
            with emulator._storm_lock:
                emulator.storming = sum(emulator.injected.values()) < least_faults
            storm_end = time.monotonic()
        if emulator.storming:  # the sales team keeps working through the storm
            for deal_id in rng.sample(open_ids, 2):
                _move_stage(emulator, deal_id)
        # The reconciler's doorbells (it rings every minute; here every half second).
        sync_connection_task.call_local(org.connection_id)
        send_writebacks.call_local(org.connection_id)
        rings += 1
        reviewed = {review.deal_external_id for review in org.rows(Review)}
        rows = org.writebacks(WriteBackTarget.NOTE)
        if (
            not emulator.storming
            and reviewed >= set(open_ids)
            and rows
            and all(row.state == WriteBackState.WRITTEN for row in rows)
            and last_sync_finished_after_the_storm()
        ):
            break
        unsettled = [
            (row.state.value, row.attempts, row.last_error)
            for row in rows
            if row.state != WriteBackState.WRITTEN
        ]
        assert time.monotonic() < deadline, (
            f"not settled: {len(reviewed)}/{len(open_ids)} reviewed, {unsettled}"
        )
        time.sleep(0.5)
    settle_s = time.monotonic() - storm_end
    stormed_s = storm_end - started

    rows = org.writebacks(WriteBackTarget.NOTE)
    assert not [row for row in rows if row.state != WriteBackState.WRITTEN]
    noted: dict[str, list[str]] = {}
    for row in rows:
        noted.setdefault(row.deal_external_id, []).append(row.marker)
    for deal_id in open_ids:
        markers = sorted(marker_of(note) for note in org.notes_on(deal_id))
        assert markers == sorted(noted.get(deal_id, [])), f"{deal_id}: exactly once each"
    assert org.live_note_count() == len(rows)
    with emulator._storm_lock:
        arrivals, refusals = sorted(emulator.arrivals), list(emulator.refusals)
        injected = dict(emulator.injected)
    assert sum(injected.values()) >= least_faults, f"the storm hit: {injected}"
    early = _calls_inside_retry_after(arrivals, refusals)
    busiest = _busiest_second(arrivals)
    # A sync already running may finish the call it was making when another worker's call
    # was refused: the pause is checked before each task and each limited call, not inside
    # a call already under way. More than that means the pause is not honoured.
    assert early <= 2, f"{early} calls went out while a Retry-After was running"
    assert busiest <= 60, f"{busiest} calls in one second: the connection was hammered"
    reliability.append(
        Trial(
            "fault storm",
            f"{stormed_s:.0f} s of 30% faults ({injected}) on {count} opportunities "
            "during sync and write-back",
            f"{len(rows)} notes, each written exactly once; 0 dead; {early} calls inside a "
            f"Retry-After (at most 2 in flight allowed); busiest second {busiest} calls",
            {
                "api_calls": len(arrivals),
                "settled_after_storm_s": round(settle_s, 1),
                "doorbells": rings,
            },
        )
    )
