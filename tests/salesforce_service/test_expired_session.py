"""An expired Salesforce session (401 ``INVALID_SESSION_ID``) at the service level: one
token refresh per connection, the new tokens stored encrypted, the work done."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from app.connections.models import ConnectionStatus
from app.connections.runner import with_provider
from app.deals.models import DealSnapshotRow
from app.reviews.models import Review
from app.writeback.models import WriteBackState
from tests.pipeline.conftest import Service

from .conftest import ServiceEmulator, connect, marker_of


def test_an_expired_session_is_refreshed_once_and_the_sync_completes(
    service: Service, emulator: ServiceEmulator
) -> None:
    seeded = emulator.seed(5)
    org = connect(service, emulator)
    org.sync()
    org.wait_until_sent()
    before = org.stored_credentials()
    encrypted_before = org.connection().credentials_encrypted
    edited = seeded[1]
    record = emulator.record(edited)
    assert record is not None
    emulator.update("Opportunity", edited, {"Amount": record["Amount"] + 10_000})
    assert emulator.expire_sessions() >= 1
    emulator.reset_calls()
    reviews = service.count(Review)

    org.sync()

    assert emulator.call_counts().get("token") == 1, "one refresh"
    connection = org.connection()
    assert connection.status == ConnectionStatus.ACTIVE and connection.last_error is None
    assert service.count(Review) == reviews + 1, "the sync went on after the refresh"
    snapshot = {row.external_id: row for row in org.rows(DealSnapshotRow)}[edited]
    assert snapshot.amount == record["Amount"] + 10_000
    fresh = org.stored_credentials()
    assert fresh["access_token"] != before["access_token"]
    assert fresh["refresh_token"] == before["refresh_token"], "Salesforce keeps the refresh token"
    assert (fresh["auth"], fresh["instance_url"]) == ("oauth", emulator.base_url)
    stored = connection.credentials_encrypted
    assert stored is not None and stored != encrypted_before
    assert fresh["access_token"].encode() not in stored, "encrypted at rest"
    assert fresh["refresh_token"].encode() not in stored

    # The write-back of the new review and the next call use the stored token.
    for row in org.wait_until_sent():
        assert row.state == WriteBackState.WRITTEN
        assert marker_of(org.notes_on(row.deal_external_id)[-1]) == row.marker
    answer = service.client.post(
        f"/api/v1/connections/{org.connection_id}/test", headers=service.auth()
    )
    assert answer.status_code == 200 and answer.json()["ok"] is True, answer.text
    assert emulator.call_counts().get("token") == 1, "no second refresh"


def test_an_expired_session_needed_by_many_jobs_at_once_is_refreshed_once(
    service: Service, emulator: ServiceEmulator
) -> None:
    seeded = emulator.seed(8)
    org = connect(service, emulator)
    emulator.expire_sessions()
    emulator.reset_calls()
    barrier = threading.Barrier(len(seeded))

    def job(deal_id: str) -> str:
        barrier.wait()
        fetched: str = with_provider(
            service.runtime,
            org.connection_id,
            lambda _session, _connection, provider: provider.fetch_deal(deal_id).id,
        )
        return fetched

    with ThreadPoolExecutor(max_workers=len(seeded)) as pool:
        fetched = list(pool.map(job, seeded))

    assert fetched == seeded
    counts = emulator.call_counts()
    assert counts.get("token") == 1, "one refresh for every job"
    assert counts.get("refused", 0) == 0
    assert org.connection().status == ConnectionStatus.ACTIVE


def test_an_expired_session_met_by_the_write_back_sender_is_refreshed_once(
    service: Service, emulator: ServiceEmulator
) -> None:
    seeded = emulator.seed(3)
    org = connect(service, emulator)
    assert org.sync_without_sending().writebacks == len(seeded)
    emulator.expire_sessions()
    emulator.reset_calls()

    org.send()

    counts = emulator.call_counts()
    assert counts.get("token") == 1, "one refresh"
    # The refused call wrote nothing; the rows, claimed again, were looked up by marker
    # (nothing found) and written in one more call.
    assert counts.get("composite") == 2 and counts.get("api") == 2 * len(seeded) + 1
    for row in org.writebacks():
        assert row.state == WriteBackState.WRITTEN and row.attempts == 2
        [note] = org.notes_on(row.deal_external_id)
        assert marker_of(note) == row.marker
    assert org.live_note_count() == len(seeded)
