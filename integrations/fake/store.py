"""The fake CRM's own state, in one SQLite file per fake CRM account.

:class:`FakeCrm` is two things over the same file:

* the **CRM side** that :class:`~integrations.fake.provider.FakeProvider` calls
  (``authorize_call``, ``refresh``, ``changes_after``, ``fetch``, ``write_notes``,
  ``find_note``, ``update_fields``): it checks the token, logs the call, fires
  any injected fault, then does the work, like a real CRM's API would;
* the **test controls** (``put_deal``, ``delete_deal``, ``notes_on``, ``calls``,
  ``expire_token``, ``revoke``, ``authorize``, ``fail_next``, ``fail_note``,
  ``pause_after_write``...), which never count as API calls.

The state lives in the file, not in the process: any number of threads and
processes may open the same path, and a process killed with ``kill -9`` loses
nothing that was committed. Every operation opens its own connection (WAL
journal, busy timeout) and runs in one transaction; writes take the write lock
up front (``BEGIN IMMEDIATE``) so concurrent writers queue instead of failing.

Deals are stored as the neutral :class:`DealSnapshot` (JSON). Every change
(``put_deal``, ``delete_deal``, ``update_fields``) takes the next value of one
modification counter, which is what incremental sync pages on (deletes stay as
tombstones so a sync reports them). Access tokens are many and stay valid
until expired, as in Salesforce and HubSpot, so workers in several processes
refreshing the same connection do not invalidate each other.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from app.coaching.snapshot import DealSnapshot
from app.deals.serialize import snapshot_from_json, snapshot_to_json
from integrations.base import (
    AuthError,
    ConnectionContext,
    InvalidRequestError,
    NoteRequest,
    NoteResult,
    NotFoundError,
    ProviderError,
    RateLimitedError,
    RetriableError,
)

__all__ = [
    "API_METHODS",
    "DEAL_ID_PATTERN",
    "FAULT_KINDS",
    "ChangeRow",
    "FakeCrm",
    "FakeNote",
    "FaultSpec",
    "fake_instance_url",
    "fault_error",
]

#: What a fake deal id looks like. Anything else is refused before the CRM is called.
DEAL_ID_PATTERN = re.compile(r"^D[0-9]{1,12}$")

#: The API methods, as counted in the call log and named by ``fail_next``.
API_METHODS = frozenset({"stages", "list", "fetch", "write", "find", "update", "refresh"})

#: Injectable failures: ``(kind,)`` or ``(kind, retry_after)`` for the retriable two.
FAULT_KINDS = frozenset(
    {"rate_limit", "server_error", "expired_token", "revoked", "not_found", "invalid"}
)
#: Failures that make sense for one note of a batch (``fail_note``).
NOTE_FAULT_KINDS = frozenset({"rate_limit", "server_error", "not_found", "invalid"})

FaultSpec = tuple[str] | tuple[str, float]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deals (
    id TEXT PRIMARY KEY,
    data TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    modseq INTEGER NOT NULL,
    modified_at TEXT NOT NULL,
    last_writer TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_deals_modseq ON deals (modseq);
CREATE TABLE IF NOT EXISTS notes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    deal_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    body_html TEXT NOT NULL,
    body_text TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_notes_deal ON notes (deal_id);
CREATE TABLE IF NOT EXISTS calls (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    method TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    valid INTEGER NOT NULL DEFAULT 1,
    issued_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS faults (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    method TEXT NOT NULL,
    spec TEXT NOT NULL,
    remaining INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS note_faults (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    match TEXT NOT NULL,
    spec TEXT NOT NULL,
    remaining INTEGER
);
"""

_BUSY_TIMEOUT_S = 30.0


def fake_instance_url(path: str | Path) -> str:
    """``fake:///absolute/path/to/crm.db``: the ``instance_url`` of a connection to ``path``."""
    return "fake://" + quote(str(Path(path).resolve()))


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _check_spec(spec: Sequence[object], allowed: frozenset[str]) -> list[object]:
    if not spec or not isinstance(spec[0], str) or spec[0] not in allowed:
        raise ValueError(f"unknown fault {spec!r}; expected one of {sorted(allowed)}")
    kind = spec[0]
    if len(spec) == 1:
        return [kind]
    if len(spec) == 2 and kind in {"rate_limit", "server_error"}:
        delay = spec[1]
        if isinstance(delay, int | float) and not isinstance(delay, bool) and delay >= 0:
            return [kind, float(delay)]
    raise ValueError(f"bad fault {spec!r}: only rate_limit/server_error take a retry_after >= 0")


