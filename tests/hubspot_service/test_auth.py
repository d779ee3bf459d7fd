"""OAuth tokens at the service level: an expired access token (a 401, or ``expires_at``
passed) is refreshed once per connection however many jobs need it, the new tokens are
stored encrypted, the work done."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from app.connections.models import Connection, ConnectionStatus
from app.connections.runner import with_provider
from app.connections.service import store_credentials
from app.db import session_scope
from app.reviews.models import Review
from app.writeback.models import WriteBackState
from tests.pipeline.conftest import Service

from .conftest import ServiceEmulator, connect


def test_an_expired_token_needed_by_many_jobs_at_once_is_refreshed_once(
    service: Service, emulator: ServiceEmulator
) -> None:
    seeded = emulator.seed(8)
    portal = connect(service, emulator)
    before = portal.stored_credentials()
    encrypted_before = portal.connection().credentials_encrypted
    assert emulator.expire_tokens() >= 1
    emulator.reset_calls()
    barrier = threading.Barrier(len(seeded))

    def job(deal_id: str) -> str:
        barrier.wait()
        fetched: str = with_provider(
            service.runtime,
            portal.connection_id,
            lambda _session, _connection, provider: provider.fetch_deal(deal_id).id,
        )
        return fetched

    with ThreadPoolExecutor(max_workers=len(seeded)) as pool:
        fetched = list(pool.map(job, seeded))

    assert fetched == seeded
    counts = emulator.call_counts()
    assert counts.get("token") == 1, "one refresh for every job"
    assert counts.get("rate_limited", 0) == 0
    connection = portal.connection()
    assert connection.status == ConnectionStatus.ACTIVE and connection.last_error is None
    fresh = portal.stored_credentials()
    assert fresh["access_token"] != before["access_token"]
    assert fresh["refresh_token"] == before["refresh_token"]
    assert fresh["auth"] == "oauth" and "expires_at" in fresh, "from expires_in"
    stored = connection.credentials_encrypted
    assert stored is not None and stored != encrypted_before
    assert fresh["access_token"].encode() not in stored, "encrypted at rest"


def test_a_token_past_its_expiry_is_refreshed_before_use_and_the_sync_completes(
    service: Service, emulator: ServiceEmulator
) -> None:
    seeded = emulator.seed(4)
    portal = connect(service, emulator)
    with session_scope(service.runtime.sessions) as session:
        connection = session.get(Connection, portal.connection_id)
        assert connection is not None
        credentials = portal.stored_credentials()
        past = datetime.now(UTC) - timedelta(minutes=1)
        store_credentials(
            session,
            service.runtime.box,
            connection,
            {**credentials, "expires_at": past.isoformat()},
        )
    emulator.reset_calls()

    portal.sync()

    counts = emulator.call_counts()
    assert counts.get("token") == 1
    assert counts.get("rate_limited", 0) == 0
    assert service.count(Review) == len(seeded)
    expires = datetime.fromisoformat(portal.stored_credentials()["expires_at"])
    assert expires > datetime.now(UTC) + timedelta(minutes=20), "HubSpot's 30 minutes"
    assert all(row.state == WriteBackState.WRITTEN for row in portal.wait_until_sent())


def test_a_refused_refresh_token_parks_the_connection(
    service: Service, emulator: ServiceEmulator
) -> None:
    emulator.seed(2)
    portal = connect(service, emulator)
    with session_scope(service.runtime.sessions) as session:
        connection = session.get(Connection, portal.connection_id)
        assert connection is not None
        credentials = {**portal.stored_credentials(), "refresh_token": "na1-revoked"}
        store_credentials(session, service.runtime.box, connection, credentials)
    emulator.expire_tokens()

    portal.sync()

    connection = portal.connection()
    assert connection.status == ConnectionStatus.NEEDS_REAUTH
    assert connection.last_error and "na1-revoked" not in connection.last_error
    assert service.count(Review) == 0
