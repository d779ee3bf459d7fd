"""The engine benchmark: generated realistic deals, reviewed on one core.

``dealcoach bench`` (``make bench``) runs it and records the figures in
``bench/results.json`` (merged, key ``engine``) and ``docs/benchmarks.md``.
"""

from __future__ import annotations

import json
import os
import platform
import random
import resource
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from app.coaching.engine import review_deal
from app.coaching.playbook import compile_playbook, load_playbook
from app.coaching.snapshot import Change, Contact, DealSnapshot, Stage
from integrations.salesforce.mapping import DEFAULT_STAGES

BENCH_AS_OF = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

_STAGES = DEFAULT_STAGES.stages  # Salesforce's standard stages, in pipeline order
_ROLES = ("Economic Buyer", "Decision Maker", "Champion", "Technical Buyer", "Evaluator", "Other")
_NEXT_STEPS = (
    "",
    "Demo for the finance team on Tuesday",
    "Send proposal; procurement review next week",
    "Follow up",
    "Security review with their CISO",
)
_DESCRIPTIONS = (
    "",
    "Manual reporting costs them two days a month; CFO wants ROI within a year.",
    "Replacing an in-house tool. Competitor shortlisted. Legal needs an MSA.",
    "Expansion of the current contract to two more regions.",
)


def generate_deals(count: int, seed: int = 7, as_of: datetime = BENCH_AS_OF) -> list[DealSnapshot]:
    """Deterministic, realistic deals: every signal occurs, most deals raise a few."""
    rng = random.Random(seed)  # noqa: S311 - test data, not security
    deals = []
    for index in range(count):
        created = as_of - timedelta(days=rng.randint(1, 420), hours=rng.randint(0, 23))
        stage = rng.choices(_STAGES, weights=(8, 8, 8, 7, 6, 5, 5, 4, 3, 3))[0]
        stage_history: list[Change[Stage]] = []
        moment = created
        previous = _STAGES[0]
        for _ in range(rng.randint(0, 4)):
            moment += timedelta(days=rng.randint(1, 40))
            if moment >= as_of:
                break
            step = rng.choice(_STAGES[:8])
            if step != previous:
                stage_history.append(Change(moment, previous, step))
                previous = step
        if previous != stage and moment < as_of:
            stage_history.append(Change(min(moment + timedelta(days=3), as_of), previous, stage))
        close = as_of.date() + timedelta(days=rng.randint(-60, 150))
        close_history: list[Change[date]] = []
        old_close = close - timedelta(days=30 * rng.randint(0, 3))
        for push in range(rng.choice((0, 0, 1, 2, 3))):
            new_close = old_close + timedelta(days=rng.choice((-14, 21, 30, 45)))
            moved_at = created + timedelta(days=10 * (push + 1))
            close_history.append(Change(moved_at, old_close, new_close))
            old_close = new_close
        amount = round(rng.lognormvariate(10.5, 1.2), -2)
        amount_history: list[Change[float]] = []
        if rng.random() < 0.3:
            amount_history.append(
                Change(created + timedelta(days=5), amount * rng.choice((1.1, 1.5, 2.0)), amount)
            )
        contacts = tuple(
            Contact(f"003{index:06d}{n}", (rng.choice(_ROLES),), n == 0)
            for n in range(rng.choice((0, 1, 1, 2, 3, 4)))
        )
        owners: list[Change[str]] = []
        if rng.random() < 0.1:
            owners.append(Change(as_of - timedelta(days=rng.randint(1, 60)), "005A", "005B"))
        activity = (
            None if rng.random() < 0.1 else as_of - timedelta(days=rng.randint(0, 45), hours=3)
        )
        fields = {}
        if rng.random() < 0.5:
            fields["Metrics__c"] = rng.choice(("Cut close time by 30%", "TBD", ""))
        if rng.random() < 0.3:
            fields["Champion__c"] = "Head of RevOps"
        deals.append(
            DealSnapshot(
                id=f"006{index:015d}",
                name=f"Deal {index}",
                stage=stage,
                created_at=created,
                amount=amount,
                currency="USD",
                close_date=close,
                owner_id=f"005{rng.randint(1, 25):015d}",
                next_step=rng.choice(_NEXT_STEPS),
                description=rng.choice(_DESCRIPTIONS),
                last_activity_at=activity,
                has_future_activity=rng.random() < 0.3,
                forecast_category=rng.choice(("Pipeline", "Best Case", "Commit", "Omitted")),
                contacts=contacts,
                stage_history=tuple(stage_history),
                close_date_history=tuple(close_history),
                amount_history=tuple(amount_history),
                owner_history=tuple(owners),
                fields=fields,
            )
        )
    return deals


