"""Writes through the real client: sObjects, composite calls, history and side effects."""

from __future__ import annotations

import base64
from datetime import date

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from integrations.salesforce.emulator import SalesforceEmulator

from .conftest import client

HISTORY_SOQL = (
    "SELECT Id, StageName, Probability, LastStageChangeDate, PushCount, SystemModstamp, "
    "LastModifiedById, (SELECT StageName, Amount, CloseDate, Probability, PrevAmount, "
    "PrevCloseDate, CreatedDate FROM OpportunityHistories ORDER BY CreatedDate), "
    "(SELECT Field, DataType, OldValue, NewValue, CreatedDate FROM Histories "
    "ORDER BY CreatedDate) FROM Opportunity WHERE Id = '{id}'"
)


def _note(html: str) -> str:
    return base64.b64encode(html.encode("utf-8")).decode("ascii")


def _new_opportunity(sf: Salesforce) -> str:
    created = sf.Opportunity.create(
        {
            "Name": "Acme - Pilot",
            "StageName": "Prospecting",
            "CloseDate": "2027-01-29",
            "Amount": 40000,
        }
    )
    assert created["success"] is True and created["errors"] == []
    return str(created["id"])


def test_an_update_writes_history_as_salesforce_does(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    opp_id = _new_opportunity(sf)
    before = sf.query(HISTORY_SOQL.format(id=opp_id))["records"][0]
    assert before["OpportunityHistories"]["totalSize"] == 1
    assert [row["Field"] for row in before["Histories"]["records"]] == ["created"]

    new_owner = emulator.owner_ids[1]
    status = sf.Opportunity.update(
        opp_id,
        {
            "StageName": "Needs Analysis",
            "Amount": 45000,
            "CloseDate": "2027-03-31",
            "OwnerId": new_owner,
        },
    )
    assert status == 204
    after = sf.query(HISTORY_SOQL.format(id=opp_id))["records"][0]
    assert after["StageName"] == "Needs Analysis"
    assert after["Probability"] == 20  # reset to the stage's default
    assert after["LastStageChangeDate"] is not None
    assert after["PushCount"] == 1  # the close date moved into a later month
    assert after["SystemModstamp"] >= before["SystemModstamp"]  # whole seconds
    assert after["LastModifiedById"] == emulator.user_id  # the API user wrote it
    rows = after["OpportunityHistories"]["records"]
    assert len(rows) == 2
    assert rows[1]["StageName"] == "Needs Analysis" and rows[1]["Amount"] == 45000
    assert rows[1]["PrevAmount"] == 40000 and rows[1]["PrevCloseDate"] == "2027-01-29"
    fields = [
        (row["Field"], row["OldValue"], row["NewValue"]) for row in after["Histories"]["records"]
    ]
    assert ("StageName", "Prospecting", "Needs Analysis") in fields
    assert ("Amount", 40000, 45000) in fields
    assert ("CloseDate", "2027-01-29", "2027-03-31") in fields
    new_owner_name = (emulator.record(new_owner) or {})["Name"]
    # An owner change is two rows: user names, then user ids.
    assert [row for row in fields if row[0] == "Owner"] == [
        ("Owner", "Dealcoach Integration", new_owner_name),
        ("Owner", emulator.user_id, new_owner),
    ]

    # A write of a field outside history (a custom summary) still bumps SystemModstamp.
    sf.Opportunity.update(opp_id, {"Dealcoach_Summary__c": "Health 62: 2 signals"})
    again = sf.query(HISTORY_SOQL.format(id=opp_id))["records"][0]
    assert len(again["OpportunityHistories"]["records"]) == 2
    assert again["SystemModstamp"] >= after["SystemModstamp"]


def test_ui_edits_through_the_python_api_write_history_by_that_user(
    seeded: SalesforceEmulator,
) -> None:
    opp = seeded.records("Opportunity")[0]
    seeded.update("Opportunity", opp["Id"], {"StageName": "Closed Won"})
    stored = seeded.record(opp["Id"])
    assert stored is not None and stored["IsWon"] is True and stored["IsClosed"] is True
    assert stored["LastModifiedById"] == opp["OwnerId"]


def test_write_errors_carry_salesforce_codes(emulator: SalesforceEmulator, sf: Salesforce) -> None:
    opp_id = _new_opportunity(sf)
    cases = [
        ({"Bogus__c": "x"}, "INVALID_FIELD"),
        ({"IsWon": True}, "INVALID_FIELD_FOR_INSERT_UPDATE"),
        ({"StageName": "Verbal Commit"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
        ({"CloseDate": "next week"}, "JSON_PARSER_ERROR"),
        ({"OwnerId": "005notanid"}, "MALFORMED_ID"),
    ]
    for values, code in cases:
        with pytest.raises(SalesforceMalformedRequest) as excinfo:
            sf.Opportunity.update(opp_id, values)
        assert excinfo.value.content[0]["errorCode"] == code, values
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        sf.Opportunity.create({"Name": "No stage"})
    assert excinfo.value.content[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    with SalesforceEmulator(custom_fields=()) as bare:
        bare_id = client(bare).Opportunity.create(
            {"Name": "x", "StageName": "Prospecting", "CloseDate": "2027-01-01"}
        )["id"]
        with pytest.raises(SalesforceMalformedRequest) as excinfo:
            client(bare).Opportunity.update(bare_id, {"Dealcoach_Summary__c": "x"})
        assert excinfo.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_tasks_drive_the_activity_fields(emulator: SalesforceEmulator, sf: Salesforce) -> None:
    opp_id = _new_opportunity(sf)
    sf.Task.create(
        {"WhatId": opp_id, "Subject": "Call", "Status": "Completed", "ActivityDate": "2026-11-18"}
    )
    sf.Task.create(
        {"WhatId": opp_id, "Subject": "Demo", "Status": "Not Started", "ActivityDate": "2099-01-05"}
    )
    opp = sf.Opportunity.get(opp_id)
    assert opp["LastActivityDate"] == "2026-11-18"
    assert opp["HasOpenActivity"] is True and opp["HasOverdueTask"] is False
    tasks = sf.query(f"SELECT Id, Subject, IsClosed FROM Task WHERE WhatId = '{opp_id}'")
    assert tasks["totalSize"] == 2


def test_notes_store_sanitised_html_and_are_found_by_title(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    opp_id = _new_opportunity(sf)
    html = "<p>Health 62 &amp; falling</p><script>alert(1)</script><p>[dealcoach:abc123]</p>"
    note_id = sf.ContentNote.create(
        {"Title": "Deal review [dealcoach:abc123]", "Content": _note(html)}
    )["id"]
    assert note_id.startswith("069")
    sf.ContentDocumentLink.create(
        {
            "ContentDocumentId": note_id,
            "LinkedEntityId": opp_id,
            "ShareType": "V",
            "Visibility": "AllUsers",
        }
    )
    found = sf.query(
        "SELECT Id, Title, Content, TextPreview FROM ContentNote "
        "WHERE Title LIKE '%[dealcoach:abc123]%'"
    )
    assert [r["Id"] for r in found["records"]] == [note_id]
    content_url = found["records"][0]["Content"]
    assert content_url == f"/services/data/v59.0/sobjects/ContentNote/{note_id}/Content"
    body = sf.session.get(f"{emulator.base_url}{content_url}", headers=sf.headers).text
    assert body == "<p>Health 62 &amp; falling</p><p>[dealcoach:abc123]</p>"
    links = sf.query(
        "SELECT ContentDocumentId, ContentDocument.Title, ShareType FROM ContentDocumentLink "
        f"WHERE LinkedEntityId = '{opp_id}'"
    )
    assert links["records"][0]["ContentDocumentId"] == note_id
    assert links["records"][0]["ContentDocument"]["Title"].startswith("Deal review")
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        sf.ContentDocumentLink.create({"ContentDocumentId": note_id, "LinkedEntityId": opp_id})
    assert excinfo.value.content[0]["errorCode"] == "DUPLICATE_VALUE"
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        sf.ContentDocumentLink.create({"ContentDocumentId": note_id})
    assert excinfo.value.content[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        sf.ContentNote.create({"Title": "bad", "Content": _note("Tom & Jerry")})
    assert excinfo.value.content[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        sf.query("SELECT Id FROM ContentNote WHERE Content LIKE '%x%'")
    assert excinfo.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_composite_sobjects_answers_one_result_per_record_in_order(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    opp_id = _new_opportunity(sf)
    records = [
        {
            "attributes": {"type": "Task"},
            "WhatId": opp_id,
            "Subject": "Review 1",
            "Status": "Completed",
            "ActivityDate": date(2026, 11, 20).isoformat(),
        },
        {"attributes": {"type": "Task"}, "WhatId": opp_id, "Subject": "x" * 300},
        {"attributes": {"type": "ContentNote"}, "Title": "Review", "Content": _note("<p>ok</p>")},
    ]
    emulator.reset_calls()
    results = sf.restful(
        "composite/sobjects", method="POST", json={"allOrNone": False, "records": records}
    )
    assert [r["success"] for r in results] == [True, False, True]
    assert results[0]["id"].startswith("00T") and results[2]["id"].startswith("069")
    assert results[1]["errors"][0]["statusCode"] == "STRING_TOO_LONG"
    assert emulator.call_counts()["composite_sobjects"] == 1
    assert emulator.api_usage[0] == sf.api_usage["api-usage"].used

    rolled = sf.restful(
        "composite/sobjects", method="POST", json={"allOrNone": True, "records": records}
    )
    assert [r["success"] for r in rolled] == [False, False, False]
    assert rolled[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert sf.query(f"SELECT COUNT() FROM Task WHERE WhatId = '{opp_id}'")["totalSize"] == 1

    updated = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={
            "records": [
                {"attributes": {"type": "Opportunity"}, "id": opp_id, "Dealcoach_Summary__c": "ok"}
            ]
        },
    )
    assert updated == [{"id": opp_id, "success": True, "errors": []}]
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        sf.restful("composite/sobjects", method="POST", json={"records": [records[0]] * 201})
    assert excinfo.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_composite_with_references_creates_a_note_and_its_link_in_one_call(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    opp_id = _new_opportunity(sf)
    base = "/services/data/v59.0"
    payload = {
        "allOrNone": True,
        "compositeRequest": [
            {
                "method": "POST",
                "url": f"{base}/sobjects/ContentNote",
                "referenceId": "note",
                "body": {"Title": "Deal review [dealcoach:r1]", "Content": _note("<p>Hi</p>")},
            },
            {
                "method": "POST",
                "url": f"{base}/sobjects/ContentDocumentLink",
                "referenceId": "link",
                "body": {
                    "ContentDocumentId": "@{note.id}",
                    "LinkedEntityId": opp_id,
                    "ShareType": "V",
                    "Visibility": "AllUsers",
                },
            },
            {
                "method": "GET",
                "url": f"{base}/sobjects/ContentNote/@{{note.id}}?fields=Title",
                "referenceId": "check",
            },
        ],
    }
    emulator.reset_calls()
    answer = sf.restful("composite", method="POST", json=payload)["compositeResponse"]
    assert [a["httpStatusCode"] for a in answer] == [201, 201, 200]
    note_id = answer[0]["body"]["id"]
    assert answer[2]["body"]["Title"] == "Deal review [dealcoach:r1]"
    assert emulator.call_counts() == {"composite": 1, "api": 1}
    links = sf.query(
        f"SELECT ContentDocumentId FROM ContentDocumentLink WHERE LinkedEntityId = '{opp_id}'"
    )
    assert [r["ContentDocumentId"] for r in links["records"]] == [note_id]

    # allOrNone: a failing link rolls the note back too.
    payload["compositeRequest"][1]["body"]["LinkedEntityId"] = "006000000000000AAA"  # type: ignore[index]
    answer = sf.restful("composite", method="POST", json=payload)["compositeResponse"]
    assert answer[0]["httpStatusCode"] == 400
    assert answer[0]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert answer[1]["body"][0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert sf.query("SELECT COUNT() FROM ContentNote")["totalSize"] == 1
