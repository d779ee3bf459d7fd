"""The ``dealcoach`` command.

Exit statuses (docs/deploy.md): 0 success; 1 an operational error (the database, the
queue or a secret key is missing or unreachable, the schema is behind); 2 a usage error
(a bad option, setting or input file); 3 a partial failure (some records were skipped,
the others were processed).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

import click
import orjson

from app.config import Settings, configure_logging, exit_on_invalid_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from app.coaching.playbook import CompiledPlaybook
    from app.coaching.results import DealReview
    from app.reviews.offline import ExportStream, RecordError

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
def cardkey() -> None:
    """Card keys: the Salesforce card's key for the /cards endpoints of one connection."""


@cardkey.command("create")
@click.option("--connection", "connection_id", required=True, help="The connection id.")
@click.option("--name", default="Salesforce card", show_default=True, help="What it is for.")
def cardkey_create(connection_id: str, name: str) -> None:
    """Create a card key and print it once, alone on the last line."""
    from app.cards.keys import create_card_key
    from app.connections.models import Connection
    from app.db import create_engine_for, make_session_factory, session_scope

    settings = exit_on_invalid_settings()
    engine = create_engine_for(settings)
    try:
        with session_scope(make_session_factory(engine)) as session:
            connection = session.get(Connection, connection_id)
            if connection is None:
                _fail(f"no connection {connection_id!r}")
            try:
                key, plaintext = create_card_key(session, connection, name)
            except ValueError as exc:
                _fail(str(exc))
    finally:
        engine.dispose()
    click.echo(
        f"created card key {key.prefix} (id {key.id}) for connection {connection_id}; "
        "it works only on that connection's /cards endpoints and is shown only once:"
    )
    click.echo(plaintext)


@cardkey.command("list")
@click.option("--connection", "connection_id", default=None, help="Only this connection's.")
def cardkey_list(connection_id: str | None) -> None:
    """List card keys (id, prefix, connection, dates, name; never a secret)."""
    from app.cards.keys import list_card_keys
    from app.db import create_engine_for, make_session_factory, session_scope

    settings = exit_on_invalid_settings()
    engine = create_engine_for(settings)
    try:
        with session_scope(make_session_factory(engine)) as session:
            rows = list_card_keys(session, connection_id)
    finally:
        engine.dispose()

    def when(moment: datetime | None) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"

    lines = ["ID\tPREFIX\tCONNECTION\tCREATED\tLAST_USED\tREVOKED\tNAME"]
    for key in rows:
        lines.append(
            f"{key.id}\t{key.prefix}\t{key.connection_id}\t{when(key.created_at)}\t"
            f"{when(key.last_used_at)}\t{when(key.revoked_at)}\t{key.name}"
        )
    click.echo("\n".join(lines))


@cardkey.command("revoke")
@click.argument("key_id_or_prefix")
def cardkey_revoke(key_id_or_prefix: str) -> None:
    """Revoke a card key, named by its id or its prefix."""
    from app.cards.keys import find_card_key, revoke_card_key
    from app.db import create_engine_for, make_session_factory, session_scope

    settings = exit_on_invalid_settings()
    engine = create_engine_for(settings)
    try:
        with session_scope(make_session_factory(engine)) as session:
            found = find_card_key(session, key_id_or_prefix)
            if found is None:
                _fail("no card key with that id or prefix")
            already = found.revoked_at is not None
            key = revoke_card_key(session, found)
    finally:
        engine.dispose()
    state = "was already revoked" if already else "revoked"
    click.echo(f"card key {key.prefix} (id {key.id}) {state}")


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
    from app.reviews.offline import comment_text

    return comment_text(value)


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
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    required=True,
    help="The export: a Salesforce query response or a HubSpot deal list (JSON); "
    "'-' reads it from stdin. Read as a stream: any size will do.",
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


