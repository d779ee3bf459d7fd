"""Writes through the real hubspot-api-client: notes, deal updates, properties."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hubspot import HubSpot
from hubspot.crm.deals import BatchInputSimplePublicObjectBatchInput, SimplePublicObjectInput
from hubspot.crm.objects.notes import (
    BatchInputSimplePublicObjectBatchInputForCreate,
    PublicObjectSearchRequest,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.objects.notes.exceptions import ApiException as NotesApiException
from hubspot.crm.properties import PropertyCreate
from hubspot.crm.properties.exceptions import ApiException as PropertiesApiException

from integrations.hubspot.emulator import HubSpotEmulator

from .conftest import sdk_call


def _note(deal_id: str, text: str, trace: str | None = None) -> dict[str, object]:
    item: dict[str, object] = {
        "properties": {"hs_timestamp": "2026-12-03T10:00:00Z", "hs_note_body": f"<p>{text}</p>"},
        "associations": [
            {
                "to": {"id": deal_id},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 214}],
            }
        ],
    }
    if trace is not None:
        item["objectWriteTraceId"] = trace
    return item


def test_given_notes_when_batch_created_then_201_and_each_is_on_its_deal(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    ids = seeded.deal_ids()[:3]
    request = BatchInputSimplePublicObjectBatchInputForCreate(
        inputs=[_note(d, f"Coaching dc-{n}", f"trace-{n}") for n, d in enumerate(ids)]
    )
    call = sdk_call(hs.crm.objects.notes.batch_api, "create", request)
    assert call.status == 201
    assert type(call.model).__name__ == "BatchResponseSimplePublicObject"
    assert sorted(r.object_write_trace_id for r in call.model.results) == [
        "trace-0",
        "trace-1",
        "trace-2",
    ]
    for n, deal_id in enumerate(ids):
        notes = seeded.notes(deal_id)
        assert [note["hs_note_body"] for note in notes] == [f"<p>Coaching dc-{n}</p>"]
        assert notes[0]["deal_ids"] == [deal_id]


def test_given_failing_deals_when_batch_created_then_207_errors_name_the_inputs(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    ids = seeded.deal_ids()[:4]
    seeded.fail_writes_for([ids[1]])
    request = BatchInputSimplePublicObjectBatchInputForCreate(
        inputs=[
            _note(ids[0], "ok", "a"),
            _note(ids[1], "fails", "b"),
            _note("404404", "no such deal", "c"),
            _note(ids[3], "ok too", "d"),
        ]
    )
    call = sdk_call(hs.crm.objects.notes.batch_api, "create", request)
    assert call.status == 207
    assert call.model.num_errors == 2
    traces = sorted(e.context["objectWriteTraceId"][0] for e in call.model.errors)
    assert traces == ["b", "c"]
    assert sorted(r.object_write_trace_id for r in call.model.results) == ["a", "d"]
    assert seeded.notes(ids[1]) == []  # nothing half-written


def test_given_a_note_when_created_singly_then_201_and_the_deal_is_modified(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    deal_id = seeded.deal_ids()[0]
    before = seeded.deal(deal_id)
    assert before is not None
    call = sdk_call(
        hs.crm.objects.notes.basic_api,
        "create",
        SimplePublicObjectInputForCreate(**_note(deal_id, "single")),  # type: ignore[arg-type]
    )
    assert call.status == 201 and call.model.properties["hs_note_body"] == "<p>single</p>"
    after = seeded.deal(deal_id)
    assert after is not None
    # HubSpot's roll-ups: the note counts as activity and bumps hs_lastmodifieddate
    assert after["hs_lastmodifieddate"] > before["hs_lastmodifieddate"]
    assert after["notes_last_updated"] == "2026-12-03T10:00:00.000Z"
    assert int(after["num_notes"] or 0) == 1


def test_given_a_note_without_timestamp_then_400_validation_error(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    with pytest.raises(NotesApiException) as caught:
        hs.crm.objects.notes.basic_api.create(
            SimplePublicObjectInputForCreate(properties={"hs_note_body": "x"}, associations=[])
        )
    body = json.loads(caught.value.body)
    assert caught.value.status == 400 and body["category"] == "VALIDATION_ERROR"
    assert body["errors"][0]["code"] == "REQUIRED_FIELD"


def test_given_written_notes_when_searched_by_marker_or_deal_then_found(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    ids = seeded.deal_ids()[:2]
    hs.crm.objects.notes.batch_api.create(
        BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[
                _note(ids[0], 'Review <span class="ref">dealcoach:r-7f3a</span> for Maya'),
                _note(ids[1], "Review dealcoach:r-9bb1"),
            ]
        )
    )
    api = hs.crm.objects.notes.search_api
    by_marker = sdk_call(
        api,
        "do_search",
        PublicObjectSearchRequest(
            filter_groups=[
                {
                    "filters": [
                        {
                            "propertyName": "hs_note_body",
                            "operator": "CONTAINS_TOKEN",
                            "value": "dealcoach:r-9bb1",
                        }
                    ]
                }
            ],
            properties=["hs_note_body"],
        ),
    )
    assert [r.properties["hs_note_body"] for r in by_marker.model.results] == [
        "<p>Review dealcoach:r-9bb1</p>"
    ]
    wildcard = api.do_search(
        PublicObjectSearchRequest(
            filter_groups=[
                {
                    "filters": [
                        {
                            "propertyName": "hs_note_body",
                            "operator": "CONTAINS_TOKEN",
                            "value": "dealcoach:r-*",
                        }
                    ]
                }
            ]
        )
    )
    assert wildcard.total == 2
    by_deal = api.do_search(
        PublicObjectSearchRequest(
            filter_groups=[
                {
                    "filters": [
                        {"propertyName": "associations.deal", "operator": "EQ", "value": ids[0]}
                    ]
                }
            ],
            properties=["hs_note_body"],
        )
    )
    assert by_deal.total == 1 and "r-7f3a" in by_deal.results[0].properties["hs_note_body"]


def test_given_a_patch_when_applied_then_history_and_modified_date_follow(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    deal_id = seeded.deal_ids()[0]
    before = seeded.deal(deal_id)
    assert before is not None
    call = sdk_call(
        hs.crm.deals.basic_api,
        "update",
        deal_id,
        SimplePublicObjectInput(properties={"dealcoach_summary": "3 risks", "amount": "90000"}),
    )
    assert call.model.properties["dealcoach_summary"] == "3 risks"
    assert call.model.properties["hs_lastmodifieddate"] > before["hs_lastmodifieddate"]
    amounts = seeded.history(deal_id, "amount")
    assert amounts[0]["value"] == "90000" and amounts[0]["sourceType"] == "INTEGRATION"
    assert amounts[0]["sourceId"] == str(seeded.app_id)
    assert "x-hubspot-ratelimit-remaining" in call.headers


def test_given_a_bad_stage_when_patched_then_400_and_nothing_changes(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    from hubspot.crm.deals.exceptions import ApiException

    deal_id = seeded.deal_ids()[0]
    before = seeded.deal(deal_id)
    with pytest.raises(ApiException) as caught:
        hs.crm.deals.basic_api.update(
            deal_id, SimplePublicObjectInput(properties={"dealstage": "nowhere"})
        )
    assert json.loads(caught.value.body)["errors"][0]["code"] == "INVALID_OPTION"
    assert seeded.deal(deal_id) == before


def test_given_a_batch_update_with_a_failing_deal_then_207_and_the_rest_written(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    ids = seeded.deal_ids()[:3]
    seeded.fail_writes_for([ids[2]])
    request = BatchInputSimplePublicObjectBatchInput(
        inputs=[{"id": d, "properties": {"dealcoach_health": "61"}} for d in ids]
    )
    call = sdk_call(hs.crm.deals.batch_api, "update", request)
    assert call.status == 207
    assert call.model.errors[0].context["ids"] == [ids[2]]
    healths = [(seeded.deal(d) or {}).get("dealcoach_health") for d in ids]
    assert healths == ["61", "61", None]


def test_given_a_new_property_when_created_then_201_then_409(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    create = PropertyCreate(
        name="dealcoach_review_url",
        label="Dealcoach review",
        type="string",
        field_type="text",
        group_name="dealinformation",
    )
    call = sdk_call(hs.crm.properties.core_api, "create", "deals", create)
    assert call.status == 201 and call.model.name == "dealcoach_review_url"
    names = {p.name for p in hs.crm.properties.core_api.get_all("deals").results}
    assert "dealcoach_review_url" in names
    with pytest.raises(PropertiesApiException) as caught:
        hs.crm.properties.core_api.create("deals", create)
    assert caught.value.status == 409
    assert json.loads(caught.value.body)["category"] == "OBJECT_ALREADY_EXISTS"
    deal_id = seeded.deal_ids()[0]
    hs.crm.deals.basic_api.update(
        deal_id, SimplePublicObjectInput(properties={"dealcoach_review_url": "https://x.example"})
    )
    assert (seeded.deal(deal_id) or {})["dealcoach_review_url"] == "https://x.example"


def test_given_a_deleted_deal_then_gone_from_reads_and_listed_as_archived(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    from hubspot.crm.deals.exceptions import NotFoundException

    deal_id = seeded.deal_ids()[0]
    hs.crm.deals.basic_api.archive(deal_id)
    with pytest.raises(NotFoundException):
        hs.crm.deals.basic_api.get_by_id(deal_id)
    assert deal_id not in {d.id for d in hs.crm.deals.get_all()}
    archived = sdk_call(hs.crm.deals.basic_api, "get_page", archived=True)
    assert [d.id for d in archived.model.results] == [deal_id]
    assert archived.raw["results"][0]["archived"] is True
    assert archived.model.results[0].archived_at is not None


def test_given_a_new_contact_label_then_it_is_listed_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    with HubSpotEmulator(tmp_path, seed=2) as first:
        type_id = first.portal.add_contact_label("Legal")
        assert first.portal.add_contact_label("Legal") == type_id  # once
    with HubSpotEmulator(tmp_path) as second:
        hs = HubSpot(access_token=second.issue_token(), host=second.base_url)
        labels = hs.crm.associations.v4.schema.definitions_api.get_all("deals", "contacts")
        assert {r.label: r.type_id for r in labels.results}["Legal"] == type_id
