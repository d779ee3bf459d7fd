"""Log hygiene: secrets in request URLs never reach a log line.

Two routes carry a credential in their URL: a Salesforce Outbound Message
(``/webhooks/salesforce/<id>/outbound/<token>``) and the OAuth pages
(``/oauth/begin/<ticket>``, ``/oauth/callback/<provider>?code=...&state=...``).
:func:`redact_url` masks them; :class:`RedactUrlSecrets` applies it to uvicorn's
access log records (whose arguments hold the path) and to any other record's
message, and :func:`install_redaction` attaches it to the loggers that print URLs.
"""

from __future__ import annotations

import logging
import re

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
