"""The end-to-end CLI benchmark: its generated export is a real one, its figures are read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.bench import BENCH_AS_OF, run_cli_bench, write_results, write_salesforce_export
from app.coaching.playbook import compile_playbook, load_playbook
from app.reviews.offline import review_export


def test_the_generated_salesforce_export_maps_and_reviews_without_an_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "export.json"
    size = write_salesforce_export(path, 300, seed=3)

    assert size == path.stat().st_size and size > 300 * 1_000  # realistic records
    result = review_export(
        "salesforce", path, compile_playbook(load_playbook("meddpicc")), BENCH_AS_OF
    )

    assert result.errors == ()
    assert len(result.reviews) == 300
    assert len({r.deal_id for r in result.reviews}) == 300
    assert sum(1 for r in result.reviews if r.signals) > 200
    assert {r.forecast_category for r in result.reviews} >= {"Commit", "Pipeline"}


def test_the_cli_bench_runs_the_command_and_records_its_figures(tmp_path: Path) -> None:
    figures = run_cli_bench(small=40, large=120, seed=3)

    cli = figures["cli"]
    assert cli["ijson_backend"] == "yajl2_c"
    for count in (40, 120):
        run = cli[str(count)]
        assert run["deals"] == count
        assert run["deals_per_s"] == pytest.approx(count / run["seconds"], rel=0.05)
        assert run["deals_per_cpu_s"] == pytest.approx(count / run["cpu_seconds"], rel=0.05)
        assert 10 < run["peak_rss_mib"] < 1_000
    results, markdown = tmp_path / "results.json", tmp_path / "benchmarks.md"
    markdown.write_text("# Benchmarks\n\n<!-- cli-bench:start -->\n<!-- cli-bench:end -->\n")

    write_results(figures, results, markdown)

    assert json.loads(results.read_text())["cli"]["40"]["deals"] == 40
    table = markdown.read_text()
    assert "| peak RSS at 120 deals |" in table and "yajl2_c" in table
