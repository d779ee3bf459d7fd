"""The engine benchmark: generated realistic deals, reviewed on one core.

``dealcoach bench`` (``make bench``) runs it and records the figures in
``bench/results.json`` (merged, key ``engine``) and ``docs/benchmarks.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from app.bench_summary import summarise, summary_rows
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


# --------------------------------------------------------------------------- CLI, end to end


def _sf_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _attributes(kind: str, record_id: str) -> dict[str, str]:
    return {"type": kind, "url": f"/services/data/v59.0/sobjects/{kind}/{record_id}"}


def salesforce_record(deal: DealSnapshot, index: int) -> dict[str, Any]:
    """A generated deal as an Opportunity record of a Salesforce query response, with
    its history and contact-role subqueries (about 5 KB, like a real export's)."""
    rid = f"006{index:012d}"
    stage_rows = [
        (deal.created_at, deal.stage_history[0].old if deal.stage_history else deal.stage)
    ]
    stage_rows += [(change.at, change.new) for change in deal.stage_history]
    histories = [
        {
            "attributes": _attributes("OpportunityHistory", f"008{index:08d}{n:04d}"),
            "StageName": stage.key if stage else None,
            "Amount": deal.amount,
            "CloseDate": deal.close_date.isoformat() if deal.close_date else None,
            "Probability": round((stage.probability if stage else 0) * 100),
            "CreatedDate": _sf_time(at),
        }
        for n, (at, stage) in enumerate(stage_rows)
    ]
    fields: list[dict[str, Any]] = []
    for kind, changes in (
        ("CloseDate", deal.close_date_history),
        ("Amount", deal.amount_history),
        ("Owner", deal.owner_history),
    ):
        for change in changes:
            old, new = change.old, change.new
            if kind == "CloseDate":
                old = old.isoformat() if old else None  # type: ignore[union-attr]
                new = new.isoformat() if new else None  # type: ignore[union-attr]
            if kind == "Owner":
                old = f"005{str(old)[-12:]:0>12}" if old else None
                new = f"005{str(new)[-12:]:0>12}" if new else None
            fields.append(
                {
                    "attributes": _attributes(
                        "OpportunityFieldHistory", f"017{index:08d}{len(fields):04d}"
                    ),
                    "Field": kind,
                    "OldValue": old,
                    "NewValue": new,
                    "CreatedDate": _sf_time(change.at),
                }
            )
    roles = [
        {
            "attributes": _attributes("OpportunityContactRole", f"00K{index:08d}{n:04d}"),
            "ContactId": f"003{index:08d}{n:04d}",
            "Role": contact.roles[0] if contact.roles else None,
            "IsPrimary": contact.is_primary,
            "Contact": {
                "attributes": _attributes("Contact", f"003{index:08d}{n:04d}"),
                "Name": f"Contact {n} of deal {index}",
            },
        }
        for n, contact in enumerate(deal.contacts)
    ]
    owner = deal.owner_id or "005000000000001"
    record: dict[str, Any] = {
        "attributes": _attributes("Opportunity", rid),
        "Id": rid,
        "Name": f"{deal.name} - platform expansion for the northern region",
        "AccountId": f"001{index:012d}",
        "Account": {
            "attributes": _attributes("Account", f"001{index:012d}"),
            "Name": f"Account {index}",
        },
        "StageName": deal.stage.key,
        "Amount": deal.amount,
        "CloseDate": deal.close_date.isoformat() if deal.close_date else None,
        "Probability": round(deal.stage.probability * 100),
        "ForecastCategoryName": deal.forecast_category,
        "NextStep": deal.next_step or None,
        "Description": deal.description or None,
        "LastActivityDate": deal.last_activity_at.date().isoformat()
        if deal.last_activity_at
        else None,
        "HasOpenActivity": deal.has_future_activity,
        "HasOverdueTask": False,
        "IsClosed": deal.stage.is_closed,
        "IsWon": deal.stage.is_won,
        "OwnerId": owner[:18],
        "Owner": {"attributes": _attributes("User", owner[:18]), "Name": "Maya Chen"},
        "CurrencyIsoCode": deal.currency,
        "CreatedDate": _sf_time(deal.created_at),
        "LastModifiedDate": _sf_time(BENCH_AS_OF - timedelta(days=1)),
        "SystemModstamp": _sf_time(BENCH_AS_OF - timedelta(days=1)),
        **{key: value or None for key, value in deal.fields.items()},
        "OpportunityHistories": {"totalSize": len(histories), "done": True, "records": histories},
        "OpportunityContactRoles": (
            {"totalSize": len(roles), "done": True, "records": roles} if roles else None
        ),
        "Histories": {"totalSize": len(fields), "done": True, "records": fields}
        if fields
        else None,
    }
    return record


def write_salesforce_export(path: Path, count: int, seed: int = 7) -> int:
    """Write a ``count``-deal Salesforce query response to ``path`` (generated in chunks,
    so memory stays small); returns its size in bytes."""
    import orjson

    chunk = 5_000
    with path.open("wb") as out:
        out.write(b'{"totalSize": %d, "done": true, "records": [\n' % count)
        for start in range(0, count, chunk):
            deals = generate_deals(min(chunk, count - start), seed + start)
            for offset, deal in enumerate(deals):
                index = start + offset
                out.write((b",\n" if index else b"") + orjson.dumps(salesforce_record(deal, index)))
        out.write(b"\n]}\n")
    return path.stat().st_size


def _high_water_kib(pid: int) -> int:
    """``VmHWM`` of a running process (Linux), 0 if unknown. Unlike the ``ru_maxrss`` of
    a child, it does not start from the forking parent's size."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _run_cli(args: list[str]) -> tuple[float, float, float]:
    """Run ``dealcoach`` with ``args``, stdout to /dev/null: wall seconds, CPU seconds
    (user + system) and peak RSS (MiB, sampled every 20 ms)."""
    script = Path(sys.executable).with_name("dealcoach")
    command = [str(script), *args] if script.is_file() else [sys.executable, "-m", "app.cli", *args]
    peak_kib = 0
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink, tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=sink, stderr=errors)  # noqa: S603
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            peak_kib = max(peak_kib, _high_water_kib(process.pid))
            time.sleep(0.02)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"dealcoach {' '.join(args)} failed: {stderr.strip()[:300]}")
    if not peak_kib:  # no /proc: the child's own figure (which counts the parent's size)
        peak_kib = usage.ru_maxrss
    return seconds, usage.ru_utime + usage.ru_stime, peak_kib / 1024


def _machine() -> str:
    """The CPU model and count (Linux), else the architecture."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs"


def run_cli_bench(small: int = 20_000, large: int = 100_000, seed: int = 7) -> dict[str, Any]:
    """``dealcoach review --format json`` end to end on generated Salesforce exports of
    ``small`` and ``large`` deals (written to a temporary directory): deals per second
    (best of 3 at ``small``) and the peak RSS of each run."""
    from app.reviews.offline import IJSON_BACKEND

    figures: dict[str, Any] = {"ijson_backend": IJSON_BACKEND}
    # The engine bench pins this process to one core; the CLI runs as a user runs it.
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="dealcoach-bench-") as tmp:
        for count in (small, large):
            path = Path(tmp) / f"salesforce_{count}.json"
            size = write_salesforce_export(path, count, seed)
            args = [
                "review",
                "--provider",
                "salesforce",
                "--file",
                str(path),
                "--format",
                "json",
                "--as-of",
                BENCH_AS_OF.isoformat(),
            ]
            runs = [_run_cli(args) for _ in range(3 if count == small else 1)]
            seconds = min(run[0] for run in runs)
            cpu = min(run[1] for run in runs)
            if count == small:
                jobs = max(2, os.cpu_count() or 1)
                wall, cpu_jobs, rss = _run_cli([*args, "--jobs", str(jobs)])
                figures["jobs"] = {
                    "jobs": jobs,
                    "deals": count,
                    "seconds": round(wall, 2),
                    "deals_per_s": round(count / wall),
                    "cpu_seconds": round(cpu_jobs, 2),
                    "peak_rss_mib_main": round(rss, 1),
                }
            figures[str(count)] = {
                "deals": count,
                "file_mib": round(size / 2**20, 1),
                "seconds": round(seconds, 2),
                "deals_per_s": round(count / seconds),
                "cpu_seconds": round(cpu, 2),
                "deals_per_cpu_s": round(count / cpu),
                "peak_rss_mib": round(max(run[2] for run in runs), 1),
            }
    figures.update(
        {
            "command": "dealcoach review --provider salesforce --file EXPORT --format json "
            "> /dev/null",
            "python": platform.python_version(),
            "machine": _machine(),
            "measured_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        }
    )
    return {"cli": figures}


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
    best = best_cpu = float("inf")
    signals = prompts = 0
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        signals = prompts = 0
        for deal in deals:
            review = review_deal(deal, playbook, BENCH_AS_OF)
            signals += len(review.signals)
            prompts += len(review.prompts)
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - started_cpu)
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
            "reviews_per_cpu_s": round(count / best_cpu),
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