def _pin_to_one_core() -> int | None:
    try:
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[0]})
        return cores[0]
    except (AttributeError, OSError):
        return None


def run_engine_bench(count: int = 10_000, seed: int = 7, repeats: int = 3) -> dict[str, Any]:
    """Review ``count`` generated deals; best of ``repeats`` timed passes, then a memory pass."""
    core = _pin_to_one_core()
    playbook = compile_playbook(load_playbook("meddpicc"))
    deals = generate_deals(count, seed)
    best = float("inf")
    signals = prompts = 0
    for _ in range(repeats):
        started = time.perf_counter()
        signals = prompts = 0
        for deal in deals:
            review = review_deal(deal, playbook, BENCH_AS_OF)
            signals += len(review.signals)
            prompts += len(review.prompts)
        best = min(best, time.perf_counter() - started)
    tracemalloc.start()
    kept = [review_deal(deal, playbook, BENCH_AS_OF) for deal in deals]
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del kept
    peak_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "engine": {
            "deals": count,
            "seed": seed,
            "playbook": "meddpicc",
            "reviews_per_s": round(count / best),
            "seconds": round(best, 4),
            "signals_per_deal": round(signals / count, 2),
            "prompts_per_deal": round(prompts / count, 2),
            "peak_rss_mib": round(peak_rss_kib / 1024, 1),
            "review_heap_peak_mib": round(traced_peak / 2**20, 1),
            "pinned_core": core,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "measured_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        }
    }


def _engine_rows(engine: dict[str, Any]) -> list[str]:
    return [
        f"| deals reviewed | {engine['deals']:,} |",
        f"| reviews per second (one core, best of 3) | **{engine['reviews_per_s']:,}** |",
        f"| signals per deal (mean) | {engine['signals_per_deal']} |",
        f"| prompts per deal (mean) | {engine['prompts_per_deal']} |",
        f"| peak RSS of the process | {engine['peak_rss_mib']} MiB |",
        f"| heap peak holding all {engine['deals']:,} reviews | "
        f"{engine['review_heap_peak_mib']} MiB |",
        f"| Python, machine | {engine['python']}, {engine['machine']} |",
        f"| measured | {engine['measured_at']} |",
    ]


def _salesforce_rows(sf: dict[str, Any]) -> list[str]:
    lines = [
        f"| first sync of {sf['opportunities']:,} opportunities (history, contact roles) | "
        f"**{sf['pull_calls']} calls** (minimum {sf['pull_minimum_calls']}: ratio "
        f"{sf['pull_ratio_to_minimum']}), {sf['pull_seconds']} s |",
        f"| calls per 1,000 opportunities | {sf['pull_calls_per_1000_opportunities']} |",
        f"| {sf['notes']:,} notes (ContentNote + link) | **{sf['write_calls']} calls** "
        f"(bound ceil(N/100)+1 = {sf['write_bound_calls']}), {sf['write_seconds']} s |",
        f"| calls per 1,000 notes | {sf['write_calls_per_1000_notes']} |",
        f"| REQUEST_LIMIT_EXCEEDED under sustained sync and writes, {sf['sustained_threads']} "
        f"threads, emulator limit {sf['sustained_concurrency_limit']} in flight | "
        f"**{sf['sustained_request_limit_exceeded']}** |",
        f"| control: {sf['control_threads']} threads against the same limit | "
        f"{sf['control_request_limit_exceeded']} refused (the count works) |",
    ]
    if "bulk_calls" in sf:
        lines.append(
            f"| first load of {sf['bulk_opportunities']:,} opportunities through Bulk API 2.0 | "
            f"**{sf['bulk_calls']} calls**, {sf['bulk_seconds']} s |"
        )
        lines.append(
            f"| the same load paged over REST | {sf['bulk_rest_calls']} calls, "
            f"{sf['bulk_rest_seconds']} s |"
        )
    return lines


