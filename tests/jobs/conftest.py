"""Queue fixtures: one test per backend (SQLite file, Redis, PostgreSQL), a fresh queue each.

``queue_settings`` is parametrised over the three backends (``-m "not redis and not
postgres"`` keeps SQLite only). Each test gets its own queue name, so tests sharing
the session's Redis or PostgreSQL server never see each other's tasks or keys.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from huey.api import Huey
from sqlalchemy.engine import make_url

from app.config import Settings
from app.jobs import configure_queue, reset_queue
from tests.conftest import create_postgres_database, drop_postgres_database

QUEUE_BACKENDS = [
    "sqlite",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("postgresql", marks=pytest.mark.postgres),
]


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.02)


@pytest.fixture(autouse=True)
def _fresh_queue() -> Iterator[None]:
    """No queue instance leaks from one test into the next."""
    reset_queue()
    yield
    reset_queue()


@pytest.fixture(scope="module")
def postgres_queue_url(postgres_url: str) -> Iterator[str]:
    """A ``postgresql://`` queue URL on a database of its own (Huey creates its tables)."""
    url = create_postgres_database(postgres_url)
    try:
        yield make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    finally:
        drop_postgres_database(postgres_url, url)


@pytest.fixture(params=QUEUE_BACKENDS)
def queue_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings whose queue is on the backend of the test's parameter."""
    backend: str = request.param
    data_dir = tmp_path / "data"
    if backend == "sqlite":
        return Settings(data_dir=data_dir)  # the default: queue.db in the data directory
    fixture = "redis_url" if backend == "redis" else "postgres_queue_url"
    url: str = request.getfixturevalue(fixture)
    return Settings(data_dir=data_dir, queue_url=url)


@pytest.fixture
def queue_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def queue(queue_settings: Settings, queue_name: str) -> Iterator[Huey]:
    """The current queue, on the test's backend, under a name of its own (flushed after)."""
    huey = configure_queue(queue_settings, name=queue_name)
    yield huey
    huey.flush()
