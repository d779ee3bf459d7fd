"""Reads through the real hubspot-api-client: every answer deserializes without loss."""

from __future__ import annotations

import time
from datetime import datetime

import httpx
import pytest
from hubspot import HubSpot
from hubspot.crm.associations.v4 import BatchInputPublicFetchAssociationsBatchRequest
from hubspot.crm.deals import (
    BatchReadInputSimplePublicObjectId,
    PublicObjectSearchRequest,
)
from hubspot.crm.deals.exceptions import ApiException, NotFoundException
from hubspot.crm.properties.exceptions import NotFoundException as PropertyNotFound

from integrations.hubspot.emulator import ARCHETYPES, HubSpotEmulator
from integrations.hubspot.mapping import map_deal, parse_pipelines

from .conftest import sdk_call


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_given_a_portal_when_pipelines_read_then_two_pipelines_with_probabilities(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    call = sdk_call(hs.crm.pipelines.pipelines_api, "get_all", "deals")
    ids = [p.id for p in call.model.results]
    assert ids == ["default", "1467325"]
    default = call.model.results[0]
    assert default.stages[0].id == "appointmentscheduled"
    assert default.stages[0].metadata == {"isClosed": "false", "probability": "0.2"}
    catalogues = parse_pipelines(call.raw)  # the project's own mapping reads it too
    assert catalogues["1467325"].get("2917353") is not None
    assert catalogues["default"].get("closedwon").is_won  # type: ignore[union-attr]
    one = sdk_call(hs.crm.pipelines.pipelines_api, "get_by_id", "deals", "1467325")
    assert one.model.label == "Renewals"


def test_given_a_portal_when_properties_read_then_stage_timing_and_custom_ones_exist(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    call = sdk_call(hs.crm.properties.core_api, "get_all", "deals")
    names = {p.name for p in call.model.results}
    for name in (
        "hs_date_entered_appointmentscheduled",
        "hs_v2_date_entered_contractsent",
        "hs_date_entered_2917351",
        "hs_v2_date_entered_current_stage",
        "dealtype",
        "hs_next_step",
        "notes_last_contacted",
        "notes_next_activity_date",
        "num_associated_contacts",
        "hubspot_owner_id",
        "description",
        "dealcoach_summary",
        "dealcoach_metrics",
    ):
        assert name in names, name
    dealtype = next(p for p in call.model.results if p.name == "dealtype")
    assert {o.value for o in dealtype.options} == {"newbusiness", "existingbusiness"}
    one = sdk_call(hs.crm.properties.core_api, "get_by_name", "deals", "dealcoach_summary")
    assert one.model.hubspot_defined is None and one.model.field_type == "textarea"


def test_given_a_portal_without_summary_properties_then_dealcoach_summary_is_absent() -> None:
    from integrations.hubspot.emulator import METHODOLOGY_PROPERTIES

    with HubSpotEmulator(custom_properties=METHODOLOGY_PROPERTIES) as bare:
        hs = HubSpot(access_token=bare.issue_token(), host=bare.base_url)
        names = {p.name for p in hs.crm.properties.core_api.get_all("deals").results}
        assert "dealcoach_summary" not in names and "dealcoach_metrics" in names
        with pytest.raises(PropertyNotFound):
            hs.crm.properties.core_api.get_by_name("deals", "dealcoach_summary")


def _watermark_search(after: str | None = None, limit: int = 200) -> PublicObjectSearchRequest:
    return PublicObjectSearchRequest(
        filter_groups=[
            {"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": "0"}]}
        ],
        sorts=[{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
        properties=["dealname", "dealstage", "amount", "hs_lastmodifieddate"],
        limit=limit,
        after=after,
    )


def test_given_a_watermark_search_when_paged_then_every_deal_once_in_modified_order(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    api = hs.crm.deals.search_api
    seen: list[str] = []
    stamps: list[datetime] = []
    after: str | None = None
    while True:
        call = sdk_call(api, "do_search", _watermark_search(after, limit=5))
        assert call.model.total == 18
        assert "x-hubspot-ratelimit-max" not in call.headers  # none on search answers
        for deal in call.model.results:
            seen.append(deal.id)
            stamps.append(_parse(deal.properties["hs_lastmodifieddate"]))
            assert set(deal.properties) >= {"dealname", "createdate", "hs_object_id"}
        if call.model.paging is None:
            break
        after = call.model.paging.next.after
    assert sorted(seen) == sorted(seeded.deal_ids())
    assert stamps == sorted(stamps)


@pytest.mark.parametrize(
    ("operator", "value", "values", "expected"),
    [
        ("EQ", "IDX2", None, [2]),
        ("IN", None, ["IDX0", "IDX5"], [0, 5]),
        ("GT", "IDX15", None, [16, 17]),
        ("GTE", "IDX16", None, [16, 17]),
        ("LT", "IDX1", None, [0]),
        ("LTE", "IDX1", None, [0, 1]),
    ],
)
def test_given_id_filters_when_searched_then_operators_compare_ids_numerically(
    seeded: HubSpotEmulator,
    hs: HubSpot,
    operator: str,
    value: str | None,
    values: list[str] | None,
    expected: list[int],
) -> None:
    ids = sorted(seeded.deal_ids(), key=int)

    def real(text: str) -> str:
        return ids[int(text[3:])]

    item: dict[str, object] = {"propertyName": "hs_object_id", "operator": operator}
    if value is not None:
        item["value"] = real(value)
    if values is not None:
        item["values"] = [real(v) for v in values]
    call = sdk_call(
        hs.crm.deals.search_api,
        "do_search",
        PublicObjectSearchRequest(
            filter_groups=[{"filters": [item]}], sorts=["hs_object_id"], limit=200
        ),
    )
    assert [d.id for d in call.model.results] == [ids[i] for i in expected]


def test_given_filter_groups_when_searched_then_groups_or_and_filters_and(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    request = PublicObjectSearchRequest(
        filter_groups=[
            {
                "filters": [
                    {"propertyName": "pipeline", "operator": "EQ", "value": "1467325"},
                    {"propertyName": "dealtype", "operator": "EQ", "value": "existingbusiness"},
                ]
            },
            {"filters": [{"propertyName": "dealstage", "operator": "EQ", "value": "closedwon"}]},
        ],
        properties=["dealstage", "pipeline"],
        limit=100,
    )
    call = sdk_call(hs.crm.deals.search_api, "do_search", request)
    stages = sorted(d.properties["dealstage"] for d in call.model.results)
    assert stages == ["2917351", "2917351", "closedwon"]


def test_given_a_search_past_10000_results_then_400_in_hubspots_shape(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    api = hs.crm.deals.search_api
    assert sdk_call(api, "do_search", _watermark_search("9999", limit=1)).model.results == []
    with pytest.raises(ApiException) as caught:
        api.do_search(_watermark_search("10000", limit=1))
    assert caught.value.status == 400
    body = caught.value.body
    import json

    error = json.loads(body)
    assert error["status"] == "error" and error["category"] == "VALIDATION_ERROR"
    assert error["correlationId"] and "10000" in error["message"]


def test_given_a_limit_over_200_when_searched_then_400(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    with pytest.raises(ApiException) as caught:
        hs.crm.deals.search_api.do_search(_watermark_search(limit=201))
    assert caught.value.status == 400


def test_given_more_deals_than_the_cap_when_paged_then_the_call_past_it_is_refused() -> None:
    """The paging mechanics at a lowered cap (60 deals, cap 50); the real cap of 10,000
    is checked above with ``after``."""
    with HubSpotEmulator(seed=3, max_search_results=50) as small:
        small.seed(60)
        hs = HubSpot(access_token=small.issue_token(), host=small.base_url)
        api = hs.crm.deals.search_api
        fetched = 0
        after: str | None = None
        with pytest.raises(ApiException) as caught:
            while True:
                page = api.do_search(_watermark_search(after, limit=25))
                fetched += len(page.results)
                assert page.total == 60
                after = page.paging.next.after
                time.sleep(0.2)  # 5 searches a second
        assert caught.value.status == 400
        assert (fetched, after) == (50, "50")


def test_given_ids_when_batch_read_with_history_then_newest_first_and_207_for_missing(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    ids = seeded.deal_ids()
    request = BatchReadInputSimplePublicObjectId(
        inputs=[{"id": ids[1]}, {"id": "404"}, {"id": ids[2]}],
        properties=["dealstage", "closedate", "amount", "hs_v2_date_entered_current_stage"],
        properties_with_history=["dealstage", "closedate", "amount", "hubspot_owner_id"],
    )
    call = sdk_call(hs.crm.deals.batch_api, "read", request)
    assert call.status == 207
    assert type(call.model).__name__ == "BatchResponseSimplePublicObjectWithErrors"
    assert call.model.errors[0].category == "OBJECT_NOT_FOUND"
    assert call.model.errors[0].context == {"ids": ["404"]}
    pushed = next(d for d in call.raw["results"] if d["id"] == ids[1])
    closes = pushed["propertiesWithHistory"]["closedate"]
    assert len(closes) == 4  # created, then pushed three times
    stamps = [_parse(entry["timestamp"]) for entry in closes]
    assert stamps == sorted(stamps, reverse=True)
    assert closes[0]["sourceType"] == "CRM_UI" and closes[0]["updatedByUserId"]
    assert closes[0]["value"] == pushed["properties"]["closedate"]
    # the current stage's entry time is the newest dealstage change
    stage_history = pushed["propertiesWithHistory"]["dealstage"]
    assert pushed["properties"]["hs_v2_date_entered_current_stage"] == stage_history[0]["timestamp"]


def test_given_more_than_100_ids_when_batch_read_then_400(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    request = BatchReadInputSimplePublicObjectId(
        inputs=[{"id": str(n)} for n in range(101)], properties=["dealstage"]
    )
    with pytest.raises(ApiException) as caught:
        hs.crm.deals.batch_api.read(request)
    assert caught.value.status == 400


def test_given_seeded_deals_when_mapped_then_every_archetype_maps(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    """The project's HubSpot mapping reads what the emulator serves (signals' raw data)."""
    pipelines = parse_pipelines(hs.crm.pipelines.pipelines_api.get_all("deals").to_dict())
    names = [p.name for p in hs.crm.properties.core_api.get_all("deals").results]
    wanted = [
        n
        for n in names
        if not n.startswith(("hs_date_exited_", "hs_date_entered_")) or "current" in n
    ]
    ids = sorted(seeded.deal_ids(), key=int)
    request = BatchReadInputSimplePublicObjectId(
        inputs=[{"id": i} for i in ids],
        properties=wanted,
        properties_with_history=["dealstage", "closedate", "amount", "hubspot_owner_id"],
    )
    raw = sdk_call(hs.crm.deals.batch_api, "read", request).raw
    by_id = {d["id"]: d for d in raw["results"]}
    snapshots = {}
    for index, deal_id in enumerate(ids):
        shape = ARCHETYPES[index % len(ARCHETYPES)]
        snapshots[shape.key] = map_deal(by_id[deal_id], pipelines)
    assert len(snapshots["pushed"].close_date_history) == 3  # three pushes
    amounts = snapshots["shrinking"].amount_history
    assert amounts[-1].new < max(change.old for change in amounts)
    assert len(snapshots["new_owner"].owner_history) == 1
    last_move = snapshots["regressed"].stage_history[-1]
    assert last_move.new.order < last_move.old.order
    assert snapshots["no_next_step"].next_step is None
    assert snapshots["healthy"].next_step.startswith("Follow-up call booked")  # type: ignore[union-attr]
    assert snapshots["renewal"].pipeline == "1467325"
    assert snapshots["silent"].last_activity_at is not None
    assert snapshots["single"].contact_count == 1
    assert snapshots["won"].stage.is_won


def test_given_a_deal_when_read_by_id_with_associations_then_v3_contacts(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    deal_id = sorted(seeded.deal_ids(), key=int)[1]  # "pushed": two labelled contacts, one not
    call = sdk_call(
        hs.crm.deals.basic_api,
        "get_by_id",
        deal_id,
        properties=["dealstage", "num_associated_contacts"],
        properties_with_history=["dealstage"],
        associations=["contacts"],
    )
    assert call.model.properties["num_associated_contacts"] == "3"
    contacts = call.raw["associations"]["contacts"]["results"]
    assert {c["type"] for c in contacts} == {"deal_to_contact", "economic_buyer", "technical_buyer"}
    assert len({c["id"] for c in contacts}) == 3
    with pytest.raises(NotFoundException) as caught:
        hs.crm.deals.basic_api.get_by_id("1")
    import json

    assert json.loads(caught.value.body)["category"] == "OBJECT_NOT_FOUND"


def test_given_labelled_contacts_when_read_v4_then_labels_and_unlabelled(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    deal_id = sorted(seeded.deal_ids(), key=int)[1]
    call = sdk_call(hs.crm.associations.v4.basic_api, "get_page", "deals", deal_id, "contacts")
    labels = sorted(
        t["label"] for row in call.raw["results"] for t in row["associationTypes"] if t["label"]
    )
    assert labels == ["Economic Buyer", "Technical Buyer"]
    assert all(
        any(t["typeId"] == 3 for t in row["associationTypes"]) for row in call.raw["results"]
    )
    assert all(isinstance(row["toObjectId"], int) for row in call.raw["results"])
    paged = sdk_call(
        hs.crm.associations.v4.basic_api, "get_page", "deals", deal_id, "contacts", limit=2
    )
    assert len(paged.model.results) == 2 and paged.model.paging.next.after == "2"


def test_given_deals_when_v4_batch_read_then_results_and_207_for_none(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    ids = sorted(seeded.deal_ids(), key=int)
    request = BatchInputPublicFetchAssociationsBatchRequest(
        inputs=[{"id": ids[0]}, {"id": ids[5]}, {"id": "999"}]
    )
    call = sdk_call(hs.crm.associations.v4.batch_api, "get_page", "deals", "contacts", request)
    assert call.status == 207
    assert [r.to_object_id for r in call.model.results[1].to] == [
        str(row["toObjectId"]) for row in call.raw["results"][1]["to"]
    ]
    assert call.model.results[1]._from.id == ids[5]
    assert call.model.errors[0].sub_category == "crm.associations.NO_ASSOCIATIONS_FOUND"
    everyone = BatchInputPublicFetchAssociationsBatchRequest(inputs=[{"id": i} for i in ids])
    assert (
        sdk_call(hs.crm.associations.v4.batch_api, "get_page", "deals", "contacts", everyone).status
        == 200
    )


def test_association_labels_notes_to_deals_214_and_deal_contact_labels(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    api = hs.crm.associations.v4.schema.definitions_api
    notes = sdk_call(api, "get_all", "notes", "deals")
    assert [(r.category, r.type_id, r.label) for r in notes.model.results] == [
        ("HUBSPOT_DEFINED", 214, None)
    ]
    contacts = sdk_call(api, "get_all", "deals", "contacts")
    labels = {r.label: r.type_id for r in contacts.model.results}
    assert labels[None] == 3
    assert {"Decision Maker", "Champion", "Economic Buyer"} <= set(labels)


def test_owners_and_account_details(seeded: HubSpotEmulator, hs: HubSpot) -> None:
    owners = sdk_call(hs.crm.owners.owners_api, "get_page")
    assert len(owners.model.results) == 5
    owner_ids = {o.id for o in owners.model.results}
    deal = seeded.deal(seeded.deal_ids()[0])
    assert deal is not None and deal["hubspot_owner_id"] in owner_ids
    details = httpx.get(
        f"{seeded.base_url}/account-info/v3/details",
        headers={"Authorization": f"Bearer {seeded.private_app_token()}"},
    )
    assert details.json()["portalId"] == seeded.portal_id
