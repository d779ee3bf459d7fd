"""The ``dealcoach`` command.

Exit statuses (docs/deploy.md): 0 success; 1 an operational error (the database, the
queue or a secret key is missing or unreachable, the schema is behind); 2 a usage error
(a bad option, setting or input file); 3 a partial failure (some records were skipped,
the others were processed).
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from app.config import Settings, configure_logging, exit_on_invalid_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from app.coaching.playbook import CompiledPlaybook
    from app.reviews.offline import ExportReview

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3

_FORMAT_TABLE = click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table: tab-separated with a header line; json: one JSON document.",
)


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
    _migrate("upgrade", revision)


@db.command("downgrade")
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def db_downgrade(revision: str, yes: bool) -> None:
    """Revert the migrations down to REVISION (``base`` removes every table and its data).

    Asks for confirmation unless --yes is given; without a terminal to ask on, refuses.
    """
    settings = exit_on_invalid_settings()
    if not yes:
        warning = (
            "every table and all its data"
            if revision == "base"
            else "the tables and columns added after that revision, with their data"
        )
        click.echo(
            f"This reverts the database at {settings.safe_database_url} to {revision!r}, "
            f"removing {warning}.",
            err=True,
        )
        if not click.confirm("Continue?", default=False, err=True):
            _fail("downgrade not confirmed; nothing changed (--yes skips the question)")
    _migrate("downgrade", revision)


@db.command("current")
@_FORMAT_TABLE
def db_current(output_format: str) -> None:
    """Print the revision the database is at, and the code's head."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.db import create_engine_for, current_revisions, head_revisions

    settings = exit_on_invalid_settings()
    try:
        engine = create_engine_for(settings)
        try:
            current = current_revisions(engine)
        finally:
            engine.dispose()
    except (SQLAlchemyError, OSError) as exc:
        _fail(
            f"cannot reach the database at {settings.safe_database_url}: {_one_line(exc)}",
            EXIT_ERROR,
        )
    heads = head_revisions()
    if output_format == "json":
        click.echo(
            json.dumps(
                {"current": list(current), "head": list(heads), "up_to_date": current == heads}
            )
        )
        return
    state = "(head)" if current == heads else f"(behind head {', '.join(heads)})"
    click.echo(f"{', '.join(current) or 'none (no schema)'} {state}")


@db.command("check")
def db_check() -> None:
    """Exit 0 when the database answers and its schema is at head, else 1 with one line."""
    settings = exit_on_invalid_settings()
    with _database(settings):
        pass
    click.echo(f"database schema is at head: {settings.safe_database_url}")


