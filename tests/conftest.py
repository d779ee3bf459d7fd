"""Shared fixtures: databases on SQLite and on a real PostgreSQL.

``postgres_url`` (session): a PostgreSQL server for the whole test run. The
session starts its own (``initdb`` + ``pg_ctl`` into a temporary folder, on a
free port of 127.0.0.1) unless ``DEALCOACH_TEST_POSTGRES_URL`` names a server
to use instead (its user needs CREATEDB). When no server can be had, the
PostgreSQL tests are skipped, except under ``CI``, where they fail.

Per test, parametrised over ``sqlite`` and ``postgresql`` (so a test that uses
any of these runs on both; ``-m "not postgres"`` keeps SQLite only):

- ``database_url``: a fresh, empty database (nothing migrated).
- ``migrated_database_url``: a fresh database at the migrations' head.
- ``db_settings``: ``Settings`` pointing at ``migrated_database_url``.
- ``engine``: ``create_engine_for(db_settings)``; ``session_factory``; ``session``.

Each test gets its own database, so tests may commit freely.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import create_engine_for, make_session_factory, upgrade_database

POSTGRES_URL_ENV = "DEALCOACH_TEST_POSTGRES_URL"
#: A Fernet key for tests only (secrets at rest are encrypted with it).
TEST_SECRET_KEY = "u8cP1Xv5jzJ0pWJm3oQ0u1qk8l7kq2a9xQy4cW5rZ0E="
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


# --- a PostgreSQL server for the session ---------------------------------------------------


class PostgresUnavailable(Exception):
    """No PostgreSQL server could be started here."""


def _find_postgres_bindir() -> Path:
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    candidates = [
        path
        for path in Path("/usr/lib/postgresql").glob("*/bin")
        if (path / "initdb").exists() and (path / "pg_ctl").exists()
    ]
    if not candidates:
        raise PostgresUnavailable("initdb/pg_ctl not found on PATH or in /usr/lib/postgresql")

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in path.parent.name.split(".") if part.isdigit())

    return max(candidates, key=version)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LocalPostgres:
    """A throwaway PostgreSQL cluster in a temporary folder (trust auth, 127.0.0.1 only).

    initdb refuses to run as root, so as root the folder is given to the
    ``postgres`` user and the server commands run as that user.
    """

    bindir: Path
    root: Path
    port: int
    user: int | None
    group: int | None

    database = "dealcoach_test"

    @classmethod
    def start(cls) -> LocalPostgres:
        bindir = _find_postgres_bindir()
        user = group = None
        root = Path(tempfile.mkdtemp(prefix="dealcoach-pg-"))
        try:
            if os.geteuid() == 0:
                try:
                    account = pwd.getpwnam("postgres")
                except KeyError:
                    raise PostgresUnavailable(
                        "running as root and there is no 'postgres' user to run initdb as"
                    ) from None
                user, group = account.pw_uid, account.pw_gid
                os.chown(root, user, group)
            server = cls(bindir, root, 0, user, group)
            server._initdb()
            last_error = ""
            for _attempt in range(3):
                server.port = _free_port()
                try:
                    server._pg_ctl_start()
                    break
                except PostgresUnavailable as exc:
                    last_error = str(exc)
            else:
                raise PostgresUnavailable(last_error)
            server._create_database()
            return server
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.database}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / program), *args]
        try:
            result = subprocess.run(
                command,
                cwd=self.root,
                user=self.user,
                group=self.group,
                extra_groups=[] if self.user is not None else None,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PostgresUnavailable(f"{program} could not run: {exc}") from exc
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"{program} failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
                + self._log_tail()
            )
        return result

    def _log_tail(self) -> str:
        log = self.root / "server.log"
        if not log.exists():
            return ""
        return "\nserver log:\n" + log.read_text(errors="replace")[-2000:]

    def _initdb(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.root / "data"),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )

    def _pg_ctl_start(self) -> None:
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.root} -F "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.root / "data"),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def _create_database(self) -> None:
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=5) as connection:
                    connection.execute(
                        sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database))
                    )
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PostgresUnavailable(f"server did not accept connections: {exc}") from exc
                time.sleep(0.2)


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required under CI but unavailable: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL unavailable: {reason}")


def _psycopg_url(url: str) -> str:
    """A libpq URL (what psycopg.connect takes) from a SQLAlchemy one."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _sqlalchemy_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL of a PostgreSQL database whose user may create databases."""
    external = os.environ.get(POSTGRES_URL_ENV)
    if external:
        url = _sqlalchemy_url(external)
        try:
            with psycopg.connect(_psycopg_url(url), connect_timeout=10):
                pass
        except psycopg.OperationalError as exc:
            _unavailable(f"{POSTGRES_URL_ENV} does not connect: {exc}")
        yield url
        return
    try:
        server = LocalPostgres.start()
    except PostgresUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield server.url
    finally:
        server.stop()