class _Progress:
    """A progress line on stderr, only when stderr is a terminal (never in a pipe or a
    log): deals reviewed and, for a file, the share of it read."""

    def __init__(self, stream: ExportStream) -> None:
        self._stream = stream
        isatty = getattr(sys.stderr, "isatty", None)
        self._on = bool(isatty and isatty())
        self._next = 0.0
        self._shown = False
        self.deals = 0

    def tick(self) -> None:
        self.deals += 1
        if not self._on or self.deals % 256:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + 0.2
        total = self._stream.total_bytes
        share = f" ({100 * self._stream.bytes_read // total}%)" if total else ""
        click.echo(f"\rdealcoach: {self.deals:,} deals{share}", err=True, nl=False)
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            click.echo("\r\x1b[K", err=True, nl=False)
            self._shown = False

    def error(self, message: str) -> None:
        self.clear()
        click.echo(f"dealcoach: {message}", err=True)


def _export_stream(
    provider: str, file: Path, stages: Path | None, playbook: str | None, moment: datetime
) -> ExportStream:
    """The export as a stream of reviews; a playbook or stage file problem is one line."""
    from app.reviews.offline import ExportError, ExportStream, load_stages

    compiled = _compiled_playbook(playbook)
    try:
        catalogues = load_stages(provider, stages)  # type: ignore[arg-type]
    except ExportError as exc:
        _fail(str(exc))
    if str(file) == "-":
        source: Path | BinaryIO = sys.stdin.buffer
        return ExportStream(provider, source, catalogues, compiled, moment, "<stdin>")  # type: ignore[arg-type]
    return ExportStream(provider, file, catalogues, compiled, moment)  # type: ignore[arg-type]


