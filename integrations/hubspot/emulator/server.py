"""The emulator: an HTTP server speaking HubSpot's CRM wire format.

See the package docstring for the endpoints, limits and the control API.
"""

from __future__ import annotations

import json
import queue
import random
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .auth import Auth, OAuthError
from .portal import (
    OBJECT_TYPES,
    HubSpotError,
    Portal,
    Record,
    Source,
    format_datetime,
    parse_datetime,
)
from .schema import DEFAULT_CUSTOM_PROPERTIES, DEFAULT_PIPELINES, PipelineDef, PropertyDef
from .search import MAX_RESULTS, parse_request, result_properties, search
from .seed import OWNERS, seed_deals
from .webhooks import MAX_EVENTS, WebhookDelivery, deliver, property_change_event

__all__ = ["DEFAULT_PORTAL_ID", "HubSpotEmulator"]

DEFAULT_PORTAL_ID = 8765432
DEFAULT_APP_ID = 1234567
MAX_BATCH = 100
MAX_ASSOCIATION_BATCH = 1000
_JSON = "application/json;charset=utf-8"
_PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
_PROPERTY_TYPES = {
    "string": {"text", "textarea", "html", "phonenumber", "file"},
    "number": {"number", "calculation_equation"},
    "date": {"date"},
    "datetime": {"date"},
    "enumeration": {"select", "radio", "checkbox", "booleancheckbox"},
    "bool": {"booleancheckbox"},
}


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> _Response:
        return cls(status, json.dumps(payload).encode("utf-8"), dict(headers or {}))


@dataclass
class _Faults:
    rate_limit: int = 0  # next N API calls: 429 TEN_SECONDLY_ROLLING
    errors: int = 0  # next N API calls: a 5xx
    error_status: int = 500
    delay: float = 0.0
    delay_count: int | None = None  # None: every request
    fail_deals: set[str] = field(default_factory=set)  # writes for these deals fail (207)


class _Window:
    """A rolling window rate limit: at most ``maximum`` calls per ``seconds``."""

    def __init__(self, maximum: int, seconds: float) -> None:
        self.maximum = maximum
        self.seconds = seconds
        self.calls: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self.calls and self.calls[0] <= now - self.seconds:
            self.calls.popleft()

    def take(self) -> bool:
        now = time.monotonic()
        self._trim(now)
        if len(self.calls) >= self.maximum:
            return False
        self.calls.append(now)
        return True

    def remaining(self) -> int:
        self._trim(time.monotonic())
        return max(0, self.maximum - len(self.calls))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: HubSpotEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that goes away is not the emulator's problem


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "HubSpot-Emulator"
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
            self.send_header("Content-Type", _JSON)
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

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")


