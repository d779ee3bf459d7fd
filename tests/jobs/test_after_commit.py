"""enqueue_after_commit: jobs leave only when the work they announce is committed."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, Table, create_engine, insert, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.jobs import configure_queue, enqueue_after_commit
from tests.jobs import sample_tasks

metadata = MetaData()
items = Table("items", metadata, Column("id", Integer, primary_key=True))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'work.db'}")
    metadata.create_all(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session:
        yield session


def committed_ids(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return list(connection.scalars(select(items.c.id).order_by(items.c.id)))


def test_the_job_is_enqueued_after_the_commit_and_sees_the_row(
    engine: Engine, session: Session
) -> None:
    seen: list[list[int]] = []
    session.execute(insert(items).values(id=1))
    enqueue_after_commit(session, lambda: seen.append(committed_ids(engine)))
    session.flush()
    assert seen == []
    session.commit()
    assert seen == [[1]]  # the row was visible to another connection when the job left
    session.commit()
    assert seen == [[1]]  # once only


def test_a_rolled_back_transaction_enqueues_nothing(session: Session) -> None:
    calls: list[str] = []
    session.execute(insert(items).values(id=1))
    enqueue_after_commit(session, calls.append, "job")
    session.rollback()
    session.execute(insert(items).values(id=2))
    session.commit()
    assert calls == []


def test_a_session_closed_without_commit_enqueues_nothing(engine: Engine) -> None:
    calls: list[str] = []
    with Session(engine) as session:
        session.execute(insert(items).values(id=1))
        enqueue_after_commit(session, calls.append, "job")
    with Session(engine) as session:
        session.commit()
    assert calls == []


def test_a_job_registered_before_the_transaction_begins_waits_for_its_commit(
    session: Session,
) -> None:
    calls: list[str] = []
    enqueue_after_commit(session, calls.append, "job")
    session.execute(insert(items).values(id=1))
    session.commit()
    assert calls == ["job"]


def test_savepoints_release_nothing_early_and_drop_their_own_jobs(session: Session) -> None:
    calls: list[str] = []
    enqueue_after_commit(session, calls.append, "outer")
    with session.begin_nested():
        session.execute(insert(items).values(id=1))
        enqueue_after_commit(session, calls.append, "kept savepoint")
    assert calls == []  # releasing a SAVEPOINT commits nothing
    savepoint = session.begin_nested()
    enqueue_after_commit(session, calls.append, "rolled back savepoint")
    savepoint.rollback()
    session.commit()
    assert calls == ["outer", "kept savepoint"]


def test_an_outer_rollback_drops_jobs_from_released_savepoints(session: Session) -> None:
    calls: list[str] = []
    with session.begin_nested():
        enqueue_after_commit(session, calls.append, "job")
    session.rollback()
    session.commit()
    assert calls == []


def test_jobs_leave_in_the_order_they_were_registered(session: Session) -> None:
    calls: list[int] = []
    for number in range(5):
        enqueue_after_commit(session, calls.append, number)
    session.commit()
    assert calls == [0, 1, 2, 3, 4]


def test_a_failed_enqueue_is_logged_and_the_commit_stands(
    engine: Engine, session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def broken() -> None:
        raise ConnectionError("queue down")

    session.execute(insert(items).values(id=1))
    enqueue_after_commit(session, broken)
    enqueue_after_commit(session, calls.append, "next")
    with caplog.at_level(logging.ERROR, logger="app.jobs"):
        session.commit()
    assert committed_ids(engine) == [1]
    assert calls == ["next"]
    assert "enqueue after commit failed" in caplog.text


def test_a_queue_task_is_enqueued_on_commit(session: Session, tmp_path: Path) -> None:
    huey = configure_queue(Settings(data_dir=tmp_path / "data"))
    target = tmp_path / "out.txt"
    session.execute(insert(items).values(id=1))
    enqueue_after_commit(session, sample_tasks.write_file, str(target), "after commit")
    assert huey.pending_count() == 0
    session.commit()
    assert huey.pending_count() == 1
    pending = huey.pending()[0]
    assert pending.args == (str(target), "after commit")
