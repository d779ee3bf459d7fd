"""The emulator: a TLS HTTP server speaking Salesforce's REST wire format.

See the package docstring for the endpoints, page sizes and limits.
"""

from __future__ import annotations

import contextlib
import json
import queue
import random
import re
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import soql
from .auth import Auth, ConnectedApp, OAuthError, Session
from .bulk import BulkJobs
from .org import DEFAULT_STAGES, Org, StageDef
from .outbound import MAX_NOTIFICATIONS, Delivery, build_envelope, deliver
from .schema import (
    DEFAULT_CUSTOM_FIELDS,
    DEFAULT_OPTIONAL_FIELDS,
    DEFAULT_TRACKED_FIELDS,
    CustomField,
)
from .seed import OWNERS, seed_opportunities
from .tls import write_self_signed
from .values import ApiError, IdFactory, format_datetime, is_record_id, parse_datetime, to18

__all__ = ["DEFAULT_ORG_ID", "SalesforceEmulator"]

DEFAULT_ORG_ID = to18("00DEm0000000Dc1")
API_VERSION = "59.0"
#: Versions the emulator answers (``/services/data/vNN.0``).
MIN_VERSION, MAX_VERSION = 31, 62
PAGE_SIZE = 2000
SUBQUERY_PAGE_SIZE = 200
#: Salesforce answers 414 to a request URI longer than this (a long ``q=``).
MAX_URI = 16384
MAX_COMPOSITE_RECORDS = 200
MAX_COMPOSITE_SUBREQUESTS = 25
CURSOR_IDLE_SECONDS = 15 * 60
MAX_CURSORS_PER_USER = 10
_VERSION_PATH = re.compile(r"^/services/data/v(\d{2})\.(\d)(?:/(.*))?$")
_REFERENCE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")
_JSON = "application/json;charset=UTF-8"


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str = _JSON
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> _Response:
        return cls(status, json.dumps(payload).encode("utf-8"), _JSON, dict(headers or {}))

    @classmethod
    def error(cls, error: ApiError) -> _Response:
        return cls.json(error.status, error.body())


@dataclass
class _Cursor:
    rows: list[dict[str, Any]]
    total: int
    page_size: int
    endpoint: str
    user_id: str
    last_used: float


@dataclass
class _Faults:
    rate_limit: int = 0  # next N API calls: 403 REQUEST_LIMIT_EXCEEDED
    errors: int = 0  # next N API calls: a 5xx
    error_status: int = 500
    delay: float = 0.0
    delay_count: int | None = None  # None: every request
    concurrency_limit: int | None = None


_NOT_FOUND = "The requested resource does not exist"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], emulator: SalesforceEmulator, context: ssl.SSLContext
    ) -> None:
        self.emulator = emulator
        self.context = context
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        raw: socket.socket = request
        raw.settimeout(30)
        try:
            tls = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            with contextlib.suppress(OSError):
                raw.close()
            return
        with self.sockets_lock:
            self.open_sockets.add(tls)
        try:
            _Handler(tls, client_address, self)
        except (ssl.SSLError, OSError):
            pass
        finally:
            with self.sockets_lock:
                self.open_sockets.discard(tls)
            with contextlib.suppress(OSError):
                tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that goes away is not the emulator's problem

    def close_connections(self) -> None:
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "SFDC"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.emulator.verbose:
            super().log_message(format, *args)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self, method: str) -> None:
        body = self._body()
        headers = {key.lower(): value for key, value in self.headers.items()}
        response = self.server.emulator.handle(method, self.path, headers, body)
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, value)
        if response.status != 204:
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.status != 204 and response.body:
            self.wfile.write(response.body)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PUT(self) -> None:
        self._serve("PUT")