def _cli_rows(cli: dict[str, Any]) -> list[str]:
    keys = sorted((k for k in cli if k.isdigit()), key=int)
    small, large = cli[keys[0]], cli[keys[-1]]
    return [
        f"| `dealcoach review --format json`, {small['deals']:,} deals "
        f"({small['file_mib']} MiB), best of 3, wall clock | **{small['deals_per_s']:,} "
        f"deals/s** ({small['seconds']} s) |",
        f"| the same per CPU second (user + system) | {small['deals_per_cpu_s']:,} "
        f"deals/s ({small['cpu_seconds']} s) |",
        f"| {large['deals']:,} deals ({large['file_mib']} MiB), wall clock | "
        f"{large['deals_per_s']:,} deals/s ({large['seconds']} s; CPU "
        f"{large['cpu_seconds']} s) |",
        *(
            [
                f"| the same with `--jobs {cli['jobs']['jobs']}` (worker processes), wall clock | "
                f"{cli['jobs']['deals_per_s']:,} deals/s ({cli['jobs']['seconds']} s) |"
            ]
            if "jobs" in cli
            else []
        ),
        f"| peak RSS at {small['deals']:,} deals | {small['peak_rss_mib']} MiB |",
        f"| peak RSS at {large['deals']:,} deals | **{large['peak_rss_mib']} MiB** |",
        *(
            [
                f"| the engine alone in the same run (no parsing or output), per CPU second | "
                f"{cli['engine_reviews_per_cpu_s_same_run']:,} reviews/s: the command runs at "
                f"{small['deals_per_cpu_s'] / cli['engine_reviews_per_cpu_s_same_run']:.0%} "
                "of it |"
            ]
            if cli.get("engine_reviews_per_cpu_s_same_run")
            else []
        ),
        f"| ijson backend | {cli['ijson_backend']} |",
        f"| command | `{cli['command']}` |",
        f"| Python, machine | {cli['python']}, {cli['machine']} |",
        f"| measured | {cli['measured_at']} |",
    ]


