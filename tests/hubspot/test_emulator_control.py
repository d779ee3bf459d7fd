"""The control API (``/__emulator/...``) over HTTP, as the demo and benchmarks use it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hubspot.crm.deals.exceptions import ApiException, UnauthorizedException
from hubspot.crm.objects.notes import BatchInputSimplePublicObjectBatchInputForCreate

from integrations.hubspot.emulator import HubSpotEmulator

from .conftest import AS_OF, Sink, client


@pytest.fixture
def control(emulator: HubSpotEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{emulator.base_url}/__emulator", trust_env=False) as http:
        yield http


def test_seed_token_state_and_deals(emulator: HubSpotEmulator, control: httpx.Client) -> None:
    ids = control.post("/seed", json={"count": 4, "as_of": "2026-11-20T09:00:00Z"}).json()["ids"]
    assert len(ids) == 4
    token = control.post("/token", json={}).json()
    assert token["expires_in"] == 1800 and token["refresh_token"]
    hs = client(emulator, token["access_token"])
    assert hs.crm.deals.basic_api.get_by_id(ids[0]).id == ids[0]
    private = control.post("/token", json={"kind": "private"}).json()["access_token"]
    assert private == emulator.PRIVATE_APP_TOKEN
    state = control.get("/state").json()
    assert state["records"]["deals"] == 4 and state["portal_id"] == emulator.portal_id
    deals = control.get("/deals", params={"properties": "dealname,dealstage"}).json()["results"]
    assert {d["id"] for d in deals} == set(ids)
    assert set(deals[0]["properties"]) == {"dealname", "dealstage"}
    one = control.get(f"/deals/{ids[0]}").json()["properties"]
    assert one["hs_object_id"] == ids[0] and "hs_v2_date_entered_current_stage" in one
    assert control.get("/deals/1").status_code == 404
    assert control.post("/nothing", json={}).status_code == 404
    assert control.post("/seed", content=b"not json").status_code == 400


def test_faults_through_the_control_api(emulator: HubSpotEmulator, control: httpx.Client) -> None:
    [deal_id] = emulator.seed(1, as_of=AS_OF)
    hs = client(emulator)
    control.post("/faults", json={"rate_limit": 1})
    with pytest.raises(ApiException) as limited:
        hs.crm.deals.basic_api.get_by_id(deal_id)
    assert limited.value.status == 429
    control.post("/faults", json={"errors": 1, "error_status": 503})
    with pytest.raises(ApiException) as failed:
        hs.crm.deals.basic_api.get_by_id(deal_id)
    assert failed.value.status == 503
    control.post("/faults", json={"fail_deals": [deal_id]})
    answer = hs.crm.objects.notes.batch_api.create(
        BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[
                {
                    "properties": {"hs_timestamp": "2026-12-03T10:00:00Z", "hs_note_body": "x"},
                    "associations": [
                        {
                            "to": {"id": deal_id},
                            "types": [
                                {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 214}
                            ],
                        }
                    ],
                    "objectWriteTraceId": "only",
                }
            ]
        )
    )
    assert answer.num_errors == 1 and answer.results == []
    expired = control.post("/faults", json={"clear": True, "expire_tokens": True}).json()
    assert expired["expired_tokens"] >= 1
    with pytest.raises(UnauthorizedException):
        hs.crm.deals.basic_api.get_by_id(deal_id)
    control.post("/faults", json={"ten_second_limit": 7, "search_per_second": 2})
    assert control.get("/state").json()["rate_limits"]["ten_second_limit"] == 7


def test_stage_edit_notes_calls_and_webhooks(
    emulator: HubSpotEmulator, control: httpx.Client, sink: Sink, tmp_path: Path
) -> None:
    [deal_id] = emulator.seed(1, as_of=AS_OF)
    control.post("/webhooks", json={"url": sink.url, "client_secret": "s", "backoff": 0.01})
    assert control.post(f"/deals/{deal_id}/stage", json={"stage": "closedlost"}).status_code == 200
    assert sink.wait_for(1)[0].events[0]["propertyValue"] == "closedlost"
    assert emulator.wait_for_webhooks()
    assert control.get("/deliveries").json()["results"][0]["delivered"] is True
    edited = control.post(f"/deals/{deal_id}", json={"properties": {"hs_next_step": "Call"}})
    assert edited.json()["changed"] == ["hs_next_step"]
    assert emulator.history(deal_id, "hs_next_step")[0]["sourceType"] == "CRM_UI"
    hs = client(emulator)
    control.post("/reset_calls", json={})
    hs.crm.objects.notes.basic_api.create(
        {
            "properties": {"hs_timestamp": "2026-12-03T10:00:00Z", "hs_note_body": "<p>n</p>"},
            "associations": [
                {
                    "to": {"id": deal_id},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 214}],
                }
            ],
        }
    )
    notes = control.get("/notes", params={"deal": deal_id}).json()["results"]
    assert [n["hs_note_body"] for n in notes] == ["<p>n</p>"] and notes[0]["deal_ids"] == [deal_id]
    assert control.get("/calls").json()["notes_create"] == 1
    redirect = "http://127.0.0.1:9/cb"
    code = control.post("/authorization_code", json={"redirect_uri": redirect}).json()["code"]
    assert code
    saved = Path(control.post("/save", json={}).json()["path"])
    assert saved.is_file()
    again = HubSpotEmulator(saved.parent)  # the saved portal loads
    assert again.deal_ids() == [deal_id] and len(again.notes(deal_id)) == 1
