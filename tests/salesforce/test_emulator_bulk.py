"""The emulator's Bulk API 2.0 query jobs, through simple-salesforce's Bulk 2.0 client."""

from __future__ import annotations

import csv
import io

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.bulk2 import Operation, _Bulk2Client
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound

from integrations.salesforce.emulator import SalesforceEmulator


def bulk_client(sf: Salesforce) -> _Bulk2Client:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {sf.session_id}"}
    return _Bulk2Client("Opportunity", sf.bulk2_url, headers, sf.session)


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_a_query_job_answers_csv_pages_with_locators(
    seeded: SalesforceEmulator, sf: Salesforce
) -> None:
    client = bulk_client(sf)
    job = client.create_job(
        Operation.query,
        query="SELECT Id, Name, Amount, IsClosed, SystemModstamp, Owner.Name FROM Opportunity",
    )
    assert job["state"] == "UploadComplete" and job["id"].startswith("750")
    assert client.get_job(job["id"], True)["state"] == "JobComplete"

    first = client.get_query_results(job["id"], "", 10)
    assert first["number_of_records"] == 10 and first["locator"]
    second = client.get_query_results(job["id"], first["locator"], 10)
    assert second["number_of_records"] == 6 and second["locator"] == ""

    header = first["records"].splitlines()[0]
    assert header == '"Id","Name","Amount","IsClosed","SystemModstamp","Owner.Name"'
    got = rows(first["records"]) + rows(second["records"])
    by_id = {row["Id"]: row for row in got}
    assert len(by_id) == 16
    for record_id, row in by_id.items():
        record = seeded.record(record_id)
        assert record is not None
        assert row["Name"] == record["Name"]
        assert row["IsClosed"] in {"true", "false"}
        assert row["SystemModstamp"].endswith(".000Z")
        assert row["SystemModstamp"][:19] == record["SystemModstamp"][:19]
        assert row["Owner.Name"]  # a parent field, flattened
        assert float(row["Amount"]) == record["Amount"]


def test_null_values_are_empty(seeded: SalesforceEmulator, sf: Salesforce) -> None:
    opportunity = seeded.records("Opportunity")[0]["Id"]
    seeded.update("Opportunity", opportunity, {"NextStep": None})
    client = bulk_client(sf)
    job = client.create_job(Operation.query, query="SELECT Id, NextStep FROM Opportunity")
    client.get_job(job["id"], True)
    found = {r["Id"]: r for r in rows(client.get_query_results(job["id"], "", 100)["records"])}
    assert found[opportunity]["NextStep"] == ""


@pytest.mark.parametrize(
    ("soql", "message"),
    [
        ("SELECT Id, (SELECT Id FROM OpportunityHistories) FROM Opportunity", "Nested"),
        ("SELECT COUNT() FROM Opportunity", "Aggregate"),
        ("SELECT Id, NoSuchField__c FROM Opportunity", "NoSuchField__c"),
        ("SELEKT Id FROM Opportunity", "unexpected"),
    ],
)
def test_queries_bulk_cannot_run_are_refused_at_creation(
    seeded: SalesforceEmulator, sf: Salesforce, soql: str, message: str
) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        bulk_client(sf).create_job(Operation.query, query=soql)
    assert message.lower() in str(caught.value.content).lower()
    assert seeded.bulk.jobs == {}


def test_results_wait_for_the_job_and_unknown_jobs_are_404(
    seeded: SalesforceEmulator, sf: Salesforce
) -> None:
    seeded.set_bulk(polls_in_progress=1)
    client = bulk_client(sf)
    job = client.create_job(Operation.query, query="SELECT Id FROM Opportunity")
    with pytest.raises(SalesforceMalformedRequest):
        client.get_query_results(job["id"], "", 10)
    assert client.get_job(job["id"], True)["state"] == "InProgress"
    assert client.get_job(job["id"], True)["state"] == "JobComplete"
    assert client.get_query_results(job["id"], "", 100)["number_of_records"] == 16
    # DELETE answers 204 with no body, as Salesforce does (simple-salesforce's delete_job
    # would try to read JSON from it, so the request is sent as is).
    gone = sf.session.delete(
        f"{sf.bulk2_url}query/{job['id']}", headers={"Authorization": f"Bearer {sf.session_id}"}
    )
    assert gone.status_code == 204 and gone.content == b""
    with pytest.raises(SalesforceResourceNotFound):
        client.get_job(job["id"], True)


def test_a_failed_job_says_why_and_an_aborted_one_stays_aborted(
    seeded: SalesforceEmulator, sf: Salesforce
) -> None:
    client = bulk_client(sf)
    seeded.set_bulk(fail_next=1)
    failed = client.create_job(Operation.query, query="SELECT Id FROM Opportunity")
    info = client.get_job(failed["id"], True)
    assert info["state"] == "Failed" and info["errorMessage"]

    seeded.set_bulk(polls_in_progress=5)
    running = client.create_job(Operation.query, query="SELECT Id FROM Opportunity")
    assert client.abort_job(running["id"], True)["state"] == "Aborted"
    assert client.get_job(running["id"], True)["state"] == "Aborted"


def test_query_all_includes_deleted_records(seeded: SalesforceEmulator, sf: Salesforce) -> None:
    gone = seeded.records("Opportunity")[0]["Id"]
    seeded.delete("Opportunity", gone)
    client = bulk_client(sf)
    live = client.create_job(Operation.query, query="SELECT Id FROM Opportunity")
    every = client.create_job(Operation.query_all, query="SELECT Id, IsDeleted FROM Opportunity")
    client.get_job(live["id"], True)
    client.get_job(every["id"], True)
    live_ids = {r["Id"] for r in rows(client.get_query_results(live["id"], "", 100)["records"])}
    all_rows = rows(client.get_query_results(every["id"], "", 100)["records"])
    assert gone not in live_ids and len(live_ids) == 15
    assert {r["Id"]: r["IsDeleted"] for r in all_rows}[gone] == "true"


def test_every_bulk_request_is_an_api_call(seeded: SalesforceEmulator, sf: Salesforce) -> None:
    seeded.reset_calls()
    client = bulk_client(sf)
    job = client.create_job(Operation.query, query="SELECT Id FROM Opportunity")
    client.get_job(job["id"], True)
    client.get_query_results(job["id"], "", 100)
    assert seeded.call_counts() == {"bulk": 3, "api": 3}
    assert seeded.api_usage[0] >= 3