def _e2e_rows(e2e: dict[str, Any]) -> list[str]:
    rows = []
    for label in ("window_default", "window_0"):
        run = e2e.get(label)
        if not isinstance(run, dict):
            continue
        rows.append(
            f"| stage change to note, coalescing window {run['window_s']:g} s "
            f"({run['noted']} of {e2e['changes']} changes noted) | p50 "
            f"**{run['stage_change_to_note_ms_p50']} ms**, p95 "
            f"**{run['stage_change_to_note_ms_p95']} ms** ({run['beyond_window_ms_p95']} ms "
            "beyond the window) |"
        )
    return rows


def _sync_scale_rows(scale: dict[str, Any]) -> list[str]:
    return [
        f"| first sync, review and write-back of {run['opportunities']:,} opportunities "
        f"(Bulk API 2.0 above 5,000) | {run['wall_s']} s ({run['deals_per_s']} deals/s), "
        f"peak RSS of `dealcoach serve` **{run['peak_rss_mb']} MB** |"
        for _, run in sorted(scale.items(), key=lambda item: int(item[0].split("_")[1]))
    ]


_TABLES = {
    "engine": _engine_rows,
    "salesforce": _salesforce_rows,
    "hubspot": _hubspot_rows,
    "cli": _cli_rows,
    "e2e": _e2e_rows,
    "sync_scale": _sync_scale_rows,
}


def _webhook_rows(figures: dict[str, Any]) -> list[str]:
    from app.bench_webhooks import webhook_rows

    return webhook_rows(figures)


#: Figures whose rows are whole tables of their own (header included).
_OWN_TABLES = {"webhook": _webhook_rows}


def _summary_table(results: dict[str, Any]) -> list[str]:
    return [
        "| figure | measured | target | met | fewer calls than one call per record |",
        "|---|---|---|---|---|",
        *summary_rows(results),
    ]


def write_results(figures: dict[str, Any], results: Path, markdown: Path) -> None:
    """Merge the figures into the results JSON and rewrite their tables in the docs
    (between ``<!-- KEY-bench:start -->`` and ``<!-- KEY-bench:end -->``)."""
    results.parent.mkdir(parents=True, exist_ok=True)
    existing: dict[str, Any] = {}
    if results.is_file():
        existing = json.loads(results.read_text("utf-8"))
    existing.update(figures)
    existing["summary"] = {k: h.to_dict() for k, h in summarise(existing).items()}
    results.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n", "utf-8")
    text = markdown.read_text("utf-8") if markdown.is_file() else "# Benchmarks\n"

    def summary(_figures: dict[str, Any]) -> list[str]:
        return _summary_table(existing)

    tables: dict[str, Callable[[dict[str, Any]], list[str]]] = {
        **_TABLES,
        **_OWN_TABLES,
        "summary": summary,
    }
    for key, rows in tables.items():
        if key not in figures and key != "summary":
            continue
        start, end = f"<!-- {key}-bench:start -->", f"<!-- {key}-bench:end -->"
        header = (
            [] if key in _OWN_TABLES or key == "summary" else ["| figure | value |", "|---|---|"]
        )
        table = "\n".join([start, *header, *rows(existing.get(key, {})), end])
        if start in text and end in text:
            head, rest = text.split(start, 1)
            _, tail = rest.split(end, 1)
            text = head + table + tail
        else:
            text = text.rstrip("\n") + f"\n\n## {key.capitalize()}\n\n{table}\n"
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text(text, "utf-8")