def _reviews(
    stream: ExportStream, errors: list[RecordError], progress: _Progress
) -> Iterator[DealReview]:
    """The stream's reviews; each bad record is reported on stderr as it comes and kept
    in ``errors``."""
    from app.reviews.offline import RecordError

    for item in stream:
        if isinstance(item, RecordError):
            errors.append(item)
            progress.error(str(item))
        else:
            progress.tick()
            yield item


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
@click.option(
    "--audience",
    type=click.Choice(["manager", "rep"]),
    default="manager",
    show_default=True,
    help="Whose prompts to show, in every format: the manager's questions for the deal "
    "review, or the rep's self-review.",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Worker processes that map, review and render (the output keeps the file's order).",
)
def review(
    provider: str,
    file: Path,
    stages: Path | None,
    playbook: str | None,
    as_of: str | None,
    output_format: str,
    audience: str,
    jobs: int,
) -> None:
    """Review every deal in a CRM export file (no database, no network).

    The export is read and the output written deal by deal, so memory stays flat
    for any size of file. Records that cannot be read are reported on stderr and
    skipped; the others are still reviewed, and the exit status is then 3
    (partial failure).
    """
    from app.reviews.offline import ExportError, RecordError, RenderedReview, render_review

    stream = _export_stream(provider, file, stages, playbook, _parse_as_of(as_of))
    progress = _Progress(stream)
    if jobs > 1:
        from app.reviews.parallel import reviewed_in_workers

        chosen = playbook or exit_on_invalid_settings().default_playbook
        results: Iterator[RenderedReview | RecordError] = reviewed_in_workers(
            stream, jobs, chosen, output_format, audience
        )
    else:
        results = (
            item if isinstance(item, RecordError) else render_review(item, output_format, audience)
            for item in stream
        )
    errors: list[RecordError] = []
    out = sys.stdout.buffer
    bands: Counter[str] = Counter()
    started = False
    failure: str | None = None
    head = b'{"audience": "%s", "reviews": [\n' % audience.encode()
    separator = b",\n" if output_format == "json" else b"\n\n"
    try:
        for result in results:
            if isinstance(result, RecordError):
                errors.append(result)
                progress.error(str(result))
                continue
            progress.tick()
            bands[result.band] += 1
            if started:
                out.write(separator + result.data)
            else:
                out.write((head if output_format == "json" else b"") + result.data)
                started = True
    except ExportError as exc:
        failure = str(exc)
    progress.clear()
    if failure is not None and not started:
        _fail(failure)
    if output_format == "json":
        if not started:
            out.write(head.rstrip(b"\n"))
        listed = [error.to_dict() for error in errors]
        if failure is not None:
            listed.append({"file": stream.name, "record": None, "message": failure})
        out.write(b'\n],\n"errors": ' + orjson.dumps(listed) + b"}\n")
    elif output_format == "text":
        line = (
            f"{sum(bands.values())} deals reviewed: {bands['healthy']} healthy, "
            f"{bands['at_risk']} at risk, {bands['critical']} critical, "
            f"{bands['closed']} closed" + (f"; {len(errors)} records skipped" if errors else "")
        )
        out.write((b"\n\n" if started else b"") + line.encode() + b"\n")
    elif started:
        out.write(b"\n")
    out.flush()
    if failure is not None:
        click.echo(f"dealcoach: {failure}", err=True)
    if errors or failure is not None:
        raise SystemExit(EXIT_PARTIAL)


@main.command()
@_PROVIDER
@_FILE
@_STAGES
@_PLAYBOOK
@_AS_OF
@click.option("--owner", default=None, help="Owner id (default: every owner).")
@click.option("--period", type=click.Choice(["quarter", "month"]), default="quarter")
@click.option(
    "--format", "output_format", type=click.Choice(["text", "json", "html"]), default="text"
)
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
    """The pipeline-review agenda: exceptions only, grouped by owner, deals closing in
    the period first (past-due and commit mismatches leading), then by risk x value."""
    from app.coaching.agenda import pipeline_agenda, render_agenda_html, render_agenda_text
    from app.reviews.offline import ExportError

    moment = _parse_as_of(as_of)
    stream = _export_stream(provider, file, stages, playbook, moment)
    progress = _Progress(stream)
    errors: list[RecordError] = []
    try:
        built = pipeline_agenda(_reviews(stream, errors, progress), owner, moment, period)  # type: ignore[arg-type]
    except ExportError as exc:
        progress.clear()
        _fail(str(exc))
    progress.clear()
    if output_format == "json":
        sys.stdout.buffer.write(orjson.dumps(built.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")
    elif output_format == "html":
        click.echo(render_agenda_html(built))
    else:
        click.echo(render_agenda_text(built))
    if errors:
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
@click.option(
    "--hubspot/--no-hubspot",
    default=False,
    help="Also measure the HubSpot connector's API calls and rate-limit use against the emulator.",
)
@click.option(
    "--webhooks/--no-webhooks",
    default=False,
    help="Also measure the webhook path of a real `dealcoach serve` on SQLite under load "
    "(40 senders of Outbound Messages, accept time with 8,000 waiting, drain rate).",
)
@click.option("--webhook-senders", default=40, show_default=True, type=click.IntRange(1, 200))
@click.option("--webhook-messages", default=600, show_default=True, type=click.IntRange(1))
@click.option("--webhook-waiting", default=8000, show_default=True, type=click.IntRange(100))
@click.option(
    "--cli/--no-cli",
    "cli",
    default=False,
    help="Also measure `dealcoach review --format json` end to end on generated Salesforce "
    "exports (deals/s and peak RSS at --cli-deals and --cli-large deals).",
)
@click.option(
    "--service/--no-service",
    "service",
    default=False,
    help="Also measure a real `dealcoach serve` against the Salesforce emulator: stage change "
    "to note (coalescing window 5 s and 0) and a first sync at --sync-sizes opportunities.",
)
@click.option(
    "--sync-sizes",
    default="10000,100000",
    show_default=True,
    help="Comma-separated opportunity counts of the first-sync runs of --service.",
)
@click.option("--cli-deals", default=20_000, show_default=True, help="Deals of the CLI run.")
@click.option(
    "--cli-large", default=100_000, show_default=True, help="Deals of the CLI memory run."
)
def bench(
    deals: int,
    seed: int,
    results: Path,
    markdown: Path,
    salesforce: bool,
    hubspot: bool,
    webhooks: bool,
    webhook_senders: int,
    webhook_messages: int,
    webhook_waiting: int,
    service: bool,
    sync_sizes: str,
    cli: bool,
    cli_deals: int,
    cli_large: int,
) -> None:
    """Benchmark the engine on generated deals (one core), and optionally the CLI end to
    end, the Salesforce and HubSpot connectors against their emulators and the webhook
    path under load; record the figures."""
    from app.bench import run_cli_bench, run_engine_bench, write_results

    figures = run_engine_bench(deals, seed)
    if cli:
        figures.update(run_cli_bench(cli_deals, cli_large, seed))
        # The engine alone, measured just before on the same machine: the CLI's rate
        # relative to it does not depend on how busy the machine was.
        figures["cli"]["engine_reviews_per_cpu_s_same_run"] = figures["engine"]["reviews_per_cpu_s"]
    if salesforce:
        from integrations.salesforce.bench import run_salesforce_bench

        figures.update(run_salesforce_bench())
    if hubspot:
        from integrations.hubspot.bench import run_hubspot_bench

        figures.update(run_hubspot_bench())
    if webhooks:
        from app.bench_webhooks import run_webhook_bench

        figures["webhook"] = run_webhook_bench(
            senders=webhook_senders,
            messages=webhook_messages,
            waiting=webhook_waiting,
            echo=lambda line: click.echo(line, err=True),
        )
    if service:
        from app.bench_service import run_e2e_bench, run_sync_scale_bench

        try:
            sizes = tuple(int(size) for size in sync_sizes.split(",") if size.strip())
        except ValueError:
            _fail(f"--sync-sizes: not a list of numbers: {sync_sizes!r}", EXIT_USAGE)
        figures.update(run_e2e_bench())
        figures.update(run_sync_scale_bench(sizes))
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
@click.option(
    "--hubspot-deals",
    type=click.IntRange(1, 2000),
    default=18,
    show_default=True,
    help="Deals to seed in the HubSpot emulator.",
)
@click.option(
    "--stage-changes",
    type=click.IntRange(1, 20),
    default=3,
    show_default=True,
    help="Stage changes per CRM: the first shown step by step, the others made at once.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the emulators' data.")
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
    help="Leave the service and the emulators running until Ctrl-C, and print the admin key.",
)
@click.option("--once", is_flag=True, help="Run once and stop everything (the default).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print only one JSON object of counts read back from the emulators.",
)
def demo(
    opportunities: int,
    hubspot_deals: int,
    stage_changes: int,
    seed: int,
    data_dir: Path | None,
    timeout: float,
    keep_running: bool,
    once: bool,
    as_json: bool,
) -> None:
    """Run the main job end to end against both CRM sandboxes, set-up included.

    Starts the Salesforce emulator (TLS) and the HubSpot emulator with seeded data,
    migrates and starts `dealcoach serve` on the embedded default (SQLite, worker threads
    inside), connects both through the admin API, syncs and writes the coaching notes
    back, reviews a stage change in each CRM from its webhook (an Outbound Message; a
    v3-signed HubSpot event), reads both CRMs back, and stops everything. Exit status 0 on
    success; on a failure one line `dealcoach: demo failed: ...` (with the service log's
    last lines) and 1. `--once --json` prints one JSON object: deals synced and notes
    written per CRM, reviews, stage changes, stage-change-to-note times, duplicate notes.
    """
    from app.demo import DemoError, DemoOptions, run_demo, sigterm_as_interrupt

    if keep_running and (once or as_json):
        raise click.UsageError("--keep-running cannot be combined with --once or --json")
    options = DemoOptions(
        opportunities=opportunities,
        hubspot_deals=hubspot_deals,
        stage_changes=stage_changes,
        seed=seed,
        data_dir=data_dir,
        timeout=timeout,
    )
    try:
        with sigterm_as_interrupt():
            if as_json:
                report = run_demo(options, lambda line: None)
                click.echo(json.dumps(report.summary()))
            else:
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


if __name__ == "__main__":
    main()
