"""The HubSpot connector benchmark: API calls against the emulator, through the real
hubspot-api-client. ``dealcoach bench --hubspot`` runs it and records the figures (key
``hubspot``) next to the engine's.

- pull: a first sync of N deals with their history, labelled contacts and names; calls
  against the minimum ``ceil(N/200)`` searches + ``ceil(N/100)`` batch reads +
  ``ceil(N/100)`` association batch reads + 2 (properties, pipelines); the contact
  batch reads for the names of labelled contacts come on top (the same pull with
  ``contact_names="none"`` is measured too);
- write: N notes (batch creates) against ``ceil(N/100)`` (+1: the association label
  check, once per adapter), and N summary-property updates against ``ceil(N/100)``;
- sustained: full syncs from one thread and note/summary batches from two more (worker
  threads, each with its own adapter, sharing one limiter as the service's processes
  share theirs) for 30 s against the emulator's 10-second limit: the share of that limit
  used and the 429s met.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from huey import MemoryHuey

from app.config import Settings
from app.ratelimit import ConnectionLimiter
from integrations.base import ConnectionContext, NoteRequest, SummaryUpdate
from integrations.hubspot.adapter import HubSpotProvider
from integrations.hubspot.emulator import HubSpotEmulator

#: The emulator's ten-second limit in the benchmark (HubSpot's lowest private-app tier).
TEN_SECOND_LIMIT = 100


class _TimedEmulator(HubSpotEmulator):
    """The emulator, noting when it answered each call that counts against the
    10-second limit (searches have their own)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answered: list[float] = []
        self._times_lock = threading.Lock()

    def handle(self, method: str, target: str, headers: Any, body: bytes) -> Any:
        response = super().handle(method, target, headers, body)
        path = target.split("?", 1)[0]
        if (
            response.status != 429
            and not path.startswith(("/__emulator/", "/oauth/"))
            and not path.endswith("/search")
        ):
            with self._times_lock:
                self.answered.append(time.monotonic())
        return response


def _provider(
    emulator: HubSpotEmulator, data_dir: Path, limiter: ConnectionLimiter, **options: Any
) -> HubSpotProvider:
    settings = Settings(
        sandbox=True,
        data_dir=data_dir,
        hubspot_client_id=emulator.CLIENT_ID,
        hubspot_client_secret=emulator.CLIENT_SECRET,
        hubspot_oauth_url=emulator.base_url,
    )
    context = ConnectionContext(
        connection_id="bench",
        provider="hubspot",
        external_account_id=str(emulator.portal_id),
        instance_url=emulator.base_url,
        credentials={"access_token": emulator.private_app_token()},
        settings={"rate_limit_per_10s": TEN_SECOND_LIMIT, **options},
    )
    return HubSpotProvider(context, settings=settings, acquire=limiter.acquire)


def _api(emulator: HubSpotEmulator) -> int:
    return emulator.call_counts().get("api", 0)


def _notes(deal_ids: list[str], count: int, tag: str = "") -> list[NoteRequest]:
    notes = []
    for index in range(count):
        marker = f"dc1-{tag}{index:032x}"
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


def _summaries(deal_ids: list[str], round_number: int) -> list[SummaryUpdate]:
    return [
        SummaryUpdate(deal_id, {"dealcoach_summary": f"round {round_number}: {deal_id}"})
        for deal_id in deal_ids
    ]