class HubSpotEmulator:
    """A stateful HubSpot portal over plain HTTP, for the unchanged hubspot-api-client.

    ``state_dir`` keeps the portal's state (saved on :meth:`stop` / :meth:`save`,
    reloaded by the next emulator on the same directory). ``seed`` seeds the
    random generator of :meth:`seed`. ``ten_second_limit`` and
    ``search_per_second`` are the rolling rate limits (HubSpot: 100-190 per 10 s
    by tier for private apps, 110 for OAuth apps; 5 searches a second);
    ``max_search_results`` the search cap (10,000; lower it to test paging past it
    on a small portal).
    """

    #: The portal's public OAuth app.
    CLIENT_ID = "5f0c1d2e-emul-4a7b-9c3d-dealcoach0001"
    CLIENT_SECRET = "emulator-client-secret"  # noqa: S105 - the emulator's well-known test app
    APP_NAME = "dealcoach"
    #: The user the integration acts as (who installed the app).
    USER = "integration@dealcoach.example"
    USER_ID = 9911000
    #: The token printed at start-up: a private app's static token.
    PRIVATE_APP_TOKEN = "pat-na1-emulator-0000-dealcoach"  # noqa: S105

    def __init__(
        self,
        state_dir: str | Path | None = None,
        portal_id: int = DEFAULT_PORTAL_ID,
        seed: int = 1,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        app_id: int = DEFAULT_APP_ID,
        pipelines: Sequence[PipelineDef] = DEFAULT_PIPELINES,
        custom_properties: Sequence[PropertyDef] = DEFAULT_CUSTOM_PROPERTIES,
        ten_second_limit: int = 100,
        search_per_second: int = 5,
        daily_limit: int = 250000,
        token_ttl: int = 1800,
        max_search_results: int = MAX_RESULTS,
        clock: Callable[[], datetime] | None = None,
        verbose: bool = False,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self.verbose = verbose
        self.app_id = app_id
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
        self._lock = threading.RLock()
        self._own_dir = state_dir is None
        self.state_dir = (
            Path(state_dir)
            if state_dir is not None
            else Path(tempfile.mkdtemp(prefix="hs-emulator-"))
        )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.faults = _Faults()
        self.calls: dict[str, int] = {}
        self.ten_second = _Window(ten_second_limit, 10.0)
        self.secondly = _Window(search_per_second, 1.0)
        self.daily_limit = daily_limit
        self.daily_used = 0
        self.max_search_results = max_search_results
        self.portal = Portal(
            portal_id, pipelines=pipelines, custom_properties=custom_properties, clock=self.clock
        )
        self.portal.owners = [_owner(*owner) for owner in OWNERS]
        self.auth = Auth(
            self.CLIENT_ID, self.CLIENT_SECRET, self.clock, self.USER, self.USER_ID, token_ttl
        )
        self.auth.add_private_token(self.PRIVATE_APP_TOKEN)
        self._seeded = 0
        # webhooks
        self.webhook_url: str | None = None
        self.webhook_secret: str = self.CLIENT_SECRET
        self.webhook_style = "object"  # object, legacy or both
        self.webhook_attempts = 10
        self.webhook_backoff = 0.2
        self.webhook_timeout = 5.0
        self.webhook_linger = 0.05
        self.deliveries: list[WebhookDelivery] = []
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._event_ids = 1733400
        self._webhook_thread: threading.Thread | None = None
        state_file = self.state_dir / "state.json"
        if state_file.exists():
            data = json.loads(state_file.read_text("utf-8"))
            self.portal.load(data["portal"])
            self._seeded = int(data.get("seeded", 0))
        self.portal.on_change = self._property_changed

    # ================================================================== lifecycle

    @property
    def portal_id(self) -> int:
        return self.portal.portal_id

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the emulator is not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        """Start serving; the base URL (``http://127.0.0.1:N``)."""
        if self._server is not None:
            return self.base_url
        self._server = _Server((self.host, self.requested_port), self)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="hubspot-emulator",
            daemon=True,
        )
        self._thread.start()
        self._webhook_thread = threading.Thread(
            target=self._webhook_worker, name="hubspot-emulator-webhooks", daemon=True
        )
        self._webhook_thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving; save the state when a ``state_dir`` was given, else clean up."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._webhook_thread is not None:
            self._events.put(None)
            self._webhook_thread.join(timeout=5)
            self._webhook_thread = None
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        else:
            self.save()

    def __enter__(self) -> HubSpotEmulator:
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
        """Write the portal to ``state_dir/state.json`` (tokens are not kept)."""
        with self._lock:
            path = self.state_dir / "state.json"
            temporary = path.with_suffix(".tmp")
            temporary.write_text(
                json.dumps({"portal": self.portal.dump(), "seeded": self._seeded}), "utf-8"
            )
            temporary.replace(path)
            return path

    # ================================================================== data (Python API)

    def seed(self, n: int, *, as_of: datetime | None = None) -> list[str]:
        """Create ``n`` realistic deals (deterministic for a seed and ``as_of``); their ids."""
        with self._lock:
            hook, self.portal.on_change = self.portal.on_change, None
            try:
                ids = seed_deals(
                    self.portal, n, as_of=as_of or self.clock(), rng=self._rng, start=self._seeded
                )
            finally:
                self.portal.on_change = hook
            self._seeded += n
            return ids

    def deal(self, deal_id: str) -> dict[str, Any] | None:
        """A deal's current properties (calculated ones included), or None."""
        with self._lock:
            record = self.portal.get("deals", deal_id)
            if record is None:
                return None
            return self.portal.values(record, self.portal.properties["deals"])

    def deal_ids(self) -> list[str]:
        with self._lock:
            return [record.id for record in self.portal.all("deals")]

    def history(self, deal_id: str, name: str) -> list[dict[str, Any]]:
        """A deal property's history as the API returns it (newest first)."""
        with self._lock:
            record = self.portal.require("deals", deal_id)
            return self.portal.history(record, [name]).get(name, [])

    def update_deal(
        self, deal_id: str, properties: Mapping[str, object], *, owner_id: int | None = None
    ) -> list[str]:
        """Change a deal as its owner would in the UI (history, webhooks); the changed names."""
        with self._lock:
            record = self.portal.require("deals", deal_id)
            owner = self._owner_source(owner_id or record.get("hubspot_owner_id"))
            return self.portal.update(record, properties, owner)

    def archive_deal(self, deal_id: str) -> None:
        """Delete a deal as a user would (archived: listed with ``archived=true``)."""
        with self._lock:
            self._archive("deals", deal_id)

    def set_stage(self, deal_id: str, stage_id: str, *, owner_id: int | None = None) -> None:
        """Move a deal to another stage as a user would (a webhook follows when configured)."""
        self.update_deal(deal_id, {"dealstage": stage_id}, owner_id=owner_id)

    def notes(self, deal_id: str | None = None) -> list[dict[str, Any]]:
        """Notes (all, or those associated with ``deal_id``): id, body, timestamp, deal ids."""
        with self._lock:
            records = self.portal.all("notes")
            if deal_id is not None:
                linked = self.portal.associated("deals", str(deal_id), "notes")
                records = [r for r in records if r.id in linked]
            return [
                {
                    "id": r.id,
                    "hs_note_body": r.get("hs_note_body"),
                    "hs_timestamp": r.get("hs_timestamp"),
                    "created_at": format_datetime(r.created_at),
                    "deal_ids": sorted(self.portal.associated("notes", r.id, "deals"), key=int),
                }
                for r in records
            ]

    def _owner_source(self, owner_id: object) -> Source:
        for owner in self.portal.owners:
            if str(owner["id"]) == str(owner_id):
                return Source("CRM_UI", f"userId:{owner['userId']}", None, int(owner["userId"]))
        return Source("CRM_UI", f"userId:{self.USER_ID}", None, self.USER_ID)

    # ================================================================== auth (Python API)

    def issue_token(self) -> str:
        """A valid OAuth access token (30 minutes) without the consent flow."""
        with self._lock:
            return self.auth.issue()[0]

    def issue_tokens(self) -> tuple[str, str]:
        """(access token, refresh token) without the consent flow."""
        with self._lock:
            return self.auth.issue()

    def authorization_code(self, redirect_uri: str) -> str:
        """A one-time code for the ``authorization_code`` grant (as after the consent page)."""
        with self._lock:
            return self.auth.authorization_code(redirect_uri)

    def private_app_token(self) -> str:
        return self.PRIVATE_APP_TOKEN

    def expire_tokens(self) -> int:
        """Every OAuth access token expires now (the client must refresh)."""
        with self._lock:
            return self.auth.expire_all()

    # ================================================================== faults and counters

    def inject_rate_limit(self, count: int) -> None:
        """The next ``count`` API calls answer 429 ``TEN_SECONDLY_ROLLING`` (a storm)."""
        with self._lock:
            self.faults.rate_limit = count

    def inject_errors(self, count: int, status: int = 500) -> None:
        """The next ``count`` API calls answer ``status`` (500, 502, 503 or 504)."""
        with self._lock:
            self.faults.errors, self.faults.error_status = count, status

    def set_delay(self, seconds: float, count: int | None = None) -> None:
        """Delay API answers by ``seconds`` (the next ``count`` ones, or all)."""
        with self._lock:
            self.faults.delay, self.faults.delay_count = seconds, count

    def fail_writes_for(self, deal_ids: Sequence[str]) -> None:
        """Batch writes touching these deals fail per item (207): notes associated with
        them, batch updates of them."""
        with self._lock:
            self.faults.fail_deals = {str(d) for d in deal_ids}

    def set_rate_limits(
        self, ten_second: int | None = None, search_per_second: int | None = None
    ) -> None:
        with self._lock:
            if ten_second is not None:
                self.ten_second = _Window(ten_second, 10.0)
            if search_per_second is not None:
                self.secondly = _Window(search_per_second, 1.0)

    def clear_faults(self) -> None:
        with self._lock:
            self.faults = _Faults()

    def reset_calls(self) -> None:
        with self._lock:
            self.calls = {}

    def call_counts(self) -> dict[str, int]:
        """Calls per endpoint (``deals_search``, ``deals_batch_read``, ``notes_batch_create``,
        ``associations_batch_read``, ``token``...); ``api`` counts every CRM API call,
        ``rate_limited`` the 429 answers."""
        with self._lock:
            return dict(self.calls)

    def _count(self, kind: str) -> None:
        self.calls[kind] = self.calls.get(kind, 0) + 1

    # ================================================================== webhooks

    def configure_webhooks(
        self,
        url: str | None,
        *,
        client_secret: str | None = None,
        style: str = "object",
        max_attempts: int = 10,
        backoff: float = 0.2,
        timeout: float = 5.0,
    ) -> None:
        """Send ``dealstage`` change events to ``url`` (None: stop), signed with the app's
        client secret; ``style`` ``object`` (``object.propertyChange``), ``legacy``
        (``deal.propertyChange``) or ``both``."""
        if style not in {"object", "legacy", "both"}:
            raise ValueError(f"unknown webhook style {style!r}")
        with self._lock:
            self.webhook_url = url
            if client_secret is not None:
                self.webhook_secret = client_secret
            self.webhook_style = style
            self.webhook_attempts = max_attempts
            self.webhook_backoff = backoff
            self.webhook_timeout = timeout

    def wait_for_webhooks(self, timeout: float = 5.0) -> bool:
        """Wait until queued events are delivered (or given up); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._events.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return self._events.unfinished_tasks == 0

    def _property_changed(self, record: Record, name: str, change: Any) -> None:
        if self.webhook_url is None:
            return
        styles = {"object": (False,), "legacy": (True,), "both": (False, True)}[self.webhook_style]
        source = change.source_type
        source_id = change.source_id
        for legacy in styles:
            self._event_ids += 1
            self._events.put(
                property_change_event(
                    event_id=self._event_ids,
                    subscription_id=2981124 if legacy else 2981123,
                    portal_id=self.portal_id,
                    app_id=self.app_id,
                    occurred_at_ms=int(change.at.timestamp() * 1000),
                    object_id=record.id,
                    property_name=name,
                    property_value=change.value,
                    change_source=source,
                    source_id=source_id,
                    legacy=legacy,
                )
            )

    def _webhook_worker(self) -> None:
        while True:
            event = self._events.get()
            if event is None:
                self._events.task_done()
                return
            batch = [event]
            stop = False
            deadline = time.monotonic() + self.webhook_linger
            while len(batch) < MAX_EVENTS:
                try:
                    extra = self._events.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if extra is None:
                    stop = True
                    self._events.task_done()
                    break
                batch.append(extra)
            try:
                with self._lock:
                    url, secret = self.webhook_url, self.webhook_secret
                    attempts, backoff = self.webhook_attempts, self.webhook_backoff
                    timeout = self.webhook_timeout
                if url is not None:
                    delivery = WebhookDelivery(url, batch)
                    deliver(
                        delivery, secret, max_attempts=attempts, backoff=backoff, timeout=timeout
                    )
                    with self._lock:
                        self.deliveries.append(delivery)
                        self._count("webhook_requests")
            except Exception:  # noqa: S110 - a failed send must not kill the worker
                pass
            finally:
                for _ in batch:
                    self._events.task_done()
            if stop:
                return

    # ================================================================== HTTP

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> _Response:
        """Answer one HTTP request (also usable without the server)."""
        parts = urlsplit(target)
        path = parts.path
        params = parse_qs(parts.query)
        correlation = str(uuid.uuid4())
        try:
            if path.startswith("/__emulator/"):
                return self._control(method, path, params, body)
            if path == "/oauth/v1/token":
                return self._token(method, body, correlation)
            return self._api_call(method, path, params, headers, body, correlation)
        except HubSpotError as error:
            return _Response.json(
                error.status, error.body(correlation), {"X-HubSpot-Correlation-Id": correlation}
            )
        except (KeyError, ValueError, TypeError) as error:
            if path.startswith("/__emulator/"):
                return _Response.json(
                    400, {"status": "error", "message": repr(error), "category": "VALIDATION_ERROR"}
                )
            return self._internal_error(error, correlation)
        except Exception as error:  # an emulator bug answers 500, not a dropped connection
            return self._internal_error(error, correlation)

    def _internal_error(self, error: Exception, correlation: str) -> _Response:
        return _Response.json(
            500,
            {
                "status": "error",
                "message": f"emulator error: {type(error).__name__}: {error}",
                "correlationId": correlation,
                "category": "INTERNAL_ERROR",
            },
        )

    def _token(self, method: str, body: bytes, correlation: str) -> _Response:
        if method != "POST":
            raise HubSpotError(405, "VALIDATION_ERROR", "HTTP method not allowed")
        form = {key: values[-1] for key, values in parse_qs(body.decode("utf-8")).items()}
        with self._lock:
            self._count("token")
            try:
                return _Response.json(200, self.auth.token(form))
            except OAuthError as error:
                return _Response.json(400, error.body(correlation))

    def _api_call(
        self,
        method: str,
        path: str,
        params: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
        correlation: str,
    ) -> _Response:
        kind = _kind(method, path)
        is_search = kind.endswith("_search")
        with self._lock:
            self._count(kind)
            delay = 0.0
            if self.faults.delay and self.faults.delay_count != 0:
                delay = self.faults.delay
                if self.faults.delay_count is not None:
                    self.faults.delay_count -= 1
        if delay:
            time.sleep(delay)
        with self._lock:
            token = self.auth.check(headers.get("authorization"))
            if self.faults.rate_limit > 0:
                self.faults.rate_limit -= 1
                return self._rate_limited("TEN_SECONDLY_ROLLING", correlation, token.kind)
            if self.faults.errors > 0:
                self.faults.errors -= 1
                return self._server_error(self.faults.error_status, correlation)
            window = self.secondly if is_search else self.ten_second
            if not window.take():
                return self._rate_limited(
                    "SECONDLY" if is_search else "TEN_SECONDLY_ROLLING", correlation, token.kind
                )
            if token.kind == "private":
                if self.daily_used >= self.daily_limit:
                    return self._rate_limited("DAILY", correlation, token.kind)
                self.daily_used += 1
            self._count("api")
            source = Source("INTEGRATION", str(self.app_id), self.APP_NAME, None)
            try:
                response = self._route(method, path, params, body, source)
            except HubSpotError as error:
                response = _Response.json(error.status, error.body(correlation))
            response.headers["X-HubSpot-Correlation-Id"] = correlation
            if not is_search:
                response.headers.update(self._limit_headers(token.kind))
            return response

    def _limit_headers(self, token_kind: str) -> dict[str, str]:
        headers = {
            "X-HubSpot-RateLimit-Max": str(self.ten_second.maximum),
            "X-HubSpot-RateLimit-Remaining": str(self.ten_second.remaining()),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(self.ten_second.seconds * 1000)),
        }
        if token_kind == "private":  # noqa: S105 - absent under OAuth
            headers["X-HubSpot-RateLimit-Daily"] = str(self.daily_limit)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(
                max(0, self.daily_limit - self.daily_used)
            )
        return headers

    def _rate_limited(self, policy: str, correlation: str, token_kind: str) -> _Response:
        self._count("rate_limited")
        messages = {
            "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
            "SECONDLY": "You have reached your secondly limit.",
            "DAILY": "You have reached your daily limit.",
        }
        body = {
            "status": "error",
            "message": messages[policy],
            "errorType": "RATE_LIMIT",
            "correlationId": correlation,
            "policyName": policy,
            "groupName": f"publicapi:{self.app_id}:{self.portal_id}",
        }
        headers = {"X-HubSpot-Correlation-Id": correlation}
        if policy != "SECONDLY":
            headers.update(self._limit_headers(token_kind))
        return _Response.json(429, body, headers)

    def _server_error(self, status: int, correlation: str) -> _Response:
        self._count("server_error")
        messages = {
            500: "internal error",
            502: "Bad Gateway",
            503: "Service Unavailable",
            504: "Gateway Timeout",
        }
        return _Response.json(
            status,
            {
                "status": "error",
                "message": messages.get(status, "internal error"),
                "correlationId": correlation,
                "category": "INTERNAL_ERROR",
            },
        )

    # ---------------------------------------------------------------- routing

    def _route(
        self,
        method: str,
        path: str,
        params: Mapping[str, list[str]],
        body: bytes,
        source: Source,
    ) -> _Response:
        segments = [unquote(s) for s in path.strip("/").split("/")]
        portal = self.portal
        if segments[:3] == ["oauth", "v1", "access-tokens"] and len(segments) == 4:
            info = self.auth.info(
                segments[3], self.portal_id, f"portal-{self.portal_id}.hubspot.com", self.app_id
            )
            if info is None:
                raise HubSpotError(404, "OBJECT_NOT_FOUND", "Token not found")
            return _Response.json(200, info)
        if segments == ["account-info", "v3", "details"]:
            return _Response.json(
                200,
                {
                    "portalId": self.portal_id,
                    "accountType": "STANDARD",
                    "timeZone": "Europe/London",
                    "companyCurrency": "USD",
                    "additionalCurrencies": [],
                    "utcOffset": "+00:00",
                    "utcOffsetMilliseconds": 0,
                    "uiDomain": "app.hubspot.com",
                    "dataHostingLocation": "na1",
                },
            )
        if segments[:3] == ["crm", "v3", "owners"]:
            _allow(method, "GET")
            return self._owners(params)
        if segments[:4] == ["crm", "v3", "pipelines", "deals"]:
            _allow(method, "GET")
            if len(segments) == 4:
                return _Response.json(
                    200, {"results": [p.wire(i) for i, p in enumerate(portal.pipelines)]}
                )
            found = portal.pipeline(segments[4])
            if found is None or len(segments) > 5:
                raise HubSpotError(404, "OBJECT_NOT_FOUND", f"pipeline {segments[4]} not found")
            return _Response.json(200, found.wire(portal.pipelines.index(found)))
        if segments[:3] == ["crm", "v3", "properties"] and len(segments) >= 4:
            return self._properties(method, segments[3:], body)
        if segments[:3] == ["crm", "v3", "objects"] and len(segments) >= 4:
            object_type = _object_type(segments[3])
            rest = segments[4:]
            if rest == ["search"]:
                _allow(method, "POST")
                return self._search(object_type, _json_object(body))
            if len(rest) == 2 and rest[0] == "batch":
                _allow(method, "POST")
                return self._batch(object_type, rest[1], _json_object(body), source)
            if not rest:
                if method == "POST":
                    return self._create(object_type, _json_object(body), source)
                _allow(method, "GET")
                return self._list(object_type, params)
            if len(rest) == 1:
                if method == "PATCH":
                    return self._patch(object_type, rest[0], _json_object(body), source)
                if method == "DELETE":
                    self._archive(object_type, rest[0])
                    return _Response(204)
                _allow(method, "GET")
                return self._get(object_type, rest[0], params)
        if segments[:2] == ["crm", "v4"]:
            return self._v4(method, segments[2:], params, body)
        raise HubSpotError(404, "OBJECT_NOT_FOUND", f"Unable to find a resource at {path}")

    # ---------------------------------------------------------------- objects

    def _wire(
        self,
        record: Record,
        properties: Sequence[str],
        with_history: Sequence[str] = (),
        trace_id: str | None = None,
    ) -> dict[str, Any]:
        names = result_properties(record.type, properties)
        names += [n for n in with_history if n not in names]
        body: dict[str, Any] = {
            "id": record.id,
            "properties": self.portal.values(record, names),
        }
        if with_history:
            body["propertiesWithHistory"] = self.portal.history(record, with_history)
        body["createdAt"] = format_datetime(record.created_at)
        body["updatedAt"] = format_datetime(record.updated_at)
        body["archived"] = record.archived
        if record.archived:
            body["archivedAt"] = format_datetime(record.updated_at)
        if trace_id is not None:
            body["objectWriteTraceId"] = trace_id
        return body

    def _get(self, object_type: str, object_id: str, params: Mapping[str, list[str]]) -> _Response:
        if params.get("idProperty"):
            raise HubSpotError(
                400, "VALIDATION_ERROR", "idProperty is not supported by the emulator"
            )
        record = self.portal.require(object_type, object_id)
        body = self._wire(
            record, _names(params, "properties"), _names(params, "propertiesWithHistory")
        )
        associations: dict[str, Any] = {}
        for to_name in _names(params, "associations"):
            to_type = _object_type(to_name)
            linked = self.portal.associated(object_type, record.id, to_type)
            results = []
            for to_id in sorted(linked, key=int):
                for type_id in sorted(linked[to_id]):
                    kind = self.portal.association_type(object_type, to_type, type_id)
                    name = (
                        (kind.v3_name or (kind.label or "").lower().replace(" ", "_"))
                        if kind
                        else str(type_id)
                    )
                    results.append({"id": to_id, "type": name})
            if results:
                associations[to_type] = {"results": results}
        if associations:
            body["associations"] = associations
        return _Response.json(200, body)

    def _archive(self, object_type: str, object_id: str) -> None:
        """``DELETE .../{id}``: the object is archived (kept 90 days by HubSpot, listed
        with ``archived=true``)."""
        record = self.portal.require(object_type, object_id)
        record.archived = True
        record.updated_at = max(record.updated_at, self.portal.now())
        self._count(f"{object_type}_archived")

    def _list(self, object_type: str, params: Mapping[str, list[str]]) -> _Response:
        limit = int((params.get("limit") or ["10"])[-1])
        if not 1 <= limit <= 100:
            raise HubSpotError(400, "VALIDATION_ERROR", "limit must be between 1 and 100")
        after = (params.get("after") or [""])[-1]
        if (params.get("archived") or ["false"])[-1].lower() == "true":
            pool = [r for r in self.portal.records[object_type].values() if r.archived]
        else:
            pool = self.portal.all(object_type)
        rows = sorted(pool, key=lambda r: int(r.id))
        if after:
            rows = [r for r in rows if int(r.id) > int(after)]
        page = rows[:limit]
        body: dict[str, Any] = {
            "results": [
                self._wire(r, _names(params, "properties"), _names(params, "propertiesWithHistory"))
                for r in page
            ]
        }
        if len(rows) > limit:
            nxt = str(int(page[-1].id) + 1)
            body["paging"] = {
                "next": {
                    "after": nxt,
                    "link": f"{self._base()}/crm/v3/objects/{object_type}?after={nxt}",
                }
            }
        return _Response.json(200, body)

    def _base(self) -> str:
        return self.base_url if self.port is not None else "http://127.0.0.1"

    def _patch(
        self, object_type: str, object_id: str, payload: Mapping[str, Any], source: Source
    ) -> _Response:
        record = self.portal.require(object_type, object_id)
        properties = payload.get("properties")
        if not isinstance(properties, dict):
            raise HubSpotError(400, "VALIDATION_ERROR", "properties: an object is required")
        if object_type == "deals" and record.id in self.faults.fail_deals:
            raise HubSpotError(500, "INTERNAL_ERROR", "internal error")
        self.portal.update(record, properties, source)
        self._count(f"{object_type}_writes")
        return _Response.json(200, self._wire(record, list(properties)))

    def _create(self, object_type: str, payload: Mapping[str, Any], source: Source) -> _Response:
        outcome = self._create_one(object_type, payload, source)
        if isinstance(outcome, HubSpotError):
            raise outcome
        return _Response.json(201, outcome)

    def _create_one(
        self, object_type: str, payload: Mapping[str, Any], source: Source
    ) -> dict[str, Any] | HubSpotError:
        """Create one object with its associations, or the error (nothing created)."""
        trace = payload.get("objectWriteTraceId")
        trace_id = None if trace is None else str(trace)
        context = {"objectWriteTraceId": [trace_id]} if trace_id is not None else None
        properties = payload.get("properties")
        if not isinstance(properties, dict):
            return HubSpotError(
                400, "VALIDATION_ERROR", "properties: an object is required", context=context
            )
        try:
            clean = self.portal.check(object_type, properties, None)
            links = self._associations_input(object_type, payload.get("associations") or [])
        except HubSpotError as error:
            if context:
                error.context = {**(error.context or {}), **context}
            return error
        for to_type, to_id, _ in links:
            if to_type == "deals" and to_id in self.faults.fail_deals:
                return HubSpotError(
                    500,
                    "INTERNAL_ERROR",
                    f"Failed to create the association to deal {to_id}",
                    context={**(context or {}), "toObjectId": [to_id]},
                )
        moment = self.portal.now()
        record = self.portal.create(object_type, clean, source, at=moment, checked=True)
        for to_type, to_id, type_ids in links:
            self.portal.associate(object_type, record.id, to_type, to_id, type_ids, at=moment)
        self._count(f"{object_type}_created")
        return self._wire(record, list(properties), trace_id=trace_id)

    def _associations_input(
        self, object_type: str, raw: object
    ) -> list[tuple[str, str, list[int]]]:
        if not isinstance(raw, list):
            raise HubSpotError(400, "VALIDATION_ERROR", "associations must be a list")
        links: list[tuple[str, str, list[int]]] = []
        for item in raw:
            to = item.get("to") if isinstance(item, dict) else None
            types = item.get("types") if isinstance(item, dict) else None
            if (
                not isinstance(to, dict)
                or to.get("id") in (None, "")
                or not isinstance(types, list)
                or not types
            ):
                raise HubSpotError(
                    400, "VALIDATION_ERROR", "each association needs to.id and types"
                )
            to_id = str(to["id"])
            type_ids: list[int] = []
            candidates: list[str] = []
            for spec in types:
                if not isinstance(spec, dict) or not isinstance(spec.get("associationTypeId"), int):
                    raise HubSpotError(
                        400, "VALIDATION_ERROR", "each association type needs an associationTypeId"
                    )
                type_ids.append(int(spec["associationTypeId"]))
            for to_type in OBJECT_TYPES:
                if all(self.portal.association_type(object_type, to_type, t) for t in type_ids):
                    candidates.append(to_type)
            if not candidates:
                raise HubSpotError(
                    400,
                    "VALIDATION_ERROR",
                    f"association type ids {type_ids} are not valid for "
                    f"{OBJECT_TYPES[object_type]}",
                )
            target_type = next((t for t in candidates if self.portal.get(t, to_id)), None)
            if target_type is None:
                raise HubSpotError(
                    400,
                    "VALIDATION_ERROR",
                    "One or more associations are invalid: "
                    f"no {OBJECT_TYPES[candidates[0]]} with id {to_id}",
                    context={"toObjectId": [to_id]},
                )
            links.append((target_type, to_id, type_ids))
        return links

    def _batch(
        self, object_type: str, action: str, payload: Mapping[str, Any], source: Source
    ) -> _Response:
        inputs = payload.get("inputs")
        if not isinstance(inputs, list):
            raise HubSpotError(400, "VALIDATION_ERROR", "inputs: a list is required")
        if len(inputs) > MAX_BATCH:
            raise HubSpotError(
                400,
                "VALIDATION_ERROR",
                f"Batch input size of {len(inputs)} is greater than the maximum of {MAX_BATCH}",
            )
        started = format_datetime(self.portal.now())
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        correlation = str(uuid.uuid4())
        if action == "read":
            properties = _str_list(payload.get("properties"))
            with_history = _str_list(payload.get("propertiesWithHistory"))
            missing: list[str] = []
            seen: set[str] = set()
            for item in inputs:
                object_id = str(item.get("id")) if isinstance(item, dict) else ""
                if object_id in seen:
                    continue
                seen.add(object_id)
                record = self.portal.get(object_type, object_id)
                if record is None:
                    missing.append(object_id)
                else:
                    results.append(self._wire(record, properties, with_history))
            if missing:
                errors.append(
                    {
                        "status": "error",
                        "category": "OBJECT_NOT_FOUND",
                        "message": f"Could not get some {OBJECT_TYPES[object_type].upper()} "
                        "objects, they may be deleted or not exist. Check that ids are valid.",
                        "context": {"ids": missing},
                    }
                )
            ok_status = 200
        elif action == "create":
            for item in inputs:
                outcome = self._create_one(
                    object_type, item if isinstance(item, dict) else {}, source
                )
                if isinstance(outcome, HubSpotError):
                    error_body = outcome.body(correlation)
                    error_body.pop("correlationId", None)
                    errors.append(error_body)
                else:
                    results.append(outcome)
            ok_status = 201
        elif action == "update":
            for item in inputs:
                outcome = self._update_one(
                    object_type, item if isinstance(item, dict) else {}, source
                )
                if isinstance(outcome, HubSpotError):
                    error_body = outcome.body(correlation)
                    error_body.pop("correlationId", None)
                    errors.append(error_body)
                else:
                    results.append(outcome)
            ok_status = 200
        else:
            raise HubSpotError(404, "OBJECT_NOT_FOUND", f"Unable to find batch action {action!r}")
        key = f"{object_type}_batch_{action}_inputs"
        self.calls[key] = self.calls.get(key, 0) + len(inputs)
        body: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if errors:
            body["numErrors"] = len(errors)
            body["errors"] = errors
        body["startedAt"] = started
        body["completedAt"] = format_datetime(self.portal.now())
        return _Response.json(207 if errors else ok_status, body)

    def _update_one(
        self, object_type: str, item: Mapping[str, Any], source: Source
    ) -> dict[str, Any] | HubSpotError:
        object_id = str(item.get("id", ""))
        trace = item.get("objectWriteTraceId")
        context = {"ids": [object_id]}
        if trace is not None:
            context["objectWriteTraceId"] = [str(trace)]
        record = self.portal.get(object_type, object_id)
        if record is None:
            return HubSpotError(
                404,
                "OBJECT_NOT_FOUND",
                f"No {OBJECT_TYPES[object_type]} with id {object_id}",
                context=context,
            )
        if object_type == "deals" and object_id in self.faults.fail_deals:
            return HubSpotError(500, "INTERNAL_ERROR", "internal error", context=context)
        properties = item.get("properties")
        if not isinstance(properties, dict):
            return HubSpotError(
                400, "VALIDATION_ERROR", "properties: an object is required", context=context
            )
        try:
            self.portal.update(record, properties, source)
        except HubSpotError as error:
            error.context = {**(error.context or {}), **context}
            return error
        self._count(f"{object_type}_writes")
        return self._wire(record, list(properties), trace_id=None if trace is None else str(trace))

    def _search(self, object_type: str, payload: Mapping[str, Any]) -> _Response:
        request = parse_request(self.portal, object_type, payload, self.max_search_results)
        total, page, after = search(self.portal, object_type, request)
        body: dict[str, Any] = {
            "total": total,
            "results": [self._wire(r, request.properties) for r in page],
        }
        if after is not None:
            body["paging"] = {"next": {"after": str(after)}}
        return _Response.json(200, body)

    def _owners(self, params: Mapping[str, list[str]]) -> _Response:
        owners = self.portal.owners
        email = (params.get("email") or [""])[-1]
        if email:
            owners = [o for o in owners if o["email"] == email]
        return _Response.json(200, {"results": owners})

    def _properties(self, method: str, segments: list[str], body: bytes) -> _Response:
        object_type = _object_type(segments[0])
        known = self.portal.properties[object_type]
        if len(segments) == 2:
            _allow(method, "GET")
            prop = known.get(segments[1])
            if prop is None:
                raise HubSpotError(
                    404, "OBJECT_NOT_FOUND", f"Unable to find property {segments[1]}"
                )
            return _Response.json(200, prop.wire())
        if method == "GET":
            return _Response.json(
                200, {"results": [p.wire(i) for i, p in enumerate(known.values())]}
            )
        _allow(method, "POST")
        if object_type != "deals":
            raise HubSpotError(400, "VALIDATION_ERROR", "the emulator creates deal properties only")
        payload = _json_object(body)
        name = payload.get("name")
        kind = payload.get("type")
        field_type = payload.get("fieldType")
        if not isinstance(name, str) or not _PROPERTY_NAME.match(name):
            raise HubSpotError(400, "VALIDATION_ERROR", f"Property name {name!r} is not valid")
        if name in known:
            raise HubSpotError(
                409, "OBJECT_ALREADY_EXISTS", f"Property named '{name}' already exists."
            )
        if kind not in _PROPERTY_TYPES or field_type not in _PROPERTY_TYPES[str(kind)]:
            raise HubSpotError(
                400, "VALIDATION_ERROR", f"type {kind!r} with fieldType {field_type!r} is not valid"
            )
        label, group = payload.get("label"), payload.get("groupName")
        if not isinstance(label, str) or not label or not isinstance(group, str) or not group:
            raise HubSpotError(400, "VALIDATION_ERROR", "label and groupName are required")
        created = format_datetime(self.portal.now())
        prop = PropertyDef(
            name,
            label,
            str(kind),
            str(field_type),
            group,
            str(payload.get("description") or ""),
            hubspot_defined=False,
            created_at=created,
        )
        self.portal.custom_properties.append(prop)
        self.portal.refresh_schema()
        self._count("property_created")
        return _Response.json(201, prop.wire(len(self.portal.properties[object_type]) - 1))

    def _v4(
        self, method: str, segments: list[str], params: Mapping[str, list[str]], body: bytes
    ) -> _Response:
        # objects/{from}/{id}/associations/{to}
        if len(segments) == 5 and segments[0] == "objects" and segments[3] == "associations":
            _allow(method, "GET")
            from_type, to_type = _object_type(segments[1]), _object_type(segments[4])
            limit = int((params.get("limit") or ["500"])[-1])
            after = int((params.get("after") or ["0"])[-1] or 0)
            rows = self._v4_rows(from_type, segments[2], to_type)
            page = rows[after : after + limit]
            result: dict[str, Any] = {"results": page}
            if after + limit < len(rows):
                result["paging"] = {"next": {"after": str(after + limit), "link": None}}
            return _Response.json(200, result)
        # associations/{from}/{to}/labels | batch/read
        if len(segments) >= 4 and segments[0] == "associations":
            from_type, to_type = _object_type(segments[1]), _object_type(segments[2])
            if segments[3:] == ["labels"]:
                _allow(method, "GET")
                kinds = self.portal.association_types(from_type, to_type)
                return _Response.json(200, {"results": [k.wire() for k in kinds]})
            if segments[3:] == ["batch", "read"]:
                _allow(method, "POST")
                return self._v4_batch_read(from_type, to_type, _json_object(body))
        raise HubSpotError(404, "OBJECT_NOT_FOUND", "Unable to find the association resource")

    def _v4_rows(self, from_type: str, from_id: str, to_type: str) -> list[dict[str, Any]]:
        linked = self.portal.associated(from_type, from_id, to_type)
        rows = []
        for to_id in sorted(linked, key=int):
            kinds = [
                self.portal.association_type(from_type, to_type, t) for t in sorted(linked[to_id])
            ]
            rows.append(
                {"toObjectId": int(to_id), "associationTypes": [k.wire() for k in kinds if k]}
            )
        return rows

    def _v4_batch_read(self, from_type: str, to_type: str, payload: Mapping[str, Any]) -> _Response:
        inputs = payload.get("inputs")
        if not isinstance(inputs, list):
            raise HubSpotError(400, "VALIDATION_ERROR", "inputs: a list is required")
        if len(inputs) > MAX_ASSOCIATION_BATCH:
            raise HubSpotError(
                400,
                "VALIDATION_ERROR",
                f"Batch input size of {len(inputs)} is greater than the maximum of "
                f"{MAX_ASSOCIATION_BATCH}",
            )
        started = format_datetime(self.portal.now())
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for item in inputs:
            from_id = str(item.get("id")) if isinstance(item, dict) else ""
            rows = self._v4_rows(from_type, from_id, to_type)
            if rows:
                results.append({"from": {"id": from_id}, "to": rows})
            else:
                errors.append(
                    {
                        "status": "error",
                        "category": "VALIDATION_ERROR",
                        "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                        "context": {"fromObjectId": [from_id]},
                        "message": f"No {OBJECT_TYPES[to_type]} is associated with "
                        f"{OBJECT_TYPES[from_type]} {from_id}.",
                    }
                )
        body: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if errors:
            body["numErrors"] = len(errors)
            body["errors"] = errors
        body["startedAt"] = started
        body["completedAt"] = format_datetime(self.portal.now())
        return _Response.json(207 if errors else 200, body)

    # ---------------------------------------------------------------- control API

    def _control(
        self, method: str, path: str, params: Mapping[str, list[str]], body: bytes
    ) -> _Response:
        """The control API under ``/__emulator/`` (no auth: the emulator binds localhost)."""
        action = path[len("/__emulator/") :].strip("/")
        payload = _json_object(body) if body.strip() else {}
        segments = action.split("/")
        if method == "GET":
            if action == "state":
                return _Response.json(200, self.state())
            if action == "calls":
                return _Response.json(200, self.call_counts())
            if action == "notes":
                deal = (params.get("deal") or [""])[-1]
                return _Response.json(200, {"results": self.notes(deal or None)})
            if action == "deliveries":
                with self._lock:
                    return _Response.json(200, {"results": [d.summary() for d in self.deliveries]})
            if action == "deals":
                with self._lock:
                    records = self.portal.all("deals")
                    wanted = _names(params, "properties") or list(self.portal.properties["deals"])
                    rows = [
                        {"id": r.id, "properties": self.portal.values(r, wanted)} for r in records
                    ]
                return _Response.json(200, {"results": rows})
            if segments[0] == "deals" and len(segments) == 2:
                found = self.deal(segments[1])
                if found is None:
                    raise HubSpotError(404, "OBJECT_NOT_FOUND", "resource not found")
                return _Response.json(200, {"id": segments[1], "properties": found})
            raise HubSpotError(404, "OBJECT_NOT_FOUND", f"no control endpoint {action!r}")
        _allow(method, "POST")
        if action == "faults":
            with self._lock:
                if payload.get("clear"):
                    self.clear_faults()
                if "rate_limit" in payload:
                    self.faults.rate_limit = int(payload["rate_limit"])
                if "errors" in payload:
                    self.faults.errors = int(payload["errors"])
                    self.faults.error_status = int(payload.get("error_status", 500))
                if "delay" in payload:
                    count = payload.get("delay_count")
                    self.faults.delay = float(payload["delay"])
                    self.faults.delay_count = None if count is None else int(count)
                if "fail_deals" in payload:
                    self.faults.fail_deals = {str(d) for d in payload["fail_deals"]}
                if "ten_second_limit" in payload or "search_per_second" in payload:
                    ten = payload.get("ten_second_limit")
                    per_second = payload.get("search_per_second")
                    self.set_rate_limits(
                        None if ten is None else int(ten),
                        None if per_second is None else int(per_second),
                    )
                expired = self.auth.expire_all() if payload.get("expire_tokens") else 0
            return _Response.json(200, {"ok": True, "expired_tokens": expired})
        if action == "seed":
            when = payload.get("as_of")
            ids = self.seed(
                int(payload.get("count", 16)),
                as_of=parse_datetime(when) if isinstance(when, str) else None,
            )
            return _Response.json(200, {"ids": ids})
        if action == "token":
            if payload.get("kind") == "private":
                return _Response.json(200, {"access_token": self.PRIVATE_APP_TOKEN})
            access, refresh = self.issue_tokens()
            return _Response.json(
                200, {"access_token": access, "refresh_token": refresh, "expires_in": self.auth.ttl}
            )
        if action == "authorization_code":
            return _Response.json(
                200, {"code": self.authorization_code(str(payload["redirect_uri"]))}
            )
        if action == "reset_calls":
            self.reset_calls()
            return _Response.json(200, {"ok": True})
        if action == "save":
            return _Response.json(200, {"path": str(self.save())})
        if action == "webhooks":
            url = payload.get("url")
            secret = payload.get("client_secret")
            self.configure_webhooks(
                url if isinstance(url, str) else None,
                client_secret=secret if isinstance(secret, str) else None,
                style=str(payload.get("style", "object")),
                max_attempts=int(payload.get("max_attempts", 10)),
                backoff=float(payload.get("backoff", 0.2)),
                timeout=float(payload.get("timeout", 5.0)),
            )
            return _Response.json(200, {"ok": True})
        if segments[0] == "deals" and len(segments) == 3 and segments[2] == "stage":
            self.set_stage(segments[1], str(payload["stage"]))
            return _Response.json(200, {"id": segments[1], "dealstage": payload["stage"]})
        if segments[0] == "deals" and len(segments) == 2:
            properties = payload.get("properties")
            if not isinstance(properties, dict):
                raise HubSpotError(400, "VALIDATION_ERROR", "properties: an object is required")
            changed = self.update_deal(segments[1], properties)
            return _Response.json(200, {"id": segments[1], "changed": changed})
        raise HubSpotError(404, "OBJECT_NOT_FOUND", f"no control endpoint {action!r}")

    def state(self) -> dict[str, Any]:
        """What ``GET /__emulator/state`` answers."""
        with self._lock:
            return {
                "base_url": self.base_url if self.port is not None else None,
                "portal_id": self.portal_id,
                "app_id": self.app_id,
                "calls": dict(self.calls),
                "records": {name: len(self.portal.all(name)) for name in OBJECT_TYPES},
                "rate_limits": {
                    "ten_second_limit": self.ten_second.maximum,
                    "search_per_second": self.secondly.maximum,
                    "daily_limit": self.daily_limit,
                    "daily_used": self.daily_used,
                },
                "webhooks": {"url": self.webhook_url, "style": self.webhook_style},
                "deliveries": [d.summary() for d in self.deliveries],
                "credentials": {
                    "private_app_token": self.PRIVATE_APP_TOKEN,
                    "client_id": self.CLIENT_ID,
                    "client_secret": self.CLIENT_SECRET,
                },
            }


# ---------------------------------------------------------------------- helpers


def _owner(owner_id: int, user_id: int, first: str, last: str, email: str) -> dict[str, Any]:
    return {
        "id": str(owner_id),
        "email": email,
        "type": "PERSON",
        "firstName": first,
        "lastName": last,
        "userId": user_id,
        "userIdIncludingInactive": user_id,
        "createdAt": "2024-03-11T15:02:44.182Z",
        "updatedAt": "2024-03-11T15:02:44.182Z",
        "archived": False,
    }


def _object_type(name: str) -> str:
    aliases = {
        "deal": "deals",
        "contact": "contacts",
        "note": "notes",
        "0-3": "deals",
        "0-1": "contacts",
        "0-46": "notes",
    }
    found = name if name in OBJECT_TYPES else aliases.get(name)
    if found is None:
        raise HubSpotError(400, "VALIDATION_ERROR", f"Unable to infer object type from: {name}")
    return found


def _kind(method: str, path: str) -> str:
    """The call-count key of a request (``deals_search``, ``notes_batch_create``...)."""
    segments = [s for s in path.strip("/").split("/") if s]
    if segments[:2] == ["crm", "v3"] and len(segments) >= 3:
        area = segments[2]
        if area == "objects" and len(segments) >= 4:
            name = segments[3]
            rest = segments[4:]
            if rest == ["search"]:
                return f"{name}_search"
            if len(rest) == 2 and rest[0] == "batch":
                return f"{name}_batch_{rest[1]}"
            if not rest:
                return f"{name}_create" if method == "POST" else f"{name}_list"
            if method == "DELETE":
                return f"{name}_archive"
            return f"{name}_update" if method == "PATCH" else f"{name}_get"
        if area == "properties":
            return "property_create" if method == "POST" else "properties"
        return area  # pipelines, owners
    if segments[:2] == ["crm", "v4"]:
        if segments[-1] == "labels":
            return "association_labels"
        if segments[-2:] == ["batch", "read"]:
            return "associations_batch_read"
        return "associations"
    if segments[:2] == ["oauth", "v1"]:
        return "token_info"
    if segments[:1] == ["account-info"]:
        return "account_info"
    return "other"


def _allow(method: str, *methods: str) -> None:
    if method not in methods:
        raise HubSpotError(405, "VALIDATION_ERROR", f"HTTP method {method} is not supported here")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body.decode("utf-8") or "null")
    except (UnicodeError, ValueError) as error:
        raise HubSpotError(400, "VALIDATION_ERROR", f"Invalid input JSON: {error}") from None
    if not isinstance(value, dict):
        raise HubSpotError(400, "VALIDATION_ERROR", "Invalid input JSON: an object is required")
    return value


def _names(params: Mapping[str, list[str]], key: str) -> list[str]:
    """A list query parameter: repeated (``a=1&a=2``) or comma-separated."""
    names: list[str] = []
    for value in params.get(key, []):
        for name in value.split(","):
            name = name.strip()
            if name and name not in names:
                names.append(name)
    return names


def _str_list(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HubSpotError(400, "VALIDATION_ERROR", "a list of property names is required")
    return list(value)
