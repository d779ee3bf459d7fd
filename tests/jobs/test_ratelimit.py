"""The per-connection limiter, shared across processes through the queue's backend.

A second Huey instance on the same backend (its own connections) stands in for
another process.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from huey.api import Huey

from app import ratelimit
from app.config import Settings
from app.jobs import configure_queue, make_huey
from app.ratelimit import ConnectionLimiter


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def other(queue_settings: Settings, queue_name: str, queue: Huey) -> Iterator[Huey]:
    """Another instance on the same backend and queue name: another process's view."""
    huey = make_huey(queue_settings, name=queue_name)
    try:
        yield huey
    finally:
        huey.storage.close()


def test_pause_keeps_the_later_deadline(queue: Huey) -> None:
    clock = Clock()
    limiter = ConnectionLimiter(queue, clock)
    assert limiter.paused_for("c1") == 0.0
    assert limiter.pause("c1", 100) == pytest.approx(100)
    assert limiter.pause("c1", 10) == pytest.approx(100)  # a shorter Retry-After never shortens
    assert limiter.pause("c1", 250) == pytest.approx(250)
    assert limiter.pause("c1", 0) == pytest.approx(250)
    clock.now += 200
    assert limiter.paused_for("c1") == pytest.approx(50)
    clock.now += 60
    assert limiter.paused_for("c1") == 0.0
    assert limiter.pause("c1", 5) == pytest.approx(5)  # an expired pause is replaced
    assert limiter.paused_for("c2") == 0.0  # per connection


def test_a_pause_is_seen_and_honoured_by_another_process(queue: Huey, other: Huey) -> None:
    clock = Clock()
    here, there = ConnectionLimiter(queue, clock), ConnectionLimiter(other, clock)
    here.pause("conn", 30)
    assert there.paused_for("conn") == pytest.approx(30)
    assert there.pause("conn", 10) == pytest.approx(30)
    there.pause("conn", 90)
    assert here.paused_for("conn") == pytest.approx(90)
    assert there.acquire("conn", 10, 60) == pytest.approx(90)  # paused, whatever the window


def test_concurrent_pauses_from_two_processes_keep_the_latest(queue: Huey, other: Huey) -> None:
    """Rounds of simultaneous pauses: in each, the longest must win over every shorter one."""
    clock = Clock()
    limiters = [ConnectionLimiter(queue, clock), ConnectionLimiter(other, clock)]
    workers, rounds = 6, 15
    rng = random.Random(7)
    plan = [[r * 100 + rng.uniform(0, 99) for r in range(rounds)] for _ in range(workers)]
    barrier = threading.Barrier(workers)
    lost: list[tuple[int, float, float]] = []

    def pause_all(index: int) -> None:
        for r, seconds in enumerate(plan[index]):
            barrier.wait()  # everyone pauses at once
            limiters[index % 2].pause("busy", seconds)
            barrier.wait()  # then the round's longest pause must be the one stored
            longest = max(plan[i][r] for i in range(workers))
            left = limiters[index % 2].paused_for("busy")
            if left != pytest.approx(longest):
                lost.append((r, longest, left))

    threads = [threading.Thread(target=pause_all, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert lost == []


def test_acquire_admits_limit_calls_per_window_across_processes(queue: Huey, other: Huey) -> None:
    clock = Clock(1_000_000.0)  # a window boundary for per=10
    here, there = ConnectionLimiter(queue, clock), ConnectionLimiter(other, clock)
    assert here.acquire("c", 3, 10) == 0.0
    assert there.acquire("c", 3, 10) == 0.0
    clock.now += 4
    assert here.acquire("c", 3, 10) == 0.0
    assert there.acquire("c", 3, 10) == pytest.approx(6)  # wait for the next window
    assert here.acquire("c", 3, 10) == pytest.approx(6)
    assert there.acquire("other", 3, 10) == 0.0  # per connection
    clock.now += 6
    assert there.acquire("c", 3, 10) == 0.0  # a new window
    assert here.acquire("c", 3, 60) == 0.0  # another window length is another limit


def test_concurrent_acquires_admit_exactly_the_limit(queue: Huey, other: Huey) -> None:
    clock = Clock()
    limiters = [ConnectionLimiter(queue, clock), ConnectionLimiter(other, clock)]
    admitted: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def hammer(index: int) -> None:
        barrier.wait()
        count = sum(limiters[index % 2].acquire("hot", 25, 60) == 0.0 for _ in range(10))
        with lock:
            admitted.append(count)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(admitted) == 25


def test_the_previous_window_counter_is_cleaned_up(queue: Huey) -> None:
    clock = Clock(1_000_000.0)
    limiter = ConnectionLimiter(queue, clock)
    limiter.acquire("c", 1, 10)
    clock.now += 10
    limiter.acquire("c", 1, 10)
    old = "dealcoach.window.c.10.99999"
    assert queue.storage.incr(old, 0) == 0  # deleted, so it reads as zero


def test_module_functions_use_the_current_queue(tmp_path: Path) -> None:
    configure_queue(Settings(data_dir=tmp_path))
    assert ratelimit.paused_for("m") == 0.0
    assert ratelimit.pause("m", 60) == pytest.approx(60, abs=1)
    assert ratelimit.paused_for("m") == pytest.approx(60, abs=1)
    assert ratelimit.acquire("m", 1, 60) == pytest.approx(60, abs=1)
    assert ratelimit.acquire("n", 1, 3600) == 0.0
    assert 0 < ratelimit.acquire("n", 1, 3600) <= 3600


def test_the_in_memory_queue_of_immediate_mode_works_too(tmp_path: Path) -> None:
    huey = configure_queue(Settings(data_dir=tmp_path), immediate=True)
    limiter = ConnectionLimiter(huey, Clock())
    limiter.pause("x", 20)
    assert limiter.pause("x", 5) == pytest.approx(20)
    assert [limiter.acquire("x", 1, 10) for _ in range(1)] == [pytest.approx(20)]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda lim: lim.pause("c", -1), "pause seconds"),
        (lambda lim: lim.pause("c", float("inf")), "pause seconds"),
        (lambda lim: lim.acquire("c", 0, 10), "limit"),
        (lambda lim: lim.acquire("c", 1, 0), "per_seconds"),
    ],
)
def test_nonsense_arguments_are_refused(tmp_path: Path, call: object, message: str) -> None:
    limiter = ConnectionLimiter(configure_queue(Settings(data_dir=tmp_path), immediate=True))
    with pytest.raises(ValueError, match=message):
        call(limiter)  # type: ignore[operator]
