"""The benchmark's headline figures under one set of names, each with its target.

``make bench`` writes many raw figures per benchmark (``bench/results.json``, one key
per benchmark). :func:`summarise` reads them and gives the figures the project is
judged by, named ``area.figure`` (``salesforce.pull_calls_per_1000``...), each with its
target, whether it is met, and, where it makes sense, the ratio to a naive client that
makes one call per record. A figure whose benchmark has not run is left out; a target
not met is said so, with the measured value, in docs/benchmarks.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Headline:
    key: str
    value: float
    target: str
    met: bool
    naive_ratio: float | None = None  # how many times fewer calls than one call per record

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"value": self.value, "target": self.target, "met": self.met}
        if self.naive_ratio is not None:
            data["naive_ratio"] = self.naive_ratio
        return data


def _get(results: Mapping[str, Any], path: str) -> Any:
    node: Any = results
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _at_least(limit: float) -> Callable[[float], bool]:
    return lambda value: value >= limit


def _at_most(limit: float) -> Callable[[float], bool]:
    return lambda value: value <= limit


def summarise(results: Mapping[str, Any]) -> dict[str, Headline]:
    """The headline figures that the raw ``results`` hold."""
    found: dict[str, Headline] = {}

    def add(
        key: str,
        value: Any,
        target: str,
        ok: Callable[[float], bool],
        naive: float | None = None,
    ) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return
        ratio = round(naive / value, 1) if naive and value else None
        found[key] = Headline(key, round(float(value), 3), target, ok(float(value)), ratio)

    add(
        "engine.reviews_per_s",
        _get(results, "engine.reviews_per_s"),
        ">= 20,000",
        _at_least(20_000),
    )
    add(
        "cli.review_deals_per_s",
        _get(results, "cli.20000.deals_per_s"),
        ">= 5,000",
        _at_least(5_000),
    )
    small, large = _get(results, "cli.20000.peak_rss_mib"), _get(results, "cli.100000.peak_rss_mib")
    add(
        "cli.peak_rss_mib_100k",
        large,
        "flat in N (within 1.5x of 20k)",
        _at_most(1.5 * (small or 0)),
    )

    for crm, unit in (("salesforce", "opportunities"), ("hubspot", "deals")):
        records = _get(results, f"{crm}.{unit}")
        pull, minimum = (
            _get(results, f"{crm}.pull_calls"),
            _get(results, f"{crm}.pull_minimum_calls"),
        )
        notes, write = _get(results, f"{crm}.notes"), _get(results, f"{crm}.write_calls")
        bound = _get(results, f"{crm}.write_bound_calls")
        if records and pull is not None and minimum:
            per, least = 1000 * pull / records, 1000 * minimum / records
            add(
                f"{crm}.pull_calls_per_1000",
                per,
                f"<= 1.1x the minimum ({least:g})",
                _at_most(1.1 * least),
                naive=1000.0 * (2 if crm == "hubspot" else 1),  # a read (+ associations) each
            )
            add(f"{crm}.pull_calls_min_per_1000", least, "the page sizes' minimum", _at_least(0))
        if notes and write is not None and bound:
            per, least = 1000 * write / notes, 1000 * math.ceil(notes / 100) / notes
            add(
                f"{crm}.write_calls_per_1000",
                per,
                f"<= 1.1x the minimum ({least:g})",
                _at_most(1.1 * least + 1000 / notes),  # + one call for the association check
                naive=2000.0 if crm == "salesforce" else 1000.0,  # note (+ link) per record
            )
            add(f"{crm}.write_calls_min_per_1000", least, "ceil(N/100) per N", _at_least(0))
    add(
        "hubspot.rate_limit_utilisation",
        _get(results, "hubspot.rate_limit_utilisation"),
        ">= 0.85 of the 10-second limit",
        _at_least(0.85),
    )
    add("hubspot.http_429", _get(results, "hubspot.http_429"), "0", _at_most(0))
    for crm in ("salesforce", "hubspot"):
        add(
            f"webhook.{crm}.ingest_events_per_s",
            _get(results, f"webhook.{crm}.ingest_events_per_s"),
            ">= 1,000",
            _at_least(1_000),
        )
        add(
            f"webhook.{crm}.ack_p99_ms",
            _get(results, f"webhook.{crm}.ack_p99_ms"),
            "< 100",
            _at_most(99.999),
        )
    for label in ("window_default", "window_0"):
        window = _get(results, f"e2e.{label}.window_s") or 0.0
        for stat in ("p50", "p95"):
            add(
                f"e2e.{label}.stage_change_to_note_ms_{stat}",
                _get(results, f"e2e.{label}.stage_change_to_note_ms_{stat}"),
                f"p95 < window + 1 s ({window * 1000 + 1000:g})" if stat == "p95" else "-",
                _at_most(window * 1000 + 1000) if stat == "p95" else _at_least(0),
            )
    for size in ("10000", "100000"):
        add(
            f"sync_scale.n_{size}.wall_s",
            _get(results, f"sync_scale.n_{size}.wall_s"),
            "-",
            _at_least(0),
        )
        add(
            f"sync_scale.n_{size}.peak_rss_mb",
            _get(results, f"sync_scale.n_{size}.peak_rss_mb"),
            "< 300",
            _at_most(300),
        )
    return found


def summary_rows(results: Mapping[str, Any]) -> list[str]:
    """Markdown rows: figure, measured, target, met, fewer calls than a naive client."""
    rows = []
    for headline in summarise(results).values():
        ratio = f"{headline.naive_ratio:g}x" if headline.naive_ratio else "-"
        rows.append(
            f"| `{headline.key}` | {headline.value:g} | {headline.target} | "
            f"{'yes' if headline.met else '**no**'} | {ratio} |"
        )
    return rows
