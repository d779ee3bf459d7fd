"""Leases that survive a crash sensibly: owners with a heartbeat, and named leases.

Work that a process holds while it calls a CRM (a write-back claim, a sync, a
token refresh) is marked with the holder's :func:`process_id` and an end time.
Every running service and worker process writes a heartbeat row every
:data:`HEARTBEAT_SECONDS`. An owner is *gone* (:func:`gone_owners`) when its
heartbeat is older than :data:`STALE_AFTER`, or at once when it ran on this
host and its process id is no longer alive (a ``kill -9`` followed by a
restart), so a restarted process takes over the dead one's work within
seconds instead of waiting for the lease's end. Owners without a heartbeat row
(a CLI command, a test calling a task) keep their lease until its end.

Named leases (:func:`take_lease`) are rows of ``leases``: a short committed
transaction takes one, so no transaction stays open while the holder calls
the network (the token refresh uses one per connection).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import String, delete, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from app.db import Base, UTCDateTime, is_lock_error, session_scope, utcnow

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0
STALE_AFTER = timedelta(seconds=30)
#: Heartbeat rows of processes gone this long are deleted.
FORGET_AFTER = timedelta(days=2)

_identity: tuple[int, str] | None = None
_identity_lock = threading.Lock()


def process_id() -> str:
    """This process as a lease owner: ``host:pid:nonce`` (a new nonce after a fork)."""
    global _identity
    with _identity_lock:
        pid = os.getpid()
        if _identity is None or _identity[0] != pid:
            _identity = (pid, f"{socket.gethostname()[:64]}:{pid}:{uuid.uuid4().hex[:12]}")
        return _identity[1]


class ProcessHeartbeat(Base):
    """A running service or worker process, and when it last said so."""

    __tablename__ = "process_heartbeats"

    owner: Mapped[str] = mapped_column(String(120), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class Lease(Base):
    """A named lease: ``owner`` holds ``name`` until ``expires_at`` (or until it is gone)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner: Mapped[str] = mapped_column(String(120))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


def _insert(session: Session, model: type[Base]) -> object:
    if session.get_bind().dialect.name == "postgresql":
        return pg_insert(model)
    return sqlite_insert(model)


def beat(session: Session, now: datetime | None = None) -> None:
    """Record that this process is alive (insert or refresh its heartbeat row)."""
    now = now or utcnow()
    stmt = _insert(session, ProcessHeartbeat).values(  # type: ignore[attr-defined]
        owner=process_id(), started_at=now, beat_at=now
    )
    session.execute(stmt.on_conflict_do_update(index_elements=["owner"], set_={"beat_at": now}))


def _pid_gone(owner: str) -> bool:
    """Whether ``owner`` ran on this host under a process id that is not it any more."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname()[:64] or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return owner != process_id()  # our pid, an earlier life of it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive under another user
    return False


def gone_owners(session: Session, now: datetime | None = None) -> list[str]:
    """Owners whose heartbeat went stale, or whose process on this host is dead."""
    now = now or utcnow()
    rows = session.execute(select(ProcessHeartbeat.owner, ProcessHeartbeat.beat_at)).all()
    return [owner for owner, beat_at in rows if beat_at < now - STALE_AFTER or _pid_gone(owner)]


def forget_gone(session: Session, now: datetime | None = None) -> int:
    """Delete heartbeat rows of processes gone for :data:`FORGET_AFTER`."""
    now = now or utcnow()
    result = session.execute(
        delete(ProcessHeartbeat).where(ProcessHeartbeat.beat_at < now - FORGET_AFTER)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def take_lease(
    session: Session, name: str, ttl: timedelta, now: datetime | None = None
) -> str | None:
    """Take ``name`` for ``ttl`` if it is free, expired or held by an owner that is gone;
    returns the holder's token (for :func:`release_lease`), or None. Two threads of
    one process are two holders. The caller commits at once (before any network call)."""
    now = now or utcnow()
    token = f"{process_id()}/{uuid.uuid4().hex[:12]}"
    free = [Lease.expires_at <= now]
    free += [
        Lease.owner.startswith(f"{owner}/", autoescape=True) for owner in gone_owners(session, now)
    ]
    stmt = _insert(session, Lease).values(  # type: ignore[attr-defined]
        name=name, owner=token, expires_at=now + ttl
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"],
        set_={"owner": token, "expires_at": now + ttl},
        where=or_(*free),
    ).returning(Lease.name)
    return token if session.execute(stmt).first() is not None else None


def release_lease(session: Session, name: str, token: str) -> None:
    """Give ``name`` back (only if ``token`` still holds it)."""
    session.execute(delete(Lease).where(Lease.name == name, Lease.owner == token))


class Heartbeat:
    """A daemon thread writing this process's heartbeat until :meth:`stop`."""

    def __init__(self, sessions: sessionmaker[Session], every: float = HEARTBEAT_SECONDS) -> None:
        self._sessions = sessions
        self._every = every
        self._stop = threading.Event()
        self._failed = False
        self._thread = threading.Thread(target=self._run, name="dealcoach-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._beat()
        self._thread.start()
        return self

    def _beat(self) -> None:
        try:
            with session_scope(self._sessions) as session:
                beat(session)
                forget_gone(session)
        except Exception as exc:  # a missed beat is harmless; the next one follows
            quiet = is_lock_error(exc) or self._failed
            self._failed = True
            logger.log(
                logging.DEBUG if quiet else logging.WARNING, "heartbeat not written: %s", exc
            )
        else:
            self._failed = False

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._beat()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def start_heartbeat(sessions: sessionmaker[Session]) -> Callable[[], None]:
    """Start this process's heartbeat; returns the function that stops it."""
    return Heartbeat(sessions).start().stop