def fault_error(spec: Sequence[object]) -> ProviderError:
    """The error an injected fault raises (the token faults also change the token state)."""
    kind = spec[0]
    delay = spec[1] if len(spec) > 1 else None
    retry_after = float(delay) if isinstance(delay, int | float) else None
    if kind == "rate_limit":
        return RateLimitedError("fake CRM: request limit exceeded", retry_after=retry_after)
    if kind == "server_error":
        return RetriableError("fake CRM: internal server error", retry_after=retry_after)
    if kind == "expired_token":
        return AuthError("fake CRM: access token expired", refreshable=True)
    if kind == "revoked":
        return AuthError("fake CRM: access revoked", refreshable=False)
    if kind == "not_found":
        return NotFoundError("fake CRM: record not found")
    if kind == "invalid":
        return InvalidRequestError("fake CRM: request rejected as invalid")
    raise ValueError(f"unknown fault {spec!r}")


@dataclass(frozen=True, slots=True)
class FakeNote:
    """A note as the fake CRM holds it."""

    id: str
    deal_id: str
    kind: str
    title: str
    html: str
    text: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ChangeRow:
    """One row of the change feed: a deal (``deal`` set) or a tombstone (``deal`` None)."""

    deal_id: str
    modseq: int
    deal: DealSnapshot | None


