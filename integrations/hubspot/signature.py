"""HubSpot request signatures, version 3 (webhooks and ``hubspot.fetch`` from app cards).

HubSpot signs a request it sends with the app's client secret:

- ``X-HubSpot-Request-Timestamp``: when it was sent, in milliseconds since the epoch;
- ``X-HubSpot-Signature-v3``: base64 of HMAC-SHA256(client secret,
  method + URI + raw body + timestamp), where the URI is the full public URL
  the request was sent to (scheme, host, path and query string) with the
  escapes ``%3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B`` decoded
  (:func:`decode_uri`); nothing else is decoded.

:func:`verify_v3` accepts a request whose signature matches one of the given
secrets (compared in constant time, every secret always compared) and whose
timestamp is at most :data:`MAX_AGE` old and at most :data:`MAX_SKEW` in the
future. Pure: no clock (``now`` is passed in), no I/O. ``hubspot.utils.signature.
Signature`` of ``hubspot-api-client`` computes the same value (the tests use it
as an independent check) but neither decodes the URI nor refuses future stamps.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = [
    "MAX_AGE",
    "MAX_SKEW",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SignatureError",
    "decode_uri",
    "sign_v3",
    "signed_headers",
    "verify_v3",
]

SIGNATURE_HEADER: Final = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER: Final = "X-HubSpot-Request-Timestamp"
#: A request signed longer ago than this is refused (HubSpot's documented rule).
MAX_AGE: Final = timedelta(minutes=5)
#: Clock skew tolerated for a timestamp in the future.
MAX_SKEW: Final = timedelta(seconds=30)

#: The escapes HubSpot decodes before signing, and nothing else (not %20, not %25).
_DECODED: Final = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_MAX_STAMP_DIGITS: Final = 15
_MAX_SIGNATURE_LENGTH: Final = 200


class SignatureError(ValueError):
    """The request is not authentically signed (the message says why, never a secret)."""


def decode_uri(uri: str) -> str:
    """``uri`` with HubSpot's listed escapes decoded (either case of hex digits), in one
    left-to-right pass: ``%253A`` stays ``%253A`` (``%25`` is not on the list)."""
    out: list[str] = []
    index = 0
    length = len(uri)
    while index < length:
        char = uri[index]
        if char == "%" and index + 3 <= length:
            decoded = _DECODED.get(uri[index : index + 3].upper())
            if decoded is not None:
                out.append(decoded)
                index += 3
                continue
        out.append(char)
        index += 1
    return "".join(out)


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp_ms: int | str) -> str:
    """The v3 signature of a request (``uri`` as sent; it is decoded here)."""
    message = (
        method.upper().encode()
        + decode_uri(uri).encode("utf-8")
        + body
        + str(timestamp_ms).encode("ascii")
    )
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_headers(
    secret: str, method: str, uri: str, body: bytes, timestamp_ms: int
) -> dict[str, str]:
    """The two headers HubSpot would send with this request (demo, tests)."""
    return {
        SIGNATURE_HEADER: sign_v3(secret, method, uri, body, timestamp_ms),
        TIMESTAMP_HEADER: str(timestamp_ms),
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def verify_v3(
    *,
    method: str,
    uri: str,
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    now: datetime,
    max_age: timedelta = MAX_AGE,
    max_skew: timedelta = MAX_SKEW,
) -> int:
    """The index in ``secrets`` of the secret that signed the request.

    Raises :class:`SignatureError` when a header is missing or malformed, the
    timestamp is older than ``max_age`` or more than ``max_skew`` ahead of
    ``now``, or no secret gives the signature. Every secret is compared (in
    constant time), so the time taken does not say which one failed.
    """
    signature = _header(headers, SIGNATURE_HEADER)
    stamp = _header(headers, TIMESTAMP_HEADER)
    if not signature or not stamp:
        raise SignatureError("missing X-HubSpot-Signature-v3 or X-HubSpot-Request-Timestamp")
    stamp = stamp.strip()
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > _MAX_STAMP_DIGITS:
        raise SignatureError("malformed X-HubSpot-Request-Timestamp (milliseconds expected)")
    signature = signature.strip()
    if len(signature) > _MAX_SIGNATURE_LENGTH or not signature.isascii():
        raise SignatureError("malformed X-HubSpot-Signature-v3")
    if not secrets:
        raise SignatureError("no client secret is configured to check HubSpot signatures")
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    sent = datetime.fromtimestamp(int(stamp) / 1000, UTC)
    given = signature.encode("ascii")
    matched = -1
    for index, secret in enumerate(secrets):
        expected = sign_v3(secret, method, uri, body, stamp).encode("ascii")
        if hmac.compare_digest(given, expected) and matched < 0:
            matched = index
    if matched < 0:
        raise SignatureError("invalid signature")
    if now - sent > max_age:
        raise SignatureError("the request timestamp is older than 5 minutes")
    if sent - now > max_skew:
        raise SignatureError("the request timestamp is in the future")
    return matched
