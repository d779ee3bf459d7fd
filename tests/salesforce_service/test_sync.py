"""Syncs through the service on the emulated org: first sync, nothing changed, one user
edit, a delete; every review's note lands once, as a linked ContentNote."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from app.deals.models import DealSnapshotRow
from app.reviews.models import Review, ReviewTrigger
from app.writeback.models import WriteBack, WriteBackState, WriteBackTarget
from tests.pipeline.conftest import Service

from .conftest import SalesforceOrg, ServiceEmulator, connect, marker_of


def _assert_one_note_per_written_row(org: SalesforceOrg) -> None:
    """Every written note row is one live ContentNote linked to its opportunity and
    titled with the row's marker; no opportunity holds a note of no row."""
    rows = org.writebacks(WriteBackTarget.NOTE)
    assert rows and all(row.state == WriteBackState.WRITTEN for row in rows)
    expected: dict[str, set[str]] = {}
    for row in rows:
        expected.setdefault(row.deal_external_id, set()).add(row.marker)
    for record in org.emulator.records("Opportunity"):
        notes = org.notes_on(record["Id"])
        markers = [marker_of(note) for note in notes]
        assert sorted(markers) == sorted(expected.get(record["Id"], set())), record["Id"]
    by_id = {row.external_id: row for row in rows}
    assert len(by_id) == len(rows), "each row has its own ContentNote"
    for note_id, row in by_id.items():
        assert note_id is not None and note_id.startswith("069")
        stored = org.emulator.record(note_id)
        assert stored is not None and stored["Title"].endswith(f"[{row.marker}]")
        assert row.marker in (org.emulator.note_body(note_id) or ""), "the body carries it too"
    assert org.live_note_count() == len(rows), "no unlinked or extra ContentNote"


@pytest.mark.parametrize("first_load", ["rest", "bulk"])
def test_first_sync_reviews_every_opportunity_then_only_changes_and_deletes_count(
    service: Service, emulator: ServiceEmulator, first_load: str
) -> None:
    """``bulk``: the first sync reads the org with Bulk API 2.0 jobs (a threshold below
    the org's size), the later ones page REST from the load's checkpoint."""
    seeded = emulator.seed(8)
    org = connect(service, emulator, **({"bulk_threshold": 3} if first_load == "bulk" else {}))

    org.sync()

    assert (emulator.call_counts().get("bulk", 0) > 0) == (first_load == "bulk")

    assert sorted(row.external_id for row in org.rows(DealSnapshotRow)) == sorted(seeded)
    reviews = org.rows(Review)
    assert Counter(review.deal_external_id for review in reviews) == Counter(seeded)
    assert {review.trigger for review in reviews} == {ReviewTrigger.SYNC}
    org.wait_until_sent()
    notes = org.writebacks(WriteBackTarget.NOTE)
    # Open opportunities with prompts get a note; the seed's first ones are all open.
    assert {row.deal_external_id for row in notes} == set(org.open_opportunity_ids())
    assert {row.marker for row in notes} == {
        review.marker for review in reviews if review.deal_external_id in org.open_opportunity_ids()
    }, "each note carries its review's marker"
    _assert_one_note_per_written_row(org)
    first = org.connection()
    assert first.sync_watermark and first.sync_watermark.get("watermark")
    assert "running_until" not in first.sync_watermark, "the sync lease was dropped"

    # Nothing changed in the org: no review, no write-back, no note.
    calls_before = emulator.call_counts()
    org.sync()
    assert service.count(Review) == len(seeded)
    assert service.count(WriteBack) == len(notes)
    calls = emulator.call_counts()
    assert calls.get("composite", 0) == calls_before.get("composite", 0), "nothing written"
    assert org.live_note_count() == len(notes)

    # A user edits one opportunity: only that one is reviewed again.
    edited = seeded[2]
    record = emulator.record(edited)
    assert record is not None
    emulator.update(
        "Opportunity",
        edited,
        {"Amount": record["Amount"] * 2, "NextStep": "Send the revised order form"},
    )
    org.sync()
    seen = {review.id for review in reviews}
    again = [review for review in org.rows(Review) if review.id not in seen]
    assert [review.deal_external_id for review in again] == [edited]
    snapshot = {row.external_id: row for row in org.rows(DealSnapshotRow)}[edited]
    assert snapshot.amount == record["Amount"] * 2
    org.wait_until_sent()
    _assert_one_note_per_written_row(org)
    assert len(org.notes_on(seeded[0])) == 1, "the others kept their one note"

    # An opportunity deleted in the org leaves the store at the next sync.
    deleted = seeded[5]
    emulator.delete("Opportunity", deleted)
    reviews_before = service.count(Review)
    org.sync()
    assert sorted(row.external_id for row in org.rows(DealSnapshotRow)) == sorted(
        set(seeded) - {deleted}
    )
    assert service.count(Review) == reviews_before, "a delete is not a review"
    shown = service.client.get(
        f"/api/v1/connections/{org.connection_id}/deals/{deleted}", headers=service.auth()
    )
    assert shown.status_code == 404
    last = org.connection()
    assert last.last_synced_at is not None and first.last_synced_at is not None
    assert last.last_synced_at - first.last_synced_at >= timedelta(0)
    assert last.last_error is None
