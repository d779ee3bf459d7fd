"""The database: declarative base, portable column types, engine, sessions, migrations.

SQLite (a WAL-mode file in the data directory) is the embedded default;
PostgreSQL (psycopg 3) is supported for larger installs. Both run the same
Alembic migrations (``migrations/``), which live inside the installed package
so ``dealcoach db upgrade`` works from any working directory.

Transactions: whoever opens the session (a request, a task, a CLI command)
owns the transaction, through :func:`session_scope`. Services only flush.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

from sqlalchemy import JSON, CheckConstraint, DateTime, Engine, MetaData, String, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from app.config import Settings

if TYPE_CHECKING:
    from alembic.config import Config

E = TypeVar("E", bound=StrEnum)

#: Constraint and index names that are stable across backends, so migrations can
#: name what they drop or alter (SQLite batch mode needs names too).
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the default for timestamp columns)."""
    return datetime.now(UTC)


def new_id() -> str:
    """A new primary key: a random UUID as a 36-character string."""
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on every backend.

    PostgreSQL stores ``timestamptz``; SQLite stores naive UTC text, and the
    UTC zone is put back on read. Naive datetimes are rejected on write
    (``ValueError``, wrapped by SQLAlchemy in ``StatementError``) because their
    meaning depends on the machine that made them.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"UTCDateTime needs a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} (timezone-aware UTC required)")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"UTCDateTime read a {type(value).__name__}, expected a datetime")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class StrEnumType(TypeDecorator[E], Generic[E]):
    """A ``StrEnum`` stored as its string value (VARCHAR), read back as the enum member.

    The database side is a plain string plus a CHECK constraint (see
    :func:`enum_check`), portable across backends and easy to extend in a
    migration. Unknown values are rejected on write with ``ValueError``.
    """

    impl = String
    cache_ok = True

    def __init__(self, enum_class: type[E], length: int = 32) -> None:
        super().__init__(length)
        self.enum_class = enum_class
        self.length = length

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return self.enum_class(value).value

    def process_result_value(self, value: Any | None, dialect: Dialect) -> E | None:
        if value is None:
            return None
        return self.enum_class(value)


def enum_check(column: str, enum_class: type[StrEnum]) -> CheckConstraint:
    """A CHECK constraint keeping ``column`` to the enum's values, named after the column."""
    values = ", ".join(f"'{member.value}'" for member in enum_class)
    return CheckConstraint(f"{column} IN ({values})", name=column)


#: JSON that is JSONB on PostgreSQL (indexable, compact) and JSON elsewhere.
#: Python ``None`` is stored as SQL NULL, not the JSON ``null`` literal.
#: Values are not mutation-tracked: assign a new dict or list to change one.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class Base(DeclarativeBase):
    """The declarative base of every model (``app/models.py`` imports them all)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


# --- engine and sessions -----------------------------------------------------------------


class WriterGate:
    """The one writer of a SQLite file inside this process.

    A thread takes the gate right before its transaction's first write and gives
    it back when the transaction ends (commit, rollback, close), so the writers of
    one process (request threads, worker threads) queue here, in order, instead of
    meeting inside SQLite as ``database is locked``. Re-entrant per thread (a
    thread holding it may open a second transaction: SQLite's own busy timeout
    then applies, as without a gate). Another process on the same file waits on
    SQLite's lock through ``busy_timeout``.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._condition = threading.Condition()
        self._owner: int | None = None
        self._depth = 0

    def acquire(self) -> int:
        """Wait for the gate; returns the owner token to release it with.

        Raises:
            sqlite3.OperationalError: ``writer busy`` after ``timeout`` seconds.
        """
        me = threading.get_ident()
        with self._condition:
            if self._owner == me:
                self._depth += 1
                return me
            deadline = time.monotonic() + self.timeout
            while self._owner is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise sqlite3.OperationalError(
                        f"writer busy: no write turn within {self.timeout:.1f} s"
                    )
                self._condition.wait(left)
            self._owner, self._depth = me, 1
            return me

    def release(self, owner: int) -> None:
        with self._condition:
            if self._owner != owner:
                return
            self._depth -= 1
            if self._depth <= 0:
                self._owner, self._depth = None, 0
                self._condition.notify()


