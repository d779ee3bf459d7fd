"""The embedded consumer lives and dies with the app's lifespan."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.jobs import get_huey
from app.main import create_app
from tests.jobs import sample_tasks
from tests.jobs.conftest import wait_for


def test_the_sqlite_default_runs_the_worker_inside_the_app(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", worker_threads=3, sandbox=True)
    app = create_app(settings)
    assert app.state.embedded_worker is None
    with TestClient(app) as client:
        consumer = app.state.embedded_worker
        assert consumer is not None and consumer.running
        assert len(consumer.threads) == 1 + 3  # the scheduler and the workers
        assert client.get("/healthz").status_code == 200
        target = tmp_path / "from-app.txt"
        sample_tasks.write_file(str(target), "embedded")
        wait_for(target.exists)
        threads = consumer.threads
    assert not consumer.running
    assert not any(thread.is_alive() for thread in threads)
    assert get_huey().storage.filename == str((tmp_path / "data" / "queue.db").resolve())


def test_the_embedded_worker_can_be_turned_off(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data", sandbox=True), embedded_worker=False)
    with TestClient(app):
        assert app.state.embedded_worker is None


@pytest.mark.redis
def test_a_distributed_queue_leaves_the_work_to_worker_processes(
    tmp_path: Path, redis_url: str
) -> None:
    settings = Settings(data_dir=tmp_path / "data", queue_url=redis_url, sandbox=True)
    app = create_app(settings)
    with TestClient(app):
        assert app.state.embedded_worker is None
        assert get_huey().storage.conn.ping()  # requests still enqueue on Redis

    forced = create_app(settings, embedded_worker=True)
    with TestClient(forced):
        assert forced.state.embedded_worker.running
    assert not forced.state.embedded_worker.running
