"""The queue instance, task declaration, and a real consumer on every backend."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from huey import PostgresHuey, PriorityRedisHuey, SqliteHuey
from huey.api import Huey

from app.config import Settings
from app.jobs import (
    QueueTask,
    configure_queue,
    crontab,
    ensure_queue,
    get_huey,
    make_huey,
    periodic_task,
    start_embedded_consumer,
    task,
)
from tests.jobs import sample_tasks
from tests.jobs.conftest import wait_for

# --- make_huey -----------------------------------------------------------------------------


def test_the_default_queue_is_a_wal_sqlite_file_in_the_data_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "not" / "yet"
    huey = make_huey(Settings(data_dir=data_dir))
    assert isinstance(huey, SqliteHuey)
    assert (huey.name, huey.results, huey.utc) == ("dealcoach", False, True)
    huey.storage.queue_size()  # opens the connection, which sets WAL
    path = data_dir / "queue.db"
    assert path.exists()
    with sqlite3.connect(path) as connection:
        assert connection.execute("pragma journal_mode").fetchone()[0] == "wal"
    huey.storage.close()


def test_a_sqlite_queue_in_memory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="file path"):
        make_huey(Settings(data_dir=tmp_path, queue_url="sqlite:///:memory:"))


def test_redis_and_postgres_urls_choose_their_backends(tmp_path: Path) -> None:
    redis_huey = make_huey(Settings(data_dir=tmp_path, queue_url="redis://127.0.0.1:1/3"))
    assert isinstance(redis_huey, PriorityRedisHuey)  # a RedisHuey with priorities
    assert redis_huey.results is False
    assert redis_huey.storage.pool.connection_kwargs["db"] == 3


@pytest.mark.postgres
def test_the_postgres_dsn_loses_the_sqlalchemy_driver_suffix(postgres_queue_url: str) -> None:
    sqlalchemy_style = postgres_queue_url.replace("postgresql://", "postgresql+psycopg://", 1)
    settings = Settings(queue_url=postgres_queue_url)
    huey = make_huey(settings)
    assert isinstance(huey, PostgresHuey)
    assert huey.storage.dsn == postgres_queue_url
    from app.jobs import _libpq_dsn

    assert _libpq_dsn(sqlalchemy_style) == postgres_queue_url
    huey.storage.close()


# --- declaration and the current instance ---------------------------------------------------


def test_declared_tasks_bind_to_whichever_instance_is_current(tmp_path: Path) -> None:
    first = configure_queue(Settings(data_dir=tmp_path / "a"))
    second = configure_queue(Settings(data_dir=tmp_path / "b"))
    assert get_huey() is second
    for huey in (first, second):
        names = set(huey._registry._registry)
        assert "tests.jobs.sample_tasks.write_file" in names
    sample_tasks.write_file(str(tmp_path / "x"), "x")
    assert second.pending_count() == 1
    assert first.pending_count() == 0


def test_ensure_queue_keeps_the_current_instance_for_the_same_url(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    huey = configure_queue(settings, name="custom")
    assert ensure_queue(settings) is huey
    other = ensure_queue(Settings(data_dir=tmp_path / "other"))
    assert other is not huey
    assert get_huey() is other


def test_get_huey_builds_from_the_environment_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import get_settings

    monkeypatch.setenv("DEALCOACH_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.delenv("DEALCOACH_QUEUE_URL", raising=False)
    get_settings.cache_clear()
    try:
        huey = get_huey()
        assert huey.storage.filename == str((tmp_path / "env" / "queue.db").resolve())
    finally:
        get_settings.cache_clear()


def test_a_task_declared_after_the_queue_exists_is_bound_at_once(tmp_path: Path) -> None:
    huey = configure_queue(Settings(data_dir=tmp_path), immediate=True)
    seen: list[int] = []

    @task(retries=2, retry_delay=1)
    def late(value: int) -> None:
        seen.append(value)

    assert isinstance(late, QueueTask)
    late(7)
    assert seen == [7]
    wrapper = late._bind(huey)
    assert wrapper.task_class.default_retries == 2

    @task(name="late")  # a re-declaration (a module reload) replaces the first
    def late_again(value: int) -> None:
        seen.append(-value)

    late_again(1)
    assert seen == [7, -1]


def test_periodic_tasks_are_registered_with_their_utc_schedule(tmp_path: Path) -> None:
    huey = configure_queue(Settings(data_dir=tmp_path), immediate=True)

    @periodic_task(crontab(minute="*/15"))
    def every_quarter_hour() -> None:
        pass

    from datetime import datetime

    def due(moment: datetime) -> set[str]:
        return {type(t).__name__ for t in huey.read_periodic(moment)}

    assert "every_quarter_hour" in due(datetime(2026, 1, 1, 9, 30))
    assert "every_quarter_hour" not in due(datetime(2026, 1, 1, 9, 31))
    with pytest.raises(ValueError):
        crontab(minute="every now and then")


def test_keyword_arguments_named_like_huey_options_reach_the_task(tmp_path: Path) -> None:
    configure_queue(Settings(data_dir=tmp_path), immediate=True)
    target = tmp_path / "args.txt"
    sample_tasks.write_arguments(str(target), delay="d", retries="r")
    assert target.read_text() == "d,r"


def test_call_local_runs_in_the_caller(tmp_path: Path) -> None:
    configure_queue(Settings(data_dir=tmp_path))
    target = tmp_path / "local.txt"
    sample_tasks.write_file.call_local(str(target), "here")
    assert target.read_text() == "here"
    assert get_huey().pending_count() == 0


# --- a real consumer on each backend --------------------------------------------------------


def test_a_task_runs_in_the_embedded_consumer(
    queue: Huey, queue_settings: Settings, tmp_path: Path
) -> None:
    consumer = start_embedded_consumer(queue_settings, workers=2, periodic=False)
    try:
        assert consumer.huey is queue
        assert consumer.running
        target = tmp_path / "out.txt"
        sample_tasks.write_file(str(target), "hello")
        wait_for(target.exists)
        assert target.read_text() == "hello"
    finally:
        assert consumer.stop(timeout=10)
    assert not consumer.running


def test_a_delayed_task_waits_for_its_time(
    queue: Huey, queue_settings: Settings, tmp_path: Path
) -> None:
    consumer = start_embedded_consumer(queue_settings, workers=1, periodic=False)
    try:
        target = tmp_path / "later.txt"
        started = time.monotonic()
        sample_tasks.write_file.enqueue_in(1.5, str(target), "later")
        wait_for(target.exists)
        assert time.monotonic() - started >= 1.4
    finally:
        assert consumer.stop(timeout=10)


def test_stop_lets_a_running_task_finish(
    queue: Huey, queue_settings: Settings, tmp_path: Path
) -> None:
    consumer = start_embedded_consumer(queue_settings, workers=1, periodic=False)
    started, done = tmp_path / "started", tmp_path / "done"
    sample_tasks.slow_write(str(started), str(done), 1.0)
    wait_for(started.exists)
    assert consumer.stop(timeout=10)
    assert done.read_text() == "done"


def test_tasks_enqueued_by_another_process_instance_are_consumed(
    queue: Huey, queue_settings: Settings, queue_name: str, tmp_path: Path
) -> None:
    """An instance of its own (as an API replica would have) enqueues; the consumer runs it."""
    producer = make_huey(queue_settings, name=queue_name)
    producer.task(name="write_file")(sample_tasks.write_file.func)
    target = tmp_path / "remote.txt"
    wrapper = producer._registry._registry["tests.jobs.sample_tasks.write_file"]
    producer.enqueue(wrapper((str(target), "from afar"), {}))
    consumer = start_embedded_consumer(queue_settings, workers=1, periodic=False)
    try:
        wait_for(target.exists)
    finally:
        consumer.stop(timeout=10)
        producer.storage.close()
    assert target.read_text() == "from afar"
