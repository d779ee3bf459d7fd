"""HubSpot CRM exports -> DealSnapshot (integrations/hubspot/mapping.py)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from app.coaching.engine import stage_clock
from app.coaching.snapshot import Change, Contact, DealSnapshot, Stage, StageCatalogue
from app.coaching.vocabulary import SIGNAL_CODES
from integrations.base import MappingError
from integrations.hubspot.mapping import DEFAULT_PIPELINE, deal_results, map_deal, parse_pipelines
from integrations.salesforce.mapping import DEFAULT_STAGES, map_opportunity, query_records

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
DEAL_ID = "18765432137"
RENEWALS = StageCatalogue(
    stages=(
        Stage("152003001", "Renewal Identified", 0, 0.6),
        Stage("152003002", "Pricing Proposed", 1, 0.75),
        Stage("152003004", "Renewed", 2, 1.0, is_closed=True, is_won=True),
    ),
    pipeline="81234567",
)
PIPELINES = {"default": DEFAULT_PIPELINE, "81234567": RENEWALS}


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0):
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def stage(key: str) -> Stage:
    found = DEFAULT_PIPELINE.get(key)
    assert found is not None
    return found


def entry(value: str | None, timestamp: str, source: str = "CRM_UI") -> dict[str, Any]:
    return {
        "value": value,
        "timestamp": timestamp,
        "sourceType": source,
        "sourceId": "userId:9912001",
        "updatedByUserId": 9912001,
    }


def v4(contact_id: int, *labels: str | None) -> dict[str, Any]:
    types = [{"category": "HUBSPOT_DEFINED", "typeId": 3, "label": None}]
    types += [{"category": "USER_DEFINED", "typeId": 29, "label": label} for label in labels]
    return {"toObjectId": contact_id, "associationTypes": types}


def deal(properties: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """A realistic deal object (v3 objects API), with overrides."""
    props: dict[str, Any] = {
        "amount": "118000",
        "closedate": "2026-12-19T00:00:00Z",
        "createdate": "2026-07-01T09:35:27.125Z",
        "deal_currency_code": "USD",
        "dealname": "Harbor Freightways - Route Optimisation",
        "dealstage": "presentationscheduled",
        "description": "Dynamic routing for 220 trucks.",
        "hs_is_closed": "false",
        "hs_is_closed_won": "false",
        "hs_lastmodifieddate": "2026-11-03T10:26:19.337Z",
        "hs_next_step": "Route simulation results with the dispatch leads",
        "hs_object_id": DEAL_ID,
        "hs_deal_stage_probability": "0.6",
        "hubspot_owner_id": "41530210",
        "notes_last_contacted": "2026-11-18T17:05:00.000Z",
        "notes_last_updated": "2026-11-19T08:00:00.000Z",
        "notes_next_activity_date": "2026-11-25T15:00:00.000Z",
        "num_associated_contacts": "2",
        "pipeline": "default",
        "hs_v2_date_entered_qualifiedtobuy": "2026-07-22T13:14:50.350Z",
        "hs_v2_date_entered_presentationscheduled": "2026-11-03T10:26:19.337Z",
        "dealcoach_metrics": "Miles per stop down 12%",
        "dealcoach_champion": "TBD",
        "dealcoach_competition": "",
        "dealcoach_paper_process": None,
    }
    props.update(properties or {})
    obj: dict[str, Any] = {
        "id": DEAL_ID,
        "properties": props,
        "propertiesWithHistory": {
            "dealstage": [
                entry("presentationscheduled", "2026-11-03T10:26:19.337Z"),
                entry("qualifiedtobuy", "2026-07-22T13:14:50.350Z"),
                entry("appointmentscheduled", "2026-07-01T09:35:27.125Z"),
            ],
            "closedate": [
                entry("2026-12-19T00:00:00Z", "2026-10-29T16:48:03.021Z"),
                entry("2026-10-31T00:00:00Z", "2026-09-28T11:02:36.252Z"),
                entry("2026-09-30T00:00:00Z", "2026-07-01T09:35:27.125Z"),
            ],
            "amount": [entry("118000", "2026-07-01T09:35:27.125Z")],
            "hubspot_owner_id": [entry("41530210", "2026-07-01T09:35:27.125Z")],
        },
        "createdAt": "2026-07-01T09:35:27.125Z",
        "updatedAt": "2026-11-03T10:26:19.337Z",
        "archived": False,
        "associations": {
            "contacts": {"results": [v4(85012311, "Economic Buyer"), v4(85012312, None)]}
        },
    }
    obj.update(top)
    return obj


def pipeline_stage(stage_id: str, label: str, order: int, probability: Any, closed: Any):
    return {
        "label": label,
        "displayOrder": order,
        "metadata": {"isClosed": closed, "probability": probability},
        "id": stage_id,
        "createdAt": "2024-03-11T15:02:44.182Z",
        "updatedAt": "2024-03-11T15:02:44.182Z",
        "archived": False,
        "writePermissions": "CRUD_ALL",
    }


# --------------------------------------------------------------------------- pipelines


def test_default_pipeline_is_hubspots_default_sales_pipeline() -> None:
    assert DEFAULT_PIPELINE.pipeline == "default"
    assert [(s.key, s.label, s.order, s.probability) for s in DEFAULT_PIPELINE.stages] == [
        ("appointmentscheduled", "Appointment Scheduled", 0, 0.2),
        ("qualifiedtobuy", "Qualified To Buy", 1, 0.4),
        ("presentationscheduled", "Presentation Scheduled", 2, 0.6),
        ("decisionmakerboughtin", "Decision Maker Bought-In", 3, 0.8),
        ("contractsent", "Contract Sent", 4, 0.9),
        ("closedwon", "Closed Won", 5, 1.0),
        ("closedlost", "Closed Lost", 6, 0.0),
    ]
    assert [s.key for s in DEFAULT_PIPELINE.stages if s.is_closed] == ["closedwon", "closedlost"]
    assert [s.key for s in DEFAULT_PIPELINE.stages if s.is_won] == ["closedwon"]


def test_parse_pipelines_reads_string_metadata_orders_stages_and_detects_closed_won() -> None:
    payload = {
        "results": [
            {
                "label": "Renewals",
                "displayOrder": 1,
                "id": "81234567",
                "stages": [
                    pipeline_stage("152003004", "Renewed", 3, "1.0", "true"),
                    pipeline_stage("152003001", "Renewal Identified", 0, "0.6", "false"),
                    pipeline_stage("152003005", "Churned", 4, "0.0", "true"),
                    pipeline_stage("152003002", "Pricing Proposed", 1, "0.75", "false"),
                ],
                "archived": False,
            }
        ]
    }
    assert parse_pipelines(payload) == {
        "81234567": StageCatalogue(
            stages=(
                Stage("152003001", "Renewal Identified", 0, 0.6),
                Stage("152003002", "Pricing Proposed", 1, 0.75),
                Stage("152003004", "Renewed", 3, 1.0, is_closed=True, is_won=True),
                Stage("152003005", "Churned", 4, 0.0, is_closed=True),
            ),
            pipeline="81234567",
        )
    }


def test_parse_pipelines_also_accepts_json_booleans_and_numbers_in_metadata() -> None:
    payload = {
        "results": [
            {"id": "default", "stages": [pipeline_stage("closedwon", "Won", 0, 1, True)]},
        ]
    }
    won = parse_pipelines(payload)["default"].get("closedwon")
    assert won == Stage("closedwon", "Won", 0, 1.0, is_closed=True, is_won=True)


def test_an_open_stage_with_probability_one_is_not_won() -> None:
    payload = {
        "results": [{"id": "p", "stages": [pipeline_stage("s", "Verbal", 0, "1.0", "false")]}]
    }
    assert parse_pipelines(payload)["p"].stages[0].is_won is False


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "expected an object with 'results'"),
        ({"results": None}, "'results' must be a list"),
        ({"results": [{"label": "x", "stages": []}]}, "has no id"),
        ({"results": [{"id": "p"}]}, "'stages' must be a list"),
        ({"results": [{"id": "p", "stages": [{"label": "x"}]}]}, "missing id"),
        (
            {"results": [{"id": "p", "stages": [pipeline_stage("s", "S", 0, "high", "false")]}]},
            "metadata.probability: not a number",
        ),
        (
            {"results": [{"id": "p", "stages": [pipeline_stage("s", "S", 0, "20", "false")]}]},
            "not within 0.0-1.0",
        ),
        (
            {"results": [{"id": "p", "stages": [pipeline_stage("s", "S", 0, "0.2", "maybe")]}]},
            "metadata.isClosed",
        ),
        ({"results": [{"id": "p", "stages": []}, {"id": "p", "stages": []}]}, "duplicate"),
    ],
)
def test_parse_pipelines_rejects_malformed_responses(payload: Any, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        parse_pipelines(payload)


# --------------------------------------------------------------------------- deal_results


def test_deal_results_returns_the_deals_of_a_search_or_batch_response() -> None:
    payload = {"total": 2, "results": [deal(), deal(id="1")], "paging": {"next": {"after": "2"}}}
    assert [d["id"] for d in deal_results(payload)] == [DEAL_ID, "1"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (None, "expected an object with 'results', got null"),
        ([deal()], "expected an object with 'results', got list"),
        ({"total": 0}, "'results' must be a list, got null"),
        ({"results": [deal(), "x"]}, r"results\[1\] must be an object"),
    ],
)
def test_deal_results_rejects_other_shapes_with_a_clear_message(payload: Any, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        deal_results(payload)


# --------------------------------------------------------------------------- map_deal


def test_map_deal_maps_the_standard_properties() -> None:
    snapshot = map_deal(deal(), PIPELINES)
    assert snapshot.id == DEAL_ID
    assert snapshot.name == "Harbor Freightways - Route Optimisation"
    assert snapshot.stage == stage("presentationscheduled")
    assert snapshot.pipeline == "default"
    assert snapshot.amount == 118000.0
    assert snapshot.currency == "USD"
    assert snapshot.close_date == date(2026, 12, 19)
    assert snapshot.created_at == datetime(2026, 7, 1, 9, 35, 27, 125000, tzinfo=UTC)
    assert snapshot.owner_id == "41530210"
    assert snapshot.owner_name is None
    assert snapshot.next_step == "Route simulation results with the dispatch leads"
    assert snapshot.description == "Dynamic routing for 220 trucks."
    assert snapshot.last_activity_at == utc(2026, 11, 18, 17, 5)
    assert snapshot.next_activity_at == utc(2026, 11, 25, 15)
    assert snapshot.has_future_activity is False  # the engine compares next_activity_at
    assert snapshot.forecast_category is None
    assert snapshot.contact_count == 2
    assert snapshot.contacts == (
        Contact("85012311", ("Economic Buyer",)),
        Contact("85012312", ()),
    )
    assert snapshot.stage_entered_at == datetime(2026, 11, 3, 10, 26, 19, 337000, tzinfo=UTC)
    assert [
        (c.old.key if c.old else None, c.new.key if c.new else None) for c in snapshot.stage_history
    ] == [
        ("appointmentscheduled", "qualifiedtobuy"),
        ("qualifiedtobuy", "presentationscheduled"),
    ]
    assert snapshot.close_date_history == (
        Change(
            datetime(2026, 9, 28, 11, 2, 36, 252000, tzinfo=UTC),
            date(2026, 9, 30),
            date(2026, 10, 31),
        ),
        Change(
            datetime(2026, 10, 29, 16, 48, 3, 21000, tzinfo=UTC),
            date(2026, 10, 31),
            date(2026, 12, 19),
        ),
    )
    assert snapshot.amount_history == ()
    assert snapshot.owner_history == ()
    assert snapshot.fields == {
        "dealcoach_metrics": "Miles per stop down 12%",
        "dealcoach_champion": "TBD",
    }
    assert snapshot.is_open


def test_map_deal_with_only_an_id_a_stage_and_createdAt() -> None:
    obj = {"id": DEAL_ID, "properties": {"dealstage": "qualifiedtobuy"}, "createdAt": "2026-10-01"}
    assert map_deal(obj, PIPELINES) == DealSnapshot(
        id=DEAL_ID,
        name=DEAL_ID,
        stage=stage("qualifiedtobuy"),
        created_at=utc(2026, 10, 1),
        pipeline="default",  # no pipeline property: the default pipeline
        contacts_known=False,  # no associations, no count: contacts unknown
        recorded_fields=frozenset({"dealstage"}),  # the properties the object carries
    )


def test_null_properties_and_missing_blocks_map_to_nothing() -> None:
    nulls = {
        name: None
        for name in (
            "amount",
            "closedate",
            "deal_currency_code",
            "dealname",
            "description",
            "hs_next_step",
            "hubspot_owner_id",
            "notes_last_contacted",
            "notes_last_updated",
            "notes_next_activity_date",
            "num_associated_contacts",
            "hs_v2_date_entered_presentationscheduled",
        )
    }
    obj = deal(nulls)
    del obj["propertiesWithHistory"], obj["associations"]
    snapshot = map_deal(obj, PIPELINES)
    assert (snapshot.amount, snapshot.close_date, snapshot.currency, snapshot.owner_id) == (
        None,
    ) * 4
    assert snapshot.name == DEAL_ID
    assert (snapshot.last_activity_at, snapshot.next_activity_at, snapshot.contact_count) == (
        None,
    ) * 3
    assert snapshot.stage_entered_at is None
    assert snapshot.contacts == ()
    assert snapshot.stage_history == snapshot.close_date_history == snapshot.amount_history == ()


def test_createdate_falls_back_to_the_objects_createdAt() -> None:
    snapshot = map_deal(deal({"createdate": None}, createdAt="2026-07-01T09:35:27Z"), PIPELINES)
    assert snapshot.created_at == utc(2026, 7, 1, 9, 35, 27)


@pytest.mark.parametrize(
    "closedate",
    [
        "2026-12-19T00:00:00Z",
        "2026-12-19T00:00:00.000Z",
        "2026-12-19",
        "1797638400000",  # epoch milliseconds
        "1797654600000",  # 2026-12-18T23:30-05:00 is 2026-12-19 in UTC
    ],
)
def test_closedate_in_iso_date_only_or_epoch_ms_form(closedate: str) -> None:
    assert map_deal(deal({"closedate": closedate}), PIPELINES).close_date == date(2026, 12, 19)


@pytest.mark.parametrize(
    "createdate",
    ["2026-05-20T20:49:32.123Z", "2026-05-20T22:49:32.123+02:00", "1779310172123"],
)
def test_datetimes_in_iso_or_epoch_ms_form_become_the_same_utc_time(createdate: str) -> None:
    snapshot = map_deal(deal({"createdate": createdate}), PIPELINES)
    assert snapshot.created_at == datetime(2026, 5, 20, 20, 49, 32, 123000, tzinfo=UTC)


def test_stage_entered_at_prefers_hs_v2_date_entered_then_hs_date_entered() -> None:
    props = {
        "hs_v2_date_entered_presentationscheduled": None,
        "hs_date_entered_presentationscheduled": "1793708779000",
        "hs_v2_date_entered_qualifiedtobuy": "2026-07-22T13:14:50Z",  # another stage: ignored
    }
    snapshot = map_deal(deal(props), PIPELINES)
    assert snapshot.stage_entered_at == datetime.fromtimestamp(1793708779, tz=UTC)


def test_last_activity_falls_back_to_notes_last_updated() -> None:
    snapshot = map_deal(deal({"notes_last_contacted": ""}), PIPELINES)
    assert snapshot.last_activity_at == utc(2026, 11, 19, 8)


def test_the_pipeline_property_selects_the_stage_catalogue() -> None:
    props = {"pipeline": "81234567", "dealstage": "152003002"}
    snapshot = map_deal(deal(props, propertiesWithHistory=None), PIPELINES)
    assert snapshot.stage == Stage("152003002", "Pricing Proposed", 1, 0.75)
    assert snapshot.pipeline == "81234567"


def test_closed_won_deal_is_closed_and_won() -> None:
    props = {"dealstage": "closedwon", "hs_is_closed": "true", "hs_is_closed_won": "true"}
    snapshot = map_deal(deal(props), PIPELINES)
    assert snapshot.stage.is_closed and snapshot.stage.is_won and not snapshot.is_open


def test_hs_is_closed_flags_win_over_a_catalogue_that_disagrees() -> None:
    props = {"dealstage": "contractsent", "hs_is_closed": "true", "hs_is_closed_won": "false"}
    snapshot = map_deal(deal(props), PIPELINES)
    assert (snapshot.stage.is_closed, snapshot.stage.is_won) == (True, False)


# --------------------------------------------------------------------------- history


def test_property_history_newest_first_becomes_oldest_first_real_changes() -> None:
    history = {
        "dealstage": [
            entry("contractsent", "2026-11-02T16:09:40Z"),
            entry("decisionmakerboughtin", "2026-10-27T11:35:16Z"),
            entry("decisionmakerboughtin", "2026-10-27T11:35:16Z", "WORKFLOWS"),  # re-set
            entry("presentationscheduled", "2026-09-23T10:44:09Z"),
        ],
        "amount": [
            entry("95000", "2026-11-11T10:57:28Z"),
            entry("120000", "2026-10-20T15:26:53Z"),
            entry("", "2026-09-01T08:00:00Z", "IMPORT"),
            entry("150000", "2026-08-17T09:52:24Z"),
        ],
        "hubspot_owner_id": [
            entry("52277310", "2026-11-09T14:31:07Z", "AUTOMATION_PLATFORM"),
            entry("41530210", "2026-09-08T12:16:45Z"),
        ],
    }
    snapshot = map_deal(
        deal({"dealstage": "contractsent"}, propertiesWithHistory=history), PIPELINES
    )
    assert snapshot.stage_history == (
        Change(
            utc(2026, 10, 27, 11, 35, 16),
            stage("presentationscheduled"),
            stage("decisionmakerboughtin"),
        ),
        Change(utc(2026, 11, 2, 16, 9, 40), stage("decisionmakerboughtin"), stage("contractsent")),
    )
    assert snapshot.amount_history == (
        Change(utc(2026, 9, 1, 8), 150000.0, None),
        Change(utc(2026, 10, 20, 15, 26, 53), None, 120000.0),
        Change(utc(2026, 11, 11, 10, 57, 28), 120000.0, 95000.0),
    )
    assert snapshot.owner_history == (Change(utc(2026, 11, 9, 14, 31, 7), "41530210", "52277310"),)
    assert snapshot.close_date_history == ()


def test_amount_only_history_leaves_the_stage_history_alone() -> None:
    history = {
        "dealstage": [
            entry("presentationscheduled", "2026-09-15T10:03:47Z"),
            entry("appointmentscheduled", "2026-08-11T11:44:03Z"),
        ],
        "amount": [
            entry("58000", "2026-11-12T09:51:39Z"),
            entry("55000", "2026-10-22T14:28:12Z"),
            entry("52000", "2026-08-11T11:44:03Z"),
        ],
    }
    snapshot = map_deal(deal(propertiesWithHistory=history), PIPELINES)
    assert [c.at for c in snapshot.stage_history] == [utc(2026, 9, 15, 10, 3, 47)]
    assert len(snapshot.amount_history) == 2


def test_epoch_ms_close_date_history_values() -> None:
    history = {
        "closedate": [
            entry("1797638400000", "2026-10-22T11:58:21Z"),
            entry("1793318400000", "2026-08-26T16:12:45Z"),
        ]
    }
    snapshot = map_deal(deal(propertiesWithHistory=history), PIPELINES)
    assert [(c.old, c.new) for c in snapshot.close_date_history] == [
        (date(2026, 10, 30), date(2026, 12, 19))
    ]


def test_a_stage_in_history_that_no_pipeline_has_is_kept_unplaced() -> None:
    history = {
        "dealstage": [
            entry("presentationscheduled", "2026-11-03T10:26:19Z"),
            entry("152003001", "2026-09-01T10:00:00Z"),  # the deal was in Renewals
            entry("99887766", "2026-08-01T10:00:00Z"),  # a deleted stage
        ]
    }
    snapshot = map_deal(deal(propertiesWithHistory=history), PIPELINES)
    assert snapshot.stage_history == (
        Change(
            utc(2026, 9, 1, 10),
            Stage("99887766", "99887766", None, 0.0),
            Stage("152003001", "Renewal Identified", None, 0.6),
        ),
        Change(
            utc(2026, 11, 3, 10, 26, 19),
            Stage("152003001", "Renewal Identified", None, 0.6),
            stage("presentationscheduled"),
        ),
    )


# --------------------------------------------------------------------------- associations


def test_v4_associations_give_contacts_with_roles_from_non_null_labels() -> None:
    results = [
        v4(85012330, "Economic Buyer"),
        v4(85012331, "Champion", None, "Decision Maker"),
        v4(85012332),
        {"toObjectId": "85012333", "associationTypes": []},
    ]
    snapshot = map_deal(deal(associations={"contacts": {"results": results}}), PIPELINES)
    assert snapshot.contacts == (
        Contact("85012330", ("Economic Buyer",)),
        Contact("85012331", ("Champion", "Decision Maker")),
        Contact("85012332", ()),
        Contact("85012333", ()),
    )


def test_v3_associations_give_one_contact_per_id_without_roles() -> None:
    results = [
        {"id": "316451", "type": "deal_to_contact"},
        {"id": "316451", "type": "deal_to_contact_unlabeled"},
        {"id": "316452", "type": "deal_to_contact"},
    ]
    snapshot = map_deal(deal(associations={"contacts": {"results": results}}), PIPELINES)
    assert snapshot.contacts == (Contact("316451"), Contact("316452"))


def test_num_associated_contacts_counts_even_without_associations() -> None:
    snapshot = map_deal(deal({"num_associated_contacts": "4"}, associations=None), PIPELINES)
    assert (snapshot.contacts, snapshot.contact_count, snapshot.number_of_contacts) == ((), 4, 4)


@pytest.mark.parametrize(
    ("associations", "message"),
    [
        ("contacts", "associations must be an object"),
        ({"contacts": {"results": "x"}}, "associations.contacts must be an object"),
        ({"contacts": {"results": [{"type": "deal_to_contact"}]}}, "has no contact id"),
        ({"contacts": {"results": [1]}}, r"results\[0\] must be an object"),
        ({"contacts": {"results": [{"toObjectId": 1, "associationTypes": 3}]}}, "associationTypes"),
    ],
)
def test_malformed_associations_raise(associations: Any, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        map_deal(deal(associations=associations), PIPELINES)


# --------------------------------------------------------------------------- fields


def test_non_standard_properties_go_into_fields_as_strings_skipping_null_and_empty() -> None:
    props = {
        "dealcoach_metrics": "Pick rate up 18%",
        "dealcoach_economic_buyer": "TBD",
        "dealcoach_decision_criteria": "",
        "dealcoach_decision_process": "   ",
        "dealcoach_paper_process": None,
        "budget_confirmed": "true",
        "hs_forecast_amount": "70800",
        "hs_v2_date_entered_closedwon": None,
        "hubspot_team_id": "123",
        "notes_last_contacted": "2026-11-18T17:05:00.000Z",
        "num_notes": "7",
        "dealtype": "newbusiness",
        "days_to_close": "171",
    }
    fields = map_deal(deal(props), PIPELINES).fields
    assert fields == {
        "dealcoach_metrics": "Pick rate up 18%",
        "dealcoach_economic_buyer": "TBD",
        "dealcoach_champion": "TBD",
        "budget_confirmed": "true",
    }


# --------------------------------------------------------------------------- errors


def test_an_unknown_stage_raises_naming_the_record_the_stage_and_the_pipeline() -> None:
    with pytest.raises(MappingError) as raised:
        map_deal(deal({"dealstage": "verbalcommit"}), PIPELINES)
    assert raised.value.record_id == DEAL_ID
    assert "'verbalcommit'" in raised.value.message and "'default'" in raised.value.message
    assert DEAL_ID in str(raised.value)


def test_a_stage_of_another_pipeline_is_unknown_in_this_one() -> None:
    with pytest.raises(MappingError, match="unknown dealstage '152003002' in pipeline 'default'"):
        map_deal(deal({"dealstage": "152003002"}), PIPELINES)


def test_an_unknown_pipeline_raises_naming_it() -> None:
    with pytest.raises(MappingError, match="unknown pipeline '99999'") as raised:
        map_deal(deal({"pipeline": "99999"}), PIPELINES)
    assert raised.value.record_id == DEAL_ID


@pytest.mark.parametrize(
    ("obj", "message", "record_id"),
    [
        ({"properties": {"dealstage": "qualifiedtobuy"}}, "missing id", None),
        ({"id": "", "properties": {"dealstage": "qualifiedtobuy"}}, "missing id", None),
        ({"id": "7", "properties": {"createdate": "2026-10-01"}}, "missing dealstage", "7"),
        ({"id": "7", "properties": {"dealstage": "qualifiedtobuy"}}, "missing createdate", "7"),
        ({"id": "7", "properties": "dealstage=qualifiedtobuy"}, "properties must be", "7"),
    ],
)
def test_a_missing_required_value_raises(obj: Any, message: str, record_id: str | None) -> None:
    with pytest.raises(MappingError, match=message) as raised:
        map_deal(obj, PIPELINES)
    assert raised.value.record_id == record_id


@pytest.mark.parametrize(
    "bad", ["31/12/2026", "2026-02-30", "next quarter", "2026-12-19T25:00:00Z"]
)
def test_a_bad_closedate_raises_naming_the_field(bad: str) -> None:
    with pytest.raises(MappingError, match="closedate") as raised:
        map_deal(deal({"closedate": bad}), PIPELINES)
    assert raised.value.record_id == DEAL_ID


@pytest.mark.parametrize(
    "name",
    [
        "createdate",
        "notes_last_contacted",
        "notes_next_activity_date",
        "hs_v2_date_entered_presentationscheduled",
    ],
)
def test_a_bad_datetime_raises_naming_the_property(name: str) -> None:
    with pytest.raises(MappingError, match=name):
        map_deal(deal({name: "last Tuesday"}), PIPELINES)


def test_a_bad_history_entry_raises_naming_it() -> None:
    history = {"closedate": [entry("2026-12-19", "soon")]}
    with pytest.raises(MappingError, match=r"propertiesWithHistory\.closedate\[0\]\.timestamp"):
        map_deal(deal(propertiesWithHistory=history), PIPELINES)
    history = {"amount": [entry("lots", "2026-10-01T00:00:00Z")]}
    with pytest.raises(MappingError, match=r"propertiesWithHistory\.amount\[0\]\.value"):
        map_deal(deal(propertiesWithHistory=history), PIPELINES)
    with pytest.raises(MappingError, match=r"propertiesWithHistory\.dealstage must be a list"):
        map_deal(deal(propertiesWithHistory={"dealstage": "closedwon"}), PIPELINES)


@pytest.mark.parametrize("bad", ["a lot", "118,000", "$118000", "inf"])
def test_a_non_numeric_amount_raises_naming_the_field(bad: str) -> None:
    with pytest.raises(MappingError, match="amount") as raised:
        map_deal(deal({"amount": bad}), PIPELINES)
    assert raised.value.record_id == DEAL_ID


def test_an_empty_amount_is_no_amount_and_decimals_are_kept() -> None:
    assert map_deal(deal({"amount": ""}), PIPELINES).amount is None
    assert map_deal(deal({"amount": "118000.50"}), PIPELINES).amount == 118000.5


@pytest.mark.parametrize("bad", ["two", "-1", "2.5"])
def test_a_bad_contact_count_raises(bad: str) -> None:
    with pytest.raises(MappingError, match="num_associated_contacts"):
        map_deal(deal({"num_associated_contacts": bad}), PIPELINES)


def test_mapping_does_not_modify_the_deal() -> None:
    obj = deal()
    before = copy.deepcopy(obj)
    map_deal(obj, PIPELINES)
    assert obj == before


# --------------------------------------------------------------------------- bundled samples


def load(relative: str) -> Any:
    return json.loads((SAMPLES / relative).read_text(encoding="utf-8"))


def sample_pipelines() -> dict[str, StageCatalogue]:
    return parse_pipelines(load("hubspot_pipelines.json"))


SAMPLE_DEALS = deal_results(load("hubspot_deals.json"))


def test_the_sample_pipelines_parse_with_the_default_pipeline_and_a_renewals_pipeline() -> None:
    pipelines = sample_pipelines()
    assert set(pipelines) == {"default", "81234567"}
    assert pipelines["default"] == DEFAULT_PIPELINE
    renewals = pipelines["81234567"]
    assert [s.key for s in renewals.stages if s.is_won] == ["152003004"]


@pytest.mark.parametrize("obj", SAMPLE_DEALS, ids=lambda obj: obj["properties"]["dealname"])
def test_every_sample_deal_maps(obj: dict[str, Any]) -> None:
    snapshot = map_deal(obj, sample_pipelines())
    assert snapshot.id == obj["id"]
    assert stage_clock(snapshot)[0] is not None  # the entry date, or the stage history
    assert snapshot.number_of_contacts >= 1


def test_the_samples_cover_both_date_forms_both_association_shapes_and_three_owners() -> None:
    properties = [obj["properties"] for obj in SAMPLE_DEALS]
    assert any(p["createdate"].isdigit() for p in properties)
    assert any(p["createdate"].endswith("Z") for p in properties)
    results = [r for obj in SAMPLE_DEALS for r in obj["associations"]["contacts"]["results"]]
    assert any("toObjectId" in r for r in results) and any("type" in r for r in results)
    deals = [map_deal(obj, sample_pipelines()) for obj in SAMPLE_DEALS]
    assert 15 <= len(deals) <= 40
    assert len({d.owner_id for d in deals}) == 3
    assert {d.stage.key for d in deals if d.stage.is_closed} == {"closedwon", "closedlost"}
    assert all(5000 <= (d.amount or 0) <= 750000 for d in deals)
    # A standard portal: no methodology properties.
    assert all(not d.fields for d in deals)
    assert any(d.stage_entered_field == "hs_v2_date_entered_current_stage" for d in deals)
    assert any(d.stage_entered_at is None for d in deals)  # the stage history alone
    assert any(d.deal_type == "existingbusiness" for d in deals)
    unlabelled = [d for d in deals if d.contacts and not d.roles_recorded]
    assert any(d.stage.probability >= 0.5 for d in unlabelled)


def test_each_sample_deal_shows_exactly_the_signals_it_is_meant_to(
    sample_generator: ModuleType, signals_of: Callable[[DealSnapshot], set[str]]
) -> None:
    meant = {f"{d.account} - {d.title}": set(d.signals) for d in sample_generator.HS_DEALS}
    pipelines = sample_pipelines()
    shown = {
        obj["properties"]["dealname"]: signals_of(map_deal(obj, pipelines)) for obj in SAMPLE_DEALS
    }
    assert shown == meant


def test_between_them_the_samples_show_every_signal_of_the_vocabulary(
    signals_of: Callable[[DealSnapshot], set[str]],
) -> None:
    # methodology_gap depends on the playbook, next_step_vague on the engine's reading
    # of free text: the yardstick leaves both out.
    vocabulary = set(SIGNAL_CODES) - {"methodology_gap", "next_step_vague"}
    pipelines = sample_pipelines()
    shown: set[str] = set()
    for obj in SAMPLE_DEALS:
        shown |= signals_of(map_deal(obj, pipelines))
    for record in query_records(load("salesforce_opportunities.json")):
        shown |= signals_of(map_opportunity(record, DEFAULT_STAGES))
    assert shown == vocabulary


def test_the_bad_sample_has_one_good_deal_and_one_with_a_bad_closedate() -> None:
    good, bad = deal_results(load("bad/hubspot_bad_date.json"))
    assert map_deal(good, sample_pipelines()).stage.key == "qualifiedtobuy"
    with pytest.raises(MappingError, match="closedate: not a date: '31/12/2026'") as raised:
        map_deal(bad, sample_pipelines())
    assert raised.value.record_id == bad["id"]


def test_given_no_associations_and_no_count_then_contacts_are_unknown() -> None:
    obj = {"id": DEAL_ID, "properties": {"dealstage": "qualifiedtobuy"}, "createdAt": "2026-10-01"}
    assert map_deal(obj, PIPELINES).contacts_known is False


def test_given_a_contact_count_of_zero_then_contacts_are_known_to_be_none() -> None:
    obj = {
        "id": DEAL_ID,
        "properties": {"dealstage": "qualifiedtobuy", "num_associated_contacts": "0"},
        "createdAt": "2026-10-01",
    }
    deal = map_deal(obj, PIPELINES)
    assert deal.contacts_known is True
    assert deal.number_of_contacts == 0


def test_given_an_empty_contacts_association_then_contacts_are_known() -> None:
    obj = {
        "id": DEAL_ID,
        "properties": {"dealstage": "qualifiedtobuy"},
        "createdAt": "2026-10-01",
        "associations": {"contacts": {"results": []}},
    }
    assert map_deal(obj, PIPELINES).contacts_known is True


# --------------------------------------------------------------- out-of-range values, strict ids


@pytest.mark.parametrize(
    ("properties", "field"),
    [
        pytest.param({"amount": 10**400}, "amount", id="huge-integer-amount"),
        pytest.param({"closedate": "9999-12-31T23:00:00-05:00"}, "closedate", id="close-date"),
        pytest.param({"createdate": "9999-12-31T23:00:00-05:00"}, "createdate", id="created"),
        pytest.param({"createdate": 10**25}, "createdate", id="huge-epoch-integer"),
        pytest.param({"createdate": "9" * 30}, "createdate", id="huge-epoch-string"),
        pytest.param(
            {"notes_last_contacted": "0001-01-01T00:00:00+05:00"},
            "notes_last_contacted",
            id="before-year-1",
        ),
    ],
)
def test_given_a_value_beyond_the_range_of_floats_or_dates_then_a_mapping_error_names_the_field(
    properties: dict[str, Any], field: str
) -> None:
    with pytest.raises(MappingError) as raised:
        map_deal(deal(properties), PIPELINES)

    assert raised.value.record_id == DEAL_ID
    assert raised.value.message.startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("raw", "mapped"), [("18765432137", "18765432137"), (18765432137, "18765432137")]
)
def test_given_an_id_of_digits_as_a_string_or_an_integer_then_it_is_accepted(
    raw: Any, mapped: str
) -> None:
    assert map_deal(deal(id=raw), PIPELINES).id == mapped


@pytest.mark.parametrize(
    "bad",
    ["abc", "123a", " 123", "-5", "١٢٣", -5, 1.5, True, [123], {"id": "123"}, "1' OR '1"],
)
def test_given_an_id_that_is_not_digits_then_a_mapping_error_names_id(bad: Any) -> None:
    with pytest.raises(MappingError) as raised:
        map_deal(deal(id=bad), PIPELINES)

    assert raised.value.record_id is None
    assert raised.value.message.startswith("id: ")


@pytest.mark.parametrize(
    ("properties", "field"),
    [
        ({"dealname": {"en": "Acme"}}, "dealname"),
        ({"dealstage": ["qualifiedtobuy"]}, "dealstage"),
        ({"hubspot_owner_id": {"id": 1}}, "hubspot_owner_id"),
        ({"pipeline": ["default"]}, "pipeline"),
        ({"description": False}, "description"),
    ],
)
def test_given_a_name_or_id_that_is_not_text_then_a_mapping_error_names_the_field(
    properties: dict[str, Any], field: str
) -> None:
    with pytest.raises(MappingError) as raised:
        map_deal(deal(properties), PIPELINES)

    assert raised.value.message.startswith(f"{field}: expected text, got ")


def test_given_a_contact_id_that_is_an_object_then_a_mapping_error_names_it() -> None:
    obj = deal(associations={"contacts": {"results": [{"toObjectId": {"id": 1}}]}})

    with pytest.raises(MappingError, match=r"associations\.contacts\.results\[0\]\.toObjectId"):
        map_deal(obj, PIPELINES)