def _peak(times: list[float], window: float = 10.0) -> int:
    """The most calls answered within any ``window`` seconds."""
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def _sustained(
    emulator: _TimedEmulator, data_dir: Path, deal_ids: list[str], seconds: float, threads: int
) -> dict[str, Any]:
    """``threads`` threads for ``seconds``: one syncs everything again and again, the
    others write batches of 100 notes and 100 summary updates; one shared limiter."""
    limiter = ConnectionLimiter(MemoryHuey("hubspot-bench", immediate=True))
    rate_limited_before = emulator.call_counts().get("rate_limited", 0)
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    providers: list[HubSpotProvider] = []

    def syncs() -> None:
        while time.monotonic() < stop:
            provider = _provider(emulator, data_dir, limiter)
            providers.append(provider)
            for _page in provider.iter_changed_deals(None):
                if time.monotonic() >= stop:
                    break

    def writes(writer: int) -> None:
        provider = _provider(emulator, data_dir, limiter)
        providers.append(provider)
        number = 0
        while time.monotonic() < stop:
            start = (number * 100 + writer * 50) % len(deal_ids)
            chunk = (deal_ids[start:] + deal_ids[:start])[:100]
            provider.write_notes(_notes(chunk, len(chunk), tag=f"{writer:x}{number:04x}"))
            if time.monotonic() < stop:
                provider.update_summaries(_summaries(chunk, number))
            number += 1

    def guarded(work: Any, *args: Any) -> None:
        try:
            work(*args)
        except Exception as exc:  # counted, not raised: the figure is what matters
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")

    with emulator._times_lock:
        emulator.answered.clear()
    started = time.monotonic()
    jobs: list[tuple[Any, ...]] = [(syncs,)] + [(writes, n) for n in range(threads - 1)]
    workers = [threading.Thread(target=guarded, args=job) for job in jobs]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - started
    with emulator._times_lock:
        times = sorted(t for t in emulator.answered if t >= started)
    # Utilisation over the whole windows the run filled: calls / (windows x limit).
    windows = elapsed / 10.0
    return {
        "sustained_seconds": round(elapsed, 1),
        "sustained_threads": threads,
        "sustained_calls": len(times),
        "rate_limit_utilisation": round(len(times) / (windows * TEN_SECOND_LIMIT), 3),
        "peak_10s_calls": _peak(times),
        "http_429": emulator.call_counts().get("rate_limited", 0) - rate_limited_before,
        "http_429_seen_by_adapter": sum(p.budget.http_429 for p in providers),
        "sustained_errors": errors[:5],
    }


def run_hubspot_bench(
    deals: int = 1000, notes: int = 1000, sustained_seconds: float = 30.0, threads: int = 3
) -> dict[str, Any]:
    """Measure calls for a first sync, note writes and summary updates, and the share of
    the 10-second limit used under sustained load (with the 429s met)."""
    emulator = _TimedEmulator(seed=3, ten_second_limit=TEN_SECOND_LIMIT)
    with tempfile.TemporaryDirectory() as tmp, emulator:
        deal_ids = emulator.seed(deals)
        limiter = ConnectionLimiter(MemoryHuey("hubspot-bench-pull", immediate=True))
        provider = _provider(emulator, Path(tmp), limiter)
        emulator.reset_calls()
        started = time.perf_counter()
        pulled = sum(len(page.deals) for page in provider.iter_changed_deals(None))
        pull_seconds = time.perf_counter() - started
        counts = emulator.call_counts()
        pull_calls = _api(emulator)
        minimum = math.ceil(deals / 200) + 2 * math.ceil(deals / 100) + 2

        bare = _provider(emulator, Path(tmp), limiter, contact_names="none")
        emulator.reset_calls()
        bare_pulled = sum(len(page.deals) for page in bare.iter_changed_deals(None))
        bare_calls = _api(emulator)

        emulator.reset_calls()
        started = time.perf_counter()
        results = provider.write_notes(_notes(deal_ids, notes))
        write_seconds = time.perf_counter() - started
        write_calls = _api(emulator)
        written = sum(result.ok for result in results)

        emulator.reset_calls()
        started = time.perf_counter()
        updated = provider.update_summaries(_summaries(deal_ids, 0))
        summary_seconds = time.perf_counter() - started
        summary_calls = _api(emulator)

        sustained = _sustained(emulator, Path(tmp), deal_ids, sustained_seconds, threads)
    return {
        "hubspot": {
            "deals": deals,
            "pulled": pulled,
            "pull_calls": pull_calls,
            "pull_searches": counts.get("deals_search", 0),
            "pull_batch_reads": counts.get("deals_batch_read", 0),
            "pull_association_reads": counts.get("associations_batch_read", 0),
            "pull_contact_reads": counts.get("contacts_batch_read", 0),
            "pull_minimum_calls": minimum,
            "pull_ratio_to_minimum": round(pull_calls / minimum, 3),
            "pull_calls_per_1000_deals": round(pull_calls * 1000 / deals, 1),
            "pull_seconds": round(pull_seconds, 2),
            "pull_without_names_calls": bare_calls if bare_pulled == deals else None,
            "pull_without_names_ratio": round(bare_calls / minimum, 3),
            "notes": notes,
            "notes_written": written,
            "write_calls": write_calls,
            "write_bound_calls": math.ceil(notes / 100) + 1,
            "write_seconds": round(write_seconds, 2),
            "summary_updates": len(updated),
            "summary_updated": sum(result.ok for result in updated),
            "summary_calls": summary_calls,
            "summary_bound_calls": math.ceil(deals / 100),
            "summary_seconds": round(summary_seconds, 2),
            "ten_second_limit": TEN_SECOND_LIMIT,
            "rate_limit_share": 0.9,
            **sustained,
        }
    }