def create_postgres_database(admin_url: str, template: str | None = None) -> str:
    """Create a uniquely named database on the server of ``admin_url``; return its URL."""
    name = f"dealcoach_t_{uuid.uuid4().hex[:16]}"
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)
        )
    with psycopg.connect(_psycopg_url(admin_url), autocommit=True) as connection:
        connection.execute(statement)
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(admin_url: str, database_url: str) -> None:
    """Drop the database of ``database_url``, closing any connection still open to it."""
    name = make_url(database_url).database
    assert name is not None
    with psycopg.connect(_psycopg_url(admin_url), autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


# --- migrated templates, so each test's database is a cheap copy --------------------------


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade_database(Settings(database_url=f"sqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def _postgres_template(postgres_url: str) -> Iterator[str]:
    url = create_postgres_database(postgres_url)
    try:
        upgrade_database(Settings(database_url=url))
        name = make_url(url).database
        assert name is not None
        yield name
    finally:
        drop_postgres_database(postgres_url, url)


# --- per-test databases on both backends ---------------------------------------------------


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """``"sqlite"`` or ``"postgresql"``; every fixture below follows it."""
    name: str = request.param
    return name


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database (no tables), dropped after the test."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'dealcoach.db'}"
        return
    admin: str = request.getfixturevalue("postgres_url")
    url = create_postgres_database(admin)
    try:
        yield url
    finally:
        drop_postgres_database(admin, url)


@pytest.fixture
def migrated_database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[str]:
    """A fresh database already at the migrations' head, dropped after the test."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("_sqlite_template")
        path = tmp_path / "dealcoach.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    admin: str = request.getfixturevalue("postgres_url")
    template_name: str = request.getfixturevalue("_postgres_template")
    url = create_postgres_database(admin, template=template_name)
    try:
        yield url
    finally:
        drop_postgres_database(admin, url)


@pytest.fixture
def db_settings(migrated_database_url: str, tmp_path: Path) -> Settings:
    """Settings for the migrated test database (data directory in ``tmp_path``)."""
    return Settings(
        database_url=migrated_database_url, data_dir=tmp_path / "data", secret_keys=TEST_SECRET_KEY
    )


@pytest.fixture
def engine(db_settings: Settings) -> Iterator[Engine]:
    """An engine on the migrated test database, built like the app builds it."""
    engine = create_engine_for(db_settings)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session on the migrated test database; whatever is left uncommitted is rolled back."""
    session = session_factory()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def pytest_report_header(config: pytest.Config) -> list[str]:
    external = os.environ.get(POSTGRES_URL_ENV)
    if external:
        safe = make_url(external).render_as_string(hide_password=True)
        return [f"postgresql: {POSTGRES_URL_ENV}={safe}"]
    return ["postgresql: started by the test session (initdb/pg_ctl) when needed"]


# --- a Redis server for the session ---------------------------------------------------------

REDIS_URL_ENV = "DEALCOACH_TEST_REDIS_URL"


class RedisUnavailable(Exception):
    """No Redis server could be started here."""


@dataclass
class LocalRedis:
    """A throwaway ``redis-server`` on 127.0.0.1 (no persistence), in a temporary folder."""

    process: subprocess.Popen[bytes]
    root: Path
    port: int

    @classmethod
    def start(cls) -> LocalRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisUnavailable("redis-server not found on PATH")
        root = Path(tempfile.mkdtemp(prefix="dealcoach-redis-"))
        try:
            last_error = ""
            for _attempt in range(3):
                port = _free_port()
                command = [
                    binary,
                    "--save", "",
                    "--appendonly", "no",
                    "--port", str(port),
                    "--bind", "127.0.0.1",
                    "--dir", str(root),
                    "--logfile", str(root / "redis.log"),
                ]  # fmt: skip
                process = subprocess.Popen(
                    command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                server = cls(process, root, port)
                try:
                    server._wait_ready()
                    return server
                except RedisUnavailable as exc:
                    last_error = str(exc)
                    server._terminate()
            raise RedisUnavailable(last_error)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _wait_ready(self) -> None:
        import redis

        deadline = time.monotonic() + 15
        while True:
            if self.process.poll() is not None:
                log = self.root / "redis.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RedisUnavailable(f"redis-server exited ({self.process.returncode}):\n{tail}")
            try:
                client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
                try:
                    client.ping()
                    return
                finally:
                    client.close()
            except redis.RedisError as exc:
                if time.monotonic() > deadline:
                    raise RedisUnavailable(f"redis-server did not answer: {exc}") from exc
                time.sleep(0.05)

    def _terminate(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def stop(self) -> None:
        try:
            self._terminate()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _redis_unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"Redis is required under CI but unavailable: {reason}", pytrace=False)
    pytest.skip(f"Redis unavailable: {reason}")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``redis://`` URL of a Redis server for the test session.

    The session starts its own ``redis-server`` (free port on 127.0.0.1, no
    persistence) unless ``DEALCOACH_TEST_REDIS_URL`` names a throwaway server to use.
    Without one the Redis tests are skipped, except under ``CI``, where they fail.
    Tests share the server: give each its own key prefix (e.g. a unique queue name).
    """
    import redis

    external = os.environ.get(REDIS_URL_ENV)
    if external:
        try:
            client = redis.Redis.from_url(external, socket_timeout=10)
            try:
                client.ping()
            finally:
                client.close()
        except redis.RedisError as exc:
            _redis_unavailable(f"{REDIS_URL_ENV} does not answer: {exc}")
        yield external
        return
    try:
        server = LocalRedis.start()
    except RedisUnavailable as exc:
        _redis_unavailable(str(exc))
    try:
        yield server.url
    finally:
        server.stop()
