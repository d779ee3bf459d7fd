"""Syncs through the service on the emulated portal: a first load, nothing changed (the
echo of the service's own notes included), one user edit, a delete; a crash mid-sync
resumed from the last committed page; more deals than one search query may return."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from app.connections.runner import with_provider
from app.deals.models import DealSnapshotRow
from app.reviews.models import Review, ReviewTrigger
from app.sync.service import sync_connection
from app.writeback.models import WriteBack, WriteBackState, WriteBackTarget
from integrations.hubspot import adapter
from integrations.hubspot.emulator import search as emulator_search
from tests.pipeline.conftest import Service

from .conftest import HubSpotPortal, ServiceEmulator, connect, marker_of


def _assert_one_note_per_written_row(portal: HubSpotPortal) -> None:
    """Every written note row is one note on its deal carrying the row's marker; no deal
    holds a note of no row."""
    rows = portal.writebacks(WriteBackTarget.NOTE)
    assert rows and all(row.state == WriteBackState.WRITTEN for row in rows)
    expected: dict[str, set[str]] = {}
    for row in rows:
        expected.setdefault(row.deal_external_id, set()).add(row.marker)
    for deal_id in portal.emulator.deal_ids():
        markers = [marker_of(note) for note in portal.notes_on(deal_id)]
        assert sorted(markers) == sorted(expected.get(deal_id, set())), deal_id
    assert len({row.external_id for row in rows}) == len(rows), "each row has its own note"
    assert portal.note_count() == len(rows), "no extra note"


def test_first_load_then_only_changes_and_deletes_count(
    service: Service, emulator: ServiceEmulator
) -> None:
    seeded = emulator.seed(12)
    portal = connect(service, emulator)

    portal.sync()

    assert sorted(row.external_id for row in portal.rows(DealSnapshotRow)) == sorted(seeded)
    reviews = portal.rows(Review)
    assert Counter(review.deal_external_id for review in reviews) == Counter(seeded)
    assert {review.trigger for review in reviews} == {ReviewTrigger.SYNC}
    portal.wait_until_sent()
    notes = portal.writebacks(WriteBackTarget.NOTE)
    assert {row.deal_external_id for row in notes} <= set(portal.open_deal_ids())
    assert len(notes) >= len(portal.open_deal_ids()) - 2, "open deals with prompts get a note"
    _assert_one_note_per_written_row(portal)
    snapshot = {row.external_id: row for row in portal.rows(DealSnapshotRow)}
    deal = emulator.deal(seeded[0]) or {}
    assert snapshot[seeded[0]].name == deal["dealname"]
    first = portal.connection()
    assert first.sync_watermark and first.sync_watermark.get("watermark")
    assert "running_until" not in first.sync_watermark, "the sync lease was dropped"

    # Our notes moved hs_lastmodifieddate and notes_last_updated of their deals: the sync
    # reads them again, and recognises its own notes (no review, no write-back).
    emulator.reset_calls()
    portal.sync()
    calls = emulator.call_counts()
    assert calls.get("deals_batch_read", 0) >= 1, "the noted deals came back"
    assert service.count(Review) == len(seeded), "the echo of our notes is not reviewed"
    assert service.count(WriteBack) == len(notes)
    assert calls.get("notes_batch_create", 0) == 0

    # Nothing changed since: the search finds nothing new and nothing is read.
    emulator.reset_calls()
    portal.sync()
    calls = emulator.call_counts()
    assert calls.get("deals_batch_read", 0) == 0 and calls.get("deals_search", 0) == 1

    # A user edits one deal: only that one is reviewed again.
    edited = seeded[2]
    amount = float((emulator.deal(edited) or {})["amount"])
    emulator.update_deal(edited, {"amount": str(amount * 2), "hs_next_step": "Send the order"})
    portal.sync()
    seen = {review.id for review in reviews}
    again = [review for review in portal.rows(Review) if review.id not in seen]
    assert [review.deal_external_id for review in again] == [edited]
    stored = {row.external_id: row for row in portal.rows(DealSnapshotRow)}[edited]
    assert stored.amount == amount * 2
    portal.wait_until_sent()
    _assert_one_note_per_written_row(portal)

    # A deal deleted in HubSpot leaves the store at the next sync.
    deleted = seeded[5]
    emulator.archive_deal(deleted)
    reviews_before = service.count(Review)
    portal.sync()
    assert sorted(row.external_id for row in portal.rows(DealSnapshotRow)) == sorted(
        set(seeded) - {deleted}
    )
    assert service.count(Review) == reviews_before, "a delete is not a review"
    assert portal.connection().last_error is None


class Crash(BaseException):
    """The worker died here."""


def test_a_crash_mid_sync_resumes_from_the_last_committed_page(
    service: Service, emulator: ServiceEmulator
) -> None:
    seeded = emulator.seed(9)
    portal = connect(service, emulator, page_size=3)
    commits: list[int] = []
    session_commit: list[Any] = []

    def commit_then_crash() -> None:
        commits.append(1)
        if len(commits) == 2:
            raise Crash  # the second page's transaction never commits
        session_commit[0]()

    def work(session: Any, connection: Any, provider: Any) -> Any:
        session_commit.append(session.commit)
        return sync_connection(session, connection, provider, commit=commit_then_crash)

    with pytest.raises(Crash):
        with_provider(service.runtime, portal.connection_id, work)

    kept = {row.external_id for row in portal.rows(DealSnapshotRow)}
    assert len(kept) == 3, "the first page was committed, the second lost"
    assert service.count(Review) == 3

    emulator.reset_calls()
    portal.sync_without_sending()

    assert sorted(row.external_id for row in portal.rows(DealSnapshotRow)) == sorted(seeded)
    assert Counter(r.deal_external_id for r in portal.rows(Review)) == Counter(seeded), (
        "every deal reviewed exactly once"
    )
    reads = emulator.call_counts().get("deals_batch_read_inputs", 0)
    assert reads == len(seeded) - 3, "the committed page was not read again"


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"ten_second_limit": 100_000}


def test_more_deals_than_one_search_may_return_are_all_synced(
    service: Service, emulator: ServiceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator's cap of 10,000 results per query, lowered to 25 (pages of 10): the
    sync restarts its query from the newest stamp after each page and never pages past
    the cap, even through 15 deals that share one ``hs_lastmodifieddate``."""
    emulator.max_search_results = 25
    monkeypatch.setattr(adapter, "SEARCH_CAP", 25)
    seeded = emulator.seed(60)
    records = sorted(emulator.portal.all("deals"), key=lambda r: r.updated_at)
    tied = records[20:35]
    for record in tied:  # a bulk import: one millisecond for fifteen deals
        record.updated_at = tied[0].updated_at
    portal = connect(service, emulator, page_size=10)
    afters: list[int] = []
    original = emulator_search.search

    def recording(*args: Any, **kwargs: Any) -> Any:
        afters.append(getattr(args[2], "after", 0) or 0)
        return original(*args, **kwargs)

    monkeypatch.setattr("integrations.hubspot.emulator.server.search", recording)

    report = portal.sync_without_sending()

    assert report.deals == len(seeded)
    assert sorted(row.external_id for row in portal.rows(DealSnapshotRow)) == sorted(seeded)
    assert Counter(r.deal_external_id for r in portal.rows(Review)) == Counter(seeded)
    assert afters and max(afters) + 10 <= 25, "never past the cap"
    assert any(after > 0 for after in afters), "the tied block was paged by offset"
    assert emulator.call_counts().get("deals_search", 0) >= 6
    assert portal.connection().last_error is None
