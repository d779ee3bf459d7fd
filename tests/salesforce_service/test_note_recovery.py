"""Notes found again: a connection created anew for the same org, and a batch whose answer
was lost after Salesforce did the work (notes created, links not)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import pytest

from app.writeback.models import WriteBackState
from tests.pipeline.conftest import Service

from .conftest import ServiceEmulator, connect, marker_of


def test_a_connection_deleted_and_created_again_for_the_same_org_writes_no_note_twice(
    service: Service, emulator: ServiceEmulator
) -> None:
    seeded = emulator.seed(4)
    first = connect(service, emulator)
    assert first.sync_without_sending().writebacks == len(seeded)
    first.send()
    written = {deal_id: first.notes_on(deal_id) for deal_id in seeded}
    assert all(len(notes) == 1 for notes in written.values())

    deleted = service.client.delete(
        f"/api/v1/connections/{first.connection_id}", headers=service.auth()
    )
    assert deleted.status_code == 204, deleted.text
    again = connect(service, emulator)
    assert again.connection_id != first.connection_id
    assert again.sync_without_sending().writebacks == len(seeded)
    again.send()

    rows = again.writebacks()
    assert len(rows) == len(seeded)
    for row in rows:
        [note] = again.notes_on(row.deal_external_id)
        assert row.state == WriteBackState.WRITTEN
        assert note == written[row.deal_external_id][0], "the old connection's note, found"
        assert row.external_id == note.external_id and marker_of(note) == row.marker
    assert again.live_note_count() == len(seeded)


def test_a_note_batch_whose_first_call_timed_out_after_salesforce_did_it_leaves_no_orphan(
    service: Service, emulator: ServiceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """13 notes are 26 records: the ContentNotes go in a first ``composite/sobjects`` call
    and their links in a second. The first call's answer arrives after the client gave up,
    so no link is made; the retry must link those notes, not write new ones."""
    seeded = emulator.seed(13)
    org = connect(service, emulator)
    assert org.sync_without_sending().writebacks == len(seeded)
    monkeypatch.setattr("integrations.salesforce.adapter.READ_TIMEOUT", 1.0)
    original = emulator.handle
    late = {"answers": 1}

    def handle(method: str, target: str, headers: Mapping[str, str], body: bytes) -> Any:
        response = original(method, target, headers, body)
        if late["answers"] and urlsplit(target).path.endswith("/composite/sobjects"):
            late["answers"] -= 1
            time.sleep(1.5)  # done in the org; the answer comes after the client's timeout
        return response

    monkeypatch.setattr(emulator, "handle", handle)

    org.send()

    assert late["answers"] == 0, "the fault was used"
    assert org.live_note_count() == len(seeded), "Salesforce created every ContentNote"
    assert all(org.notes_on(deal_id) == [] for deal_id in seeded), "and linked none"
    rows = org.writebacks()
    assert all(row.state == WriteBackState.FAILED and row.external_id is None for row in rows)

    org.pause_expires()
    org.make_due_now()
    emulator.composites.clear()
    org.send()

    assert emulator.composites == [], "no note was written again"
    for row in org.writebacks():
        [note] = org.notes_on(row.deal_external_id)
        assert row.state == WriteBackState.WRITTEN
        assert row.external_id == note.external_id and marker_of(note) == row.marker
    assert org.live_note_count() == len(seeded), "no orphan, no second note"
