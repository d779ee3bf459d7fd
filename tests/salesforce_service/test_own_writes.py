"""The service's own writes come back from the CRM and are recognised as its own.

With the ``summary_fields`` target the service writes ``dealcoach_*`` fields onto the
deal; the CRM counts that as a modification (Salesforce bumps ``SystemModstamp``), so
the next sync returns the deal with those fields. That echo must change nothing: no
review, no write-back, no note (``snapshot_fingerprint`` leaves the service's own
fields out). Once on the emulated Salesforce org, once on the fake CRM.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy import select

from app.bench import generate_deals
from app.coaching.snapshot import DealSnapshot
from app.db import session_scope, utcnow
from app.deals.models import DealSnapshotRow
from app.reviews.models import Review
from app.sync.tasks import sync_connection_task
from app.writeback.models import WriteBack, WriteBackState, WriteBackTarget
from tests.pipeline.conftest import Service, sample_deal

from .conftest import ServiceEmulator, connect


def _fetched_at(service: Service, connection_id: str) -> dict[str, datetime]:
    """When each stored deal was last returned by the CRM."""
    with session_scope(service.runtime.sessions) as session:
        rows = session.scalars(
            select(DealSnapshotRow).where(DealSnapshotRow.connection_id == connection_id)
        )
        return {row.external_id: row.fetched_at for row in rows}


def test_salesforce_summary_fields_echo_is_not_a_change(
    service: Service, emulator: ServiceEmulator
) -> None:
    seeded = emulator.seed(6)
    control = seeded[-1]  # closed before the first sync: no write-back, so no echo
    emulator.update("Opportunity", control, {"StageName": "Closed Lost"})
    org = connect(service, emulator, writeback_targets=["note", "summary_fields"])

    org.sync()
    rows = org.wait_until_sent()

    open_ids = set(seeded) - {control}
    summaries = [row for row in rows if row.target == WriteBackTarget.SUMMARY_FIELDS]
    assert {row.deal_external_id for row in summaries} == open_ids
    assert all(row.state == WriteBackState.WRITTEN for row in rows)
    reviews = {review.deal_external_id: review for review in org.rows(Review)}
    for deal_id in open_ids:
        record = emulator.record(deal_id)
        assert record is not None
        assert record["Dealcoach_Health__c"] == reviews[deal_id].health_score
        assert record["Dealcoach_Marker__c"] == reviews[deal_id].marker
        assert len(org.notes_on(deal_id)) == 1
    review_count, writeback_count = service.count(Review), service.count(WriteBack)
    notes = org.live_note_count()
    calls_before = emulator.call_counts()

    before_echo = utcnow()
    org.sync()

    fetched = _fetched_at(service, org.connection_id)
    assert all(fetched[deal_id] >= before_echo for deal_id in open_ids), (
        "the sync brought every summary write back"
    )
    assert fetched[control] < before_echo, "an opportunity nobody changed stays out"
    assert service.count(Review) == review_count, "the echo is not reviewed"
    assert service.count(WriteBack) == writeback_count
    assert org.live_note_count() == notes
    calls = emulator.call_counts()
    for kind in ("composite", "composite_sobjects", "sobject"):  # every write endpoint
        assert calls.get(kind, 0) == calls_before.get(kind, 0), kind


def _closed_deal(deal_id: str) -> DealSnapshot:
    for candidate in generate_deals(40, seed=11):
        if not candidate.is_open:
            return replace(candidate, id=deal_id)
    raise AssertionError("no closed deal generated")


def test_fake_crm_summary_fields_echo_is_not_a_change(service: Service) -> None:
    connection_id, crm = service.add_fake_connection(writeback_targets=["note", "summary_fields"])
    crm.put_deal(sample_deal("D1", 1))
    crm.put_deal(sample_deal("D2", 2))
    crm.put_deal(_closed_deal("D3"))  # no write-back, so no echo

    sync_connection_task.call_local(connection_id)
    service.wait_for(
        lambda: service.count(WriteBack, WriteBack.state == WriteBackState.WRITTEN) == 4
    )
    assert service.count(WriteBack) == 4  # D1 and D2: a note and the summary fields each
    for deal_id in ("D1", "D2"):
        assert crm.last_writer(deal_id) == "dealcoach"
        deal = crm.get_deal(deal_id)
        assert deal is not None and "dealcoach_health" in deal.fields
        assert len(crm.notes_on(deal_id)) == 1
    review_count = service.count(Review)

    before_echo = utcnow()
    sync_connection_task.call_local(connection_id)

    fetched = _fetched_at(service, connection_id)
    assert fetched["D1"] >= before_echo and fetched["D2"] >= before_echo
    assert fetched["D3"] < before_echo
    assert service.count(Review) == review_count, "the echo is not reviewed"
    assert service.count(WriteBack) == 4
    assert [len(crm.notes_on(d)) for d in ("D1", "D2", "D3")] == [1, 1, 0]