def _migrate(direction: str, revision: str) -> None:
    """Run the migrations; a database, driver, file-system or revision problem is one
    line ``dealcoach: ...`` and exit status 1, never a traceback."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from app.db import MigrationError, downgrade_database, upgrade_database

    settings = exit_on_invalid_settings()
    run = upgrade_database if direction == "upgrade" else downgrade_database
    try:
        run(settings, revision)
    except (SQLAlchemyError, CommandError, MigrationError, OSError, ImportError) as exc:
        _fail(
            f"cannot {direction} the database at {settings.safe_database_url}: {_one_line(exc)}",
            EXIT_ERROR,
        )
    click.echo(f"database at {revision}: {settings.safe_database_url}")


# --- API keys and encryption keys ----------------------------------------------------------


@main.group()
def apikey() -> None:
    """API keys for the admin API and the in-CRM cards."""


@apikey.command("create")
@click.option("--name", required=True, help="What the key is for (shown in lists).")
@click.option(
    "--scope",
    type=click.Choice(["admin", "read"]),
    required=True,
    help="admin: the whole admin API; read: read-only (the in-CRM cards).",
)
@click.option(
    "--connection",
    "connections",
    multiple=True,
    help="Limit the key to this connection id (repeatable). Default: every connection.",
)
def apikey_create(name: str, scope: str, connections: tuple[str, ...]) -> None:
    """Create an API key and print it once, alone on the last line."""
    from app.admin.keys import create_api_key
    from app.db import session_scope

    with _database(exit_on_invalid_settings()) as sessions, session_scope(sessions) as session:
        try:
            key, plaintext = create_api_key(
                session, name, scope, list(connections) if connections else None
            )
        except ValueError as exc:
            _fail(str(exc))
    click.echo(
        f"created {key.scope.value} API key {key.prefix} (id {key.id}, name {key.name!r}); "
        "it is shown only once, store it now:"
    )
    click.echo(plaintext)


@apikey.command("list")
@_FORMAT_TABLE
def apikey_list(output_format: str) -> None:
    """List the API keys (id, prefix, scope, dates, name; never a secret)."""
    from app.admin.keys import list_api_keys
    from app.db import session_scope

    with _database(exit_on_invalid_settings()) as sessions, session_scope(sessions) as session:
        rows = list_api_keys(session)

    def when(moment: datetime | None) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"

    if output_format == "json":
        items = [
            {
                "id": key.id,
                "prefix": key.prefix,
                "scope": key.scope.value,
                "name": key.name,
                "connection_ids": key.connection_ids,
                "created_at": when(key.created_at),
                "last_used_at": when(key.last_used_at) if key.last_used_at else None,
                "revoked_at": when(key.revoked_at) if key.revoked_at else None,
            }
            for key in rows
        ]
        click.echo(json.dumps({"items": items}, indent=2, ensure_ascii=False))
        return

    lines = ["ID\tPREFIX\tSCOPE\tCREATED\tLAST_USED\tREVOKED\tNAME"]
    for key in rows:
        lines.append(
            f"{key.id}\t{key.prefix}\t{key.scope.value}\t{when(key.created_at)}\t"
            f"{when(key.last_used_at)}\t{when(key.revoked_at)}\t{key.name}"
        )
    click.echo("\n".join(lines))


@apikey.command("revoke")
@click.argument("key_id_or_prefix")
def apikey_revoke(key_id_or_prefix: str) -> None:
    """Revoke an API key, named by its id or its prefix."""
    from app.admin.keys import find_api_key, revoke_api_key
    from app.db import session_scope

    with _database(exit_on_invalid_settings()) as sessions, session_scope(sessions) as session:
        found = find_api_key(session, key_id_or_prefix)
        if found is None:
            _fail("no API key with that id or prefix")
        already = found.revoked_at is not None
        key = revoke_api_key(session, found.id)
    state = "was already revoked" if already else "revoked"
    click.echo(f"API key {key.prefix} (id {key.id}, name {key.name!r}) {state}")


@main.group()
def keys() -> None:
    """Encryption keys for secrets at rest (DEALCOACH_SECRET_KEYS)."""


@keys.command("generate")
def keys_generate() -> None:
    """Print a new Fernet key (put it first in DEALCOACH_SECRET_KEYS)."""
    from app.security.crypto import generate_key

    click.echo(generate_key())


@keys.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored secret with the newest key (the first in DEALCOACH_SECRET_KEYS)."""
    from app.db import session_scope
    from app.security.crypto import SecretDecryptError, rotate_secrets

    settings = exit_on_invalid_settings()
    box = _secret_box_or_exit(settings)
    with _database(settings) as sessions, session_scope(sessions) as session:
        try:
            count = rotate_secrets(session, box)
        except SecretDecryptError as exc:
            _fail(str(exc), EXIT_ERROR)
    click.echo(f"{count} secrets re-encrypted with the newest key")


def _parse_as_of(value: str | None) -> datetime:
    """``--as-of``: ISO 8601; a value without a zone is UTC; default now (UTC)."""
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        # In UTC it may leave the calendar ("9999-12-31T23:59:59-05:00").
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        _fail(
            f"--as-of: {value[:60]!r} is not an ISO 8601 date or datetime within years 1-9999 "
            "in UTC (e.g. 2026-11-20T09:00:00Z)"
        )


def _compiled_playbook(name_or_path: str | None) -> CompiledPlaybook:
    from app.coaching.playbook import PlaybookError, compile_playbook, load_playbook

    chosen = name_or_path or exit_on_invalid_settings().default_playbook
    try:
        return compile_playbook(load_playbook(chosen))
    except PlaybookError as exc:
        _fail(str(exc))


def _comment_text(value: str) -> str:
    """``value`` made safe inside an HTML comment: escaped, and no ``--`` to end it."""
    return html.escape(value).replace("--", "&#45;&#45;")


def _fail(message: str, status: int = EXIT_USAGE) -> NoReturn:
    """One line ``dealcoach: message`` on stderr and exit ``status`` (default: usage error)."""
    click.echo(f"dealcoach: {message}", err=True)
    raise SystemExit(status)


def _one_line(exc: BaseException) -> str:
    """The cause of a database or driver error on one line (the driver's own message)."""
    from sqlalchemy.exc import DBAPIError

    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return " ".join(str(cause).split())[:300] or type(cause).__name__


