"""Log hygiene: secrets in request URLs never reach a log line.

Two routes carry a credential in their URL: a Salesforce Outbound Message
(``/webhooks/salesforce/<id>/outbound/<token>``) and the OAuth pages
(``/oauth/begin/<ticket>``, ``/oauth/callback/<provider>?code=...&state=...``).
:func:`redact_url` masks them; :class:`RedactUrlSecrets` applies it to uvicorn's
access log records (whose arguments hold the path) and to any other record's
message, and :func:`install_redaction` attaches it to the loggers that print URLs.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REDACTED = "[redacted]"

#: Path segments that are credentials: the part after these prefixes, up to ``/`` or ``?``.
_SECRET_SEGMENTS = re.compile(r"(/outbound/|/oauth/begin/)[^/?#\s\"]+")
#: Query values on webhook and OAuth routes (``code``, ``state``, any other): masked.
_QUERY = re.compile(r"((?:/webhooks/|/oauth/)[^?\s\"]*\?)([^#\s\"]*)")
_QUERY_VALUE = re.compile(r"=([^&]*)")

#: Loggers whose records carry request URLs.
URL_LOGGERS = ("uvicorn.access", "uvicorn.error", "httpx", "app")


def redact_url(text: str) -> str:
    """``text`` (a path, a URL or a log line) with URL-borne secrets masked."""
    text = _SECRET_SEGMENTS.sub(lambda m: m.group(1) + REDACTED, text)
    return _QUERY.sub(lambda m: m.group(1) + _QUERY_VALUE.sub("=" + REDACTED, m.group(2)), text)


def _redact_arg(value: object) -> object:
    """A log argument with URL secrets masked: strings, and objects whose text is a URL
    (``httpx.URL``); numbers and other values unchanged."""
    if isinstance(value, int | float | bool) or value is None:
        return value
    text = value if isinstance(value, str) else str(value)
    masked = redact_url(text)
    return masked if masked != text or isinstance(value, str) else value


class RedactUrlSecrets(logging.Filter):
    """Masks URL-borne secrets in a record's message and arguments (never drops it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_url(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redact_arg(value) for key, value in record.args.items()}
        return True


_FILTER = RedactUrlSecrets()


def install_redaction() -> None:
    """Attach the filter to the URL-printing loggers and to every root handler
    (idempotent; call after the server configured its logging)."""
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


# --- request ids and JSON lines -------------------------------------------------------------

#: The id of the request (or of the request that caused the task) being served.
request_id_var: ContextVar[str | None] = ContextVar("dealcoach_request_id", default=None)
#: Where :class:`RequestIdMiddleware` leaves the id in the ASGI scope.
REQUEST_ID_SCOPE_KEY = "dealcoach.request_id"
#: A client's ``X-Request-ID`` is kept when it looks like an id; else a new one is made.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")


def new_request_id(given: str | None = None) -> str:
    """``given`` when it is a plausible id (8-64 of ``A-Za-z0-9._:-``), else a new one."""
    if given and _CLIENT_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (``record.request_id``, or None)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (RFC 3339, UTC, ``Z``), ``level``, ``logger``,
    ``message``, ``request_id`` when there is one, ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, object] = {
            "ts": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class RequestIdMiddleware:
    """ASGI: every HTTP request gets an id (the client's ``X-Request-ID`` when it is a
    plausible one), set for the request's log lines and for the tasks it enqueues
    (:mod:`app.jobs` carries it), and echoed in the ``X-Request-ID`` response header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", ())).get(b"x-request-id", b"")
        request_id = new_request_id(given.decode("latin-1") if given else None)
        scope[REQUEST_ID_SCOPE_KEY] = request_id  # for the 500 handler, which runs outside
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class RateLimitRepeats(logging.Filter):
    """Lets at most ``burst`` records of one kind (logger, level, message template)
    through per ``window`` seconds; the rest are dropped and counted, and the next
    record of that kind let through says how many were dropped. A failure repeating
    in a tight loop (an unreachable queue, file descriptors running out) cannot flood
    the log."""

    def __init__(self, burst: int = 20, window: float = 10.0) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        with self._lock:
            start, count, dropped = self._seen.get(key, [now, 0.0, 0.0])
            if now - start > self.window:
                start, count = now, 0.0
            count += 1
            if count > self.burst:
                self._seen[key] = [start, count, dropped + 1]
                return False
            self._seen[key] = [start, count, 0.0]
            if len(self._seen) > 10_000:  # bound the memory on endless distinct messages
                self._seen.clear()
        if dropped:
            record.msg = f"{record.msg} [{int(dropped)} similar lines dropped]"
        return True


def configure_json_logging(level: str) -> None:
    """The root logger writes JSON lines to stderr with request ids and URL secrets
    redacted; uvicorn's loggers (access log included) go through it too."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(_FILTER)
    handler.addFilter(RateLimitRepeats())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
