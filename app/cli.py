"""The ``dealcoach`` command."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from app.config import exit_on_invalid_settings

if TYPE_CHECKING:
    from app.coaching.playbook import CompiledPlaybook
    from app.reviews.offline import ExportReview


@click.group()
@click.version_option(package_name="dealcoach")
def main() -> None:
    """dealcoach: deal coaching inside the CRM."""


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> None:
    """Apply the migrations up to REVISION (creates the SQLite file if needed)."""
    from app.db import upgrade_database

    settings = exit_on_invalid_settings()
    upgrade_database(settings, revision)
    click.echo(f"database at {revision}: {settings.safe_database_url}")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert the migrations down to REVISION (``base`` removes every table)."""
    from app.db import downgrade_database

    settings = exit_on_invalid_settings()
    downgrade_database(settings, revision)
    click.echo(f"database at {revision}: {settings.safe_database_url}")


def _parse_as_of(value: str | None) -> datetime:
    """``--as-of``: ISO 8601; a value without a zone is UTC; default now (UTC)."""
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 date or datetime (e.g. 2026-11-20T09:00:00Z)",
            param_hint="--as-of",
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _compiled_playbook(name_or_path: str | None) -> CompiledPlaybook:
    from app.coaching.playbook import PlaybookError, compile_playbook, load_playbook

    chosen = name_or_path or exit_on_invalid_settings().default_playbook
    try:
        return compile_playbook(load_playbook(chosen))
    except PlaybookError as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    click.echo(f"dealcoach: {message}", err=True)
    raise SystemExit(2)


_PROVIDER = click.option(
    "--provider", type=click.Choice(["salesforce", "hubspot"]), required=True, help="CRM format."
)
_FILE = click.option(
    "--file",
    "file",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The export: a Salesforce query response or a HubSpot deal list (JSON).",
)
_STAGES = click.option(
    "--stages",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Stage catalogue: an OpportunityStage query response (Salesforce) or a "
    "GET /crm/v3/pipelines/deals response (HubSpot). Default: the CRM's standard stages.",
)
_PLAYBOOK = click.option(
    "--playbook",
    default=None,
    help="Built-in playbook (meddpicc, bant, spiced, core) or a playbook YAML file. "
    "Default: DEALCOACH_DEFAULT_PLAYBOOK (meddpicc).",
)
_AS_OF = click.option(
    "--as-of", "as_of", default=None, help="Review time, ISO 8601 (default: now, UTC)."
)


def _run_export_review(
    provider: str, file: Path, stages: Path | None, playbook: str | None, as_of: str | None
) -> ExportReview:
    from app.reviews.offline import ExportError, review_export

    moment = _parse_as_of(as_of)
    compiled = _compiled_playbook(playbook)
    try:
        result = review_export(provider, file, compiled, moment, stages)  # type: ignore[arg-type]
    except ExportError as exc:
        _fail(str(exc))
    for error in result.errors:
        click.echo(f"dealcoach: {error}", err=True)
    return result


@main.command()
@_PROVIDER
@_FILE
@_STAGES
@_PLAYBOOK
@_AS_OF
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "html"]),
    default="text",
    show_default=True,
)
def review(
    provider: str,
    file: Path,
    stages: Path | None,
    playbook: str | None,
    as_of: str | None,
    output_format: str,
) -> None:
    """Review every deal in a CRM export file (no database, no network).

    Records that cannot be read are reported on stderr and skipped; the others
    are still reviewed, and the exit status is then 2.
    """
    from app.coaching.engine import review_fingerprint
    from app.coaching.render import note_marker, render_note_html, render_note_text

    result = _run_export_review(provider, file, stages, playbook, as_of)
    if output_format == "json":
        payload = {
            "reviews": [item.to_dict() for item in result.reviews],
            "errors": [error.to_dict() for error in result.errors],
        }
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        blocks = []
        for item in result.reviews:
            marker = note_marker(None, item.deal_id, review_fingerprint(item))
            if output_format == "html":
                blocks.append(f"<!-- deal {item.deal_id} -->\n{render_note_html(item, marker)}")
            else:
                blocks.append(render_note_text(item, marker))
        if output_format == "text":
            bands = Counter(item.health.band for item in result.reviews)
            blocks.append(
                f"{len(result.reviews)} deals reviewed: {bands['healthy']} healthy, "
                f"{bands['at_risk']} at risk, {bands['critical']} critical"
                + (f"; {len(result.errors)} records skipped" if result.errors else "")
            )
        click.echo("\n\n".join(blocks))
    if result.errors:
        raise SystemExit(2)


@main.command()
@_PROVIDER
@_FILE
@_STAGES
@_PLAYBOOK
@_AS_OF
@click.option("--owner", default=None, help="Owner id (default: every owner).")
@click.option("--period", type=click.Choice(["quarter", "month"]), default="quarter")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text")
def agenda(
    provider: str,
    file: Path,
    stages: Path | None,
    playbook: str | None,
    as_of: str | None,
    owner: str | None,
    period: str,
    output_format: str,
) -> None:
    """The pipeline-review agenda for one owner: exceptions only, ranked by risk x value."""
    from app.coaching.agenda import pipeline_agenda
    from app.coaching.render import clean_text

    result = _run_export_review(provider, file, stages, playbook, as_of)
    moment = _parse_as_of(as_of)
    built = pipeline_agenda(result.reviews, owner, moment, period)  # type: ignore[arg-type]
    if output_format == "json":
        click.echo(json.dumps(built.to_dict(), indent=2, ensure_ascii=False))
    else:
        figures = built.integrity
        lines = [
            f"Pipeline review for {owner or 'all owners'}, "
            f"{built.period_start} to {built.period_end}",
            f"  {figures.open_deals} open deals worth {figures.open_amount:,.0f}; "
            f"{figures.close_date_passed} with a close date in the past, "
            f"{figures.next_step_missing} without a next step, {figures.stale} stale, "
            f"{figures.closing_this_period_early_stage} closing this {period} from an early stage",
            "",
        ]
        for rank, entry in enumerate(built.items, start=1):
            item = entry.review
            amount = f"{item.amount:,.0f}" if item.amount is not None else "no amount"
            lines.append(
                f"{rank}. {clean_text(item.deal_name, 120)} ({amount}, "
                f"{clean_text(item.stage_label, 60)}): {item.health.band} {item.health.score}/100"
            )
            for prompt in item.prompts:
                if prompt.shown_first:
                    lines.append(f"   - {clean_text(prompt.text, 600)}")
        if not built.items:
            lines.append("No exceptions: every open deal is healthy.")
        click.echo("\n".join(lines))
    if result.errors:
        raise SystemExit(2)


@main.command()
@click.option("--deals", default=10_000, show_default=True, help="Generated deals to review.")
@click.option("--seed", default=7, show_default=True)
@click.option(
    "--results",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("bench/results.json"),
    show_default=True,
    help="JSON file the figures are merged into.",
)
@click.option(
    "--markdown",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("docs/benchmarks.md"),
    show_default=True,
    help="Markdown page whose engine table is rewritten.",
)
def bench(deals: int, seed: int, results: Path, markdown: Path) -> None:
    """Benchmark the engine on generated deals (one core) and record the figures."""
    from app.bench import run_engine_bench, write_results

    figures = run_engine_bench(deals, seed)
    write_results(figures, results, markdown)
    click.echo(json.dumps(figures, indent=2))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Run the HTTP service (today: health probes; the admin API comes next)."""
    import uvicorn

    from app.main import create_app

    settings = exit_on_invalid_settings()
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level.lower())
