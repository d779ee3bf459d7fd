"""The reconciler: every minute it starts the syncs that are due (and only those) and
rings the sender of due write-backs. (The other pipeline tests keep it from doing either.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from app.connections.models import Connection
from app.db import session_scope, utcnow
from app.deals.models import DealSnapshotRow
from app.sync.tasks import _due_for_sync, reconcile, sync_connection_task
from app.writeback.models import WriteBack, WriteBackState
from app.writeback.service import due_connection_ids

from .conftest import Service, sample_deal
from .test_writeback_exactly_once import _review


def _synced_minutes_ago(service: Service, connection_id: str, minutes: float | None) -> None:
    value = None if minutes is None else utcnow() - timedelta(minutes=minutes)
    with session_scope(service.runtime.sessions) as session:
        session.execute(
            update(Connection).where(Connection.id == connection_id).values(last_synced_at=value)
        )


def test_the_reconciler_starts_due_syncs_only(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.sync.tasks._due_for_sync", _due_for_sync)  # the real rule
    never, never_crm = service.add_fake_connection("acct-never")
    recent, recent_crm = service.add_fake_connection("acct-recent", sync_interval_minutes=30)
    stale, stale_crm = service.add_fake_connection("acct-stale", sync_interval_minutes=30)
    for crm in (never_crm, recent_crm, stale_crm):
        crm.put_deal(sample_deal("D1"))
    _synced_minutes_ago(service, never, None)
    _synced_minutes_ago(service, recent, 10)
    _synced_minutes_ago(service, stale, 31)

    started: list[str] = []

    def enqueue(connection_id: str) -> object:
        started.append(connection_id)
        return sync_connection_task(connection_id)

    monkeypatch.setattr("app.sync.tasks.sync_connection_task", enqueue)
    reconcile.call_local()

    # (Huey's own periodic run may add the same ones: it sees the same rule.)
    assert set(started) == {never, stale}

    def stored(connection_id: str) -> int:
        return service.count(DealSnapshotRow, DealSnapshotRow.connection_id == connection_id)

    service.wait_for(lambda: stored(never) == 1 and stored(stale) == 1)
    assert stored(recent) == 0
    assert recent_crm.calls("list") == 0


def test_the_default_interval_applies_without_a_connection_setting() -> None:
    connection = Connection(settings={}, last_synced_at=utcnow() - timedelta(minutes=14))
    assert not _due_for_sync(connection, 15)
    connection.last_synced_at = utcnow() - timedelta(minutes=16)
    assert _due_for_sync(connection, 15)
    connection.settings = {"sync_interval_minutes": 60}
    assert not _due_for_sync(connection, 15)


def test_the_reconciler_rings_the_sender_of_due_write_backs(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.sync.tasks.due_connection_ids", due_connection_ids)  # the real one
    connection_id, crm = service.add_fake_connection()
    crm.put_deal(sample_deal("D1"))
    _review(service, connection_id, "D1")  # a write-back row, no sender rung
    with session_scope(service.runtime.sessions) as session:
        session.execute(update(WriteBack).values(next_attempt_at=utcnow() - timedelta(seconds=1)))

    reconcile.call_local()

    service.wait_for(lambda: len(crm.notes_on("D1")) == 1)
    service.wait_for(
        lambda: service.count(WriteBack, WriteBack.state == WriteBackState.WRITTEN) == 1
    )
