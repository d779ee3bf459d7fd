"""Timestamped HMAC signatures for the JSON webhooks we define ourselves.

Signed string: ``<timestamp> "." <raw body>``; ``sha256=<hex HMAC-SHA256>`` in a
signature header, the timestamp (epoch seconds) in another. A request is
authentic when the signature matches (compared in constant time) and its
timestamp is within :data:`TOLERANCE` of when it was received. Used by the fake
CRM's webhooks and the Salesforce signed-JSON endpoint.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from integrations.base import InboundRequest, WebhookRejected

#: A signed request older (or further in the future) than this is refused as a replay.
TOLERANCE = timedelta(minutes=5)


def sign(
    body: bytes, secret: str, timestamp: int, signature_header: str, timestamp_header: str
) -> dict[str, str]:
    """The headers that make ``body`` authentic at ``timestamp``."""
    digest = hmac.new(
        secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return {signature_header: f"sha256={digest}", timestamp_header: str(timestamp)}


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, whatever its case."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def verify(
    request: InboundRequest,
    secret: str | None,
    signature_header: str,
    timestamp_header: str,
    tolerance: timedelta = TOLERANCE,
) -> None:
    """Raise :class:`WebhookRejected` (401) unless the request is authentic and fresh."""
    if not secret:
        raise WebhookRejected("no webhook secret configured for this connection", status=401)
    signature = header(request.headers, signature_header)
    stamp = header(request.headers, timestamp_header)
    if not signature or not stamp:
        raise WebhookRejected("missing signature or timestamp header", status=401)
    stamp = stamp.strip()
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise WebhookRejected("malformed signature timestamp", status=401)
    expected = sign(request.body, secret, int(stamp), signature_header, timestamp_header)
    if not hmac.compare_digest(signature.strip().encode(), expected[signature_header].encode()):
        raise WebhookRejected("invalid signature", status=401)
    received = request.received_at
    if received.tzinfo is None:
        received = received.replace(tzinfo=UTC)
    sent = datetime.fromtimestamp(int(stamp), UTC)
    if abs(received - sent) > tolerance:
        raise WebhookRejected("signature timestamp outside the allowed window", status=401)