def _check_database(settings: Settings, engine: Engine) -> None:
    """Exit with one line unless the database answers and its schema is at head."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.db import SchemaNotCurrent, check_schema

    try:
        check_schema(engine)
    except SchemaNotCurrent as exc:
        _fail(f"{exc} (database {settings.safe_database_url})", EXIT_ERROR)
    except (SQLAlchemyError, OSError) as exc:
        _fail(
            f"cannot reach the database at {settings.safe_database_url}: {_one_line(exc)}; "
            "check DEALCOACH_DATABASE_URL and that the server is up",
            EXIT_ERROR,
        )


@contextmanager
def _database(settings: Settings) -> Iterator[sessionmaker[Session]]:
    """Sessions on the configured database, after checking that it answers and that its
    schema is at head (else one line and exit status 1)."""
    from app.db import create_engine_for, make_session_factory

    try:
        engine = create_engine_for(settings)
    except OSError as exc:
        _fail(f"cannot open the database at {settings.safe_database_url}: {exc}", EXIT_ERROR)
    try:
        _check_database(settings, engine)
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def _secret_box_or_exit(settings: Settings) -> Any:
    """The settings' :class:`SecretBox`, or one line naming DEALCOACH_SECRET_KEYS and exit 1."""
    from app.security.crypto import SecretBox, SecretKeyInvalid, SecretKeysMissing

    try:
        return SecretBox.from_settings(settings)
    except (SecretKeysMissing, SecretKeyInvalid) as exc:
        _fail(str(exc), EXIT_ERROR)


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
    provider: str, file: Path, stages: Path | None, playbook: str | None, moment: datetime
) -> ExportReview:
    from app.reviews.offline import ExportError, review_export

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
    are still reviewed, and the exit status is then 3 (partial failure).
    """
    from app.coaching.engine import review_fingerprint
    from app.coaching.render import note_marker, render_note_html, render_note_text

    result = _run_export_review(provider, file, stages, playbook, _parse_as_of(as_of))
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
                comment = f"<!-- deal {_comment_text(item.deal_id)} -->"
                blocks.append(f"{comment}\n{render_note_html(item, marker)}")
            else:
                blocks.append(render_note_text(item, marker))
        if output_format == "text":
            bands = Counter(
                item.health.band if item.is_open else "closed" for item in result.reviews
            )
            blocks.append(
                f"{len(result.reviews)} deals reviewed: {bands['healthy']} healthy, "
                f"{bands['at_risk']} at risk, {bands['critical']} critical, "
                f"{bands['closed']} closed"
                + (f"; {len(result.errors)} records skipped" if result.errors else "")
            )
        click.echo("\n\n".join(blocks))
    if result.errors:
        raise SystemExit(EXIT_PARTIAL)


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
    from app.coaching.render import BAND_LABEL, clean_text

    moment = _parse_as_of(as_of)
    result = _run_export_review(provider, file, stages, playbook, moment)
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
                f"{clean_text(item.stage_label, 60)}): "
                f"{BAND_LABEL[item.health.band]} {item.health.score}/100"
            )
            for prompt in item.prompts:
                if prompt.shown_first:
                    lines.append(f"   - {clean_text(prompt.text, 600)}")
        if not figures.open_deals:
            lines.append("No open deals for this owner." if owner else "No open deals.")
        elif not built.items:
            lines.append("No exceptions: every open deal is healthy.")
        click.echo("\n".join(lines))
    if result.errors:
        raise SystemExit(EXIT_PARTIAL)


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
@click.option(
    "--salesforce/--no-salesforce",
    default=False,
    help="Also measure the Salesforce connector's API calls against the emulator.",
)
def bench(deals: int, seed: int, results: Path, markdown: Path, salesforce: bool) -> None:
    """Benchmark the engine on generated deals (one core), and optionally the Salesforce
    connector against its emulator; record the figures."""
    from app.bench import run_engine_bench, write_results

    figures = run_engine_bench(deals, seed)
    if salesforce:
        from integrations.salesforce.bench import run_salesforce_bench

        figures.update(run_salesforce_bench())
    write_results(figures, results, markdown)
    click.echo(json.dumps(figures, indent=2))


@main.command()
@click.option(
    "--opportunities",
    type=click.IntRange(1, 2000),
    default=40,
    show_default=True,
    help="Opportunities to seed in the Salesforce emulator.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the emulator's org.")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Keep the databases, the emulator's state and the service log here (a new or "
    "empty directory). Default: a temporary directory, removed at the end.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(5, 600),
    default=60.0,
    show_default=True,
    help="Seconds each step may wait (service start, sync, stage change) before failing.",
)
@click.option(
    "--keep-running",
    is_flag=True,
    help="Leave the service and the emulator running until Ctrl-C, and print the admin key.",
)
def demo(
    opportunities: int, seed: int, data_dir: Path | None, timeout: float, keep_running: bool
) -> None:
    """Run the main job end to end against the Salesforce emulator, set-up included.

    Starts the Salesforce emulator (TLS) with a seeded org, migrates and starts
    `dealcoach serve` on the embedded default (SQLite, worker threads inside), connects it
    to the org through the admin API, syncs and writes the coaching notes back, reviews a
    stage change from its Outbound Message, reviews the bundled HubSpot sample offline
    (no HubSpot emulator yet), and stops everything. Exit status 0 on success; on a failure
    one line `dealcoach: demo failed: ...` (with the service log's last lines) and 1.
    """
    from app.demo import DemoError, DemoOptions, run_demo, sigterm_as_interrupt

    options = DemoOptions(
        opportunities=opportunities, seed=seed, data_dir=data_dir, timeout=timeout
    )
    try:
        with sigterm_as_interrupt():
            run_demo(options, click.echo, keep_running=keep_running)
    except DemoError as exc:
        click.echo(f"dealcoach: demo failed: {exc}", err=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        click.echo("dealcoach: demo interrupted; everything it started is stopped", err=True)
        raise SystemExit(130) from None


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--embedded-worker/--no-embedded-worker",
    default=None,
    help="Run the task-queue worker threads inside this process. "
    "Default: on with the SQLite queue, off with Redis/PostgreSQL (run `dealcoach worker`).",
)
def serve(host: str, port: int, embedded_worker: bool | None) -> None:
    """Run the HTTP service: the admin API, the CRM webhooks, and (by default) the worker."""
    import uvicorn

    from app.main import create_app

    settings = exit_on_invalid_settings()
    _secret_box_or_exit(settings)
    with _database(settings):
        pass
    configure_logging(settings)
    app = create_app(settings, embedded_worker=embedded_worker)
    uvicorn.run(app, host=host, port=port, **server_options(settings))


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's limits for `dealcoach serve` (docs/deploy.md, "HTTP limits"): a cap on
    concurrent connections (503 beyond), the listen backlog, idle keep-alive, a bound
    on a request's incomplete headers, and a graceful-shutdown deadline. Slow bodies
    are cut by the app's own read timeout (``DEALCOACH_HTTP_READ_TIMEOUT_SECONDS``)."""
    return {
        "log_level": settings.log_level.lower(),
        "log_config": None,  # configure_logging set every logger: one format, no second
        "limit_concurrency": settings.http_max_connections,
        "backlog": settings.http_backlog,
        "timeout_keep_alive": settings.http_keepalive_seconds,
        "h11_max_incomplete_event_size": 64 * 1024,
        "timeout_graceful_shutdown": 30,
        "server_header": False,
        "proxy_headers": True,
    }


@main.command()
@click.option(
    "--threads",
    type=click.IntRange(1, 64),
    default=None,
    help="Worker threads (default: DEALCOACH_WORKER_THREADS).",
)
@click.option(
    "--periodic/--no-periodic",
    default=True,
    show_default=True,
    help="Also enqueue periodic tasks on schedule (every worker that has it on does).",
)
@click.option(
    "--queue-wait",
    type=click.FloatRange(0, 3600),
    default=30.0,
    show_default=True,
    help="Seconds to wait for the queue (Redis, PostgreSQL) to answer at start before "
    "giving up with exit status 1.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve this process's Prometheus metrics (task and CRM-call counters) on this "
    "port at /metrics. Default: off.",
)
def worker(
    threads: int | None, periodic: bool, queue_wait: float, metrics_port: int | None
) -> None:
    """Run a task-queue consumer in the foreground (the scale-out worker process).

    Uses the queue of DEALCOACH_QUEUE_URL. SIGTERM stops gracefully (running tasks
    finish), SIGINT stops at once, SIGHUP restarts. Refuses to start (exit status 1,
    one line) without a secret key, on a database whose schema is behind, or when
    the queue does not answer within --queue-wait seconds.
    """
    from app.jobs import QueueUnavailable, run_worker, wait_for_queue

    settings = exit_on_invalid_settings()
    _secret_box_or_exit(settings)
    with _database(settings):
        pass
    try:
        wait_for_queue(settings, queue_wait)
    except QueueUnavailable as exc:
        _fail(str(exc), EXIT_ERROR)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        from app.metrics import REGISTRY

        start_http_server(metrics_port, registry=REGISTRY)
    run_worker(settings, threads=threads, periodic=periodic)
