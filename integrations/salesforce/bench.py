"""The Salesforce connector benchmark: API calls against the emulator, through the real
simple-salesforce client. ``dealcoach bench --salesforce`` runs it and records the
figures (key ``salesforce``) next to the engine's.

- pull: a first sync of N opportunities with history and contact roles; calls
  against the minimum Salesforce's page size allows (200 records a page with child
  subqueries) plus the describe and the stage list;
- write: N notes (each a ContentNote and its link); calls against ceil(N / 100);
- bulk: a first load of a larger org (20,000 opportunities by default) through
  Bulk API 2.0 against the same load paged over REST: calls and seconds;
- sustained: syncs and note batches from two threads at once while the emulator
  refuses more than two requests in flight: how many REQUEST_LIMIT_EXCEEDED the
  service provoked.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from app.config import Settings
from integrations.base import ConnectionContext, NoteRequest
from integrations.salesforce.adapter import SalesforceProvider
from integrations.salesforce.emulator import SalesforceEmulator

SUBQUERY_PAGE_SIZE = 200


def _provider(
    emulator: SalesforceEmulator, data_dir: Path, **connection_settings: Any
) -> SalesforceProvider:
    settings = Settings(
        sandbox=True,
        data_dir=data_dir,
        salesforce_client_id=emulator.CLIENT_ID,
        salesforce_client_secret=emulator.CLIENT_SECRET,
        salesforce_login_url=emulator.base_url,
    )
    context = ConnectionContext(
        connection_id="bench",
        provider="salesforce",
        external_account_id=emulator.org.org_id,
        instance_url=emulator.base_url,
        credentials={
            "auth": "oauth",
            "access_token": emulator.issue_token(),
            "refresh_token": emulator.issue_refresh_token(),
            "instance_url": emulator.base_url,
        },
        settings={"ca_bundle": str(emulator.cert_path), **connection_settings},
    )
    return SalesforceProvider(context, settings=settings)


def _api(emulator: SalesforceEmulator) -> int:
    return emulator.call_counts().get("api", 0)


def _notes(deal_ids: list[str], count: int) -> list[NoteRequest]:
    notes = []
    for index in range(count):
        marker = f"dc1-{index:032x}"
        notes.append(
            NoteRequest(
                deal_id=deal_ids[index % len(deal_ids)],
                marker=marker,
                title=f"dealcoach review {index}",
                html=f"<p>Questions for the deal review {index}</p><p>{marker}</p>",
                text=f"Questions for the deal review {index}\n{marker}",
            )
        )
    return notes


def _sustained(
    emulator: SalesforceEmulator, data_dir: Path, deal_ids: list[str], threads: int
) -> tuple[int, list[str]]:
    """Syncs and note batches from ``threads`` threads at once (each as the service's
    worker threads would run them); returns the REQUEST_LIMIT_EXCEEDED the emulator
    answered and the errors the threads met."""
    refused_before = emulator.call_counts().get("refused", 0)
    errors: list[str] = []
    lock = threading.Lock()

    def work(number: int) -> None:
        provider = _provider(emulator, data_dir)
        try:
            for round_number in range(3):
                if number % 2 == 0:
                    for _page in provider.iter_changed_deals(None):
                        pass
                else:
                    tag = f"{number:02x}{round_number:02x}"
                    batch = [
                        NoteRequest(n.deal_id, f"dc1-{tag}{n.marker[8:]}", n.title, n.html, n.text)
                        for n in _notes(deal_ids, 200)
                    ]
                    provider.write_notes(batch)
        except Exception as exc:  # counted, not raised: the figure is what matters
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return emulator.call_counts().get("refused", 0) - refused_before, errors


def _first_load(
    emulator: SalesforceEmulator, data_dir: Path, threshold: int
) -> tuple[int, int, float]:
    """(deals, API calls, seconds) of a first sync with ``bulk_threshold`` = ``threshold``."""
    provider = _provider(emulator, data_dir, bulk_threshold=threshold)
    emulator.reset_calls()
    started = time.perf_counter()
    deals = sum(len(page.deals) for page in provider.iter_changed_deals(None))
    return deals, _api(emulator), time.perf_counter() - started


def run_bulk_bench(opportunities: int = 20_000) -> dict[str, Any]:
    """A large first load through Bulk API 2.0 and the same load paged over REST."""
    with tempfile.TemporaryDirectory() as tmp, SalesforceEmulator(seed=3) as emulator:
        emulator.seed(opportunities)
        rest_deals, rest_calls, rest_seconds = _first_load(emulator, Path(tmp), 10**9)
        bulk_deals, bulk_calls, bulk_seconds = _first_load(emulator, Path(tmp), 0)
    return {
        "bulk_opportunities": opportunities,
        "bulk_pulled": bulk_deals,
        "bulk_calls": bulk_calls,
        "bulk_seconds": round(bulk_seconds, 2),
        "bulk_rest_pulled": rest_deals,
        "bulk_rest_calls": rest_calls,
        "bulk_rest_seconds": round(rest_seconds, 2),
    }


def run_salesforce_bench(
    opportunities: int = 1000, notes: int = 1000, bulk_opportunities: int = 20_000
) -> dict[str, Any]:
    """Measure calls for a first sync and for note writes, refusals under load, and a
    large first load through Bulk API 2.0."""
    with tempfile.TemporaryDirectory() as tmp, SalesforceEmulator(seed=3) as emulator:
        deal_ids = emulator.seed(opportunities)
        provider = _provider(emulator, Path(tmp))
        emulator.reset_calls()
        started = time.perf_counter()
        pulled = sum(len(page.deals) for page in provider.iter_changed_deals(None))
        pull_seconds = time.perf_counter() - started
        pull_calls = _api(emulator)
        minimum = math.ceil(opportunities / SUBQUERY_PAGE_SIZE) + 2  # + describe + stages

        emulator.reset_calls()
        started = time.perf_counter()
        results = provider.write_notes(_notes(deal_ids, notes))
        write_seconds = time.perf_counter() - started
        write_calls = _api(emulator)
        written = sum(result.ok for result in results)

        emulator.set_concurrency_limit(2)
        refusals, errors = _sustained(emulator, Path(tmp), deal_ids, threads=2)
        # Control: more threads than the limit must be refused, or the count means nothing.
        control, _ = _sustained(emulator, Path(tmp), deal_ids, threads=4)
    return {
        "salesforce": {
            "opportunities": opportunities,
            "pulled": pulled,
            "pull_calls": pull_calls,
            "pull_minimum_calls": minimum,
            "pull_ratio_to_minimum": round(pull_calls / minimum, 3),
            "pull_calls_per_1000_opportunities": round(pull_calls * 1000 / opportunities, 1),
            "pull_seconds": round(pull_seconds, 2),
            "notes": notes,
            "notes_written": written,
            "write_calls": write_calls,
            "write_bound_calls": math.ceil(notes / 100) + 1,
            "write_calls_per_1000_notes": round(write_calls * 1000 / notes, 1),
            "write_seconds": round(write_seconds, 2),
            "sustained_concurrency_limit": 2,
            "sustained_threads": 2,
            "sustained_request_limit_exceeded": refusals,
            "sustained_errors": errors[:5],
            "control_threads": 4,
            "control_request_limit_exceeded": control,
            **run_bulk_bench(bulk_opportunities),
        }
    }