def _hubspot_rows(hs: dict[str, Any]) -> list[str]:
    return [
        f"| first sync of {hs['deals']:,} deals (history, labelled contacts and their names) "
        f"| **{hs['pull_calls']} calls**: {hs['pull_searches']} searches, "
        f"{hs['pull_batch_reads']} batch reads, {hs['pull_association_reads']} association "
        f"reads, {hs['pull_contact_reads']} contact reads, {hs['pull_seconds']} s |",
        f"| minimum ceil(N/200) + 2 ceil(N/100) + 2 | {hs['pull_minimum_calls']} (ratio "
        f"{hs['pull_ratio_to_minimum']}; without contact names "
        f"{hs['pull_without_names_calls']} calls, ratio {hs['pull_without_names_ratio']}) |",
        f"| calls per 1,000 deals | {hs['pull_calls_per_1000_deals']} |",
        f"| {hs['notes']:,} notes (batch create, association checked once) | "
        f"**{hs['write_calls']} calls** (bound ceil(N/100)+1 = {hs['write_bound_calls']}), "
        f"{hs['write_seconds']} s |",
        f"| {hs['summary_updates']:,} summary-property updates | **{hs['summary_calls']} calls** "
        f"(bound ceil(N/100) = {hs['summary_bound_calls']}) |",
        f"| sustained sync + write-back, {hs['sustained_threads']} threads, "
        f"{hs['sustained_seconds']} s, limit {hs['ten_second_limit']} per 10 s, share "
        f"{hs['rate_limit_share']} | **{hs['rate_limit_utilisation']:.1%}** of the limit used "
        f"(peak {hs['peak_10s_calls']} calls in 10 s), **{hs['http_429']} HTTP 429** |",
    ]


_TABLES = {"engine": _engine_rows, "salesforce": _salesforce_rows, "hubspot": _hubspot_rows}


def _webhook_rows(figures: dict[str, Any]) -> list[str]:
    from app.bench_webhooks import webhook_rows

    return webhook_rows(figures)


#: Figures whose rows are whole tables of their own (header included).
_OWN_TABLES = {"webhook": _webhook_rows}


def write_results(figures: dict[str, Any], results: Path, markdown: Path) -> None:
    """Merge the figures into the results JSON and rewrite their tables in the docs
    (between ``<!-- KEY-bench:start -->`` and ``<!-- KEY-bench:end -->``)."""
    results.parent.mkdir(parents=True, exist_ok=True)
    existing: dict[str, Any] = {}
    if results.is_file():
        existing = json.loads(results.read_text("utf-8"))
    existing.update(figures)
    results.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n", "utf-8")
    text = markdown.read_text("utf-8") if markdown.is_file() else "# Benchmarks\n"
    for key, rows in {**_TABLES, **_OWN_TABLES}.items():
        if key not in figures:
            continue
        start, end = f"<!-- {key}-bench:start -->", f"<!-- {key}-bench:end -->"
        header = [] if key in _OWN_TABLES else ["| figure | value |", "|---|---|"]
        table = "\n".join([start, *header, *rows(figures[key]), end])
        if start in text and end in text:
            head, rest = text.split(start, 1)
            _, tail = rest.split(end, 1)
            text = head + table + tail
        else:
            text = text.rstrip("\n") + f"\n\n## {key.capitalize()}\n\n{table}\n"
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text(text, "utf-8")
