"""Incremental sync through the service, and the daily-allowance guard."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from app.connections.models import Connection
from app.connections.runner import with_provider
from app.db import session_scope, utcnow
from app.deals.models import DealHistoryRow, DealSnapshotRow
from app.ratelimit import paused_for
from app.reviews.models import Review, ReviewTrigger
from app.sync.service import sync_connection
from app.sync.tasks import sync_connection_task
from integrations.base import CrmProvider, NotReadyError, RetriableError

from .conftest import Service, sample_deal


def _connection(service: Service, connection_id: str) -> Connection:
    with session_scope(service.runtime.sessions) as session:
        connection = session.get(Connection, connection_id)
        assert connection is not None
        session.expunge(connection)
        return connection


def test_first_sync_stores_and_reviews_every_deal_then_incremental_sees_only_changes(
    service: Service,
) -> None:
    connection_id, crm = service.add_fake_connection(page_size=2)
    for number in range(1, 6):
        crm.put_deal(sample_deal(f"D{number}", number))

    sync_connection_task.call_local(connection_id)

    assert service.count(DealSnapshotRow) == 5
    assert service.count(Review, Review.trigger == ReviewTrigger.SYNC) == 5
    first = _connection(service, connection_id)
    assert first.sync_watermark and first.sync_watermark.get("watermark")
    assert first.last_synced_at is not None
    lists_after_first = crm.calls("list")
    assert lists_after_first >= 3  # five deals, pages of two

    crm.put_deal(sample_deal("D2", 7))  # D2 changes (other stage, amount, dates)
    crm.delete_deal("D4")
    sync_connection_task.call_local(connection_id)

    assert service.count(DealSnapshotRow) == 4, "the deleted deal left the store"
    assert service.count(Review, Review.trigger == ReviewTrigger.SYNC) == 6, "only D2 again"
    assert service.count(DealHistoryRow) >= 1, "the change was observed into our history"


def test_an_unchanged_deal_is_not_reviewed_again(service: Service) -> None:
    connection_id, crm = service.add_fake_connection()
    crm.put_deal(sample_deal("D1"))
    sync_connection_task.call_local(connection_id)
    crm.put_deal(sample_deal("D1"))  # the CRM bumps it, nothing changed
    sync_connection_task.call_local(connection_id)
    assert service.count(Review, Review.trigger == ReviewTrigger.SYNC) == 1


def test_given_the_daily_allowance_share_is_used_then_the_sync_stops_before_calling(
    service: Service,
) -> None:
    connection_id, crm = service.add_fake_connection()
    crm.put_deal(sample_deal("D1"))
    crm.reset_calls()
    crm.set_daily_limit(2)  # half is the default share: one call already makes 50%
    crm.fail_next("stages", ("server_error",))  # a call, counted
    with pytest.raises(RetriableError):  # the injected 5xx; the call is counted all the same
        with_provider(service.runtime, connection_id, lambda _s, _c, p: p.list_stages())
    lists_before = crm.calls("list")

    sync_connection_task.call_local(connection_id)

    assert crm.calls("list") == lists_before, "no sync call once the guard tripped"
    assert service.count(DealSnapshotRow) == 0
    assert "daily API allowance" in (_connection(service, connection_id).last_error or "")


def test_the_sync_lease_survives_every_page_checkpoint(service: Service) -> None:
    from app.sync.service import sync_connection
    from app.sync.tasks import _take_sync_lease

    connection_id, crm = service.add_fake_connection(page_size=1)
    for number in range(1, 4):
        crm.put_deal(sample_deal(f"D{number}", number))
    assert _take_sync_lease(connection_id)
    leases: list[bool] = []

    def checkpoint_then_look(session: Session) -> None:
        session.commit()
        leases.append(not _take_sync_lease(connection_id))

    with_provider(
        service.runtime,
        connection_id,
        lambda session, connection, provider: sync_connection(
            session, connection, provider, commit=lambda: checkpoint_then_look(session)
        ),
    )

    assert len(leases) >= 3
    assert all(leases), "no second sync could start between the pages"


def test_every_page_extends_the_sync_lease(service: Service) -> None:
    connection_id, crm = service.add_fake_connection(page_size=1)
    for number in range(1, 4):
        crm.put_deal(sample_deal(f"D{number}", number))
    almost_over = (utcnow() + timedelta(seconds=5)).isoformat()
    leases: list[str] = []

    def work(session: Session, connection: Connection, provider: CrmProvider) -> None:
        connection.sync_watermark = {"running_until": almost_over}

        def commit() -> None:
            leases.append(str((connection.sync_watermark or {})["running_until"]))
            session.commit()

        sync_connection(session, connection, provider, commit=commit, lease=timedelta(minutes=10))

    with_provider(service.runtime, connection_id, work)

    assert len(leases) == 3  # one page per deal
    assert all(lease > almost_over for lease in leases)
    assert leases == sorted(leases)


def test_a_crm_still_preparing_a_bulk_load_delays_the_sync_without_throttling(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection_id, _ = service.add_fake_connection()

    def not_ready(*_args: object, **_kwargs: object) -> None:
        raise NotReadyError("bulk query jobs still running", retry_after=60.0)

    later: list[tuple[float, str]] = []
    monkeypatch.setattr("app.sync.tasks.sync_connection", not_ready)
    monkeypatch.setattr(
        sync_connection_task, "enqueue_in", lambda delay, cid: later.append((delay, cid))
    )
    sync_connection_task.call_local(connection_id)

    assert later == [(60.0, connection_id)]
    assert paused_for(connection_id) == 0  # reviews and write-backs go on meanwhile
