"""First loads through Bulk API 2.0: same deals as REST paging, fewer calls, checkpoints
that resume mid-load, and fall-backs to REST when Bulk cannot serve the load.

The emulator answers Bulk API 2.0 query jobs as Salesforce does (CSV results paged by
``Sforce-Locator``, no nested queries); the adapter talks to it through
simple-salesforce's Bulk 2.0 client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.coaching.engine import snapshot_fingerprint
from app.coaching.snapshot import DealSnapshot
from integrations.base import ConnectionContext, DealPage, InvalidRequestError, NotReadyError
from integrations.salesforce import bulk
from integrations.salesforce.adapter import SalesforceProvider
from integrations.salesforce.bulk import BulkCheckpoint
from integrations.salesforce.emulator import SalesforceEmulator
from tests.salesforce_adapter.conftest import (
    ProviderFactory,
    RetryAfterEmulator,
    api_calls,
    app_settings_for,
)

AS_OF = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
BULK = {"bulk_threshold": 10}


def deals_of(pages: list[DealPage]) -> list[DealSnapshot]:
    return [deal for page in pages for deal in page.deals]


def by_id(deals: list[DealSnapshot]) -> dict[str, DealSnapshot]:
    found = {deal.id: deal for deal in deals}
    assert len(found) == len(deals), "a deal came twice"
    return found


@pytest.fixture
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "BULK_POLL_DELAYS", (0.01,))


def test_a_first_load_above_the_threshold_gives_the_same_deals_as_rest_in_fewer_calls(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    seeded = emulator.seed(60, as_of=AS_OF)
    rest = by_id(deals_of(list(make_provider().iter_changed_deals(None))))
    emulator.reset_calls()

    pages = list(make_provider(settings=BULK).iter_changed_deals(None))

    loaded = by_id(deals_of(pages))
    assert sorted(loaded) == sorted(seeded)
    # Every field, history, contact and custom field as REST reads them: equal snapshots.
    for deal_id, deal in loaded.items():
        assert deal == rest[deal_id]
        assert snapshot_fingerprint(deal) == snapshot_fingerprint(rest[deal_id])
    assert any(deal.stage_history for deal in loaded.values())
    assert any(deal.contacts for deal in loaded.values())
    assert any(deal.fields for deal in loaded.values())
    counts = emulator.call_counts()
    # 4 jobs: create, one status poll each (complete at once), one results page each.
    assert counts["bulk"] == 12
    # + describe, the stage query and the first REST page that told the size.
    assert api_calls(emulator) == 15
    # The first page only carries the checkpoint of the new jobs; the last a plain stamp.
    assert pages[0].deals == () and pages[0].watermark
    assert pages[0].watermark.startswith(bulk.BULK_PREFIX)
    last = pages[-1].watermark
    assert last is not None and not last.startswith(bulk.BULK_PREFIX)
    newest = max(emulator.record(i)["SystemModstamp"] for i in seeded)  # type: ignore[index]
    assert datetime.fromisoformat(last) == datetime.fromisoformat(newest)


def test_at_or_below_the_threshold_a_first_load_pages_rest(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    emulator.seed(10, as_of=AS_OF)
    emulator.reset_calls()
    deals = deals_of(list(make_provider(settings=BULK).iter_changed_deals(None)))
    assert len(deals) == 10
    assert emulator.call_counts().get("bulk", 0) == 0


def test_the_next_sync_after_a_bulk_load_is_incremental_rest(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    seeded = emulator.seed(20, as_of=AS_OF)
    provider = make_provider(settings=BULK)
    pages = list(provider.iter_changed_deals(None))
    emulator.update("Opportunity", seeded[3], {"NextStep": "Book the security review"})
    emulator.reset_calls()

    later = deals_of(list(provider.iter_changed_deals(pages[-1].watermark)))

    assert seeded[3] in {deal.id for deal in later}
    assert emulator.call_counts().get("bulk", 0) == 0


def test_pages_carry_checkpoints_and_a_restart_resumes_from_any_of_them(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "BULK_RESULTS_PAGE", 9)  # several results pages: locators
    seeded = emulator.seed(30, as_of=AS_OF)
    provider = make_provider(settings={**BULK, "page_size": 4})
    pages = list(provider.iter_changed_deals(None))
    assert sorted(deal.id for deal in deals_of(pages)) == sorted(seeded)
    sizes = [len(page.deals) for page in pages if page.deals]
    assert sizes == [4, 4, 1, 4, 4, 1, 4, 4, 1, 3]  # pages of 4 within results pages of 9
    checkpoints = [BulkCheckpoint.parse(page.watermark) for page in pages[:-1]]  # type: ignore[arg-type]
    assert len({c.locator for c in checkpoints}) == 4  # four results pages: "", then three

    for number, page in enumerate(pages[:-1]):
        # A crash after this page committed: a new instance resumes from its checkpoint.
        fresh = make_provider(settings={**BULK, "page_size": 4})
        rest = deals_of(list(fresh.iter_changed_deals(page.watermark)))
        done = {deal.id for p in pages[: number + 1] for deal in p.deals}
        assert sorted(deal.id for deal in rest) == sorted(set(seeded) - done)
    # Resuming reads the existing jobs' results: it never creates a job.
    assert len(emulator.bulk.jobs) == 4


def test_running_jobs_are_polled_until_complete(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory, fast_polls: None
) -> None:
    seeded = emulator.seed(15, as_of=AS_OF)
    emulator.set_bulk(polls_in_progress=2)
    emulator.reset_calls()
    pages = list(make_provider(settings=BULK).iter_changed_deals(None))
    assert sorted(deal.id for deal in deals_of(pages)) == sorted(seeded)
    assert emulator.call_counts()["bulk"] == 4 + 4 * 3 + 4  # creates, 3 polls each, results
    # While the jobs run, each round of polls hands the same checkpoint to the sync (which
    # commits it: the lease stays alive, no transaction sits open).
    waiting = [page for page in pages if not page.deals][1:]
    assert len(waiting) == 2
    assert {page.watermark for page in waiting} == {pages[0].watermark}


def test_jobs_still_running_at_the_wait_limit_are_polled_again_by_the_next_sync(
    emulator: RetryAfterEmulator,
    make_provider: ProviderFactory,
    fast_polls: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seeded = emulator.seed(15, as_of=AS_OF)
    emulator.set_bulk(polls_in_progress=3)
    monkeypatch.setattr(bulk, "BULK_WAIT_LIMIT", 0.0)
    pages = make_provider(settings=BULK).iter_changed_deals(None)
    checkpoint = next(pages)  # the sync commits this page: the jobs are durable
    with pytest.raises(NotReadyError, match="still running"):
        next(pages)

    monkeypatch.setattr(bulk, "BULK_WAIT_LIMIT", 60.0)
    resumed = list(make_provider(settings=BULK).iter_changed_deals(checkpoint.watermark))
    assert sorted(deal.id for deal in deals_of(resumed)) == sorted(seeded)
    assert len(emulator.bulk.jobs) == 4, "the same jobs, no new ones"


def test_a_failed_job_falls_back_to_rest_paging(
    emulator: RetryAfterEmulator,
    make_provider: ProviderFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seeded = emulator.seed(15, as_of=AS_OF)
    emulator.set_bulk(fail_next=1)  # the Opportunity job fails
    with caplog.at_level(logging.WARNING, logger="integrations.salesforce.adapter"):
        pages = list(make_provider(settings=BULK).iter_changed_deals(None))
    assert sorted(deal.id for deal in deals_of(pages)) == sorted(seeded)
    last = pages[-1].watermark
    assert last is not None and not last.startswith(bulk.BULK_PREFIX)
    assert any("paging REST" in record.getMessage() for record in caplog.records)


def test_a_checkpoint_whose_jobs_salesforce_deleted_starts_again_on_rest(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    seeded = emulator.seed(15, as_of=AS_OF)
    pages = make_provider(settings=BULK).iter_changed_deals(None)
    checkpoint = next(pages)
    assert emulator.forget_bulk_jobs() == 4  # 7 days later
    emulator.reset_calls()
    resumed = list(make_provider(settings=BULK).iter_changed_deals(checkpoint.watermark))
    assert sorted(deal.id for deal in deals_of(resumed)) == sorted(seeded)
    assert emulator.call_counts()["bulk"] == 1  # the status poll that found the job gone


def test_an_org_without_history_or_contact_roles_creates_only_the_jobs_it_can(
    tmp_path: Path,
) -> None:
    with SalesforceEmulator(seed=5, optional_fields=(), custom_fields=()) as emulator:
        seeded = emulator.seed(12, as_of=AS_OF)
        definition = emulator.org.schema["opportunity"]
        del definition.children["histories"]  # field history tracking off for Opportunity
        context = ConnectionContext(
            "c", "salesforce", emulator.org.org_id, emulator.base_url,
            {"access_token": emulator.issue_token()},
            {"ca_bundle": str(emulator.cert_path), "bulk_threshold": 5},
        )  # fmt: skip
        provider = SalesforceProvider(context, settings=app_settings_for(emulator, tmp_path))
        pages = list(provider.iter_changed_deals(None))
        assert sorted(deal.id for deal in deals_of(pages)) == sorted(seeded)
        checkpoint = BulkCheckpoint.parse(pages[0].watermark)  # type: ignore[arg-type]
        assert sorted(checkpoint.child_jobs()) == [
            "OpportunityContactRoles",
            "OpportunityHistories",
        ]
        assert len(emulator.bulk.jobs) == 3


JOB = "750Em0000000001IAA"
START = "2026-11-20T09:00:00.000Z"


@pytest.mark.parametrize(
    "watermark",
    [
        "bulk|",
        f"bulk|-|{START}|{JOB}|-|0",  # no child job slots
        f"bulk|-|{START}|001Em0000000001IAA,-,-,-|-|0",  # not a job id
        f"bulk|-|{START}|{JOB},-,-,-|a'b|0",  # a locator that is not one
        f"bulk|yesterday|{START}|{JOB},-,-,-|-|0",
        f"bulk|-|2026-11-20T09:00:00|{JOB},-,-,-|-|0",  # a start without its offset
        f"bulk|-|{START}|{JOB},-,-,-|-|-1",
        f"bulk|-|{START}|{JOB},-,-,-|-|\u00b2",  # a digit to str.isdigit, not to int()
        f"bulk|-|{JOB},-,-,-|-|0",  # the old five-part form
    ],
)
def test_a_malformed_checkpoint_is_never_used_and_the_load_starts_again(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory, watermark: str
) -> None:
    with pytest.raises(InvalidRequestError, match="bulk checkpoint"):
        BulkCheckpoint.parse(watermark)
    seeded = emulator.seed(5, as_of=AS_OF)
    emulator.reset_calls()
    # A stuck sync would be worse than a second full load (stored deals come back unchanged).
    pages = list(make_provider(settings={"bulk_threshold": 10**6}).iter_changed_deals(watermark))
    assert sorted(deal.id for deal in deals_of(pages)) == sorted(seeded)
    assert emulator.call_counts().get("bulk", 0) == 0


def test_jobs_running_for_hours_are_given_up_for_rest(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    seeded = emulator.seed(15, as_of=AS_OF)
    emulator.set_bulk(polls_in_progress=100)
    provider = make_provider(settings=BULK)
    fresh = provider._bulk_start()
    old = BulkCheckpoint(fresh.jobs, datetime.now(UTC) - bulk.BULK_GIVE_UP - timedelta(minutes=1))
    with caplog.at_level(logging.WARNING, logger="integrations.salesforce.adapter"):
        pages = list(provider.iter_changed_deals(old.encode()))
    assert sorted({deal.id for deal in deals_of(pages)}) == sorted(seeded)
    assert any("still running" in record.getMessage() for record in caplog.records)


def test_a_bad_threshold_setting_is_refused(make_provider: ProviderFactory) -> None:
    for value in (-1, "100", True, 10**10):
        with pytest.raises(InvalidRequestError, match="bulk_threshold"):
            make_provider(settings={"bulk_threshold": value})


def test_checkpoints_round_trip() -> None:
    moment = datetime(2026, 11, 20, 8, 0, 1, tzinfo=UTC)
    jobs = ("750Em0000000001IAA", "", "750Em0000000003IAA", "750Em0000000004IAA")
    for checkpoint in (
        BulkCheckpoint(jobs, moment),
        BulkCheckpoint(jobs, moment, moment, "MTAwMDA", 1999),
    ):
        assert BulkCheckpoint.parse(checkpoint.encode()) == checkpoint


def test_a_load_whose_jobs_found_nothing_ends_with_an_ordinary_watermark(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    for opportunity in emulator.seed(3, as_of=AS_OF):
        emulator.delete("Opportunity", opportunity)  # gone between the REST page and the jobs
    provider = make_provider(settings=BULK)
    checkpoint = provider._bulk_start()
    pages = list(provider.iter_changed_deals(checkpoint.encode()))
    assert deals_of(pages) == []
    last = pages[-1].watermark
    assert last is not None and datetime.fromisoformat(last) == checkpoint.started


def test_a_record_edited_while_the_jobs_ran_is_read_again_by_the_next_sync(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    """Bulk jobs read in chunks, in parallel: a result may hold a record stamped later than
    another one's edit it missed. The load ends at the job's start, not its newest stamp."""
    seeded = emulator.seed(15, as_of=AS_OF)
    skewed = datetime.now(UTC) + timedelta(hours=1)
    emulator.update("Opportunity", seeded[0], {"NextStep": "Stamped late"}, at=skewed)
    provider = make_provider(settings=BULK)
    pages = provider.iter_changed_deals(None)
    first = next(pages)  # the jobs exist: their results are fixed
    started = BulkCheckpoint.parse(first.watermark).started  # type: ignore[arg-type]
    emulator.update("Opportunity", seeded[1], {"NextStep": "Edited during the load"})
    rest = list(pages)
    loaded = by_id(deals_of(rest))
    assert loaded[seeded[1]].next_step != "Edited during the load"  # the job's old state
    final = rest[-1].watermark
    assert final is not None and datetime.fromisoformat(final) == started

    later = by_id(deals_of(list(provider.iter_changed_deals(final))))
    assert later[seeded[1]].next_step == "Edited during the load"


def test_an_unreadable_results_page_falls_back_to_rest(
    emulator: RetryAfterEmulator,
    make_provider: ProviderFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(bulk, "BULK_RESULTS_PAGE", 5)
    seeded = emulator.seed(15, as_of=AS_OF)
    results = emulator.bulk.results

    def bad_locator(job_id: str, params: Mapping[str, str]) -> tuple[bytes, dict[str, str]]:
        body, headers = results(job_id, params)
        if headers["Sforce-Locator"] != "null":
            headers["Sforce-Locator"] = "a|b"  # would break the checkpoint
        return body, headers

    monkeypatch.setattr(emulator.bulk, "results", bad_locator)
    with caplog.at_level(logging.WARNING, logger="integrations.salesforce.adapter"):
        pages = list(make_provider(settings=BULK).iter_changed_deals(None))
    assert sorted({deal.id for deal in deals_of(pages)}) == sorted(seeded)
    assert all(not (page.watermark or "").startswith("bulk|") for page in pages[-1:])
    assert any("malformed Sforce-Locator" in record.getMessage() for record in caplog.records)


def test_csv_values_come_back_as_rest_returns_them() -> None:
    text = (
        '"Id","IsWon","Amount","PushCount","Go_Live__c","Owner.Name","NextStep"\n'
        '"006Em0000000001IAA","true","1250.5","3","2026-12-01T10:00:00.000Z","Maya Chen",""\n'
    )
    types = {
        "iswon": "boolean",
        "amount": "currency",
        "pushcount": "int",
        "go_live__c": "datetime",
    }
    [record] = bulk.records_from_csv(text, types)
    assert record == {
        "Id": "006Em0000000001IAA",
        "IsWon": True,
        "Amount": 1250.5,
        "PushCount": 3,
        "Go_Live__c": "2026-12-01T10:00:00.000+0000",
        "Owner": {"Name": "Maya Chen"},
        "NextStep": None,
    }