_GATES: dict[str, WriterGate] = {}
_GATES_LOCK = threading.Lock()
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLAC")


def writer_gate(database: str, timeout: float = 5.0) -> WriterGate:
    """The process's gate for one SQLite file (every engine on that file shares it)."""
    key = database if database in ("", ":memory:") else str(Path(database).expanduser().resolve())
    with _GATES_LOCK:
        gate = _GATES.get(key)
        if gate is None:
            gate = _GATES[key] = WriterGate(timeout)
        gate.timeout = max(gate.timeout, timeout)
        return gate


class _GatedCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        connection = self.connection
        if isinstance(connection, GatedSqliteConnection):
            connection._before(sql)
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Self:
        connection = self.connection
        if isinstance(connection, GatedSqliteConnection):
            connection._before(sql)
        return super().executemany(sql, parameters)


class GatedSqliteConnection(sqlite3.Connection):
    """A pysqlite connection that takes its file's :class:`WriterGate` before the first
    write of a transaction and opens that transaction with ``BEGIN IMMEDIATE``."""

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self.isolation_level = "IMMEDIATE"  # the implicit BEGIN before a write
        self._gate = writer_gate(str(database))
        self._holder: int | None = None

    def _before(self, sql: str) -> None:
        if self._holder is None and sql.lstrip()[:6].upper() in _WRITES:
            self._holder = self._gate.acquire()

    def _done(self) -> None:
        holder, self._holder = self._holder, None
        if holder is not None:
            self._gate.release(holder)

    def cursor(self, factory: Any = _GatedCursor) -> Any:
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        cursor: sqlite3.Cursor = self.cursor()
        return cursor.execute(sql, parameters)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._done()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._done()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._done()


def is_lock_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a wait for the database's write lock that timed out (SQLite's
    ``database is locked``/``busy``, the writer gate's ``writer busy``, PostgreSQL's lock
    timeout): worth retrying, never a failure of the work itself."""
    current: BaseException | None = exc
    while current is not None:
        text = str(current).lower()
        if isinstance(current, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            return True
        if "lock timeout" in text or "lock_timeout" in text or "lock not available" in text:
            return True
        current = current.__cause__ or getattr(current, "orig", None)
        if current is exc:
            break
    return False


def create_engine_for(settings: Settings, **kwargs: Any) -> Engine:
    """An engine for the configured database.

    SQLite: the data directory is created if missing, and every new connection
    gets ``journal_mode=WAL``, ``busy_timeout`` from the settings and
    ``foreign_keys=ON``. Writers are serialised in the process by the file's
    :class:`WriterGate` (taken before a transaction's first write, released at its
    end; the transaction starts with ``BEGIN IMMEDIATE``); reads never wait for it
    (WAL). Transactions start right before their first write, so a transaction
    that only reads holds no lock; the cost is that ``SAVEPOINT`` (``begin_nested``)
    is not reliable there. PostgreSQL: psycopg 3 with ``pool_pre_ping``.
    Extra keyword arguments go to :func:`sqlalchemy.create_engine`.
    """
    url = make_url(settings.resolved_database_url)
    # Request threads (up to 40 in the server's pool) and worker threads each hold a
    # connection while they work: size the pool for them, not for the default 5 + 10.
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 40)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        writer_gate(database, settings.sqlite_busy_timeout_ms / 1000)
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("factory", GatedSqliteConnection)
        engine = sa_create_engine(url, connect_args=connect_args, **kwargs)
        _install_sqlite_pragmas(engine, settings.sqlite_busy_timeout_ms)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa_create_engine(url, **kwargs)


def _install_sqlite_pragmas(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on ``engine``; objects stay readable after commit (``expire_on_commit=False``)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: Callable[[], Session]) -> Iterator[Session]:
    """One unit of work: commit when the block ends normally, roll back if it raises.

    The caller that opens the scope owns the transaction; code inside only
    flushes. ``with session_scope(sessions) as session: service.do(session, ...)``
    """
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# --- migrations --------------------------------------------------------------------------


class MigrationError(RuntimeError):
    """A migration left the database inconsistent (for example, broken foreign keys)."""


def alembic_config() -> Config:
    """The Alembic configuration of the installed ``migrations`` package.

    ``env.py`` runs on ``config.attributes["connection"]`` when one is given,
    else on the ``sqlalchemy.url`` main option when set, else on the settings.
    """
    from alembic.config import Config

    config = Config(str(files("migrations").joinpath("alembic.ini")))
    config.attributes["configure_logging"] = False
    return config


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection to run migrations on; commits at the end.

    On SQLite, foreign keys are switched off while migrations run: batch
    operations rebuild tables by copy-drop-rename, and dropping a parent table
    with foreign keys on would cascade. ``PRAGMA foreign_key_check`` runs
    before commit instead.
    """
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
            connection.commit()
        try:
            yield connection
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    connection.rollback()
                    raise MigrationError(f"foreign key violations after migration: {broken[:5]}")
            connection.commit()
        finally:
            if sqlite:
                connection.rollback()
                connection.exec_driver_sql("PRAGMA foreign_keys = ON")
                connection.commit()