class SalesforceEmulator:
    """A stateful Salesforce org behind https, for the unchanged simple-salesforce client.

    ``state_dir`` keeps the certificate and (on :meth:`stop` / :meth:`save`) the org's
    state, reloaded by the next emulator on the same directory; without it a
    temporary directory is used and removed on :meth:`stop`. ``seed`` seeds the
    random generator of :meth:`seed`.
    """

    #: The API user every token is issued for unless another username is given.
    USERNAME = "integration@dealcoach.example"
    PASSWORD = "emulator-password"  # noqa: S105 - the emulator's well-known test login
    SECURITY_TOKEN = "EMUTOKEN42"  # noqa: S105
    #: The registered connected app.
    CLIENT_ID = "3MVG9dealcoach.emulator.client"
    CLIENT_SECRET = "emulator-client-secret"  # noqa: S105

    def __init__(
        self,
        state_dir: str | Path | None = None,
        org_id: str = DEFAULT_ORG_ID,
        seed: int = 1,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_version: str = API_VERSION,
        stages: Sequence[StageDef] = DEFAULT_STAGES,
        optional_fields: Iterable[str] = DEFAULT_OPTIONAL_FIELDS,
        custom_fields: Iterable[CustomField] = DEFAULT_CUSTOM_FIELDS,
        tracked_fields: Iterable[str] = DEFAULT_TRACKED_FIELDS,
        history_since: datetime | None = None,
        daily_limit: int = 15000,
        page_size: int = PAGE_SIZE,
        subquery_page_size: int = SUBQUERY_PAGE_SIZE,
        child_page_size: int | None = None,
        session_ttl: float | None = None,
        clock: Callable[[], datetime] | None = None,
        verbose: bool = False,
    ) -> None:
        self.host = host
        self.api_version = api_version
        self.requested_port = port
        self.verbose = verbose
        self.page_size = page_size
        self.subquery_page_size = subquery_page_size
        self.child_page_size = child_page_size
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
        self._lock = threading.RLock()
        self._own_dir = state_dir is None
        self.state_dir = (
            Path(state_dir)
            if state_dir is not None
            else Path(tempfile.mkdtemp(prefix="sf-emulator-"))
        )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.cert_path: Path | None = None
        self.key_path: Path | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None
        self.faults = _Faults()
        self.calls: dict[str, int] = {}
        self.api_used = 0
        self.daily_limit = daily_limit
        self._in_flight = 0
        self._cursors: dict[str, _Cursor] = {}
        self._cursor_ids = IdFactory()
        self._misc_ids = IdFactory()
        self.bulk = BulkJobs(self.clock)
        self.outbound_url: str | None = None
        self.outbound_fields: tuple[str, ...] = _OUTBOUND_FIELDS
        self.outbound_verify: bool | str = True
        self.outbound_attempts = 5
        self.outbound_backoff = 0.05
        self.deliveries: list[Delivery] = []
        self._outbound_queue: queue.Queue[str | None] = queue.Queue()
        self._outbound_thread: threading.Thread | None = None
        self.action_id = to18("04kEm0000000001")
        state_file = self.state_dir / "state.json"
        if state_file.exists():
            data = json.loads(state_file.read_text("utf-8"))
            self.org = Org.load(data["org"], clock=self.clock)
            self.auth = Auth(self.org.org_id, self.clock)
            self.auth.load(data["auth"])
            self.owner_ids: list[str] = list(data["owner_ids"])
            self.user_id: str = data["user_id"]
            self._seeded = int(data.get("seeded", 0))
            self.api_used = int(data.get("api_used", 0))
        else:
            self.org = Org(
                org_id,
                stages=stages,
                optional_fields=optional_fields,
                custom_fields=custom_fields,
                tracked_fields=tracked_fields,
                history_since=history_since,
                clock=self.clock,
            )
            self.auth = Auth(self.org.org_id, self.clock)
            self.user_id = self.add_user(
                "Dealcoach", "Integration", self.USERNAME, self.PASSWORD, self.SECURITY_TOKEN
            )
            self.owner_ids = [
                self.add_user(first, last, username) for first, last, username in OWNERS
            ]
            self.auth.add_app(ConnectedApp(self.CLIENT_ID, self.CLIENT_SECRET, run_as=self.user_id))
            self._seeded = 0
        self.org.on_stage_change = self._stage_changed
        self.auth.session_ttl = session_ttl

    # ================================================================== lifecycle

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the emulator is not started")
        return f"https://{self.host}:{self.port}"

    @property
    def instance_url(self) -> str:
        return self.base_url

    def start(self) -> str:
        """Generate the certificate, start serving; the base URL (``https://127.0.0.1:N``)."""
        if self._server is not None:
            return self.base_url
        self.cert_path, self.key_path = write_self_signed(self.state_dir, (self.host,))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        self._server = _Server((self.host, self.requested_port), self, context)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="salesforce-emulator",
            daemon=True,
        )
        self._thread.start()
        self._outbound_thread = threading.Thread(
            target=self._outbound_worker, name="salesforce-emulator-outbound", daemon=True
        )
        self._outbound_thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving; save the state when a ``state_dir`` was given, else clean up."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.close_connections()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._outbound_thread is not None:
            self._outbound_queue.put(None)
            self._outbound_thread.join(timeout=5)
            self._outbound_thread = None
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        else:
            self.save()

    def __enter__(self) -> SalesforceEmulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def save(self) -> Path:
        """Write the org, users, apps and sessions to ``state_dir/state.json``."""
        with self._lock:
            data = {
                "org": self.org.dump(),
                "auth": self.auth.dump(),
                "owner_ids": self.owner_ids,
                "user_id": self.user_id,
                "seeded": self._seeded,
                "api_used": self.api_used,
            }
            path = self.state_dir / "state.json"
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(data), "utf-8")
            temporary.replace(path)
            return path

    # ================================================================== data (Python API)

    def add_user(
        self,
        first_name: str,
        last_name: str,
        username: str,
        password: str | None = None,
        security_token: str = "",
    ) -> str:
        """A User record (and its login, when ``password`` is given); its id."""
        with self._lock:
            stamp = format_datetime(self.org.now())
            user_id = self.org.ids.next("005")
            self.org.tables["User"][user_id] = {
                "Id": user_id,
                "Username": username,
                "Name": f"{first_name} {last_name}",
                "FirstName": first_name,
                "LastName": last_name,
                "Email": username,
                "IsActive": True,
                "Title": None,
                "IsDeleted": False,
                "CreatedDate": stamp,
                "CreatedById": None,
                "LastModifiedDate": stamp,
                "LastModifiedById": None,
                "SystemModstamp": stamp,
            }
            self.org.where[user_id[:15]] = "User"
            self.auth.add_user(user_id, username, password, security_token)
            return user_id

    def seed(self, n: int, *, as_of: datetime | None = None) -> list[str]:
        """Create ``n`` realistic opportunities (deterministic for a seed and ``as_of``)."""
        with self._lock:
            moment = as_of or self.clock()
            ids = seed_opportunities(
                self.org,
                n,
                owner_ids=self.owner_ids,
                as_of=moment,
                rng=self._rng,
                start=self._seeded,
            )
            self._seeded += n
            return ids

    def create(
        self,
        sobject: str,
        values: Mapping[str, Any],
        *,
        user_id: str | None = None,
        at: datetime | None = None,
    ) -> str:
        """Create a record as a user would in the UI (history, side effects); its id."""
        with self._lock:
            return self.org.create(sobject, values, user_id or self.owner_ids[0], at)

    def update(
        self,
        sobject: str,
        record_id: str,
        values: Mapping[str, Any],
        *,
        user_id: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Change a record as a user would in the UI (history, outbound messages)."""
        with self._lock:
            found = self.org.lookup(record_id)
            owner = found[1].get("OwnerId") if found else None
            self.org.update(sobject, record_id, values, user_id or owner or self.user_id, at)

    def delete(self, sobject: str, record_id: str, *, at: datetime | None = None) -> None:
        with self._lock:
            self.org.delete(sobject, record_id, at)

    def record(self, record_id: str) -> dict[str, Any] | None:
        """A copy of a stored record (all fields), deleted ones included."""
        with self._lock:
            found = self.org.lookup(record_id)
            return None if found is None else dict(found[1])

    def records(self, sobject: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            definition = self.org.sobject(sobject)
            if definition is None:
                raise KeyError(sobject)
            return [dict(row) for row in self.org.records(definition.name, include_deleted)]

    def note_body(self, note_id: str) -> str | None:
        """The stored (sanitised) HTML of a ContentNote."""
        with self._lock:
            return self.org.note_body(note_id)

    # ================================================================== auth (Python API)

    def _user(self, username: str | None) -> str:
        if username is None:
            return self.user_id
        login = self.auth.user_by_name(username)
        if login is None:
            raise KeyError(f"no user {username!r}")
        return login.user_id

    def issue_token(self, username: str | None = None) -> str:
        """A valid access token (session id) without a login call."""
        with self._lock:
            return self.auth.issue(self._user(username), self.CLIENT_ID).token

    def issue_refresh_token(self, username: str | None = None, client_id: str | None = None) -> str:
        with self._lock:
            return self.auth.refresh_token(self._user(username), client_id or self.CLIENT_ID)

    def authorization_code(
        self,
        username: str | None = None,
        client_id: str | None = None,
        redirect_uri: str | None = None,
        code_challenge: str | None = None,
    ) -> str:
        """A one-time code for the ``authorization_code`` grant (as after the consent page)."""
        with self._lock:
            return self.auth.authorization_code(
                self._user(username), client_id or self.CLIENT_ID, redirect_uri, code_challenge
            )

    def register_client(
        self,
        client_id: str,
        client_secret: str,
        *,
        public_key_pem: str | None = None,
        run_as: str | None = None,
    ) -> None:
        """Register a connected app (its JWT public key and client-credentials user optional)."""
        with self._lock:
            keys = [public_key_pem] if public_key_pem else []
            self.auth.add_app(ConnectedApp(client_id, client_secret, keys, run_as))

    def register_jwt_key(self, public_key_pem: str, client_id: str | None = None) -> None:
        """Trust ``public_key_pem`` for JWT bearer assertions issued by ``client_id``."""
        with self._lock:
            app = self.auth.apps[client_id or self.CLIENT_ID]
            app.public_keys.append(public_key_pem)

    def expire_sessions(self) -> int:
        """Invalidate every access token until the client logs in or refreshes again."""
        with self._lock:
            return self.auth.expire_all()

    # ================================================================== faults and counters

    def inject_rate_limit(self, count: int) -> None:
        """The next ``count`` API calls answer 403 ``REQUEST_LIMIT_EXCEEDED``."""
        with self._lock:
            self.faults.rate_limit = count

    def inject_errors(self, count: int, status: int = 500) -> None:
        """The next ``count`` API calls answer ``status`` (500 or 503 bodies as Salesforce's)."""
        with self._lock:
            self.faults.errors, self.faults.error_status = count, status

    def set_delay(self, seconds: float, count: int | None = None) -> None:
        """Delay API answers by ``seconds`` (the next ``count`` ones, or all)."""
        with self._lock:
            self.faults.delay, self.faults.delay_count = seconds, count

    def set_daily_limit(self, maximum: int, used: int | None = None) -> None:
        """The daily allowance (``DailyApiRequests.Max``); calls past it are refused."""
        with self._lock:
            self.daily_limit = maximum
            if used is not None:
                self.api_used = used

    def set_concurrency_limit(self, limit: int | None) -> None:
        """More than ``limit`` API requests in flight: 403 ``REQUEST_LIMIT_EXCEEDED``."""
        with self._lock:
            self.faults.concurrency_limit = limit

    def set_bulk(
        self, *, polls_in_progress: int | None = None, fail_next: int | None = None
    ) -> None:
        """Bulk API 2.0 query jobs: answer ``InProgress`` to the first ``polls_in_progress``
        polls of each new job; the next ``fail_next`` jobs end ``Failed``."""
        with self._lock:
            if polls_in_progress is not None:
                self.bulk.polls_in_progress = polls_in_progress
            if fail_next is not None:
                self.bulk.fail_next = fail_next

    def forget_bulk_jobs(self) -> int:
        """Delete every Bulk API 2.0 job, as Salesforce does 7 days after they finish."""
        with self._lock:
            return self.bulk.forget()

    def clear_faults(self) -> None:
        with self._lock:
            self.faults = _Faults()
            self.bulk.polls_in_progress = 0
            self.bulk.fail_next = 0

    def reset_calls(self) -> None:
        with self._lock:
            self.calls = {}

    def call_counts(self) -> dict[str, int]:
        """Calls per endpoint kind: token, identity, query, query_more, describe, limits,
        sobject, composite, composite_sobjects, bulk (Bulk API 2.0 jobs), other; ``api``
        counts every data API call."""
        with self._lock:
            return dict(self.calls)

    @property
    def api_usage(self) -> tuple[int, int]:
        """(used, max) of the daily allowance, as ``Sforce-Limit-Info`` reports it."""
        return self.api_used, self.daily_limit

    def _count(self, kind: str) -> None:
        self.calls[kind] = self.calls.get(kind, 0) + 1

    # ================================================================== outbound messages

    def configure_outbound(
        self,
        url: str | None,
        *,
        fields: Sequence[str] | None = None,
        verify: bool | str = True,
        max_attempts: int = 5,
        backoff: float = 0.05,
    ) -> None:
        """Send an Outbound Message to ``url`` whenever an opportunity's stage changes
        (None: stop). Messages go from a background thread; see :meth:`wait_for_outbound`."""
        with self._lock:
            self.outbound_url = url
            if fields is not None:
                self.outbound_fields = tuple(fields)
            self.outbound_verify = verify
            self.outbound_attempts = max_attempts
            self.outbound_backoff = backoff

    def send_outbound_messages(
        self,
        url: str,
        opportunity_ids: Sequence[str],
        *,
        fields: Sequence[str] | None = None,
        session_id: bool = False,
        max_attempts: int = 5,
        backoff: float = 0.05,
        verify: bool | str = True,
    ) -> list[Delivery]:
        """POST Outbound Messages for ``opportunity_ids`` (100 notifications a message,
        latest record values), retrying each until acknowledged; the deliveries."""
        deliveries: list[Delivery] = []
        ids = list(opportunity_ids)
        for start in range(0, len(ids), MAX_NOTIFICATIONS):
            with self._lock:
                delivery = self._message(
                    url, ids[start : start + MAX_NOTIFICATIONS], fields, session_id
                )
            deliver(delivery, max_attempts=max_attempts, backoff=backoff, verify=verify)
            with self._lock:
                self.deliveries.append(delivery)
                self._count("outbound")
            deliveries.append(delivery)
        return deliveries

    def wait_for_outbound(self, timeout: float = 5.0) -> bool:
        """Wait until automatic messages are delivered (or given up); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._outbound_queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return self._outbound_queue.unfinished_tasks == 0

    def _message(
        self, url: str, ids: Sequence[str], fields: Sequence[str] | None, session_id: bool
    ) -> Delivery:
        notifications: list[tuple[str, Mapping[str, Any]]] = []
        for record_id in ids:
            found = self.org.lookup(record_id)
            if found is None or found[0] != "Opportunity":
                raise KeyError(f"no opportunity {record_id!r}")
            notifications.append((self._misc_ids.next("04l"), dict(found[1])))
        base = f"https://{self.host}:{self.port or 443}"
        token = self.auth.issue(self.user_id).token if session_id else None
        envelope = build_envelope(
            organization_id=self.org.org_id,
            action_id=self.action_id,
            session_id=token,
            enterprise_url=f"{base}/services/Soap/c/{self.api_version}/{self.org.org_id[:15]}",
            partner_url=f"{base}/services/Soap/u/{self.api_version}/{self.org.org_id[:15]}",
            sobject=self.org.schema["opportunity"],
            notifications=notifications,
            fields=fields or self.outbound_fields,
        )
        return Delivery(
            url,
            tuple(n for n, _ in notifications),
            tuple(r["Id"] for _, r in notifications),
            envelope,
        )

    def _stage_changed(self, opportunity_id: str) -> None:
        if self.outbound_url is not None:
            self._outbound_queue.put(opportunity_id)

    def _outbound_worker(self) -> None:
        while True:
            item = self._outbound_queue.get()
            if item is None:
                self._outbound_queue.task_done()
                return
            batch = [item]
            while len(batch) < MAX_NOTIFICATIONS:
                try:
                    extra = self._outbound_queue.get_nowait()
                except queue.Empty:
                    break
                if extra is None:
                    self._outbound_queue.task_done()
                    self._outbound_queue.put(None)
                    break
                batch.append(extra)
            try:
                with self._lock:
                    url = self.outbound_url
                    delivery = None if url is None else self._message(url, batch, None, False)
                    attempts, backoff = self.outbound_attempts, self.outbound_backoff
                    verify = self.outbound_verify
                if delivery is not None:
                    deliver(delivery, max_attempts=attempts, backoff=backoff, verify=verify)
                    with self._lock:
                        self.deliveries.append(delivery)
                        self._count("outbound")
            except Exception:  # noqa: S110 - a failed send must not kill the worker
                pass
            finally:
                for _ in batch:
                    self._outbound_queue.task_done()

    # ================================================================== HTTP

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> _Response:
        """Answer one HTTP request (also usable without the server, e.g. in unit tests)."""
        parts = urlsplit(target)
        path = parts.path
        params = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        if len(target) > MAX_URI:
            return _Response.json(
                414, [{"errorCode": "URI_TOO_LONG", "message": "The request URI is too long"}]
            )
        try:
            if path.startswith("/__emulator/"):
                return self._control(method, path, body)
            if path == "/services/oauth2/token":
                return self._token(method, headers, body)
            if path.startswith("/services/Soap/u/"):
                with self._lock:
                    self._count("token")
                    version = path.split("/")[4] if len(path.split("/")) > 4 else API_VERSION
                    status, xml = self.auth.soap_login(body, self._base(headers), version)
                return _Response(status, xml.encode("utf-8"), "text/xml;charset=UTF-8")
            if path.startswith("/id/"):
                return self._identity(path, headers)
            if path.rstrip("/") == "/services/data":
                return _Response.json(
                    200,
                    [
                        {
                            "label": f"v{major}.0",
                            "url": f"/services/data/v{major}.0",
                            "version": f"{major}.0",
                        }
                        for major in range(MIN_VERSION, MAX_VERSION + 1)
                    ],
                )
            if path.startswith("/services/data/"):
                return self._api_call(method, path, params, headers, body)
        except ApiError as error:
            return _Response.error(error)
        except (KeyError, ValueError, TypeError) as error:
            if path.startswith("/__emulator/"):
                return _Response.json(400, [{"errorCode": "INVALID_INPUT", "message": repr(error)}])
            return self._internal_error(error)
        except Exception as error:  # an emulator bug answers 500, not a dropped connection
            return self._internal_error(error)
        return _Response.json(404, [{"errorCode": "NOT_FOUND", "message": _NOT_FOUND}])

    def _internal_error(self, error: Exception) -> _Response:
        message = f"emulator error: {type(error).__name__}: {error}"
        return _Response.json(500, [{"errorCode": "UNKNOWN_EXCEPTION", "message": message}])

    def _control(self, method: str, path: str, body: bytes) -> _Response:
        """The control API under ``/__emulator/`` (no auth: the emulator binds localhost)."""
        action = path[len("/__emulator/") :].strip("/")
        payload = _json_object(body) if body.strip() else {}
        if action == "state":
            _allow(method, "GET")
            with self._lock:
                return _Response.json(
                    200,
                    {
                        "base_url": self.base_url if self.port is not None else None,
                        "org_id": self.org.org_id,
                        "cert_path": None if self.cert_path is None else str(self.cert_path),
                        "calls": dict(self.calls),
                        "api_usage": {"used": self.api_used, "max": self.daily_limit},
                        "records": {
                            name: len(self.org.records(name))
                            for name in (
                                "Opportunity",
                                "Task",
                                "ContentNote",
                                "ContentDocumentLink",
                            )
                        },
                        "deliveries": [
                            {
                                "url": d.url,
                                "acked": d.acked,
                                "attempts": d.attempts,
                                "record_ids": list(d.record_ids),
                            }
                            for d in self.deliveries
                        ],
                        "credentials": {
                            "username": self.USERNAME,
                            "password": self.PASSWORD,
                            "security_token": self.SECURITY_TOKEN,
                            "client_id": self.CLIENT_ID,
                            "client_secret": self.CLIENT_SECRET,
                        },
                    },
                )
        _allow(method, "POST")
        if action == "faults":
            with self._lock:
                if payload.get("clear"):
                    self.clear_faults()
                if "bulk_polls_in_progress" in payload:
                    self.bulk.polls_in_progress = int(payload["bulk_polls_in_progress"])
                if "bulk_fail" in payload:
                    self.bulk.fail_next = int(payload["bulk_fail"])
                if "rate_limit" in payload:
                    self.faults.rate_limit = int(payload["rate_limit"])
                if "errors" in payload:
                    self.faults.errors = int(payload["errors"])
                    self.faults.error_status = int(payload.get("error_status", 500))
                if "delay" in payload:
                    count = payload.get("delay_count")
                    self.faults.delay = float(payload["delay"])
                    self.faults.delay_count = None if count is None else int(count)
                if "concurrency_limit" in payload:
                    limit = payload["concurrency_limit"]
                    self.faults.concurrency_limit = None if limit is None else int(limit)
                if "daily_limit" in payload:
                    self.daily_limit = int(payload["daily_limit"])
                if "daily_used" in payload:
                    self.api_used = int(payload["daily_used"])
                expired = self.auth.expire_all() if payload.get("expire_sessions") else 0
            return _Response.json(200, {"ok": True, "expired_sessions": expired})
        if action == "seed":
            ids = self.seed(int(payload.get("count", 16)), as_of=parse_when(payload.get("as_of")))
            return _Response.json(200, {"ids": ids})
        if action == "token":
            username = payload.get("username")
            return _Response.json(
                200,
                {
                    "access_token": self.issue_token(
                        username if isinstance(username, str) else None
                    ),
                    "instance_url": self.base_url,
                },
            )
        if action == "reset_calls":
            self.reset_calls()
            return _Response.json(200, {"ok": True})
        if action == "save":
            return _Response.json(200, {"path": str(self.save())})
        if action == "outbound":
            url, fields = payload.get("url"), payload.get("fields")
            self.configure_outbound(
                url if isinstance(url, str) else None,
                fields=fields if isinstance(fields, list) else None,
                verify=payload.get("verify", True),
            )
            return _Response.json(200, {"ok": True})
        if action == "outbound/send":
            deliveries = self.send_outbound_messages(
                str(payload["url"]),
                list(payload.get("ids", [])),
                verify=payload.get("verify", True),
            )
            return _Response.json(
                200,
                [
                    {"acked": d.acked, "attempts": d.attempts, "statuses": d.statuses}
                    for d in deliveries
                ],
            )
        segments = action.split("/")
        if segments[0] == "records" and len(segments) in (2, 3):
            fields = payload.get("fields", {})
            username = payload.get("username")
            user_id = self._user(username) if isinstance(username, str) else None
            if not isinstance(fields, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "fields: an object is required")
            if len(segments) == 2:
                return _Response.json(
                    201, {"id": self.create(segments[1], fields, user_id=user_id)}
                )
            self.update(segments[1], segments[2], fields, user_id=user_id)
            return _Response.json(200, {"id": segments[2]})
        raise ApiError(404, "NOT_FOUND", _NOT_FOUND)

    def _base(self, headers: Mapping[str, str]) -> str:
        return self.base_url if self.port is not None else "https://127.0.0.1"

    def _token(self, method: str, headers: Mapping[str, str], body: bytes) -> _Response:
        if method != "POST":
            return _Response.json(
                405, {"error": "invalid_request", "error_description": "must use HTTP POST"}
            )
        form = {key: values[-1] for key, values in parse_qs(body.decode("utf-8")).items()}
        with self._lock:
            self._count("token")
            try:
                answer = self.auth.token(form, headers.get("authorization"), self._base(headers))
            except OAuthError as error:
                return _Response.json(error.status, error.body())
        return _Response.json(200, answer)

    def _session(self, headers: Mapping[str, str]) -> Session:
        value = headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        session = None
        if scheme.lower() in {"bearer", "oauth"} and token.strip():
            session = self.auth.check(token.strip())
        if session is None:
            raise ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")
        return session

    def _identity(self, path: str, headers: Mapping[str, str]) -> _Response:
        with self._lock:
            self._count("identity")
            try:
                session = self._session(headers)
            except ApiError as error:
                return _Response.error(error)
            segments = [segment for segment in path.split("/") if segment]
            if len(segments) != 3 or segments[1][:15] != self.org.org_id[:15]:
                return _Response.json(404, [{"errorCode": "NOT_FOUND", "message": _NOT_FOUND}])
            user = self.org.lookup(segments[2])
            if user is None or user[0] != "User" or user[1]["Id"] != session.user_id:
                return _Response.json(403, [{"errorCode": "FORBIDDEN", "message": "Bad_Id"}])
            record = user[1]
            return _Response.json(
                200,
                {
                    "id": f"{self.base_url}/id/{self.org.org_id}/{record['Id']}",
                    "user_id": record["Id"],
                    "organization_id": self.org.org_id,
                    "username": record["Username"],
                    "display_name": record["Name"],
                    "email": record["Email"],
                    "active": True,
                    "user_type": "STANDARD",
                    "urls": {
                        "rest": f"{self.base_url}/services/data/v{{version}}/",
                        "query": f"{self.base_url}/services/data/v{{version}}/query/",
                        "sobjects": f"{self.base_url}/services/data/v{{version}}/sobjects/",
                    },
                },
            )

    def _limit_header(self) -> dict[str, str]:
        return {"Sforce-Limit-Info": f"api-usage={self.api_used}/{self.daily_limit}"}

    def _api_call(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> _Response:
        match = _VERSION_PATH.match(path)
        with self._lock:
            kind = _kind(method, (match.group(3) or "") if match else "")
            self._count(kind)
            self._in_flight += 1
            in_flight = self._in_flight
            limit = self.faults.concurrency_limit
            delay = 0.0
            if self.faults.delay and self.faults.delay_count != 0:
                delay = self.faults.delay
                if self.faults.delay_count is not None:
                    self.faults.delay_count -= 1
        try:
            if limit is not None and in_flight > limit:
                with self._lock:
                    return self._refused("ConcurrentPerOrgLongTxn Limit exceeded.")
            if delay:
                time.sleep(delay)
            with self._lock:
                response = self._api_locked(method, match, params, headers, body)
                response.headers.update(self._limit_header())
                return response
        finally:
            with self._lock:
                self._in_flight -= 1

    def _refused(self, message: str) -> _Response:
        self._count("refused")  # REQUEST_LIMIT_EXCEEDED answers, for benchmarks
        response = _Response.json(
            403, [{"message": message, "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
        )
        response.headers.update(self._limit_header())
        return response

    def _api_locked(
        self,
        method: str,
        match: re.Match[str] | None,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> _Response:
        if match is None:
            return _Response.json(404, [{"errorCode": "NOT_FOUND", "message": _NOT_FOUND}])
        major = int(match.group(1))
        if not MIN_VERSION <= major <= MAX_VERSION or match.group(2) != "0":
            return _Response.json(404, [{"errorCode": "NOT_FOUND", "message": _NOT_FOUND}])
        version = f"{major}.0"
        try:
            session = self._session(headers)
        except ApiError as error:
            response = _Response.error(error)
            response.headers["WWW-Authenticate"] = "Token"
            return response
        if self.faults.rate_limit > 0:
            self.faults.rate_limit -= 1
            return _Response.json(
                403,
                [
                    {
                        "message": "TotalRequests Limit exceeded.",
                        "errorCode": "REQUEST_LIMIT_EXCEEDED",
                    }
                ],
            )
        if self.faults.errors > 0:
            self.faults.errors -= 1
            status = self.faults.error_status
            if status == 503:
                return _Response.json(
                    503,
                    [
                        {
                            "errorCode": "SERVER_UNAVAILABLE",
                            "message": "Server is temporarily unavailable",
                        }
                    ],
                )
            number = self._rng.randrange(10**8, 10**9)
            return _Response.json(
                status,
                [
                    {
                        "errorCode": "UNKNOWN_EXCEPTION",
                        "message": "An unexpected error occurred. Please include this ErrorId "
                        f"if you contact support: {number}-{number % 99991} ({-number})",
                    }
                ],
            )
        if self.api_used >= self.daily_limit:
            return _Response.json(
                403,
                [
                    {
                        "message": "TotalRequests Limit exceeded.",
                        "errorCode": "REQUEST_LIMIT_EXCEEDED",
                    }
                ],
            )
        self.api_used += 1
        self._count("api")
        rest = (match.group(3) or "").rstrip("/")
        try:
            return self._route(method, rest, params, headers, body, session, version, top=True)
        except ApiError as error:
            return _Response.error(error)

    # ---------------------------------------------------------------- routing

    def _route(
        self,
        method: str,
        rest: str,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
        session: Session,
        version: str,
        *,
        top: bool,
    ) -> _Response:
        segments = rest.split("/") if rest else []
        head = segments[0] if segments else ""
        if not segments:
            _allow(method, "GET")
            prefix = f"/services/data/v{version}"
            return _Response.json(
                200,
                {
                    name: f"{prefix}/{name}"
                    for name in ("limits", "query", "queryAll", "sobjects", "composite")
                },
            )
        if head == "limits" and len(segments) == 1:
            _allow(method, "GET")
            return _Response.json(200, self._limits())
        if head in {"query", "queryAll"}:
            _allow(method, "GET")
            if len(segments) == 1:
                return self._query(params, headers, session, version, head)
            if len(segments) == 2:
                return self._query_more(segments[1], session, version, head)
        if head == "sobjects":
            return self._sobjects(method, segments[1:], params, body, session, version)
        if head == "jobs" and len(segments) >= 2 and segments[1] == "query" and top:
            return self._bulk_query(method, segments[2:], params, body, session, version)
        if head == "composite" and top:
            if len(segments) == 1:
                _allow(method, "POST")
                return self._composite(body, headers, session, version)
            if len(segments) == 2 and segments[1] == "sobjects":
                _allow(method, "POST", "PATCH")
                return self._composite_sobjects(method, body, session)
        raise ApiError(404, "NOT_FOUND", _NOT_FOUND)

    def _limits(self) -> dict[str, Any]:
        remaining = max(0, self.daily_limit - self.api_used)
        return {
            "DailyApiRequests": {"Max": self.daily_limit, "Remaining": remaining},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
            "DataStorageMB": {"Max": 1024, "Remaining": 1000},
            "FileStorageMB": {"Max": 1024, "Remaining": 1000},
            "ConcurrentPerOrgLongTxn": {"Max": 25, "Remaining": 25},
        }

    # ---------------------------------------------------------------- query

    def _query(
        self,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        session: Session,
        version: str,
        endpoint: str,
    ) -> _Response:
        text = params.get("q")
        if text is None:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        parsed = soql.parse(text)
        page = self.subquery_page_size if parsed.subqueries else self.page_size
        options = headers.get("sforce-query-options", "")
        requested = re.search(r"batchSize\s*=\s*(\d+)", options)
        if requested:
            page = min(page, max(200, min(2000, int(requested.group(1)))))

        def child_cursor(rows: list[dict[str, Any]]) -> str:
            size = self.child_page_size or len(rows)
            return self._cursor(rows, len(rows), size, version, endpoint, session, start=size)

        rows, total = self.org.query(
            parsed,
            include_deleted=endpoint == "queryAll",
            version=version,
            child_cursor=child_cursor,
            child_page_size=self.child_page_size,
        )
        answer: dict[str, Any] = {"totalSize": total, "done": True, "records": rows[:page]}
        if len(rows) > page:
            answer["done"] = False
            answer["nextRecordsUrl"] = self._cursor(
                rows, total, page, version, endpoint, session, start=page
            )
        return _Response.json(200, answer)

    def _bulk_query(
        self,
        method: str,
        segments: list[str],
        params: Mapping[str, str],
        body: bytes,
        session: Session,
        version: str,
    ) -> _Response:
        """Bulk API 2.0 query jobs (:mod:`.bulk`)."""
        if not segments:
            _allow(method, "POST")

            def run(parsed: soql.Query, include_deleted: bool) -> list[dict[str, Any]]:
                rows, _ = self.org.query(parsed, include_deleted=include_deleted, version=version)
                return rows

            return _Response.json(200, self.bulk.create(body, session.user_id, version, run))
        job_id = segments[0]
        if len(segments) == 1:
            _allow(method, "GET", "PATCH", "DELETE")
            if method == "GET":
                return _Response.json(200, self.bulk.get(job_id))
            if method == "PATCH":
                return _Response.json(200, self.bulk.abort(job_id, body))
            self.bulk.delete(job_id)
            return _Response(204)
        if len(segments) == 2 and segments[1] == "results":
            _allow(method, "GET")
            content, headers = self.bulk.results(job_id, params)
            return _Response(200, content, "text/csv", headers)
        raise ApiError(404, "NOT_FOUND", _NOT_FOUND)

    def _cursor(
        self,
        rows: list[dict[str, Any]],
        total: int,
        page: int,
        version: str,
        endpoint: str,
        session: Session,
        *,
        start: int,
    ) -> str:
        now = time.monotonic()
        for locator, cursor in list(self._cursors.items()):
            if now - cursor.last_used > CURSOR_IDLE_SECONDS:
                del self._cursors[locator]
        mine = [loc for loc, cur in self._cursors.items() if cur.user_id == session.user_id]
        while len(mine) >= MAX_CURSORS_PER_USER:
            del self._cursors[mine.pop(0)]  # Salesforce drops the user's oldest cursor
        locator = self._cursor_ids.next("01g")
        self._cursors[locator] = _Cursor(rows, total, page, endpoint, session.user_id, now)
        return f"/services/data/v{version}/{endpoint}/{locator}-{start}"

    def _query_more(self, token: str, session: Session, version: str, endpoint: str) -> _Response:
        locator, _, position = token.partition("-")
        cursor = self._cursors.get(locator)
        if cursor is None or cursor.user_id != session.user_id or not position.isdigit():
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        start = int(position)
        cursor.last_used = time.monotonic()
        end = start + cursor.page_size
        answer: dict[str, Any] = {
            "totalSize": cursor.total,
            "done": end >= len(cursor.rows),
            "records": cursor.rows[start:end],
        }
        if end < len(cursor.rows):
            answer["nextRecordsUrl"] = f"/services/data/v{version}/{endpoint}/{locator}-{end}"
        else:
            del self._cursors[locator]
        return _Response.json(200, answer)

    # ---------------------------------------------------------------- sobjects

    def _sobjects(
        self,
        method: str,
        segments: list[str],
        params: Mapping[str, str],
        body: bytes,
        session: Session,
        version: str,
    ) -> _Response:
        if not segments:
            _allow(method, "GET")
            return _Response.json(
                200,
                {
                    "encoding": "UTF-8",
                    "maxBatchSize": 200,
                    "sobjects": [d.summary(version) for d in self.org.schema.values()],
                },
            )
        definition = self.org.sobject(segments[0])
        if definition is None:
            raise ApiError(404, "NOT_FOUND", _NOT_FOUND)
        name = definition.name
        if len(segments) == 1:
            _allow(method, "GET", "POST")
            if method == "GET":
                return _Response.json(
                    200, {"objectDescribe": definition.summary(version), "recentItems": []}
                )
            record_id = self.org.create(name, _json_object(body), session.user_id)
            return _Response.json(
                201,
                {"id": record_id, "success": True, "errors": []},
                {"Location": f"/services/data/v{version}/sobjects/{name}/{record_id}"},
            )
        if len(segments) == 2 and segments[1] == "describe":
            _allow(method, "GET")
            return _Response.json(200, self.org.describe(name, version))
        record_id = segments[1]
        if len(segments) == 3:
            _allow(method, "GET")
            if name != "ContentNote" or segments[2] != "Content":
                raise ApiError(404, "NOT_FOUND", _NOT_FOUND)
            body_html = self.org.note_body(record_id)
            if body_html is None:
                raise ApiError(404, "NOT_FOUND", _NOT_FOUND)
            return _Response(200, body_html.encode("utf-8"), "text/html;charset=UTF-8")
        if len(segments) != 2:
            raise ApiError(404, "NOT_FOUND", _NOT_FOUND)
        _allow(method, "GET", "PATCH", "DELETE")
        if method == "PATCH":
            self.org.update(name, record_id, _json_object(body), session.user_id)
            return _Response(204)
        if method == "DELETE":
            self.org.delete(name, record_id)
            return _Response(204)
        found = self.org.lookup(record_id) if is_record_id(record_id) else None
        if found is None or found[0] != name or found[1].get("IsDeleted"):
            raise ApiError(404, "NOT_FOUND", _NOT_FOUND)
        fields = [f for f in params.get("fields", "").split(",") if f.strip()] or None
        return _Response.json(
            200,
            self.org.render_record(
                name, found[1], version, [f.strip() for f in fields] if fields else None
            ),
        )

    # ---------------------------------------------------------------- composite

    def _composite_sobjects(self, method: str, body: bytes, session: Session) -> _Response:
        payload = _json_object(body)
        records = payload.get("records")
        if not isinstance(records, list):
            raise ApiError(400, "JSON_PARSER_ERROR", "records: a list of sObjects is required")
        if len(records) > MAX_COMPOSITE_RECORDS:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        all_or_none = bool(payload.get("allOrNone", False))
        results: list[dict[str, Any]] = []
        failed = False
        outer = self.org.savepoint() if all_or_none else None
        for record in records:
            point = self.org.savepoint()
            try:
                if not isinstance(record, dict):
                    raise ApiError(400, "JSON_PARSER_ERROR", "each record is an object")
                attributes = record.get("attributes")
                sobject = attributes.get("type") if isinstance(attributes, dict) else None
                if not isinstance(sobject, str):
                    raise ApiError(400, "INVALID_TYPE", "sObject type is required")
                values = {k: v for k, v in record.items() if k != "attributes"}
                if method == "POST":
                    record_id = self.org.create(sobject, values, session.user_id)
                else:
                    record_id = str(values.pop("id", None) or values.pop("Id", ""))
                    if not record_id:
                        raise ApiError(
                            400, "MISSING_ARGUMENT", "Id not specified in an update call"
                        )
                    self.org.update(sobject, record_id, values, session.user_id)
                    record_id = to18(record_id[:15]) if is_record_id(record_id) else record_id
            except ApiError as error:
                self.org.rollback(point)
                failed = True
                results.append({"success": False, "errors": [error.record_error()]})
            else:
                self.org.release()
                results.append({"id": record_id, "success": True, "errors": []})
        if outer is not None:
            if failed:
                self.org.rollback(outer)
                rolled_back = {
                    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                    "message": "Record rolled back because not all records were valid and the "
                    "request was using AllOrNone header",
                    "fields": [],
                }
                results = [
                    {"success": False, "errors": result["errors"] or [rolled_back]}
                    for result in results
                ]
            else:
                self.org.release()
        self.calls["composite_records"] = self.calls.get("composite_records", 0) + len(records)
        return _Response.json(200, results)

    def _composite(
        self, body: bytes, headers: Mapping[str, str], session: Session, version: str
    ) -> _Response:
        payload = _json_object(body)
        requests = payload.get("compositeRequest")
        if not isinstance(requests, list) or not requests:
            raise ApiError(400, "JSON_PARSER_ERROR", "compositeRequest: a list is required")
        if len(requests) > MAX_COMPOSITE_SUBREQUESTS:
            raise ApiError(
                400,
                "INVALID_COMPOSITE_REQUEST",
                "Limit Exceeded: Composite API only supports 25 subrequests",
            )
        all_or_none = bool(payload.get("allOrNone", False))
        references: dict[str, Any] = {}
        answers: list[dict[str, Any]] = []
        failed_refs: set[str] = set()
        outer = self.org.savepoint() if all_or_none else None
        halted = False
        for index, item in enumerate(requests):
            if not isinstance(item, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", f"compositeRequest[{index}]: an object")
            ref = item.get("referenceId")
            if not isinstance(ref, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", ref):
                raise ApiError(
                    400,
                    "INVALID_REFERENCE_ID",
                    f"compositeRequest[{index}]: referenceId is invalid",
                )
            if ref in references or ref in failed_refs:
                raise ApiError(400, "DUPLICATE_REFERENCE_ID", f"Duplicate referenceId {ref}")
            if halted:
                answers.append(
                    _halted(
                        ref,
                        "The transaction was rolled back since another "
                        "operation in the same transaction failed.",
                    )
                )
                failed_refs.add(ref)
                continue
            try:
                url = _substitute(str(item.get("url", "")), references)
                sub_body = _substitute_json(item.get("body"), references)
            except KeyError as missing:
                answers.append(
                    _halted(
                        ref,
                        f"Invalid reference specified. No value for "
                        f"{missing.args[0]} found in {missing.args[0].split('.')[0]}."
                        f" Provided referenceId ('{ref}') must be unique.",
                    )
                )
                failed_refs.add(ref)
                if all_or_none:
                    halted = True
                continue
            response = self._subrequest(
                str(item.get("method", "GET")).upper(), url, sub_body, headers, session
            )
            parsed_body = (
                json.loads(response.body)
                if response.body and (response.content_type.startswith("application/json"))
                else None
            )
            answer: dict[str, Any] = {
                "body": parsed_body,
                "httpHeaders": {k: v for k, v in response.headers.items() if k == "Location"},
                "httpStatusCode": response.status,
                "referenceId": ref,
            }
            answers.append(answer)
            if response.status >= 400:
                failed_refs.add(ref)
                if all_or_none:
                    halted = True
            else:
                references[ref] = parsed_body
        if outer is not None:
            if halted:
                self.org.rollback(outer)
                for answer in answers:
                    if answer["httpStatusCode"] < 400:
                        answer.update(
                            _halted(
                                answer["referenceId"],
                                "The transaction was rolled "
                                "back since another operation in the same "
                                "transaction failed.",
                            )
                        )
            else:
                self.org.release()
        return _Response.json(200, {"compositeResponse": answers})

    def _subrequest(
        self, method: str, url: str, body: Any, headers: Mapping[str, str], session: Session
    ) -> _Response:
        parts = urlsplit(url)
        params = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        match = _VERSION_PATH.match(parts.path)
        if match is None:
            return _Response.json(404, [{"errorCode": "NOT_FOUND", "message": _NOT_FOUND}])
        version = f"{match.group(1)}.{match.group(2)}"
        rest = (match.group(3) or "").rstrip("/")
        raw = b"" if body is None else json.dumps(body).encode("utf-8")
        point = self.org.savepoint()
        try:
            response = self._route(method, rest, params, headers, raw, session, version, top=False)
        except ApiError as error:
            self.org.rollback(point)
            return _Response.error(error)
        self.org.release()
        return response


# ---------------------------------------------------------------------- helpers

_OUTBOUND_FIELDS = (
    "Id",
    "Name",
    "StageName",
    "Amount",
    "CloseDate",
    "Probability",
    "ForecastCategoryName",
    "IsClosed",
    "IsWon",
    "OwnerId",
    "AccountId",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
)


def _kind(method: str, rest: str) -> str:
    segments = [segment for segment in rest.split("/") if segment]
    head = segments[0] if segments else ""
    if head in {"query", "queryAll"}:
        return "query" if len(segments) == 1 else "query_more"
    if head == "sobjects":
        if len(segments) >= 3 and segments[2] == "describe":
            return "describe"
        return "sobject"
    if head == "composite":
        return "composite_sobjects" if len(segments) > 1 else "composite"
    if head == "limits":
        return "limits"
    if head == "jobs":
        return "bulk"
    return "other"


def _allow(method: str, *methods: str) -> None:
    if method not in methods:
        raise ApiError(
            405,
            "METHOD_NOT_ALLOWED",
            f"HTTP Method '{method}' not allowed. Allowed are {','.join(methods)}",
        )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body.decode("utf-8") or "null")
    except (UnicodeError, ValueError):
        raise ApiError(400, "JSON_PARSER_ERROR", "The request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
    return value


def _halted(ref: str, message: str) -> dict[str, Any]:
    return {
        "body": [{"errorCode": "PROCESSING_HALTED", "message": message}],
        "httpHeaders": {},
        "httpStatusCode": 400,
        "referenceId": ref,
    }


def _resolve_reference(expression: str, references: Mapping[str, Any]) -> Any:
    match = _REFERENCE.fullmatch(f"@{{{expression}}}")
    if match is None or match.group(1) not in references:
        raise KeyError(expression)
    value = references[match.group(1)]
    for step in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", match.group(2)):
        key, index = step
        try:
            value = value[key] if key else value[int(index)]
        except (KeyError, IndexError, TypeError):
            raise KeyError(expression) from None
    if value is None:
        raise KeyError(expression)
    return value


def _substitute(text: str, references: Mapping[str, Any]) -> str:
    return _REFERENCE.sub(lambda m: str(_resolve_reference(m.group(0)[2:-1], references)), text)


def _substitute_json(value: Any, references: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        whole = _REFERENCE.fullmatch(value)
        if whole:
            return _resolve_reference(value[2:-1], references)
        return _substitute(value, references)
    if isinstance(value, list):
        return [_substitute_json(item, references) for item in value]
    if isinstance(value, dict):
        return {key: _substitute_json(item, references) for key, item in value.items()}
    return value


def parse_when(value: object) -> datetime | None:
    return None if not isinstance(value, str) or not value else parse_datetime(value)
