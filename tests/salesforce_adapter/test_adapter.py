"""What only the Salesforce adapter has: call counts, the overlap watermark, optional
fields, credentials and refresh, partial note failures, error mapping.

Call counts are the emulator's data API calls (``api``: what Salesforce's daily
allowance counts); token requests are counted apart (``token``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.connections.models import Provider
from integrations.base import (
    ApiUsage,
    AuthError,
    ConnectionContext,
    CrmProvider,
    DealPage,
    InvalidRequestError,
    NoteRequest,
    NotFoundError,
    RateLimitedError,
    RetriableError,
    SummaryResult,
    SummaryUpdate,
)
from integrations.registry import provider_for
from integrations.salesforce import adapter as adapter_module
from integrations.salesforce.adapter import (
    RATE_LIMIT_RETRY_AFTER,
    SalesforceProvider,
    summary_field_name,
)
from integrations.salesforce.emulator import SalesforceEmulator
from integrations.salesforce.emulator.values import format_datetime, parse_datetime
from tests.salesforce_adapter.conftest import (
    ProviderFactory,
    RetryAfterEmulator,
    all_requests,
    api_calls,
    app_settings_for,
)

AS_OF = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def marker(number: int) -> str:
    return f"dc1-{number:032x}"


def note(deal_id: str, number: int, *, kind: str = "note", html: str | None = None) -> NoteRequest:
    return NoteRequest(
        deal_id=deal_id,
        marker=marker(number),
        title=f"dealcoach review {number}",
        html=html if html is not None else f"<p>Who signs?</p>\n<p>ref {number}</p>",
        text=f"Who signs?\nref {number}",
        kind=kind,  # type: ignore[arg-type]
    )


def collect(pages: list[DealPage]) -> tuple[list[str], list[str]]:
    return (
        [deal.id for page in pages for deal in page.deals],
        [deal_id for page in pages for deal_id in page.deleted_ids],
    )


def live_notes(emulator: SalesforceEmulator) -> list[dict[str, Any]]:
    return emulator.records("ContentNote")


@pytest.fixture
def provider(make_provider: ProviderFactory) -> SalesforceProvider:
    return make_provider()


# ---------------------------------------------------------------- construction


def test_registered_and_a_crm_provider(
    emulator: RetryAfterEmulator, provider: SalesforceProvider
) -> None:
    assert isinstance(provider, CrmProvider) and SalesforceProvider.kind == "salesforce"
    context = ConnectionContext(
        "c", Provider.SALESFORCE.value, "00D", emulator.base_url, {"access_token": "x"}, {}
    )
    assert isinstance(provider_for(context), SalesforceProvider)


@pytest.mark.parametrize(
    "credentials",
    [
        {},
        {"auth": "magic"},
        {"auth": "jwt", "username": "u", "consumer_key": "k"},
        {"auth": "client_credentials", "consumer_key": "k"},
        {"access_token": 3},
    ],
)
def test_unusable_credentials_fail_the_first_call_without_calling(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory, credentials: dict[str, Any]
) -> None:
    provider = make_provider(credentials=credentials)  # built: e.g. to be parked
    with pytest.raises(AuthError) as caught:
        provider.list_stages()
    assert not caught.value.refreshable
    with pytest.raises(AuthError):
        provider.refresh_credentials()
    assert all_requests(emulator) == 0


def test_a_refresh_token_alone_refreshes_first(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    provider = make_provider(credentials={"refresh_token": emulator.issue_refresh_token()})
    with pytest.raises(AuthError) as caught:
        provider.list_stages()
    assert caught.value.refreshable and all_requests(emulator) == 0
    provider.refresh_credentials()
    assert provider.list_stages()


@pytest.mark.parametrize(
    "settings",
    [
        {"page_size": 0},
        {"page_size": "2"},
        {"sync_overlap_seconds": -1},
        {"custom_fields": ["Name"]},
        {"custom_fields": ["x__c' OR"]},
    ],
)
def test_bad_settings_are_refused(make_provider: ProviderFactory, settings: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        make_provider(settings=settings)


def test_instance_url_outside_salesforce_is_refused_outside_sandbox(
    emulator: RetryAfterEmulator, tmp_path: Path
) -> None:
    settings = app_settings_for(emulator, tmp_path).model_copy(update={"sandbox": False})
    context = ConnectionContext(
        "c", "salesforce", "00D", emulator.base_url, {"access_token": "x"},
        {"ca_bundle": str(emulator.cert_path)},
    )  # fmt: skip
    provider = SalesforceProvider(context, settings=settings)
    with pytest.raises(InvalidRequestError):
        provider.list_stages()
    assert all_requests(emulator) == 0


# ---------------------------------------------------------------- sync: calls and pages


def test_pulling_n_opportunities_costs_pages_plus_describe_and_stages(
    emulator: RetryAfterEmulator, provider: SalesforceProvider
) -> None:
    count = 450  # 200 a page with child subqueries: 3 pages
    seeded = emulator.seed(count, as_of=AS_OF)
    emulator.reset_calls()
    pages = list(provider.iter_changed_deals(None))
    deals = [deal for page in pages for deal in page.deals]
    assert sorted(deal.id for deal in deals) == sorted(seeded)
    assert len(pages) == math.ceil(count / 200) == 3
    # describe + stage query + one call per page; a first sync queries no deletes.
    counts = emulator.call_counts()
    assert (counts["describe"], counts["query"], counts["query_more"]) == (1, 2, 2)
    assert api_calls(emulator) == 5
    assert all(deal.stage_history for deal in deals if deal.stage.key != "Prospecting")
    assert sum(bool(deal.contacts) for deal in deals) == count
    assert all(deal.contacts_known for deal in deals)
    won = next(deal for deal in deals if deal.stage.is_won)
    assert won.stage.is_closed and won.amount_history
    owners = {deal.owner_name for deal in deals}
    assert None not in owners and len(owners) == 5

    # Incremental: one more page query, plus the deletes query (the instance cached
    # describe and the stages).
    emulator.update("Opportunity", seeded[0], {"NextStep": "Send the MSA"})
    emulator.reset_calls()
    later = list(provider.iter_changed_deals(pages[-1].watermark))
    assert collect(later) == ([seeded[0]], [])
    assert api_calls(emulator) == 2

    # A fresh instance (each job builds one): + describe + stages.
    emulator.reset_calls()
    fresh = SalesforceProvider(provider._context, settings=provider._app_settings)
    assert collect(list(fresh.iter_changed_deals(later[-1].watermark))) == ([], [])
    assert api_calls(emulator) == 4  # describe, stages, the page, the deletes query


def test_page_size_cuts_salesforce_pages_and_asks_for_smaller_ones(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    seeded = emulator.seed(30, as_of=AS_OF)
    provider = make_provider(settings={"page_size": 7})
    emulator.reset_calls()
    pages = list(provider.iter_changed_deals(None))
    assert [len(page.deals) for page in pages] == [7, 7, 7, 7, 2]
    assert sorted(collect(pages)[0]) == sorted(seeded)
    assert api_calls(emulator) == 3  # one Salesforce page (batchSize is at least 200)


def test_resume_from_any_page_watermark_returns_the_rest_once(
    emulator: RetryAfterEmulator, provider: SalesforceProvider
) -> None:
    seeded = emulator.seed(450, as_of=AS_OF)
    first = next(iter(provider.iter_changed_deals(None)))
    assert len(first.deals) == 200
    rest = list(provider.iter_changed_deals(first.watermark))
    rest_ids = collect(rest)[0]
    assert len(rest_ids) == len(set(rest_ids)) == 250
    assert set(rest_ids) | {deal.id for deal in first.deals} == set(seeded)


def test_overlap_window_catches_late_commits_and_same_second_changes(
    emulator: RetryAfterEmulator, provider: SalesforceProvider
) -> None:
    seeded = emulator.seed(6, as_of=AS_OF)
    pages = list(provider.iter_changed_deals(None))
    watermark = pages[-1].watermark
    assert watermark is not None
    stamp = parse_datetime(watermark.split("|")[0])
    # A transaction that committed late, stamped 2 minutes before the watermark;
    # one stamped 10 minutes before (outside the 5-minute overlap) is not seen.
    late, too_late = seeded[0], seeded[1]
    emulator.update("Opportunity", late, {"NextStep": "late"}, at=stamp - timedelta(minutes=2))
    emulator.update("Opportunity", too_late, {"NextStep": "x"}, at=stamp - timedelta(minutes=10))
    # Changed again within the same second as the record that set the watermark.
    last_id = pages[-1].deals[-1].id
    emulator.update("Opportunity", last_id, {"NextStep": "again"}, at=stamp)
    later = list(provider.iter_changed_deals(watermark))
    ids = collect(later)[0]
    assert late in ids and last_id in ids and too_late not in ids
    assert len(ids) == 2
    # Nothing comes back twice from the newest watermark.
    assert collect(list(provider.iter_changed_deals(later[-1].watermark))) == ([], [])


def test_plain_timestamp_watermark_returns_everything_in_the_overlap(
    emulator: RetryAfterEmulator, provider: SalesforceProvider
) -> None:
    seeded = emulator.seed(3, as_of=AS_OF)
    pages = list(provider.iter_changed_deals(None))
    plain = pages[-1].watermark.split("|")[0]  # type: ignore[union-attr]
    again = collect(list(provider.iter_changed_deals(plain)))[0]
    newest = max(emulator.record(i)["SystemModstamp"] for i in seeded)  # type: ignore[index]
    within = [
        i
        for i in seeded
        if parse_datetime(emulator.record(i)["SystemModstamp"])  # type: ignore[index]
        > parse_datetime(newest) - timedelta(minutes=5)
    ]
    assert sorted(again) == sorted(within)


def test_overlap_is_configurable(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    seeded = emulator.seed(3, as_of=AS_OF)
    provider = make_provider(settings={"sync_overlap_seconds": 0})
    pages = list(provider.iter_changed_deals(None))
    stamp = parse_datetime(pages[-1].watermark.split("|")[0])  # type: ignore[union-attr]
    emulator.update("Opportunity", seeded[0], {"NextStep": "x"}, at=stamp - timedelta(seconds=30))
    assert collect(list(provider.iter_changed_deals(pages[-1].watermark))) == ([], [])


def test_deletes_come_once_from_one_query_all(
    emulator: RetryAfterEmulator, provider: SalesforceProvider
) -> None:
    seeded = emulator.seed(5, as_of=AS_OF)
    pages = list(provider.iter_changed_deals(None))
    emulator.delete("Opportunity", seeded[1])
    emulator.delete("Opportunity", seeded[3])
    emulator.reset_calls()
    later = list(provider.iter_changed_deals(pages[-1].watermark))
    assert later and all(not page.deals for page in later)
    assert sorted(collect(later)[1]) == sorted([seeded[1], seeded[3]])
    assert emulator.call_counts().get("query") == 2  # the page query and the queryAll
    assert collect(list(provider.iter_changed_deals(later[-1].watermark))) == ([], [])
    with pytest.raises(NotFoundError):
        provider.fetch_deal(seeded[1])


def test_an_expired_query_cursor_is_retriable_and_the_watermark_resumes(
    emulator: RetryAfterEmulator, provider: SalesforceProvider
) -> None:
    seeded = emulator.seed(450, as_of=AS_OF)
    pages = provider.iter_changed_deals(None)
    first = next(pages)
    with emulator._lock:  # Salesforce drops a cursor idle for 15 minutes
        emulator._cursors.clear()
    with pytest.raises(RetriableError, match="INVALID_QUERY_LOCATOR"):
        next(pages)
    rest = collect(list(provider.iter_changed_deals(first.watermark)))[0]
    assert set(rest) | {deal.id for deal in first.deals} == set(seeded)


@pytest.mark.parametrize(
    "watermark", ["", "yesterday", "2026-13-01T00:00:00Z", "2026-11-01T00:00:00Z|zz"]
)
def test_malformed_watermark_is_refused_before_any_call(
    emulator: RetryAfterEmulator, provider: SalesforceProvider, watermark: str
) -> None:
    with pytest.raises(InvalidRequestError):
        provider.iter_changed_deals(watermark)
    assert all_requests(emulator) == 0


def test_a_record_the_mapper_refuses_is_skipped_not_fatal(
    emulator: RetryAfterEmulator, provider: SalesforceProvider, caplog: pytest.LogCaptureFixture
) -> None:
    seeded = emulator.seed(4, as_of=AS_OF)
    with emulator._lock:  # a corrupt value, as a broken integration could leave behind
        emulator.org.tables["Opportunity"][seeded[2]]["CreatedDate"] = None
    pages = list(provider.iter_changed_deals(None))
    assert sorted(collect(pages)[0]) == sorted(set(seeded) - {seeded[2]})
    assert "opportunity skipped" in caplog.text and seeded[2] in caplog.text
    with pytest.raises(InvalidRequestError):
        provider.fetch_deal(seeded[2])


def test_paged_child_subqueries_are_completed(
    make_provider: ProviderFactory, tmp_path: Path
) -> None:
    with SalesforceEmulator(seed=3, child_page_size=1) as emulator:
        seeded = emulator.seed(3, as_of=AS_OF)
        settings = app_settings_for(emulator, tmp_path)
        context = ConnectionContext(
            "c", "salesforce", emulator.org.org_id, emulator.base_url,
            {"access_token": emulator.issue_token()}, {"ca_bundle": str(emulator.cert_path)},
        )  # fmt: skip
        provider = SalesforceProvider(context, settings=settings)
        deals = {d.id: d for page in provider.iter_changed_deals(None) for d in page.deals}
        assert len(deals[seeded[0]].stage_history) == 4  # passed: four stage changes
        assert len(deals[seeded[1]].contacts) == 3
        assert emulator.call_counts()["query_more"] > 3


# ---------------------------------------------------------------- optional fields


def test_an_org_without_optional_or_custom_fields(tmp_path: Path) -> None:
    with SalesforceEmulator(seed=5, optional_fields=(), custom_fields=()) as emulator:
        seeded = emulator.seed(4, as_of=AS_OF)
        settings = app_settings_for(emulator, tmp_path)
        context = ConnectionContext(
            "c", "salesforce", emulator.org.org_id, emulator.base_url,
            {"access_token": emulator.issue_token()},
            {"ca_bundle": str(emulator.cert_path), "custom_fields": ["Budget__c"]},
        )  # fmt: skip
        provider = SalesforceProvider(context, settings=settings)
        deals = [d for page in provider.iter_changed_deals(None) for d in page.deals]
        assert sorted(d.id for d in deals) == sorted(seeded)
        assert all(d.currency is None and d.stage_entered_at is None for d in deals)
        assert all(not d.fields for d in deals)
        # What the describe lacks is not recorded: the engine asks, never calls it absent.
        assert all("Metrics__c" not in (d.recorded_fields or {"Metrics__c"}) for d in deals)
        assert all(d.stage_history_from is not None for d in deals)  # the clock has history
        assert provider.fetch_deal(seeded[0]).id == seeded[0]
        before = emulator.call_counts().get("sobject", 0)
        fields = {"dealcoach_health": "40", "dealcoach_summary": "x"}
        assert provider.update_summaries([SummaryUpdate(seeded[0], fields)])[0].ok
        assert emulator.call_counts().get("sobject", 0) == before  # nothing to PATCH


def test_optional_and_methodology_fields_are_read_when_present(
    emulator: RetryAfterEmulator, provider: SalesforceProvider
) -> None:
    seeded = emulator.seed(2, as_of=AS_OF)
    deal = provider.fetch_deal(seeded[0])
    assert deal.currency == "USD"
    assert deal.stage_entered_at is not None
    assert deal.stage_entered_field == "LastStageChangeDate"
    assert deal.fields["Metrics__c"].startswith("Cut processing time")
    assert {"Metrics__c", "LastStageChangeDate"} <= (deal.recorded_fields or set())


# ---------------------------------------------------------------- fetch


def test_fetch_is_one_query_after_describe_and_stages(
    emulator: RetryAfterEmulator, provider: SalesforceProvider
) -> None:
    seeded = emulator.seed(3, as_of=AS_OF)
    emulator.reset_calls()
    provider.fetch_deal(seeded[0])
    assert api_calls(emulator) == 3
    provider.fetch_deal(to15(seeded[1]))
    assert api_calls(emulator) == 4


def to15(record_id: str) -> str:
    return record_id[:15]


@pytest.mark.parametrize(
    "bad",
    ["", "006", "001Em0000000001", "006Em0000000001' OR ''='", "006Em000000000!", 6, None],
)
def test_invalid_ids_are_refused_before_any_call(
    emulator: RetryAfterEmulator, provider: SalesforceProvider, bad: Any
) -> None:
    with pytest.raises(InvalidRequestError):
        provider.fetch_deal(bad)
    with pytest.raises(InvalidRequestError):
        provider.find_note(bad, marker(1))
    if isinstance(bad, str):
        [summary] = provider.update_summaries([SummaryUpdate(bad, {"dealcoach_health": "1"})])
        assert isinstance(summary.error, InvalidRequestError)
        [result] = provider.write_notes([note(bad, 1)])
        assert isinstance(result.error, InvalidRequestError)
    assert all_requests(emulator) == 0


@pytest.mark.parametrize(
    "bad", ["", "dc1-", "dc1-a'b", "dc1-a%b", "dc1-a_b", "x" * 10, "dc1-" + "a" * 65]
)
def test_invalid_markers_never_reach_soql(
    emulator: RetryAfterEmulator, provider: SalesforceProvider, bad: str
) -> None:
    deal_id = emulator.seed(1, as_of=AS_OF)[0]
    emulator.reset_calls()
    with pytest.raises(InvalidRequestError):
        provider.find_note(deal_id, bad)
    [result] = provider.write_notes([NoteRequest(deal_id, bad, "t", "<p>x</p>", "x")])
    assert isinstance(result.error, InvalidRequestError)
    assert all_requests(emulator) == 0


# ---------------------------------------------------------------- notes


@pytest.mark.parametrize(
    ("count", "calls"),
    [(1, 1), (12, 1), (13, 2), (100, 2), (150, 2), (250, 3), (400, 4)],
)
def test_writing_n_notes_costs_ceil_n_over_100_calls(
    emulator: RetryAfterEmulator, provider: SalesforceProvider, count: int, calls: int
) -> None:
    deals = emulator.seed(3, as_of=AS_OF)
    provider.list_stages()
    emulator.reset_calls()
    results = provider.write_notes([note(deals[n % 3], n) for n in range(count)])
    assert all(result.ok for result in results)
    assert [result.marker for result in results] == [marker(n) for n in range(count)]
    assert api_calls(emulator) == calls
    assert calls == (1 if count <= 12 else max(2, math.ceil(count / 100)))
    assert len(emulator.records("ContentDocumentLink")) == count
    assert len(live_notes(emulator)) == count


def test_note_body_title_and_link(
    emulator: RetryAfterEmulator, provider: SalesforceProvider
) -> None:
    deal_id = emulator.seed(1, as_of=AS_OF)[0]
    request = note(deal_id, 7, html="<p>Who signs?</p>\n<p><em>Ask &amp; confirm</em></p>")
    [result] = provider.write_notes([request])
    assert result.external_id is not None and result.external_id.startswith("069")
    stored = emulator.record(result.external_id)
    assert stored is not None and stored["Title"] == f"dealcoach review 7 [{marker(7)}]"
    assert emulator.note_body(result.external_id) == (
        "<p>Who signs?</p><br><p><em>Ask &amp; confirm</em></p>"
    )
    [link] = emulator.records("ContentDocumentLink")
    assert link["LinkedEntityId"] == deal_id
    assert (link["ShareType"], link["Visibility"]) == ("V", "AllUsers")


def test_long_titles_keep_their_marker(
    emulator: RetryAfterEmulator, provider: SalesforceProvider
) -> None:
    deal_id = emulator.seed(1, as_of=AS_OF)[0]
    request = NoteRequest(deal_id, marker(3), "word " * 100, "<p>x</p>", "x")
    [result] = provider.write_notes([request])
    assert result.ok
    title = emulator.record(result.external_id)["Title"]  # type: ignore[arg-type,index]
    assert len(title) <= 255 and title.endswith(f"[{marker(3)}]")
    assert provider.find_note(deal_id, marker(3)) == result.external_id


@pytest.mark.parametrize("count", [3, 120])  # the composite path and the collections path
def test_partial_failure_fails_only_that_note_and_leaves_no_orphan(
    emulator: RetryAfterEmulator, provider: SalesforceProvider, count: int
) -> None:
    deal_id = emulator.seed(1, as_of=AS_OF)[0]
    gone = emulator.seed(1, as_of=AS_OF)[0]
    emulator.delete("Opportunity", gone)
    batch = [note(deal_id, n) for n in range(count)]
    batch[1] = note(gone, 1)  # link fails: the opportunity is deleted
    batch[2] = note(deal_id, 2, html="<p>R&D budget</p>")  # ContentNote refused: bare &
    results = provider.write_notes(batch)
    assert [r.marker for r in results] == [marker(n) for n in range(count)]
    assert [n for n, r in enumerate(results) if not r.ok] == [1, 2]
    assert isinstance(results[1].error, NotFoundError | InvalidRequestError)
    assert isinstance(results[2].error, InvalidRequestError)
    assert "FIELD_INTEGRITY_EXCEPTION" in str(results[2].error)
    assert results[1].external_id is None and results[2].external_id is None
    # The ContentNote whose link failed was deleted again.
    assert len(live_notes(emulator)) == count - 2
    assert provider.find_note(gone, marker(1)) is None


def test_tasks_are_completed_tasks_found_by_marker(
    emulator: RetryAfterEmulator, provider: SalesforceProvider
) -> None:
    deal_id = emulator.seed(1, as_of=AS_OF)[0]
    emulator.reset_calls()
    results = provider.write_notes([note(deal_id, 1, kind="task"), note(deal_id, 2)])
    assert all(r.ok for r in results) and api_calls(emulator) == 1
    task = emulator.record(results[0].external_id)  # type: ignore[arg-type]
    assert task is not None
    assert (task["Status"], task["WhatId"]) == ("Completed", deal_id)
    assert task["Subject"].endswith(f"[{marker(1)}]") and task["Description"].startswith("Who")
    assert task["ActivityDate"] == datetime.now(UTC).date().isoformat()
    assert provider.find_note(deal_id, marker(1)) == results[0].external_id
    assert provider.find_note(deal_id, marker(2)) == results[1].external_id
    many = [note(deal_id, 10 + n, kind="task") for n in range(30)]
    emulator.reset_calls()
    assert all(r.ok for r in provider.write_notes(many))
    assert api_calls(emulator) == 1  # 30 records: one composite/sobjects call


def test_find_note_checks_the_link_and_the_exact_marker(
    emulator: RetryAfterEmulator, provider: SalesforceProvider
) -> None:
    deal_id, other = emulator.seed(2, as_of=AS_OF)
    [result] = provider.write_notes([note(deal_id, 0xABC)])
    emulator.reset_calls()
    assert provider.find_note(deal_id, marker(0xABC)) == result.external_id
    assert api_calls(emulator) == 2  # the ContentNote search and the link check
    assert provider.find_note(to15(deal_id), marker(0xABC)) == result.external_id
    assert provider.find_note(other, marker(0xABC)) is None
    assert provider.find_note(deal_id, marker(0xABC)[:-1]) is None  # a prefix is not a match
    emulator.reset_calls()
    assert provider.find_note(deal_id, marker(1)) is None
    assert api_calls(emulator) == 2  # no ContentNote: the Task search


def test_empty_batch_makes_no_call(
    emulator: RetryAfterEmulator, provider: SalesforceProvider
) -> None:
    assert provider.write_notes([]) == []
    assert all_requests(emulator) == 0


def test_a_failed_batch_call_is_raised(
    emulator: RetryAfterEmulator, provider: SalesforceProvider
) -> None:
    deal_id = emulator.seed(1, as_of=AS_OF)[0]
    emulator.inject_errors(1, 503)
    with pytest.raises(RetriableError):
        provider.write_notes([note(deal_id, 1)])
    assert live_notes(emulator) == []


# ---------------------------------------------------------------- summary fields


def test_summary_fields_mapping() -> None:
    assert summary_field_name("dealcoach_health") == "Dealcoach_Health__c"
    assert summary_field_name("dealcoach_next_meeting") == "Dealcoach_Next_Meeting__c"
    assert summary_field_name("Champion__c") == "Champion__c"
    assert summary_field_name("Name") is None
    assert summary_field_name("dealcoach_x; DROP") is None


def test_update_summaries_write_the_fields_the_org_has(
    emulator: RetryAfterEmulator, provider: SalesforceProvider
) -> None:
    deal_id = emulator.seed(1, as_of=AS_OF)[0]
    pages = list(provider.iter_changed_deals(None))
    emulator.reset_calls()
    fields = {
        "dealcoach_health": "72",
        "dealcoach_band": "healthy",  # the org has no Dealcoach_Band__c: skipped
        "dealcoach_summary": "On track" * 5000,  # cut to the field's 32768 characters
        "dealcoach_marker": marker(5),
        "Unknown_Thing": "x",
    }
    assert provider.update_summaries([SummaryUpdate(deal_id, fields)]) == [SummaryResult(deal_id)]
    assert api_calls(emulator) == 1
    record = emulator.record(deal_id)
    assert record is not None
    assert record["Dealcoach_Health__c"] == 72
    assert len(record["Dealcoach_Summary__c"]) == 32768
    assert record["Dealcoach_Marker__c"] == marker(5)
    [later] = provider.iter_changed_deals(pages[-1].watermark)
    assert [d.id for d in later.deals] == [deal_id]
    assert later.deals[0].fields["Dealcoach_Health__c"] == "72"
    nothing = [SummaryUpdate(deal_id, {}), SummaryUpdate(deal_id, {"dealcoach_health": "x"})]
    assert all(r.ok for r in provider.update_summaries(nothing))  # skipped, logged
    assert api_calls(emulator) == 3  # the page query, the deletes query; nothing else


def test_summaries_of_many_deals_take_one_call_per_200(
    emulator: RetryAfterEmulator, provider: SalesforceProvider
) -> None:
    deal_ids = emulator.seed(250, as_of=AS_OF)
    provider.list_stages()  # describe is not what this counts
    provider._opportunity_describe()
    emulator.reset_calls()
    updates = [SummaryUpdate(d, {"dealcoach_health": str(n % 100)}) for n, d in enumerate(deal_ids)]
    results = provider.update_summaries(updates)
    assert [r.deal_id for r in results] == deal_ids and all(r.ok for r in results)
    assert api_calls(emulator) == 2  # ceil(250 / 200)
    assert emulator.record(deal_ids[123])["Dealcoach_Health__c"] == 23  # type: ignore[index]


def test_a_failed_summary_is_that_deals_result(
    emulator: RetryAfterEmulator, provider: SalesforceProvider
) -> None:
    kept, gone = emulator.seed(2, as_of=AS_OF)
    emulator.delete("Opportunity", gone)
    results = provider.update_summaries(
        [
            SummaryUpdate(kept, {"": "x"}),
            SummaryUpdate(gone, {"dealcoach_health": "1"}),
            SummaryUpdate(kept, {"dealcoach_health": "9"}),
        ]
    )
    assert isinstance(results[0].error, InvalidRequestError)
    assert isinstance(results[1].error, NotFoundError)
    assert results[2].ok
    assert emulator.record(kept)["Dealcoach_Health__c"] == 9  # type: ignore[index]


# ---------------------------------------------------------------- credentials


def test_expired_session_is_refreshable_then_works_after_refresh(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    deal_id = emulator.seed(1, as_of=AS_OF)[0]
    credentials = {
        "access_token": emulator.issue_token(),
        "refresh_token": emulator.issue_refresh_token(),
    }  # tokens obtained elsewhere: no "auth", no instance_url (the connection's is used)
    provider = make_provider(credentials=credentials)
    provider.fetch_deal(deal_id)
    emulator.expire_sessions()
    with pytest.raises(AuthError) as caught:
        provider.fetch_deal(deal_id)
    assert caught.value.refreshable
    assert credentials["access_token"] not in str(caught.value)
    fresh = provider.refresh_credentials()
    assert fresh["refresh_token"] == credentials["refresh_token"]  # Salesforce keeps it
    assert fresh["access_token"] != credentials["access_token"]
    assert fresh["instance_url"] == emulator.base_url and fresh["auth"] == "oauth"
    assert provider.fetch_deal(deal_id).id == deal_id
    assert make_provider(credentials=fresh).fetch_deal(deal_id).id == deal_id


def test_a_bare_access_token_is_not_refreshable(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    provider = make_provider(credentials={"access_token": emulator.issue_token()})
    emulator.expire_sessions()
    with pytest.raises(AuthError) as caught:
        provider.list_stages()
    assert not caught.value.refreshable
    with pytest.raises(AuthError) as refresh:
        provider.refresh_credentials()
    assert not refresh.value.refreshable


def test_a_revoked_refresh_token_needs_reauthorisation(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    provider = make_provider(
        credentials={"access_token": "00Dx!expired", "refresh_token": "5Aep-revoked"}
    )
    with pytest.raises(AuthError) as caught:
        provider.list_stages()
    assert caught.value.refreshable
    with pytest.raises(AuthError) as refresh:
        provider.refresh_credentials()
    assert not refresh.value.refreshable
    assert "5Aep-revoked" not in str(refresh.value) and "00Dx" not in str(refresh.value)


@pytest.fixture
def rsa_key() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def test_jwt_bearer_issues_and_reissues(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory, rsa_key: tuple[str, str]
) -> None:
    private, public = rsa_key
    emulator.register_jwt_key(public)
    deal_id = emulator.seed(1, as_of=AS_OF)[0]
    credentials = {
        "auth": "jwt",
        "username": emulator.USERNAME,
        "consumer_key": emulator.CLIENT_ID,
        "private_key": private,
    }
    provider = make_provider(credentials=credentials)
    assert provider.fetch_deal(deal_id).id == deal_id
    assert emulator.call_counts()["token"] == 1
    emulator.expire_sessions()
    with pytest.raises(AuthError) as caught:
        provider.fetch_deal(deal_id)
    assert caught.value.refreshable
    fresh = provider.refresh_credentials()
    assert fresh["private_key"] == private and fresh["access_token"]
    assert provider.fetch_deal(deal_id).id == deal_id
    assert emulator.call_counts()["token"] == 2
    # Stored credentials with the token: no token request at all.
    again = make_provider(credentials=fresh)
    assert again.fetch_deal(deal_id).id == deal_id
    assert emulator.call_counts()["token"] == 2


@pytest.mark.parametrize(
    ("login_url", "audience"),
    [
        ("https://login.salesforce.com", "https://login.salesforce.com"),
        ("https://acme.my.salesforce.com", "https://login.salesforce.com"),
        ("https://test.salesforce.com", "https://test.salesforce.com"),
        ("https://acme--uat.sandbox.my.salesforce.com", "https://test.salesforce.com"),
        ("https://127.0.0.1:8443", "https://127.0.0.1:8443"),
    ],
)
def test_jwt_audience(login_url: str, audience: str) -> None:
    assert adapter_module._jwt_audience(login_url) == audience


def test_jwt_with_an_unknown_key_is_not_refreshable(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory, rsa_key: tuple[str, str]
) -> None:
    provider = make_provider(
        credentials={
            "auth": "jwt",
            "username": emulator.USERNAME,
            "consumer_key": emulator.CLIENT_ID,
            "private_key": rsa_key[0],  # its public key was never registered
        }
    )
    with pytest.raises(AuthError) as caught:
        provider.list_stages()
    assert not caught.value.refreshable
    with pytest.raises(AuthError):
        make_provider(
            credentials={"auth": "jwt", "username": "u", "consumer_key": "k", "private_key": "no"}
        ).list_stages()


def test_client_credentials_issue_from_the_my_domain(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    deal_id = emulator.seed(1, as_of=AS_OF)[0]
    credentials = {
        "auth": "client_credentials",
        "consumer_key": emulator.CLIENT_ID,
        "consumer_secret": emulator.CLIENT_SECRET,
    }
    provider = make_provider(credentials=credentials)
    assert provider.fetch_deal(deal_id).id == deal_id
    emulator.expire_sessions()
    with pytest.raises(AuthError) as caught:
        provider.fetch_deal(deal_id)
    assert caught.value.refreshable
    fresh = provider.refresh_credentials()
    assert fresh["consumer_secret"] == emulator.CLIENT_SECRET
    assert provider.fetch_deal(deal_id).id == deal_id
    wrong = make_provider(credentials={**credentials, "consumer_secret": "nope"})
    with pytest.raises(AuthError) as refused:
        wrong.list_stages()
    assert not refused.value.refreshable and "nope" not in str(refused.value)


def test_password_credentials_work_in_sandbox_mode(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    provider = make_provider(
        credentials={
            "auth": "password",
            "username": emulator.USERNAME,
            "password": emulator.PASSWORD,
            "security_token": emulator.SECURITY_TOKEN,
            "consumer_key": emulator.CLIENT_ID,
            "consumer_secret": emulator.CLIENT_SECRET,
        }
    )
    assert provider.list_stages()["default"].stages


# ---------------------------------------------------------------- errors and usage


def test_rate_limit_without_retry_after_uses_the_default(
    emulator: RetryAfterEmulator, provider: SalesforceProvider
) -> None:
    emulator.inject_rate_limit(1)
    with pytest.raises(RateLimitedError) as caught:
        provider.list_stages()
    assert caught.value.retry_after == RATE_LIMIT_RETRY_AFTER == 60.0
    assert provider.list_stages()


def test_concurrency_refusal_is_a_rate_limit(
    emulator: RetryAfterEmulator, provider: SalesforceProvider
) -> None:
    emulator.set_concurrency_limit(0)
    with pytest.raises(RateLimitedError):
        provider.list_stages()


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retriable(
    emulator: RetryAfterEmulator, provider: SalesforceProvider, status: int
) -> None:
    emulator.inject_errors(1, status)
    with pytest.raises(RetriableError) as caught:
        provider.list_stages()
    assert not isinstance(caught.value, RateLimitedError)
    assert str(status) in str(caught.value)
    assert provider.list_stages()


def test_timeouts_are_retriable(
    emulator: RetryAfterEmulator, provider: SalesforceProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adapter_module, "READ_TIMEOUT", 0.3)
    emulator.set_delay(2.0, count=1)
    with pytest.raises(RetriableError, match="timed out"):
        provider.list_stages()


def test_unreachable_instance_is_retriable(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    credentials = {"access_token": "tok"}
    provider = make_provider(credentials=credentials, instance_url="https://127.0.0.1:9")
    with pytest.raises(RetriableError) as caught:
        provider.list_stages()
    assert "tok" not in str(caught.value)


def test_untrusted_certificate_is_refused(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory, tmp_path: Path
) -> None:
    other = tmp_path / "other.pem"
    with SalesforceEmulator() as second:
        other.write_bytes(second.cert_path.read_bytes())  # type: ignore[union-attr]
    provider = make_provider()
    provider._verify = str(other)  # trust another emulator's certificate only
    provider._http = adapter_module._http_session(str(other))
    with pytest.raises(RetriableError, match="connection failed"):
        provider.list_stages()
    assert emulator.call_counts().get("api", 0) == 0


def test_api_usage_comes_from_sforce_limit_info(
    emulator: RetryAfterEmulator, provider: SalesforceProvider
) -> None:
    assert provider.api_usage() is None  # no call yet
    emulator.set_daily_limit(1000, used=400)
    provider.list_stages()
    assert provider.api_usage() == ApiUsage(used=401, limit=1000)
    emulator.set_daily_limit(1000, used=1000)
    with pytest.raises(RateLimitedError):
        provider.fetch_deal(emulator.seed(1, as_of=AS_OF)[0])
    assert provider.api_usage() == ApiUsage(used=1000, limit=1000)


def test_a_malformed_query_is_an_invalid_request(
    emulator: RetryAfterEmulator, provider: SalesforceProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adapter_module, "_STAGE_SOQL", "SELECT Nope FROM OpportunityStage")
    with pytest.raises(InvalidRequestError, match="INVALID_FIELD"):
        provider.list_stages()


def test_emulator_stamps_are_whole_seconds(emulator: RetryAfterEmulator) -> None:
    """The overlap design assumes second-resolution stamps, as Salesforce's."""
    deal_id = emulator.seed(1, as_of=AS_OF)[0]
    stamp = emulator.record(deal_id)["SystemModstamp"]  # type: ignore[index]
    assert stamp == format_datetime(parse_datetime(stamp))
