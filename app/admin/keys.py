"""API keys for the admin API and the in-CRM cards.

A key reads ``dck_<prefix>_<secret>``: ``prefix`` is 8 random letters and
digits, stored as is (public: it finds the row and names the key in lists);
``secret`` is 32 random bytes, url-safe base64 (43 characters), of which only a
SHA-256 hex digest is stored. The key is shown once, at creation.

Services flush; the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import string
from collections.abc import Sequence
from datetime import timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.admin.models import ApiKey
from app.admin.models import ApiKeyScope as Scope
from app.db import utcnow

__all__ = [
    "KEY_PATTERN",
    "ApiKeyNotFound",
    "Scope",
    "authenticate",
    "create_api_key",
    "find_api_key",
    "list_api_keys",
    "parse_api_key",
    "revoke_api_key",
]

logger = logging.getLogger(__name__)

KEY_TAG: Final = "dck"
PREFIX_LENGTH: Final = 8
SECRET_BYTES: Final = 32
_PREFIX_ALPHABET: Final = string.ascii_letters + string.digits
#: ``dck_<8 letters/digits>_<43 url-safe base64 characters>``.
KEY_PATTERN: Final = re.compile(r"^dck_([A-Za-z0-9]{8})_([A-Za-z0-9_-]{43})$")
#: ``last_used_at`` is written at most this often per key (no write on every request).
LAST_USED_RESOLUTION: Final = timedelta(minutes=1)
_NAME_MAX: Final = 200

# Compared against when the prefix is unknown, so that a miss costs the same hash and
# comparison as a hit. It is the digest of a random value nobody knows.
_UNKNOWN_PREFIX_DIGEST: Final = hashlib.sha256(secrets.token_bytes(32)).hexdigest()


class ApiKeyNotFound(LookupError):
    """No API key has that id or prefix."""


def _digest(secret: str) -> str:
    # A plain SHA-256 is enough here: the secret is 256 bits from ``secrets``, so there
    # is nothing to brute-force; slow password hashes (bcrypt, argon2) only help for
    # low-entropy, human-chosen secrets, and would slow down every API request.
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def parse_api_key(presented: str) -> tuple[str, str] | None:
    """``(prefix, secret)`` of a well-formed key, else ``None``."""
    if not isinstance(presented, str):
        return None
    match = KEY_PATTERN.match(presented)
    if match is None:
        return None
    return match.group(1), match.group(2)


def _new_prefix(session: Session) -> str:
    for _attempt in range(10):
        prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
        if session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)) is None:
            return prefix
    raise RuntimeError("could not find an unused API key prefix")  # 62**8 prefixes


def create_api_key(
    session: Session,
    name: str,
    scope: Scope | str,
    connection_ids: Sequence[str] | None = None,
) -> tuple[ApiKey, str]:
    """A new key: the stored row and the plaintext key (``dck_<prefix>_<secret>``).

    The plaintext is returned once and never stored. ``connection_ids`` limits
    what the key may see (None: every connection). ``ValueError`` for an empty
    or overlong name, an unknown scope, or an unknown connection.
    """
    clean_name = name.strip() if isinstance(name, str) else ""
    if not clean_name:
        raise ValueError("an API key needs a name")
    if len(clean_name) > _NAME_MAX:
        raise ValueError(f"an API key name has at most {_NAME_MAX} characters")
    try:
        chosen = Scope(scope)
    except ValueError:
        allowed = ", ".join(member.value for member in Scope)
        raise ValueError(f"unknown scope {scope!r} (one of: {allowed})") from None
    limited: list[str] | None = None
    if connection_ids is not None:
        from app.connections.models import Connection

        limited = sorted(set(connection_ids))
        known = set(session.scalars(select(Connection.id).where(Connection.id.in_(limited))))
        unknown = [cid for cid in limited if cid not in known]
        if unknown:
            raise ValueError(f"no connection {unknown[0]!r}")
    prefix = _new_prefix(session)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    key = ApiKey(
        name=clean_name,
        prefix=prefix,
        secret_hash=_digest(secret),
        scope=chosen,
        connection_ids=limited,
    )
    session.add(key)
    session.flush()
    logger.info("API key %s created (id %s, scope %s)", prefix, key.id, chosen.value)
    return key, f"{KEY_TAG}_{prefix}_{secret}"


def authenticate(session: Session, presented: str) -> ApiKey | None:
    """The active key ``presented`` belongs to, else ``None``; records its use.

    The secret's digest is compared in constant time, against a dummy digest
    when the prefix is unknown, so a miss and a wrong secret cost the same.
    """
    parsed = parse_api_key(presented)
    if parsed is None:
        hmac.compare_digest(_UNKNOWN_PREFIX_DIGEST, _UNKNOWN_PREFIX_DIGEST)
        return None
    prefix, secret = parsed
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    expected = key.secret_hash if key is not None else _UNKNOWN_PREFIX_DIGEST
    matches = hmac.compare_digest(_digest(secret), expected)
    if key is None or not matches or key.revoked_at is not None:
        return None
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        key.last_used_at = now
        session.flush()
    return key


def find_api_key(session: Session, id_or_prefix: str) -> ApiKey | None:
    """The key with this id or prefix (a full key string also works, by its prefix)."""
    parsed = parse_api_key(id_or_prefix)
    prefix = parsed[0] if parsed is not None else id_or_prefix
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None:
        key = session.get(ApiKey, id_or_prefix)
    return key


def revoke_api_key(session: Session, key_id: str) -> ApiKey:
    """Revoke the key ``key_id`` (idempotent: a revoked key keeps its first revocation time)."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise ApiKeyNotFound(f"no API key with id {key_id!r}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
        logger.info("API key %s revoked (id %s)", key.prefix, key.id)
    return key


def list_api_keys(session: Session, *, include_revoked: bool = True) -> list[ApiKey]:
    """Every key, oldest first (rows hold no secret, only its digest)."""
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(session.scalars(query))