class FakeCrm:
    """One fake CRM account in the SQLite file at ``path`` (created when missing).

    ``account_id`` is stored on creation and fixed afterwards (it is the
    connection's ``external_account_id``). Use :meth:`open` to refuse a path
    that holds no fake CRM yet.
    """

    def __init__(self, path: str | Path, account_id: str = "fake-account") -> None:
        self.path = Path(path).resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
        with self._write() as conn:
            conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
        with self._write() as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT value FROM meta WHERE key = 'account_id'").fetchone()
            if row is None:
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("account_id", account_id),
                        ("modseq", "0"),
                        ("next_deal", "1"),
                        ("next_note", "1"),
                        ("pause_after_write", "0"),
                    ],
                )
                self._issue(conn, "refresh")
                self._issue(conn, "access")
                self.account_id = account_id
            else:
                self.account_id = str(row[0])
            conn.execute("COMMIT")

    @classmethod
    def open(cls, path: str | Path) -> FakeCrm:
        """The fake CRM already at ``path``; :class:`FileNotFoundError` when there is none."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"no fake CRM at {path}")
        return cls(path)

    # ------------------------------------------------------------ plumbing

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA synchronous=NORMAL")  # durable against a killed process in WAL
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A connection; the caller issues ``BEGIN IMMEDIATE`` and ``COMMIT``; any
        exception rolls back what is uncommitted."""
        conn = self._connect()
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.rollback()
            conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed when the block ends without an exception."""
        with self._write() as conn:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent read (one deferred transaction)."""
        with self._write() as conn:
            conn.execute("BEGIN")
            yield conn

    @staticmethod
    def _next(conn: sqlite3.Connection, key: str) -> int:
        value = int(conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (str(value + 1), key))
        return value

    def _issue(self, conn: sqlite3.Connection, kind: Literal["access", "refresh"]) -> str:
        prefix = "fat_" if kind == "access" else "frt_"
        token = prefix + secrets.token_urlsafe(24)
        seq = conn.execute("SELECT COUNT(*) FROM tokens").fetchone()[0]
        conn.execute(
            "INSERT INTO tokens (token, type, valid, issued_seq) VALUES (?, ?, 1, ?)",
            (token, kind, seq),
        )
        return token

    @staticmethod
    def _token_valid(conn: sqlite3.Connection, kind: str, token: object) -> bool:
        if not isinstance(token, str) or not token:
            return False
        row = conn.execute(
            "SELECT 1 FROM tokens WHERE token = ? AND type = ? AND valid = 1", (token, kind)
        ).fetchone()
        return row is not None

    @staticmethod
    def _bump(conn: sqlite3.Connection) -> int:
        value = int(conn.execute("SELECT value FROM meta WHERE key = 'modseq'").fetchone()[0]) + 1
        conn.execute("UPDATE meta SET value = ? WHERE key = 'modseq'", (str(value),))
        return value

    def _pause(self) -> None:
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'pause_after_write'").fetchone()
        seconds = float(row[0])
        if seconds > 0:
            time.sleep(seconds)

    # ------------------------------------------------------------ test controls: deals

    @property
    def instance_url(self) -> str:
        return fake_instance_url(self.path)

    def credentials(self) -> dict[str, str]:
        """The newest valid access token and refresh token (what an OAuth grant returned)."""
        with self._read() as conn:
            tokens = {}
            for kind in ("access", "refresh"):
                row = conn.execute(
                    "SELECT token FROM tokens WHERE type = ? AND valid = 1 "
                    "ORDER BY issued_seq DESC LIMIT 1",
                    (kind,),
                ).fetchone()
                tokens[f"{kind}_token"] = "" if row is None else str(row[0])
        return tokens

    def context(
        self,
        connection_id: str = "conn-fake",
        settings: Mapping[str, Any] | None = None,
        credentials: Mapping[str, Any] | None = None,
    ) -> ConnectionContext:
        """A :class:`ConnectionContext` for this account (current credentials by default)."""
        return ConnectionContext(
            connection_id=connection_id,
            provider="fake",
            external_account_id=self.account_id,
            instance_url=self.instance_url,
            credentials=dict(self.credentials() if credentials is None else credentials),
            settings=dict(settings or {}),
        )

    def new_deal_id(self) -> str:
        """A fresh deal id (``D1``, ``D2``... never reused)."""
        with self._tx() as conn:
            return f"D{self._next(conn, 'next_deal')}"

    def put_deal(self, deal: DealSnapshot, writer: str = "user") -> int:
        """Create or replace a deal (as a CRM user would); returns its modification counter."""
        if not DEAL_ID_PATTERN.match(deal.id):
            raise ValueError(f"fake deal ids look like D123, not {deal.id!r}")
        data = json.dumps(snapshot_to_json(deal), sort_keys=True)
        with self._tx() as conn:
            modseq = self._bump(conn)
            conn.execute(
                "INSERT INTO deals (id, data, deleted, modseq, modified_at, last_writer) "
                "VALUES (?, ?, 0, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET data = excluded.data, "
                "deleted = 0, modseq = excluded.modseq, modified_at = excluded.modified_at, "
                "last_writer = excluded.last_writer",
                (deal.id, data, modseq, _now(), writer),
            )
            number = int(deal.id[1:])
            conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'next_deal' AND CAST(value AS INTEGER) <= ?",
                (str(number + 1), number),
            )
        return modseq

    def delete_deal(self, deal_id: str, writer: str = "user") -> int:
        """Delete a deal (it stays as a tombstone for sync); notes go with it."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT 1 FROM deals WHERE id = ? AND deleted = 0", (deal_id,)
            ).fetchone()
            if row is None:
                raise KeyError(deal_id)
            modseq = self._bump(conn)
            conn.execute(
                "UPDATE deals SET deleted = 1, data = NULL, modseq = ?, modified_at = ?, "
                "last_writer = ? WHERE id = ?",
                (modseq, _now(), writer, deal_id),
            )
            conn.execute("DELETE FROM notes WHERE deal_id = ?", (deal_id,))
        return modseq

    def get_deal(self, deal_id: str) -> DealSnapshot | None:
        """The deal as stored (None when missing or deleted). Not an API call."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT data FROM deals WHERE id = ? AND deleted = 0", (deal_id,)
            ).fetchone()
        return None if row is None else snapshot_from_json(json.loads(row[0]))

    def deal_ids(self) -> list[str]:
        """Live deal ids, in modification order."""
        with self._read() as conn:
            rows = conn.execute("SELECT id FROM deals WHERE deleted = 0 ORDER BY modseq").fetchall()
        return [str(row[0]) for row in rows]

    def last_writer(self, deal_id: str) -> str | None:
        """Who changed the deal last: ``"user"`` (put_deal), ``"dealcoach"`` (update_summary)."""
        with self._read() as conn:
            row = conn.execute("SELECT last_writer FROM deals WHERE id = ?", (deal_id,)).fetchone()
        return None if row is None else str(row[0])

    def modification_counter(self) -> int:
        """The newest modification counter (a sync watermark, as an int)."""
        with self._read() as conn:
            return int(conn.execute("SELECT value FROM meta WHERE key = 'modseq'").fetchone()[0])

    # ------------------------------------------------------------ test controls: notes, calls

    def notes_on(self, deal_id: str) -> list[FakeNote]:
        """The notes on a deal, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, deal_id, kind, title, body_html, body_text, created_at FROM notes "
                "WHERE deal_id = ? ORDER BY seq",
                (deal_id,),
            ).fetchall()
        return [
            FakeNote(
                id=row[0],
                deal_id=row[1],
                kind=row[2],
                title=row[3],
                html=row[4],
                text=row[5],
                created_at=datetime.fromisoformat(row[6]),
            )
            for row in rows
        ]

    def note_count(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM notes").fetchone()[0])

    def calls(self, method: str | None = None) -> int:
        """API calls received (all, or of one method: ``fetch``, ``list``, ``write``...)."""
        with self._read() as conn:
            if method is None:
                return int(conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])
            row = conn.execute("SELECT COUNT(*) FROM calls WHERE method = ?", (method,))
            return int(row.fetchone()[0])

    def call_log(self) -> list[str]:
        """The methods of all API calls, oldest first."""
        with self._read() as conn:
            rows = conn.execute("SELECT method FROM calls ORDER BY seq").fetchall()
        return [str(row[0]) for row in rows]

    def set_daily_limit(self, limit: int | None) -> None:
        """Report a daily API allowance of ``limit`` calls (None: report none)."""
        with self._tx() as conn:
            conn.execute("DELETE FROM meta WHERE key = 'daily_limit'")
            if limit is not None:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('daily_limit', ?)", (str(int(limit)),)
                )

    def daily_usage(self) -> tuple[int, int] | None:
        """(calls so far, the daily allowance) when an allowance is set."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'daily_limit'").fetchone()
            if row is None:
                return None
            used = int(conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])
        return used, int(row[0])

    def reset_calls(self) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM calls")

    # ------------------------------------------------------------ test controls: auth, faults

    def expire_token(self) -> None:
        """Every access token expires: calls fail with a refreshable AuthError until a refresh."""
        with self._tx() as conn:
            conn.execute("UPDATE tokens SET valid = 0 WHERE type = 'access'")

    def revoke(self) -> None:
        """The admin revoked the app: every token is dead, refresh fails (re-authorise)."""
        with self._tx() as conn:
            conn.execute("UPDATE tokens SET valid = 0")

    def authorize(self) -> dict[str, str]:
        """A new OAuth grant (an admin re-authorised): new access and refresh tokens."""
        with self._tx() as conn:
            refresh = self._issue(conn, "refresh")
            access = self._issue(conn, "access")
        return {"access_token": access, "refresh_token": refresh}

    def fail_next(self, method: str, error: Sequence[object], times: int = 1) -> None:
        """The next ``times`` calls of ``method`` (``"*"``: any method) fail with ``error``:
        ``("rate_limit", retry_after)``, ``("server_error",)``, ``("expired_token",)``
        (expires the access tokens), ``("revoked",)`` (revokes every token),
        ``("not_found",)`` or ``("invalid",)``. Faults fire after the token check."""
        if method != "*" and method not in API_METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {sorted(API_METHODS)}")
        if times < 1:
            raise ValueError("times must be at least 1")
        spec = _check_spec(error, FAULT_KINDS)
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO faults (method, spec, remaining) VALUES (?, ?, ?)",
                (method, json.dumps(spec), times),
            )

    def fail_note(self, match: str, error: Sequence[object], times: int | None = 1) -> None:
        """In ``write_notes``, the next ``times`` notes (None: all) whose marker or deal id
        is ``match`` fail with ``error`` in their result; the rest of the batch is written."""
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for always)")
        spec = _check_spec(error, NOTE_FAULT_KINDS)
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO note_faults (match, spec, remaining) VALUES (?, ?, ?)",
                (match, json.dumps(spec), times),
            )

    def clear_faults(self) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM faults")
            conn.execute("DELETE FROM note_faults")

    def pause_after_write(self, seconds: float) -> None:
        """Writes (notes, summary fields) commit, then sleep ``seconds`` before returning
        (0 turns it off): the window where the CRM has the write and the caller does not."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        with self._tx() as conn:
            conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'pause_after_write'", (str(float(seconds)),)
            )

    # ------------------------------------------------------------ CRM side (the provider's API)

    def _gate(
        self, conn: sqlite3.Connection, method: str, credentials: Mapping[str, Any]
    ) -> ProviderError | None:
        """Log the call, check the access token, fire a pending fault (inside ``conn``'s tx)."""
        conn.execute("INSERT INTO calls (method, at) VALUES (?, ?)", (method, _now()))
        if method == "refresh":
            if not self._token_valid(conn, "refresh", credentials.get("refresh_token")):
                return AuthError("fake CRM: refresh token invalid or revoked", refreshable=False)
        elif not self._token_valid(conn, "access", credentials.get("access_token")):
            refreshable = self._token_valid(conn, "refresh", credentials.get("refresh_token"))
            return AuthError("fake CRM: access token invalid or expired", refreshable=refreshable)
        row = conn.execute(
            "SELECT seq, spec, remaining FROM faults WHERE method IN (?, '*') ORDER BY seq LIMIT 1",
            (method,),
        ).fetchone()
        if row is None:
            return None
        seq, spec_json, remaining = row
        if remaining <= 1:
            conn.execute("DELETE FROM faults WHERE seq = ?", (seq,))
        else:
            conn.execute("UPDATE faults SET remaining = remaining - 1 WHERE seq = ?", (seq,))
        spec = json.loads(spec_json)
        if spec[0] == "expired_token":
            conn.execute("UPDATE tokens SET valid = 0 WHERE type = 'access'")
        elif spec[0] == "revoked":
            conn.execute("UPDATE tokens SET valid = 0")
        return fault_error(spec)

    def authorize_call(self, method: str, credentials: Mapping[str, Any]) -> None:
        """One API call that needs no data (``stages``): log, check, fire faults."""
        with self._tx() as conn:
            error = self._gate(conn, method, credentials)
        if error is not None:
            raise error

    def refresh(self, credentials: Mapping[str, Any]) -> dict[str, str]:
        """Exchange the refresh token for a new access token (the refresh token is kept)."""
        with self._tx() as conn:
            error = self._gate(conn, "refresh", credentials)
            access = None if error is not None else self._issue(conn, "access")
        if error is not None:
            raise error
        assert access is not None
        return {"access_token": access, "refresh_token": str(credentials["refresh_token"])}

    def changes_after(
        self, modseq: int, limit: int, credentials: Mapping[str, Any]
    ) -> list[ChangeRow]:
        """Up to ``limit`` changes (deals and tombstones) after ``modseq``, oldest first."""
        with self._tx() as conn:
            error = self._gate(conn, "list", credentials)
            rows = (
                []
                if error is not None
                else conn.execute(
                    "SELECT id, modseq, deleted, data FROM deals WHERE modseq > ? "
                    "ORDER BY modseq LIMIT ?",
                    (modseq, limit),
                ).fetchall()
            )
        if error is not None:
            raise error
        return [
            ChangeRow(
                deal_id=row[0],
                modseq=row[1],
                deal=None if row[2] else snapshot_from_json(json.loads(row[3])),
            )
            for row in rows
        ]

    def fetch(self, deal_id: str, credentials: Mapping[str, Any]) -> DealSnapshot:
        with self._tx() as conn:
            error = self._gate(conn, "fetch", credentials)
            row = (
                None
                if error is not None
                else conn.execute(
                    "SELECT data FROM deals WHERE id = ? AND deleted = 0", (deal_id,)
                ).fetchone()
            )
        if error is not None:
            raise error
        if row is None:
            raise NotFoundError(f"fake CRM: no deal {deal_id}")
        return snapshot_from_json(json.loads(row[0]))

    def _note_fault(self, conn: sqlite3.Connection, note: NoteRequest) -> ProviderError | None:
        row = conn.execute(
            "SELECT seq, spec, remaining FROM note_faults WHERE match IN (?, ?) "
            "ORDER BY seq LIMIT 1",
            (note.marker, note.deal_id),
        ).fetchone()
        if row is None:
            return None
        seq, spec_json, remaining = row
        if remaining is not None and remaining <= 1:
            conn.execute("DELETE FROM note_faults WHERE seq = ?", (seq,))
        elif remaining is not None:
            conn.execute("UPDATE note_faults SET remaining = remaining - 1 WHERE seq = ?", (seq,))
        return fault_error(json.loads(spec_json))

    def write_notes(
        self, notes: Sequence[NoteRequest], credentials: Mapping[str, Any]
    ) -> list[NoteResult]:
        """One batch call: each note is written or gets its own error; one transaction."""
        results: list[NoteResult] = []
        with self._tx() as conn:
            error = self._gate(conn, "write", credentials)
            if error is None:
                for note in notes:
                    results.append(self._write_note(conn, note))
        if error is not None:
            raise error
        self._pause()
        return results

    def _write_note(self, conn: sqlite3.Connection, note: NoteRequest) -> NoteResult:
        if not DEAL_ID_PATTERN.match(note.deal_id):
            return NoteResult(note.marker, error=InvalidRequestError("malformed deal id"))
        if not note.marker.strip() or note.marker not in note.html:
            return NoteResult(
                note.marker, error=InvalidRequestError("the note body must carry its marker")
            )
        injected = self._note_fault(conn, note)
        if injected is not None:
            return NoteResult(note.marker, error=injected)
        live = conn.execute(
            "SELECT 1 FROM deals WHERE id = ? AND deleted = 0", (note.deal_id,)
        ).fetchone()
        if live is None:
            return NoteResult(note.marker, error=NotFoundError(f"no deal {note.deal_id}"))
        note_id = f"N{self._next(conn, 'next_note')}"
        conn.execute(
            "INSERT INTO notes (id, deal_id, kind, title, body_html, body_text, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (note_id, note.deal_id, note.kind, note.title, note.html, note.text, _now()),
        )
        return NoteResult(note.marker, external_id=note_id)

    def find_note(self, deal_id: str, marker: str, credentials: Mapping[str, Any]) -> str | None:
        """The oldest note on the deal whose HTML body contains ``marker`` (a body search,
        as a real adapter does it: the CRM has no marker field)."""
        with self._tx() as conn:
            error = self._gate(conn, "find", credentials)
            row = (
                None
                if error is not None
                else conn.execute(
                    "SELECT id FROM notes WHERE deal_id = ? AND instr(body_html, ?) > 0 "
                    "ORDER BY seq LIMIT 1",
                    (deal_id, marker),
                ).fetchone()
            )
        if error is not None:
            raise error
        return None if row is None else str(row[0])

    def update_fields(
        self, deal_id: str, fields: Mapping[str, str], credentials: Mapping[str, Any]
    ) -> None:
        """Merge ``fields`` into the deal's fields, as ``dealcoach``: a modification like any
        other (it shows in the next sync), with ``last_writer`` ``"dealcoach"``."""
        with self._tx() as conn:
            error = self._gate(conn, "update", credentials)
            row = (
                None
                if error is not None
                else conn.execute(
                    "SELECT data FROM deals WHERE id = ? AND deleted = 0", (deal_id,)
                ).fetchone()
            )
            if error is None and row is not None:
                data = json.loads(row[0])
                data["fields"] = {**data.get("fields", {}), **fields}
                conn.execute(
                    "UPDATE deals SET data = ?, modseq = ?, modified_at = ?, "
                    "last_writer = 'dealcoach' WHERE id = ?",
                    (json.dumps(data, sort_keys=True), self._bump(conn), _now(), deal_id),
                )
        if error is not None:
            raise error
        if row is None:
            raise NotFoundError(f"fake CRM: no deal {deal_id}")
        self._pause()
