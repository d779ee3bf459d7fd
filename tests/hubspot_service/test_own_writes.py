"""The service's own writes come back from HubSpot and are recognised as its own.

Notes move the deal's ``hs_lastmodifieddate`` and ``notes_last_updated``; the summary
properties (``dealcoach_*``, target ``summary_fields``) move ``hs_lastmodifieddate``.
The next sync reads those deals again; that echo must change nothing: no review, no
write-back, no note."""

from __future__ import annotations

from datetime import timedelta

from app.db import utcnow
from app.reviews.models import Review
from app.writeback.models import WriteBack, WriteBackState, WriteBackTarget
from integrations.hubspot.emulator import format_datetime
from tests.pipeline.conftest import Service

from .conftest import ServiceEmulator, connect


def test_notes_and_summary_properties_echo_is_not_a_change(
    service: Service, emulator: ServiceEmulator
) -> None:
    seeded = emulator.seed(8)
    # Never called, e-mailed or met: its last activity is its last note (notes_last_updated).
    quiet = next(d for d in seeded if (emulator.deal(d) or {}).get("hs_is_closed") != "true")
    with emulator._lock:
        record = emulator.portal.require("deals", quiet)
        record.history.pop("notes_last_contacted", None)
    portal = connect(service, emulator, writeback_targets=["note", "summary_fields"])

    portal.sync()
    rows = portal.wait_until_sent()

    assert all(row.state == WriteBackState.WRITTEN for row in rows)
    summaries = [row for row in rows if row.target == WriteBackTarget.SUMMARY_FIELDS]
    assert summaries
    reviews = {review.deal_external_id: review for review in portal.rows(Review)}
    for row in summaries:
        deal = emulator.deal(row.deal_external_id) or {}
        review = reviews[row.deal_external_id]
        assert deal.get("dealcoach_summary") == review.summary[:1000]
        notes = portal.notes_on(row.deal_external_id)
        assert len(notes) == 1
    review_count, writeback_count = service.count(Review), service.count(WriteBack)
    notes = portal.note_count()
    emulator.reset_calls()

    portal.sync()

    calls = emulator.call_counts()
    assert calls.get("deals_batch_read_inputs", 0) >= len(summaries), "the echo came back"
    assert service.count(Review) == review_count, "the echo is not reviewed"
    assert service.count(WriteBack) == writeback_count
    assert portal.note_count() == notes
    assert calls.get("notes_batch_create", 0) == 0 and calls.get("deals_batch_update", 0) == 0
    assert len(seeded) == len(reviews)

    # A rep's own note later is activity: that deal is reviewed again.
    noted = quiet
    assert noted in {row.deal_external_id for row in summaries}
    _, user = portal.handle._owner()
    with emulator._lock:
        rep_note = emulator.portal.create(
            "notes",
            {
                # A second later than our notes (stamped at millisecond 999 of their
                # second), as a rep's note is in practice: one in the same second as ours
                # would be taken for ours (docs/hubspot.md).
                "hs_timestamp": format_datetime(
                    (utcnow() + timedelta(seconds=2)).replace(microsecond=123_000)
                ),
                "hs_note_body": "<p>Spoke with the CFO: budget approved.</p>",
            },
            user,
        )
        emulator.portal.associate("notes", rep_note.id, "deals", noted, [214])
    portal.sync()
    again = [r for r in portal.rows(Review) if r.deal_external_id == noted]
    assert len(again) == 2, "a rep's note is activity: reviewed again"
    assert service.count(Review) == review_count + 1
