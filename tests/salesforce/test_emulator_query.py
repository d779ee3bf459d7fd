"""SOQL over the emulator with the real simple-salesforce client: shapes, pages, errors."""

from __future__ import annotations

from datetime import datetime

import pytest
from simple_salesforce import Salesforce, format_soql
from simple_salesforce.exceptions import SalesforceMalformedRequest

from app.coaching.engine import review_deal
from app.coaching.playbook import compile_playbook, load_playbook
from integrations.salesforce.emulator import ARCHETYPES, SalesforceEmulator
from integrations.salesforce.mapping import map_opportunity, parse_stage_catalogue

from .conftest import AS_OF, client

#: What a sync sends: the fields mapping.py reads, with the three history/contact subqueries.
SYNC_SOQL = (
    "SELECT Id, Name, StageName, Amount, CloseDate, Probability, ForecastCategoryName, "
    "NextStep, Description, LastActivityDate, HasOpenActivity, IsClosed, IsWon, OwnerId, "
    "Owner.Name, CurrencyIsoCode, CreatedDate, SystemModstamp, LastStageChangeDate, "
    "Metrics__c, Economic_Buyer__c, Champion__c, "
    "(SELECT StageName, Amount, CloseDate, Probability, CreatedDate FROM OpportunityHistories), "
    "(SELECT ContactId, Role, IsPrimary, Contact.Name FROM OpportunityContactRoles), "
    "(SELECT Field, OldValue, NewValue, CreatedDate FROM Histories) "
    "FROM Opportunity WHERE SystemModstamp > {since} ORDER BY SystemModstamp ASC"
)
STAGES_SOQL = (
    "SELECT ApiName, MasterLabel, SortOrder, IsActive, IsClosed, IsWon, DefaultProbability "
    "FROM OpportunityStage"
)


def test_query_nests_subqueries_and_null_for_an_empty_child_relationship(
    seeded: SalesforceEmulator, sf: Salesforce
) -> None:
    result = sf.query(
        "SELECT Id, Name, Owner.Name, (SELECT StageName, CreatedDate FROM OpportunityHistories), "
        "(SELECT Id FROM Tasks WHERE Status = 'Not Started') FROM Opportunity "
        "ORDER BY CreatedDate LIMIT 5"
    )
    assert result["totalSize"] == 5 and result["done"] is True
    first = result["records"][0]
    assert first["attributes"] == {
        "type": "Opportunity",
        "url": f"/services/data/v59.0/sobjects/Opportunity/{first['Id']}",
    }
    assert set(first["Owner"]) == {"attributes", "Name"}
    assert first["Owner"]["attributes"]["type"] == "User"
    histories = first["OpportunityHistories"]
    assert histories["done"] is True and histories["totalSize"] == len(histories["records"]) >= 2
    assert set(histories["records"][0]) == {"attributes", "StageName", "CreatedDate"}
    assert histories["records"][0]["CreatedDate"].endswith(".000+0000")
    # Salesforce sends null, not an empty list, for a child relationship without rows.
    assert any(record["Tasks"] is None for record in result["records"])


