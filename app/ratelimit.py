"""Per-connection rate limits shared by every process, kept on the task queue's backend.

Two tools, keyed by connection id:

- a **pause**: "make no call to this connection for N seconds" (a CRM's
  ``Retry-After`` or ``REQUEST_LIMIT_EXCEEDED``). :meth:`ConnectionLimiter.pause`
  keeps the later of the stored deadline and the new one; ``paused_for`` says how
  long is left.
- a **fixed window**: at most ``limit`` calls per ``per_seconds`` window
  (:meth:`ConnectionLimiter.acquire` returns 0 when a call may go, else the seconds
  to wait).

The state lives in the queue's storage (Huey's key-value and counter API), so an
API replica, the embedded worker and every ``dealcoach worker`` see the same
limits. Deadlines and windows are wall-clock UTC seconds: the machines' clocks
must agree (NTP); skew shifts a pause or a window by the skew.

Atomicity, backend by backend
-----------------------------
``pause`` is a keep-the-maximum write, atomic on every backend, so a pause is
never shortened or lost by a concurrent one:

- Redis: a Lua script (``HGET``, compare, ``HSET``) on the Huey hash, run atomically
  by the server.
- PostgreSQL: one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE stored < new`` on
  Huey's ``huey_kv`` table (the conflicting row is locked and re-checked).
- SQLite: the same upsert inside ``BEGIN EXCLUSIVE`` (the file lock serialises every
  process on the machine).
- Huey's in-memory storage (immediate mode, tests): a process lock.

Pause entries are never deleted: deleting an expired one could race with a new
pause and lose it. They are one small row (hash field) per connection.

``acquire`` counts with Huey's ``storage.incr``, an atomic increment on every
backend (Redis ``HINCRBY``; an upsert ``RETURNING`` on PostgreSQL; an upsert in an
exclusive transaction on SQLite), so no more than ``limit`` calls are admitted per
window across all processes. Known looseness, by design of a fixed window: up to
``2 x limit`` calls can pass around a window boundary; refused attempts are
counted too (they never admit extra calls); and ``acquire`` checks the pause
before counting, so a call that races a brand-new pause by milliseconds may still
go out (the CRM answers it with another ``Retry-After``, which is paused again).
A window's counter is deleted when the next window's first call arrives.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from huey.api import Huey
from huey.constants import EmptyData
from huey.storage import MemoryStorage, PostgresStorage, RedisStorage, SqliteStorage

from app.jobs import get_huey

__all__ = ["ConnectionLimiter", "acquire", "limiter", "pause", "paused_for"]

logger = logging.getLogger(__name__)

_PAUSE_KEY = "dealcoach.pause.{}"
_WINDOW_KEY = "dealcoach.window.{}.{}.{}"

_REDIS_KEEP_LATER = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if (not current) or (tonumber(current) < tonumber(ARGV[2])) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 1
"""

_SQLITE_KEEP_LATER = (
    "insert into kv (queue, key, value) values (?, ?, ?) "
    "on conflict (queue, key) do update set value = excluded.value "
    "where cast(kv.value as real) < cast(excluded.value as real)"
)

_POSTGRES_KEEP_LATER = (
    "insert into {table} as kv (queue, key, value) values (%s, %s, %s) "
    "on conflict (queue, key) do update set value = excluded.value "
    "where convert_from(kv.value, 'UTF8')::double precision "
    "< convert_from(excluded.value, 'UTF8')::double precision"
)

_memory_lock = threading.Lock()


def _encode(deadline: float) -> bytes:
    return repr(deadline).encode("ascii")


def _decode(value: object) -> float | None:
    if value is EmptyData or value is None:
        return None
    try:
        raw = bytes(value) if isinstance(value, bytes | bytearray | memoryview) else value
        return float(raw.decode("ascii") if isinstance(raw, bytes) else str(raw))
    except (TypeError, ValueError, UnicodeDecodeError):
        logger.warning("unreadable pause deadline %r ignored", value)
        return None


def _keep_later(storage: object, key: str, deadline: float) -> None:
    """Store ``deadline`` under ``key`` unless a later one is stored (atomically)."""
    value = _encode(deadline)
    if isinstance(storage, RedisStorage):
        storage.conn.eval(_REDIS_KEEP_LATER, 1, storage.result_key, key, value)
    elif isinstance(storage, PostgresStorage):
        storage.sql(_POSTGRES_KEEP_LATER.format(table=storage.table_kv), (storage.name, key, value))
    elif isinstance(storage, SqliteStorage):
        storage.sql(_SQLITE_KEEP_LATER, (storage.name, key, value), commit=True)
    elif isinstance(storage, MemoryStorage):
        with _memory_lock:
            stored = _decode(storage.peek_data(key))
            if stored is None or stored < deadline:
                storage.put_data(key, value)
    else:
        raise TypeError(f"no atomic pause for queue storage {type(storage).__name__}")


class ConnectionLimiter:
    """Pauses and fixed-window limits per connection, on ``huey``'s storage."""

    def __init__(self, huey: Huey, clock: Callable[[], float] = time.time) -> None:
        self.huey = huey
        self.clock = clock

    def pause(self, connection_id: str, seconds: float) -> float:
        """Make no call on ``connection_id`` for ``seconds`` (an earlier pause is
        extended, a later one kept); return the seconds now left on the pause."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"pause seconds must be finite and >= 0, got {seconds!r}")
        if seconds > 0:
            key = _PAUSE_KEY.format(connection_id)
            _keep_later(self.huey.storage, key, self.clock() + seconds)
        return self.paused_for(connection_id)

    def paused_for(self, connection_id: str) -> float:
        """Seconds left on ``connection_id``'s pause; 0 when it is not paused."""
        deadline = _decode(self.huey.storage.peek_data(_PAUSE_KEY.format(connection_id)))
        if deadline is None:
            return 0.0
        return max(0.0, deadline - self.clock())

    def acquire(self, connection_id: str, limit: int, per_seconds: float) -> float:
        """Take one call from ``connection_id``'s allowance of ``limit`` per ``per_seconds``.

        Returns 0.0 when the call may go now; otherwise the seconds to wait (the
        pause left, or the time to the next window) and the call must not go.
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        if not math.isfinite(per_seconds) or per_seconds <= 0:
            raise ValueError(f"per_seconds must be finite and > 0, got {per_seconds!r}")
        paused = self.paused_for(connection_id)
        if paused > 0:
            return paused
        now = self.clock()
        window = math.floor(now / per_seconds)
        storage = self.huey.storage
        count = int(storage.incr(_WINDOW_KEY.format(connection_id, per_seconds, window)))
        if count == 1:
            storage.delete_counter(_WINDOW_KEY.format(connection_id, per_seconds, window - 1))
        if count <= limit:
            return 0.0
        return max((window + 1) * per_seconds - now, 1e-3)


def limiter() -> ConnectionLimiter:
    """A limiter on the current queue (:func:`app.jobs.get_huey`)."""
    return ConnectionLimiter(get_huey())


def pause(connection_id: str, seconds: float) -> float:
    """:meth:`ConnectionLimiter.pause` on the current queue."""
    return limiter().pause(connection_id, seconds)


def paused_for(connection_id: str) -> float:
    """:meth:`ConnectionLimiter.paused_for` on the current queue."""
    return limiter().paused_for(connection_id)


def acquire(connection_id: str, limit: int, per_seconds: float) -> float:
    """:meth:`ConnectionLimiter.acquire` on the current queue."""
    return limiter().acquire(connection_id, limit, per_seconds)
