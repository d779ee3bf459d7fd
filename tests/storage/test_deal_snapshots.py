"""Storing deal snapshots: what counts as a change, and reads that arrive out of order."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from app.coaching.engine import review_deal
from app.coaching.playbook import compile_playbook, load_playbook
from app.coaching.snapshot import SUMMARY_KEYS, DealSnapshot, is_own_field
from app.deals.serialize import snapshot_from_json
from app.deals.service import get_snapshot_row, store_snapshot
from app.reviews.pipeline import summary_fields
from integrations.salesforce.adapter import SUMMARY_FIELDS
from tests.pipeline.conftest import sample_deal
from tests.storage.test_db import make_connection

STAMP = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def deal(**changes: object) -> DealSnapshot:
    values: dict[str, object] = {"modified_at": STAMP, **changes}
    return replace(sample_deal("006A00000000001"), **values)  # type: ignore[arg-type]


def test_an_older_read_never_replaces_a_newer_one(session: Session) -> None:
    connection = make_connection(session)
    newer = deal(next_step="Security review booked", modified_at=STAMP + timedelta(minutes=2))
    older = deal(next_step="Send the deck")

    assert store_snapshot(session, connection.id, newer).changed
    stored = store_snapshot(session, connection.id, older)

    assert not stored.changed
    row = get_snapshot_row(session, connection.id, newer.id)
    assert row is not None
    assert snapshot_from_json(row.data) == newer


def test_a_newer_read_replaces_and_reads_without_stamps_always_do(session: Session) -> None:
    connection = make_connection(session)
    store_snapshot(session, connection.id, deal(next_step="one"))
    assert store_snapshot(
        session, connection.id, deal(next_step="two", modified_at=STAMP + timedelta(seconds=1))
    ).changed
    assert store_snapshot(session, connection.id, deal(next_step="three", modified_at=None)).changed
    row = get_snapshot_row(session, connection.id, "006A00000000001")
    assert row is not None and row.data["next_step"] == "three"


def test_a_touch_or_the_services_own_fields_are_not_a_change(session: Session) -> None:
    connection = make_connection(session)
    first = deal(fields={"Budget__c": "yes"})
    assert store_snapshot(session, connection.id, first).changed
    echo = deal(
        fields={"Budget__c": "yes", "Dealcoach_Health__c": "41", "dealcoach_band": "at_risk"},
        modified_at=STAMP + timedelta(minutes=1),
    )
    assert not store_snapshot(session, connection.id, echo).changed
    edited = replace(echo, fields={**echo.fields, "Budget__c": "no"})
    assert store_snapshot(session, connection.id, edited).changed


def test_evidence_fields_named_dealcoach_are_the_reps_and_count_as_changes(
    session: Session,
) -> None:
    # HubSpot evidence properties of the playbooks (dealcoach_metrics, dealcoach_champion...)
    connection = make_connection(session)
    assert store_snapshot(session, connection.id, deal(fields={"dealcoach_metrics": ""})).changed
    filled = deal(fields={"dealcoach_metrics": "Cut onboarding from 9 to 3 days"})
    assert store_snapshot(session, connection.id, filled).changed


def test_the_own_field_rule_knows_exactly_the_summary_fields_the_service_writes() -> None:
    review = review_deal(deal(), compile_playbook(load_playbook("meddpicc")), as_of=STAMP)
    assert set(summary_fields(review, "dc1-0")) == SUMMARY_KEYS
    assert set(SUMMARY_FIELDS) == SUMMARY_KEYS
    assert all(is_own_field(name) for name in SUMMARY_FIELDS.values())
    assert not is_own_field("dealcoach_metrics") and not is_own_field("Dealcoach_Champion__c")