def test_pages_are_2000_rows_and_200_with_subqueries(emulator: SalesforceEmulator) -> None:
    emulator.seed(500, as_of=AS_OF)
    sf = client(emulator)
    emulator.reset_calls()

    page = sf.query("SELECT Id, (SELECT Id FROM OpportunityHistories) FROM Opportunity")
    assert page["totalSize"] == 500 and len(page["records"]) == 200 and page["done"] is False
    assert page["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    assert page["nextRecordsUrl"].endswith("-200")
    ids = [
        r["Id"] for r in sf.query_all_iter("SELECT Id, (SELECT Id FROM Histories) FROM Opportunity")
    ]
    assert len(ids) == len(set(ids)) == 500
    assert emulator.call_counts()["query_more"] == 2  # 200 + 200 + 100

    rows = sf.query("SELECT Id FROM OpportunityHistory")
    assert rows["totalSize"] > 2000 and len(rows["records"]) == 2000
    everything = sf.query_all("SELECT Id FROM OpportunityHistory")
    assert everything["totalSize"] == rows["totalSize"]


def test_seeded_opportunities_map_and_raise_every_coaching_signal(
    emulator: SalesforceEmulator,
) -> None:
    emulator.seed(len(ARCHETYPES), as_of=AS_OF)
    sf = client(emulator)
    stages = parse_stage_catalogue(sf.query(STAGES_SOQL))
    records = list(sf.query_all_iter(SYNC_SOQL.format(since="2000-01-01T00:00:00Z")))
    assert len(records) == len(ARCHETYPES)
    playbook = compile_playbook(load_playbook())
    raised: set[str] = set()
    for record in records:
        deal = map_opportunity(record, stages)
        raised |= {signal.code for signal in review_deal(deal, playbook, AS_OF).signals}
    wanted = {code for shape in ARCHETYPES for code in shape.signals} | {"methodology_gap"}
    assert len(wanted) == 14
    assert wanted <= raised


def test_seeding_is_deterministic_for_a_seed_and_as_of() -> None:
    def snapshot(seed: int) -> list[dict[str, object]]:
        emulator = SalesforceEmulator(seed=seed)
        emulator.seed(40, as_of=AS_OF)
        rows = emulator.records("Opportunity")
        emulator.stop()
        return rows

    assert snapshot(3) == snapshot(3)
    assert snapshot(3) != snapshot(4)


def test_incremental_filters_ids_and_open_deals(seeded: SalesforceEmulator, sf: Salesforce) -> None:
    records = sf.query("SELECT Id, SystemModstamp FROM Opportunity ORDER BY SystemModstamp")[
        "records"
    ]
    middle = records[7]["SystemModstamp"]  # 2026-...T..:..:...000+0000
    watermark = middle[:19] + "Z"
    newer = sf.query(
        f"SELECT Id FROM Opportunity WHERE SystemModstamp > {watermark} "
        "AND IsDeleted = false ORDER BY SystemModstamp ASC LIMIT 100"
    )
    assert [r["Id"] for r in newer["records"]] == [r["Id"] for r in records[8:]]
    # format_soql renders a datetime as 2026-...T..:..:..+00:00, which SOQL accepts too.
    since = datetime.fromisoformat(middle.replace("+0000", "+00:00"))
    formatted = format_soql("SELECT Id FROM Opportunity WHERE SystemModstamp > {}", since)
    assert sf.query(formatted)["totalSize"] == len(records) - 8
    wanted = [records[0]["Id"], records[3]["Id"][:15]]  # 18- and 15-character ids both match
    chosen = sf.query("SELECT Id FROM Opportunity WHERE Id IN ('{}', '{}')".format(*wanted))
    assert {r["Id"] for r in chosen["records"]} == {records[0]["Id"], records[3]["Id"]}
    open_deals = sf.query("SELECT Id, IsClosed FROM Opportunity WHERE IsClosed = false")
    assert open_deals["totalSize"] == 14  # the seed's 16 include one won, one lost
    assert sf.query("SELECT COUNT() FROM Opportunity WHERE IsWon = true")["totalSize"] == 1


def _error(excinfo: pytest.ExceptionInfo[SalesforceMalformedRequest]) -> dict[str, str]:
    content = excinfo.value.content
    assert isinstance(content, list)
    return content[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("soql", "code", "fragment"),
    [
        (
            "SELECT Id, Foo__c FROM Opportunity",
            "INVALID_FIELD",
            "No such column 'Foo__c' on entity 'Opportunity'",
        ),
        (
            "SELECT Id, Bogus.Name FROM Opportunity",
            "INVALID_FIELD",
            "Didn't understand relationship 'Bogus'",
        ),
        (
            "SELECT Id, (SELECT Id FROM Nothings) FROM Opportunity",
            "INVALID_TYPE",
            "Didn't understand relationship 'Nothings'",
        ),
        ("SELECT Id FROM Widget", "INVALID_TYPE", "sObject type 'Widget' is not supported"),
        ("SELECT Id FORM Opportunity", "MALFORMED_QUERY", "unexpected token"),
        (
            "SELECT Id FROM Opportunity WHERE IsClosed = false AND Amount > 5 OR Amount < 1",
            "MALFORMED_QUERY",
            "unexpected token",
        ),
        (
            "SELECT Id FROM Opportunity WHERE SystemModstamp > 2026-05-20T20:49:32.000+0000",
            "MALFORMED_QUERY",
            "date-time",
        ),
        (
            "SELECT Id FROM Opportunity WHERE SystemModstamp > '2026-05-20T20:49:32Z'",
            "INVALID_FIELD",
            "must be of type dateTime",
        ),
        (
            "SELECT Id FROM Opportunity WHERE Id = 'abc'",
            "INVALID_QUERY_FILTER_OPERATOR",
            "invalid ID field: abc",
        ),
        (
            "SELECT Id FROM Opportunity WHERE Description = 'x'",
            "INVALID_FIELD",
            "can not be filtered",
        ),
        ("SELECT Id FROM ContentDocumentLink", "MALFORMED_QUERY", "Implementation restriction"),
        ("SELECT Id, Name, Name FROM Opportunity", "MALFORMED_QUERY", "duplicate field"),
    ],
)
def test_bad_queries_are_400_with_salesforce_error_codes(
    sf: Salesforce, soql: str, code: str, fragment: str
) -> None:
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        sf.query(soql)
    assert excinfo.value.status == 400
    error = _error(excinfo)
    assert error["errorCode"] == code
    assert fragment in error["message"]


def test_invalid_field_message_points_at_the_column(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        sf.query("SELECT Id, PushCounter FROM Opportunity")
    assert "ERROR at Row:1:Column:12" in _error(excinfo)["message"]


def test_describe_lists_the_org_fields_and_an_org_can_lack_optional_ones(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    fields = {f["name"]: f for f in sf.Opportunity.describe()["fields"]}
    assert {"LastStageChangeDate", "PushCount", "Dealcoach_Summary__c", "Metrics__c"} <= set(fields)
    assert fields["Dealcoach_Summary__c"]["custom"] is True
    assert fields["Dealcoach_Summary__c"]["type"] == "textarea"
    assert fields["StageName"]["type"] == "picklist" and fields["Id"]["type"] == "id"
    assert emulator.call_counts()["describe"] == 1

    with SalesforceEmulator(optional_fields=(), custom_fields=()) as bare:
        bare_sf = client(bare)
        names = {f["name"] for f in bare_sf.Opportunity.describe()["fields"]}
        assert "LastStageChangeDate" not in names and "PushCount" not in names
        assert not any(name.endswith("__c") for name in names)
        with pytest.raises(SalesforceMalformedRequest) as excinfo:
            bare_sf.query("SELECT Id, LastStageChangeDate FROM Opportunity")
        assert _error(excinfo)["errorCode"] == "INVALID_FIELD"
        bare.seed(3, as_of=AS_OF)
        assert bare_sf.query("SELECT Id, Name FROM Opportunity")["totalSize"] == 3


def test_stage_catalogue_query(sf: Salesforce) -> None:
    catalogue = parse_stage_catalogue(sf.query(STAGES_SOQL))
    assert catalogue.stages[0].key == "Prospecting"
    assert catalogue.stages[-1].is_closed


def test_query_all_returns_deleted_records(seeded: SalesforceEmulator, sf: Salesforce) -> None:
    victim = sf.query("SELECT Id FROM Opportunity ORDER BY Name LIMIT 1")["records"][0]["Id"]
    assert sf.Opportunity.delete(victim) == 204
    assert sf.query(f"SELECT Id FROM Opportunity WHERE Id = '{victim}'")["totalSize"] == 0
    deleted = sf.query_all(
        "SELECT Id, IsDeleted, SystemModstamp FROM Opportunity WHERE IsDeleted = true",
        include_deleted=True,
    )
    assert [r["Id"] for r in deleted["records"]] == [victim]
    assert deleted["records"][0]["IsDeleted"] is True
    assert sf.query_all("SELECT Id FROM Opportunity", include_deleted=True)["totalSize"] == 16


def test_child_relationships_can_be_paged_too() -> None:
    with SalesforceEmulator(child_page_size=2) as emulator:
        emulator.seed(1, as_of=AS_OF)
        sf = client(emulator)
        record = sf.query("SELECT Id, (SELECT Id FROM OpportunityHistories) FROM Opportunity")[
            "records"
        ][0]
        histories = record["OpportunityHistories"]
        assert histories["done"] is False and len(histories["records"]) == 2
        rest = sf.query_more(histories["nextRecordsUrl"], identifier_is_url=True)
        assert rest["records"] and rest["totalSize"] == histories["totalSize"]
