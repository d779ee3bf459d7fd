"""Salesforce REST exports -> DealSnapshot (integrations/salesforce/mapping.py)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from app.coaching.snapshot import Change, Contact, DealSnapshot, Stage, StageCatalogue
from integrations.base import MappingError
from integrations.salesforce.mapping import (
    DEFAULT_STAGES,
    map_opportunity,
    parse_stage_catalogue,
    query_records,
)

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
AS_OF = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
OPP_ID = "006Hn00000Lm301AAQ"
MAYA = "005Hn00000Kq7aXIAR"
DANIEL = "005Hn00000Kq7bYIAR"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0):
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def query(*records: dict[str, Any]) -> dict[str, Any]:
    """A (sub)query response as the REST API nests it."""
    return {"totalSize": len(records), "done": True, "records": list(records)}


def attributes(sobject: str, record_id: str) -> dict[str, str]:
    return {"type": sobject, "url": f"/services/data/v59.0/sobjects/{sobject}/{record_id}"}


def opp_history(stage: str, amount: float | None, close: str, probability: int, at: str) -> dict:
    return {
        "attributes": attributes("OpportunityHistory", "008Hn00000Oh001QAA"),
        "StageName": stage,
        "Amount": amount,
        "CloseDate": close,
        "Probability": probability,
        "CreatedDate": at,
    }


def field_history(field: str, old: Any, new: Any, at: str) -> dict:
    return {
        "attributes": attributes("OpportunityFieldHistory", "017Hn00000Fh001IAA"),
        "Field": field,
        "OldValue": old,
        "NewValue": new,
        "CreatedDate": at,
    }


def contact_role(contact_id: str, role: str | None, primary: bool, name: str | None) -> dict:
    row: dict[str, Any] = {
        "attributes": attributes("OpportunityContactRole", "00KHn00000Rr001UAA"),
        "ContactId": contact_id,
        "Role": role,
        "IsPrimary": primary,
    }
    if name is not None:
        row["Contact"] = {"attributes": attributes("Contact", contact_id), "Name": name}
    return row


def opportunity(**overrides: Any) -> dict[str, Any]:
    """A realistic Opportunity row of a SOQL query with the three subqueries."""
    record: dict[str, Any] = {
        "attributes": attributes("Opportunity", OPP_ID),
        "Id": OPP_ID,
        "Name": "Northwind Logistics - Fleet Telematics Expansion",
        "StageName": "Proposal/Price Quote",
        "Amount": 84000.0,
        "CloseDate": "2026-12-18",
        "Probability": 65,
        "ForecastCategoryName": "Best Case",
        "NextStep": "Proposal walkthrough with the CFO",
        "Description": "1,200 additional vans.",
        "LastActivityDate": "2026-11-17",
        "HasOpenActivity": True,
        "HasOverdueTask": False,
        "IsClosed": False,
        "IsWon": False,
        "OwnerId": MAYA,
        "Owner": {"attributes": attributes("User", MAYA), "Name": "Maya Chen"},
        "CurrencyIsoCode": "USD",
        "CreatedDate": "2026-07-14T10:20:31.000+0000",
        "LastModifiedDate": "2026-11-06T16:20:04.000+0000",
        "Metrics__c": "Cut fuel spend 8%",
        "Economic_Buyer__c": "TBD",
        "Champion__c": None,
        "OpportunityHistories": query(
            opp_history("Prospecting", 60000, "2026-11-13", 10, "2026-07-14T10:20:31.000+0000"),
            opp_history(
                "Value Proposition", 84000, "2026-11-13", 50, "2026-08-19T09:41:57.000+0000"
            ),
            opp_history(
                "Proposal/Price Quote", 84000, "2026-12-18", 75, "2026-11-06T16:20:04.000+0000"
            ),
        ),
        "OpportunityContactRoles": query(
            contact_role("003Hn00000Pc001AAE", "Economic Buyer", True, "Hannah Reid"),
            contact_role("003Hn00000Pc002AAE", "Technical Buyer", False, "Tom Alvarez"),
        ),
        "Histories": query(
            field_history("created", None, None, "2026-07-14T10:20:31.000+0000"),
            field_history(
                "StageName",
                "Value Proposition",
                "Proposal/Price Quote",
                "2026-11-06T16:20:04.000+0000",
            ),
            field_history("CloseDate", "2026-11-13", "2026-12-18", "2026-11-06T16:20:04.000+0000"),
        ),
    }
    record.update(overrides)
    return record


def stage(key: str) -> Stage:
    found = DEFAULT_STAGES.get(key)
    assert found is not None
    return found


# --------------------------------------------------------------------------- stage catalogue


def test_default_stages_are_the_salesforce_standard_stages_in_order() -> None:
    assert [(s.key, s.order, s.probability) for s in DEFAULT_STAGES.stages] == [
        ("Prospecting", 1, 0.10),
        ("Qualification", 2, 0.10),
        ("Needs Analysis", 3, 0.20),
        ("Value Proposition", 4, 0.50),
        ("Id. Decision Makers", 5, 0.60),
        ("Perception Analysis", 6, 0.70),
        ("Proposal/Price Quote", 7, 0.75),
        ("Negotiation/Review", 8, 0.90),
        ("Closed Won", 9, 1.0),
        ("Closed Lost", 10, 0.0),
    ]
    assert [s.key for s in DEFAULT_STAGES.stages if s.is_closed] == ["Closed Won", "Closed Lost"]
    assert [s.key for s in DEFAULT_STAGES.stages if s.is_won] == ["Closed Won"]


def stage_row(api_name: str | None, label: str | None, order: int | None, percent: Any, **kw: Any):
    row: dict[str, Any] = {"attributes": attributes("OpportunityStage", "01JHn00000St001EAA")}
    if api_name is not None:
        row["ApiName"] = api_name
    if label is not None:
        row["MasterLabel"] = label
    if order is not None:
        row["SortOrder"] = order
    row["DefaultProbability"] = percent
    row.update({"IsActive": True, "IsClosed": False, "IsWon": False, **kw})
    return row


def test_parse_stage_catalogue_orders_by_sort_order_and_scales_probability_to_fraction() -> None:
    payload = query(
        stage_row("Closed Won", "Closed Won", 4, 100, IsClosed=True, IsWon=True),
        stage_row("Discovery", "Discovery", 1, 10),
        stage_row("Closed Lost", "Closed Lost", 5, 0, IsClosed=True),
        stage_row("Solution_Design", "Solution Design", 2, 35),
    )
    catalogue = parse_stage_catalogue(payload)
    assert catalogue.stages == (
        Stage("Discovery", "Discovery", 1, 0.10),
        Stage("Solution_Design", "Solution Design", 2, 0.35),
        Stage("Closed Won", "Closed Won", 4, 1.0, is_closed=True, is_won=True),
        Stage("Closed Lost", "Closed Lost", 5, 0.0, is_closed=True),
    )
    assert "Solution_Design" in catalogue
    assert catalogue.pipeline is None


def test_parse_stage_catalogue_keys_by_master_label_when_api_name_was_not_selected() -> None:
    catalogue = parse_stage_catalogue(query(stage_row(None, "Needs Analysis", 3, 20)))
    assert catalogue.stages == (Stage("Needs Analysis", "Needs Analysis", 3, 0.2),)


def test_parse_stage_catalogue_keeps_inactive_stages_because_old_deals_use_them() -> None:
    catalogue = parse_stage_catalogue(
        query(stage_row("Legacy Pilot", "Legacy Pilot", 3, 40, IsActive=False))
    )
    assert catalogue.get("Legacy Pilot") == Stage("Legacy Pilot", "Legacy Pilot", 3, 0.4)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "expected an object"),
        ({"totalSize": 0, "done": True}, "'records' must be a list"),
        (query(stage_row(None, None, 1, 10)), "missing ApiName and MasterLabel"),
        (query(stage_row("A", "A", 1, 10), stage_row("A", "A", 2, 20)), "duplicate stage 'A'"),
        (query(stage_row("A", "A", 1, 150)), "not within 0-100"),
        (query(stage_row("A", "A", 1, "ten")), "DefaultProbability: not a number"),
    ],
)
def test_parse_stage_catalogue_rejects_malformed_responses(payload: Any, message: str) -> None:
    with pytest.raises(MappingError, match=message) as raised:
        parse_stage_catalogue(payload)
    assert raised.value.record_id is None


# --------------------------------------------------------------------------- query_records


def test_query_records_returns_the_records_of_a_query_response() -> None:
    payload = {
        "totalSize": 2,
        "done": False,
        "nextRecordsUrl": "/services/data/v59.0/query/01gHn-2000",
        "records": [opportunity(), opportunity(Id="006Hn00000Lm302AAQ")],
    }
    assert [r["Id"] for r in query_records(payload)] == [OPP_ID, "006Hn00000Lm302AAQ"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (None, "expected an object with 'records', got null"),
        ([opportunity()], "expected an object with 'records', got list"),
        ({"totalSize": 1, "done": True}, "'records' must be a list, got null"),
        ({"records": {"Id": OPP_ID}}, "'records' must be a list, got dict"),
        ({"records": [opportunity(), "006Hn00000Lm302AAQ"]}, r"records\[1\] must be an object"),
    ],
)
def test_query_records_rejects_other_shapes_with_a_clear_message(
    payload: Any, message: str
) -> None:
    with pytest.raises(MappingError, match=message):
        query_records(payload)


# --------------------------------------------------------------------------- map_opportunity


def test_map_opportunity_maps_the_standard_fields() -> None:
    deal = map_opportunity(opportunity(), DEFAULT_STAGES)
    assert deal.id == OPP_ID
    assert deal.name == "Northwind Logistics - Fleet Telematics Expansion"
    assert deal.stage == stage("Proposal/Price Quote")
    assert deal.amount == 84000.0
    assert deal.currency == "USD"
    assert deal.close_date == date(2026, 12, 18)
    assert deal.created_at == utc(2026, 7, 14, 10, 20, 31)
    assert deal.owner_id == MAYA
    assert deal.owner_name == "Maya Chen"
    assert deal.next_step == "Proposal walkthrough with the CFO"
    assert deal.description == "1,200 additional vans."
    assert deal.last_activity_at == utc(2026, 11, 17)
    assert deal.has_future_activity is True
    assert deal.next_activity_at is None
    assert deal.forecast_category == "Best Case"
    assert deal.contacts == (
        Contact("003Hn00000Pc001AAE", ("Economic Buyer",), True, "Hannah Reid"),
        Contact("003Hn00000Pc002AAE", ("Technical Buyer",), False, "Tom Alvarez"),
    )
    assert deal.contact_count is None
    assert deal.stage_entered_at is None  # not stated: the engine derives it from history
    assert deal.stage_history == (
        Change(utc(2026, 8, 19, 9, 41, 57), stage("Prospecting"), stage("Value Proposition")),
        Change(
            utc(2026, 11, 6, 16, 20, 4), stage("Value Proposition"), stage("Proposal/Price Quote")
        ),
    )
    assert deal.amount_history == (Change(utc(2026, 8, 19, 9, 41, 57), 60000.0, 84000.0),)
    assert deal.close_date_history == (
        Change(utc(2026, 11, 6, 16, 20, 4), date(2026, 11, 13), date(2026, 12, 18)),
    )
    assert deal.owner_history == ()
    assert deal.fields == {"Metrics__c": "Cut fuel spend 8%", "Economic_Buyer__c": "TBD"}
    assert deal.pipeline is None
    assert deal.is_open


def test_map_opportunity_with_only_the_required_fields() -> None:
    record = {
        "attributes": attributes("Opportunity", OPP_ID),
        "Id": OPP_ID,
        "StageName": "Qualification",
        "CreatedDate": "2026-10-14T14:27:15.000+0000",
    }
    deal = map_opportunity(record, DEFAULT_STAGES)
    assert deal == DealSnapshot(
        id=OPP_ID,
        name=OPP_ID,  # no Name selected: the id stands in
        stage=stage("Qualification"),
        created_at=utc(2026, 10, 14, 14, 27, 15),
        contacts_known=False,  # the contact-role subquery was not selected
        recorded_fields=frozenset({"Id", "StageName", "CreatedDate"}),  # what was selected
    )


def test_null_fields_and_null_subqueries_map_to_nothing() -> None:
    record = opportunity(
        Amount=None,
        CloseDate=None,
        NextStep=None,
        Description="   ",
        LastActivityDate=None,
        HasOpenActivity=None,
        ForecastCategoryName=None,
        OwnerId=None,
        Owner=None,
        OpportunityHistories=None,
        OpportunityContactRoles=None,
        Histories=None,
    )
    deal = map_opportunity(record, DEFAULT_STAGES)
    assert (deal.amount, deal.close_date, deal.next_step, deal.description) == (None,) * 4
    assert (deal.last_activity_at, deal.forecast_category, deal.owner_id) == (None,) * 3
    assert deal.owner_name is None
    assert deal.has_future_activity is False
    assert deal.contacts == ()
    assert deal.stage_history == deal.amount_history == deal.close_date_history == ()


def test_missing_subqueries_map_like_empty_ones() -> None:
    record = opportunity()
    for name in ("OpportunityHistories", "OpportunityContactRoles", "Histories"):
        del record[name]
    deal = map_opportunity(record, DEFAULT_STAGES)
    assert deal.contacts == () and deal.stage_history == () and deal.owner_history == ()


@pytest.mark.parametrize(
    "created",
    [
        "2026-05-20T20:49:32.000+0000",
        "2026-05-20T20:49:32Z",
        "2026-05-20T20:49:32.000Z",
        "2026-05-20T22:49:32+02:00",
        "2026-05-20T15:49:32.000-05:00",
        "2026-05-20T20:49:32",  # no offset: taken as UTC
    ],
)
def test_datetimes_in_salesforce_and_iso_8601_forms_become_utc(created: str) -> None:
    deal = map_opportunity(opportunity(CreatedDate=created), DEFAULT_STAGES)
    assert deal.created_at == utc(2026, 5, 20, 20, 49, 32)
    assert deal.created_at.utcoffset() is not None


def test_last_activity_date_is_a_date_and_becomes_midnight_utc() -> None:
    deal = map_opportunity(opportunity(LastActivityDate="2026-10-27"), DEFAULT_STAGES)
    assert deal.last_activity_at == utc(2026, 10, 27)


def test_last_stage_change_date_when_the_org_has_it_sets_stage_entered_at() -> None:
    record = opportunity(LastStageChangeDate="2026-11-06T16:20:04.000+0000")
    deal = map_opportunity(record, DEFAULT_STAGES)
    assert deal.stage_entered_at == utc(2026, 11, 6, 16, 20, 4)


def test_stage_probability_comes_from_the_catalogue_not_the_record() -> None:
    deal = map_opportunity(opportunity(Probability=5), DEFAULT_STAGES)
    assert deal.stage.probability == 0.75


def test_stage_name_resolves_by_master_label_when_api_name_differs() -> None:
    catalogue = StageCatalogue(
        stages=(
            Stage("Discovery_Call", "Discovery Call", 1, 0.1),
            Stage("Proposal_Sent", "Proposal Sent", 2, 0.6),
        )
    )
    record = opportunity(StageName="Proposal Sent", OpportunityHistories=None, Histories=None)
    assert map_opportunity(record, catalogue).stage.key == "Proposal_Sent"


def test_closed_won_deal_is_closed_and_won() -> None:
    record = opportunity(StageName="Closed Won", IsClosed=True, IsWon=True)
    deal = map_opportunity(record, DEFAULT_STAGES)
    assert deal.stage.is_closed and deal.stage.is_won and not deal.is_open


def test_record_closed_flags_win_over_a_catalogue_that_disagrees() -> None:
    # e.g. a catalogue built from an older describe, before the stage was closed
    catalogue = StageCatalogue(stages=(Stage("Signed", "Signed", 1, 0.95),))
    record = opportunity(StageName="Signed", IsClosed=True, IsWon=True, OpportunityHistories=None)
    deal = map_opportunity(record, catalogue)
    assert (deal.stage.is_closed, deal.stage.is_won, deal.stage.probability) == (True, True, 0.95)


# --------------------------------------------------------------------------- history


def test_a_history_row_that_changes_only_the_amount_is_not_a_stage_change() -> None:
    record = opportunity(
        StageName="Value Proposition",
        Amount=62000,
        OpportunityHistories=query(
            opp_history("Prospecting", 55000, "2027-01-29", 10, "2026-07-06T11:50:02.000+0000"),
            opp_history(
                "Value Proposition", 55000, "2027-01-29", 50, "2026-09-08T10:14:26.000+0000"
            ),
            opp_history(
                "Value Proposition", 60000, "2027-01-29", 50, "2026-10-20T16:41:08.000+0000"
            ),
            opp_history(
                "Value Proposition", 62000, "2027-01-29", 50, "2026-11-10T09:22:37.000+0000"
            ),
        ),
        Histories=None,
    )
    deal = map_opportunity(record, DEFAULT_STAGES)
    assert deal.stage_history == (
        Change(utc(2026, 9, 8, 10, 14, 26), stage("Prospecting"), stage("Value Proposition")),
    )
    assert deal.amount_history == (
        Change(utc(2026, 10, 20, 16, 41, 8), 55000.0, 60000.0),
        Change(utc(2026, 11, 10, 9, 22, 37), 60000.0, 62000.0),
    )
    assert deal.close_date_history == ()


def test_a_close_date_only_row_is_not_a_stage_change_and_rows_are_sorted_by_time() -> None:
    record = opportunity(
        OpportunityHistories=query(  # out of order on purpose: SOQL did not ORDER BY
            opp_history("Value Proposition", 1, "2026-09-15", 50, "2026-09-10T14:16:45Z"),
            opp_history("Value Proposition", 1, "2026-06-30", 50, "2026-06-09T10:03:51Z"),
            opp_history("Value Proposition", 1, "2026-12-18", 50, "2026-09-14T17:02:18Z"),
            opp_history("Value Proposition", 1, "2026-08-31", 50, "2026-06-22T16:21:07Z"),
        ),
        Histories=None,
    )
    deal = map_opportunity(record, DEFAULT_STAGES)
    assert deal.stage_history == ()
    assert [(c.old, c.new) for c in deal.close_date_history] == [
        (date(2026, 6, 30), date(2026, 8, 31)),
        (date(2026, 8, 31), date(2026, 9, 15)),
        (date(2026, 9, 15), date(2026, 12, 18)),
    ]


def test_owner_change_keeps_the_row_with_user_ids_and_drops_the_row_with_names() -> None:
    at = "2026-11-04T15:40:12.000+0000"
    record = opportunity(
        OwnerId=DANIEL,
        Histories=query(
            field_history("Owner", "Maya Chen", "Daniel Okafor", at),
            field_history("Owner", MAYA, DANIEL, at),
        ),
    )
    deal = map_opportunity(record, DEFAULT_STAGES)
    assert deal.owner_history == (Change(utc(2026, 11, 4, 15, 40, 12), MAYA, DANIEL),)


def test_owner_change_with_15_character_ids_is_kept() -> None:
    record = opportunity(
        Histories=query(field_history("Owner", "005Hn00000Kq7aX", "005Hn00000Kq7bY", "2026-11-04"))
    )
    deal = map_opportunity(record, DEFAULT_STAGES)
    assert [(c.old, c.new) for c in deal.owner_history] == [("005Hn00000Kq7aX", "005Hn00000Kq7bY")]


def test_created_rows_and_untracked_fields_in_field_history_are_not_changes() -> None:
    record = opportunity(
        OpportunityHistories=None,
        Histories=query(
            field_history("created", None, None, "2026-07-14T10:20:31.000+0000"),
            field_history("NextStep", "Call", "Demo", "2026-08-01T10:00:00.000+0000"),
            field_history("ForecastCategoryName", "Pipeline", "Commit", "2026-08-02T10:00:00Z"),
        ),
    )
    deal = map_opportunity(record, DEFAULT_STAGES)
    assert deal.stage_history == deal.amount_history == deal.close_date_history == ()
    assert deal.owner_history == ()


def test_field_history_rows_that_do_not_change_the_value_are_dropped() -> None:
    record = opportunity(
        OpportunityHistories=None,
        Histories=query(field_history("Amount", 84000, 84000.0, "2026-08-01T10:00:00Z")),
    )
    assert map_opportunity(record, DEFAULT_STAGES).amount_history == ()


def test_both_history_sources_merge_without_counting_a_change_twice() -> None:
    record = opportunity(
        StageName="Negotiation/Review",
        Amount=90000,
        CloseDate="2026-12-18",
        OpportunityHistories=query(
            opp_history("Prospecting", 84000, "2026-11-13", 10, "2026-07-14T10:20:31.000+0000"),
            opp_history(
                "Proposal/Price Quote", 84000, "2026-11-13", 75, "2026-09-16T14:12:03.000+0000"
            ),
            opp_history(
                "Negotiation/Review", 90000, "2026-12-18", 90, "2026-10-23T17:30:45.000+0000"
            ),
        ),
        Histories=query(
            # the same stage change as the OpportunityHistory row, 2 s apart
            field_history(
                "StageName", "Prospecting", "Proposal/Price Quote", "2026-09-16T14:12:05.000+0000"
            ),
            # the same amount and close date changes, same second
            field_history("Amount", 84000, 90000, "2026-10-23T17:30:45.000+0000"),
            field_history("CloseDate", "2026-11-13", "2026-12-18", "2026-10-23T17:30:45.000+0000"),
            # only in field history: a push and a pull-in between the snapshots
            field_history("CloseDate", "2026-11-13", "2026-11-30", "2026-10-01T09:00:00.000+0000"),
            field_history("CloseDate", "2026-11-30", "2026-11-13", "2026-10-02T09:00:00.000+0000"),
        ),
    )
    deal = map_opportunity(record, DEFAULT_STAGES)
    assert [(c.at, c.new.key if c.new else None) for c in deal.stage_history] == [
        (utc(2026, 9, 16, 14, 12, 3), "Proposal/Price Quote"),
        (utc(2026, 10, 23, 17, 30, 45), "Negotiation/Review"),
    ]
    assert deal.amount_history == (Change(utc(2026, 10, 23, 17, 30, 45), 84000.0, 90000.0),)
    assert [(c.at.date(), c.old, c.new) for c in deal.close_date_history] == [
        (date(2026, 10, 1), date(2026, 11, 13), date(2026, 11, 30)),
        (date(2026, 10, 2), date(2026, 11, 30), date(2026, 11, 13)),
        (date(2026, 10, 23), date(2026, 11, 13), date(2026, 12, 18)),
    ]


def test_the_same_new_value_minutes_apart_is_two_changes() -> None:
    record = opportunity(
        OpportunityHistories=query(
            opp_history("Prospecting", 1, "2026-11-13", 10, "2026-07-14T10:00:00Z"),
            opp_history("Qualification", 1, "2026-11-13", 10, "2026-07-20T10:00:00Z"),
        ),
        Histories=query(
            field_history("StageName", "Needs Analysis", "Qualification", "2026-07-20T10:05:00Z")
        ),
    )
    assert len(map_opportunity(record, DEFAULT_STAGES).stage_history) == 2


def test_an_unknown_stage_in_history_is_kept_unplaced_with_the_row_probability() -> None:
    record = opportunity(
        OpportunityHistories=query(
            opp_history("Discovery (retired)", 50000, "2026-12-18", 15, "2026-07-14T10:20:31Z"),
            opp_history("Proposal/Price Quote", 50000, "2026-12-18", 75, "2026-09-16T14:12:03Z"),
        ),
        Histories=query(
            field_history("StageName", "Pilot (retired)", "Discovery (retired)", "2026-07-01")
        ),
    )
    deal = map_opportunity(record, DEFAULT_STAGES)
    assert deal.stage_history == (
        Change(
            utc(2026, 7, 1),
            Stage("Pilot (retired)", "Pilot (retired)", None, 0.0),
            Stage("Discovery (retired)", "Discovery (retired)", None, 0.0),
        ),
        Change(
            utc(2026, 9, 16, 14, 12, 3),
            Stage("Discovery (retired)", "Discovery (retired)", None, 0.15),
            stage("Proposal/Price Quote"),
        ),
    )


# --------------------------------------------------------------------------- contacts, fields


def test_contact_roles_are_grouped_per_contact() -> None:
    record = opportunity(
        OpportunityContactRoles=query(
            contact_role("003Hn00000Pc001AAE", "Economic Buyer", False, "Hannah Reid"),
            contact_role("003Hn00000Pc002AAE", None, False, None),
            contact_role("003Hn00000Pc001AAE", "Decision Maker", True, "Hannah Reid"),
            contact_role("003Hn00000Pc001AAE", "Economic Buyer", False, "Hannah Reid"),
            {"attributes": attributes("OpportunityContactRole", "x"), "Role": "Influencer"},
        )
    )
    deal = map_opportunity(record, DEFAULT_STAGES)
    assert deal.contacts == (
        Contact("003Hn00000Pc001AAE", ("Economic Buyer", "Decision Maker"), True, "Hannah Reid"),
        Contact("003Hn00000Pc002AAE", (), False, None),
    )
    assert deal.number_of_contacts == 2


def test_custom_fields_with_scalar_values_go_into_fields_as_strings() -> None:
    record = opportunity(
        Metrics__c="Scrap rate from 4.1% to 2.5%",
        Economic_Buyer__c="TBD",
        Champion__c="",
        Competition__c=None,
        Seats__c=1200,
        Discount__c=12.5,
        Budget__c=250000.0,
        Budget_Approved__c=True,
        acme__Partner_Involved__c=False,
        Partner__r={"attributes": attributes("Account", "001x"), "Name": "Acme"},
        Tags__c=["a", "b"],
        PushCount=3,
    )
    assert map_opportunity(record, DEFAULT_STAGES).fields == {
        "Metrics__c": "Scrap rate from 4.1% to 2.5%",
        "Economic_Buyer__c": "TBD",
        "Seats__c": "1200",
        "Discount__c": "12.5",
        "Budget__c": "250000",
        "Budget_Approved__c": "true",
        "acme__Partner_Involved__c": "false",
    }


# --------------------------------------------------------------------------- errors


def test_mapping_error_carries_the_record_id_and_message() -> None:
    error = MappingError("006x", "CloseDate: not a date: 'soon'")
    assert isinstance(error, ValueError)
    assert (error.record_id, error.message) == ("006x", "CloseDate: not a date: 'soon'")
    assert str(error) == "record 006x: CloseDate: not a date: 'soon'"


def test_an_unknown_current_stage_raises_naming_the_record_and_the_stage() -> None:
    with pytest.raises(MappingError) as raised:
        map_opportunity(opportunity(StageName="Verbal Commit"), DEFAULT_STAGES)
    assert raised.value.record_id == OPP_ID
    assert "StageName" in raised.value.message and "'Verbal Commit'" in raised.value.message
    assert OPP_ID in str(raised.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"Id": None}, "missing Id"),
        ({"Id": ""}, "missing Id"),
        ({"StageName": None}, "missing StageName"),
        ({"CreatedDate": None}, "missing CreatedDate"),
    ],
)
def test_a_missing_required_field_raises(overrides: dict[str, Any], message: str) -> None:
    record = opportunity(**overrides)
    with pytest.raises(MappingError, match=message) as raised:
        map_opportunity(record, DEFAULT_STAGES)
    assert raised.value.record_id == (None if "Id" in overrides else OPP_ID)


def test_a_record_without_id_key_raises_without_a_record_id() -> None:
    record = opportunity()
    del record["Id"]
    with pytest.raises(MappingError, match="missing Id") as raised:
        map_opportunity(record, DEFAULT_STAGES)
    assert raised.value.record_id is None


@pytest.mark.parametrize("bad", ["2026-13-45", "31/12/2026", "next Friday", 20261231])
def test_a_bad_close_date_raises_naming_the_field(bad: Any) -> None:
    with pytest.raises(MappingError, match="CloseDate") as raised:
        map_opportunity(opportunity(CloseDate=bad), DEFAULT_STAGES)
    assert raised.value.record_id == OPP_ID


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"CreatedDate": "yesterday"}, "CreatedDate"),
        ({"LastActivityDate": "2026-02-30"}, "LastActivityDate"),
        ({"LastStageChangeDate": "2026-11-06 4pm"}, "LastStageChangeDate"),
    ],
)
def test_a_bad_datetime_raises_naming_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(MappingError, match=field):
        map_opportunity(opportunity(**overrides), DEFAULT_STAGES)


def test_a_bad_date_in_history_raises_naming_the_row() -> None:
    record = opportunity(
        OpportunityHistories=query(opp_history("Prospecting", 1, "2026-11-31", 10, "2026-07-14"))
    )
    with pytest.raises(MappingError, match=r"OpportunityHistories\[0\]\.CloseDate"):
        map_opportunity(record, DEFAULT_STAGES)
    record = opportunity(Histories=query(field_history("StageName", "A", "B", "last week")))
    with pytest.raises(MappingError, match=r"Histories\[0\]\.CreatedDate"):
        map_opportunity(record, DEFAULT_STAGES)


@pytest.mark.parametrize("bad", ["a lot", "84,000", True, {"value": 84000}, "NaN"])
def test_a_non_numeric_amount_raises_naming_the_field(bad: Any) -> None:
    with pytest.raises(MappingError, match="Amount") as raised:
        map_opportunity(opportunity(Amount=bad), DEFAULT_STAGES)
    assert raised.value.record_id == OPP_ID


def test_a_numeric_string_amount_is_accepted() -> None:
    assert map_opportunity(opportunity(Amount="125000.50"), DEFAULT_STAGES).amount == 125000.5


@pytest.mark.parametrize("bad", [[], "none", {"totalSize": 1, "done": True}, {"records": [1]}])
def test_a_malformed_subquery_raises_naming_it(bad: Any) -> None:
    with pytest.raises(MappingError, match="OpportunityContactRoles"):
        map_opportunity(opportunity(OpportunityContactRoles=bad), DEFAULT_STAGES)


def test_a_record_that_is_not_an_object_raises() -> None:
    with pytest.raises(MappingError, match="expected an Opportunity record object"):
        map_opportunity("006Hn00000Lm301AAQ", DEFAULT_STAGES)  # type: ignore[arg-type]


def test_mapping_does_not_modify_the_record() -> None:
    record = opportunity()
    before = copy.deepcopy(record)
    map_opportunity(record, DEFAULT_STAGES)
    assert record == before


# --------------------------------------------------------------------------- bundled samples


def load(relative: str) -> Any:
    return json.loads((SAMPLES / relative).read_text(encoding="utf-8"))


def sample_stages() -> StageCatalogue:
    return parse_stage_catalogue(load("salesforce_stages.json"))


def test_the_sample_stage_catalogue_parses_to_the_standard_stages() -> None:
    assert sample_stages().stages == DEFAULT_STAGES.stages


SAMPLE_RECORDS = query_records(load("salesforce_opportunities.json"))


@pytest.mark.parametrize("record", SAMPLE_RECORDS, ids=lambda record: record["Name"])
def test_every_sample_opportunity_maps(record: dict[str, Any]) -> None:
    assert "attributes" in record
    deal = map_opportunity(record, sample_stages())
    assert deal.id == record["Id"]
    assert deal == map_opportunity(record, DEFAULT_STAGES)


def test_the_samples_have_about_a_dozen_deals_three_owners_and_won_and_lost() -> None:
    deals = [map_opportunity(r, DEFAULT_STAGES) for r in SAMPLE_RECORDS]
    assert 15 <= len(deals) <= 40
    assert len({d.owner_id for d in deals}) == 3
    assert {d.stage.key for d in deals if d.stage.is_closed} == {"Closed Won", "Closed Lost"}
    assert all(5000 <= (d.amount or 0) <= 750000 for d in deals)
    # A standard org: no methodology custom fields, so none is recorded.
    assert all(not d.fields for d in deals)
    assert all(d.recorded_fields is not None for d in deals)
    assert not any("Metrics__c" in (d.recorded_fields or ()) for d in deals)
    # Some records carry LastStageChangeDate; one history starts inside its stage.
    assert any(d.stage_entered_field == "LastStageChangeDate" for d in deals)
    assert any(
        d.stage_entered_at is None
        and d.stage_history_from is not None
        and d.stage_history_from - d.created_at > timedelta(days=30)
        and not any(c.new and c.new.key == d.stage.key for c in d.stage_history)
        for d in deals
    )
    assert any(d.deal_type == "Renewal" for d in deals)


def test_each_sample_deal_shows_exactly_the_signals_it_is_meant_to(
    sample_generator: ModuleType, signals_of: Callable[[DealSnapshot], set[str]]
) -> None:
    meant = {f"{d.account} - {d.title}": set(d.signals) for d in sample_generator.SF_DEALS}
    shown = {r["Name"]: signals_of(map_opportunity(r, DEFAULT_STAGES)) for r in SAMPLE_RECORDS}
    assert shown == meant


def test_the_stalled_sample_has_recent_amount_only_rows_so_a_naive_stage_clock_is_wrong() -> None:
    record = next(r for r in SAMPLE_RECORDS if r["Name"].startswith("Tailspin Toys"))
    rows = record["OpportunityHistories"]["records"]
    latest = max(datetime.fromisoformat(row["CreatedDate"]) for row in rows)
    assert (AS_OF - latest).days < 30  # the latest history row is recent...
    deal = map_opportunity(record, DEFAULT_STAGES)
    assert (AS_OF - deal.stage_history[-1].at).days > 30  # ...but the stage is old
    assert len(deal.amount_history) == 2


def test_the_bundled_sample_files_match_their_generator(sample_generator: ModuleType) -> None:
    for relative, payload in sample_generator.build().items():
        text = sample_generator.render(payload)
        assert (SAMPLES / relative).read_text(encoding="utf-8") == text, (
            f"samples/{relative} is stale: run python samples/make_samples.py"
        )


def test_the_bad_sample_has_one_good_record_and_one_with_an_unknown_stage() -> None:
    good, bad = query_records(load("bad/salesforce_unknown_stage.json"))
    assert map_opportunity(good, sample_stages()).stage.key == "Qualification"
    with pytest.raises(MappingError, match="'Verbal Commit'") as raised:
        map_opportunity(bad, sample_stages())
    assert raised.value.record_id == bad["Id"]


def test_given_no_contact_role_subquery_then_contacts_are_unknown() -> None:
    record = {"Id": OPP_ID, "StageName": "Qualification", "CreatedDate": "2026-10-14"}
    assert map_opportunity(record, DEFAULT_STAGES).contacts_known is False


def test_given_a_null_contact_role_subquery_then_contacts_are_known_to_be_none() -> None:
    record = {
        "Id": OPP_ID,
        "StageName": "Qualification",
        "CreatedDate": "2026-10-14",
        "OpportunityContactRoles": None,  # how Salesforce sends an empty subquery
    }
    deal = map_opportunity(record, DEFAULT_STAGES)
    assert deal.contacts_known is True
    assert deal.contacts == ()


# --------------------------------------------------------------- out-of-range values, strict ids


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        pytest.param({"Amount": 10**400}, "Amount", id="huge-integer-amount"),
        pytest.param({"CreatedDate": "9999-12-31T23:00:00-05:00"}, "CreatedDate", id="created"),
        pytest.param({"CloseDate": "9999-12-31T23:00:00-05:00"}, "CloseDate", id="close-date"),
        pytest.param({"CloseDate": "0001-01-01T00:00:00+05:00"}, "CloseDate", id="before-year-1"),
        pytest.param(
            {"LastStageChangeDate": "9999-12-31T23:00:00-05:00"}, "LastStageChangeDate", id="stage"
        ),
        pytest.param(
            {"OpportunityHistories": query(opp_history("Prospecting", 10**400, "2026-12-01", 10,
                                                       "2026-07-14T10:00:00.000+0000"))},
            "OpportunityHistories[0].Amount",
            id="huge-integer-in-history",
        ),
    ],
)  # fmt: skip
def test_given_a_value_beyond_the_range_of_floats_or_dates_then_a_mapping_error_names_the_field(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(MappingError) as raised:
        map_opportunity(opportunity(**overrides), DEFAULT_STAGES)

    assert raised.value.record_id == OPP_ID
    assert raised.value.message.startswith(f"{field}: ")


@pytest.mark.parametrize(
    "bad",
    [
        "006Hn00000Lm30",  # 14
        "006Hn00000Lm301AA",  # 17
        "006Hn00000Lm301AAQX",  # 19
        "006Hn00000Lm301AA!",
        "006' OR Id != '",
        " 006Hn00000Lm301AAQ",
        "006Hn00000Lm301ÄAQ",
        "bad--><script>",
        123456789012345,
        True,
        ["006Hn00000Lm301AAQ"],
        {"Id": "006Hn00000Lm301AAQ"},
    ],
)
def test_given_an_id_that_is_not_15_or_18_alphanumerics_then_a_mapping_error_names_id(
    bad: Any,
) -> None:
    with pytest.raises(MappingError) as raised:
        map_opportunity(opportunity(Id=bad), DEFAULT_STAGES)

    assert raised.value.record_id is None
    assert raised.value.message.startswith("Id: ")


def test_given_a_15_character_id_then_it_is_accepted_as_is() -> None:
    assert (
        map_opportunity(opportunity(Id="006Hn00000Lm301"), DEFAULT_STAGES).id == "006Hn00000Lm301"
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"Name": {"first": "Acme"}}, "Name"),
        ({"Name": ["Acme"]}, "Name"),
        ({"StageName": {"value": "Prospecting"}}, "StageName"),
        ({"OwnerId": ["005Hn00000AbcdeAAA"]}, "OwnerId"),
        ({"NextStep": True}, "NextStep"),
        (
            {"OpportunityContactRoles": query(contact_role("003x", {"r": 1}, False, None))},  # type: ignore[arg-type]
            "OpportunityContactRoles[0].Role",
        ),
    ],
)
def test_given_a_name_or_id_that_is_not_text_then_a_mapping_error_names_the_field(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(MappingError) as raised:
        map_opportunity(opportunity(**overrides), DEFAULT_STAGES)

    assert raised.value.message.startswith(f"{field}: expected text, got ")
    assert "{" not in raised.value.message and "[" not in raised.value.message.split(": ", 1)[1]