def _run_alembic(settings: Settings, action: Callable[[Config], None]) -> None:
    config = alembic_config()
    engine = create_engine_for(settings)
    try:
        with migration_connection(engine) as connection:
            config.attributes["connection"] = connection
            action(config)
    finally:
        engine.dispose()


def upgrade_database(settings: Settings, revision: str = "head") -> None:
    """Apply the migrations up to ``revision``; creates the SQLite file if needed."""
    from alembic import command

    _run_alembic(settings, lambda config: command.upgrade(config, revision))


def downgrade_database(settings: Settings, revision: str) -> None:
    """Revert the migrations down to ``revision`` (``"base"`` drops every table)."""
    from alembic import command

    _run_alembic(settings, lambda config: command.downgrade(config, revision))


# --- is the schema at the code's head? -----------------------------------------------------


class SchemaNotCurrent(RuntimeError):
    """The database's schema is not the one this code was written for (one-line message
    that says what to run)."""


def head_revisions() -> tuple[str, ...]:
    """The migration heads shipped with this code."""
    from alembic.script import ScriptDirectory

    return tuple(sorted(ScriptDirectory.from_config(alembic_config()).get_heads()))


def current_revisions(engine: Engine) -> tuple[str, ...]:
    """The revisions the database is at (empty when it was never migrated).

    Raises :class:`sqlalchemy.exc.SQLAlchemyError` (or ``OSError``) when the database
    cannot be reached.
    """
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return tuple(sorted(MigrationContext.configure(connection).get_current_heads()))


def check_schema(engine: Engine, heads: tuple[str, ...] | None = None) -> None:
    """Raise :class:`SchemaNotCurrent` unless the database is at the migrations' head."""
    heads = heads if heads is not None else head_revisions()
    current = current_revisions(engine)
    if current == heads:
        return
    if not current:
        raise SchemaNotCurrent("the database has no schema yet; run: dealcoach db upgrade")
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    known = {revision.revision for revision in script.walk_revisions()}
    unknown = [revision for revision in current if revision not in known]
    if unknown:
        raise SchemaNotCurrent(
            f"the database is at revision {', '.join(unknown)}, which this version of "
            "dealcoach does not know (written by a newer version?); deploy that version "
            "or run its `dealcoach db downgrade` first"
        )
    raise SchemaNotCurrent(
        f"the database schema is at {', '.join(current)}, behind {', '.join(heads)}; "
        "run: dealcoach db upgrade"
    )
