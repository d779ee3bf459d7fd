"""Card keys: ``dcc_<prefix>_<secret>``, for the ``/cards`` endpoints of one connection.

Made like API keys (``app/admin/keys.py``): an 8-character public prefix that
finds the row, a 32-byte random secret (url-safe base64, 43 characters) of
which only the SHA-256 is stored, shown once. The tag differs (``dcc`` against
``dck``) and the keys live in their own table, so an API key is never a card
key and a card key is never an API key, whatever either route is asked.

Services flush; the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import string
from datetime import timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cards.models import CardKey
from app.connections.models import Connection
from app.db import utcnow

logger = logging.getLogger(__name__)

HEADER: Final = "X-Dealcoach-Card-Key"
KEY_PATTERN: Final = re.compile(r"^dcc_([A-Za-z0-9]{8})_([A-Za-z0-9_-]{43})$")
_ALPHABET: Final = string.ascii_letters + string.digits
_UNKNOWN_DIGEST: Final = hashlib.sha256(secrets.token_bytes(32)).hexdigest()
_LAST_USED_RESOLUTION: Final = timedelta(minutes=1)
_NAME_MAX: Final = 200


class CardKeyNotFound(LookupError):
    """No card key of that connection has that id or prefix."""


def _digest(secret: str) -> str:
    # 256 random bits: a fast hash is enough (see app/admin/keys.py).
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def create_card_key(session: Session, connection: Connection, name: str) -> tuple[CardKey, str]:
    """A new key for ``connection``'s cards: the row and the plaintext (returned once).
    ``ValueError`` for an empty or overlong name."""
    clean = name.strip() if isinstance(name, str) else ""
    if not clean:
        raise ValueError("a card key needs a name")
    if len(clean) > _NAME_MAX:
        raise ValueError(f"a card key name has at most {_NAME_MAX} characters")
    for _attempt in range(10):
        prefix = "".join(secrets.choice(_ALPHABET) for _ in range(8))
        if session.scalar(select(CardKey.id).where(CardKey.prefix == prefix)) is None:
            break
    else:  # pragma: no cover - 62**8 prefixes
        raise RuntimeError("could not find an unused card key prefix")
    secret = secrets.token_urlsafe(32)
    key = CardKey(
        connection_id=connection.id, name=clean, prefix=prefix, secret_hash=_digest(secret)
    )
    session.add(key)
    session.flush()
    logger.info("card key %s created for connection %s (id %s)", prefix, connection.id, key.id)
    return key, f"dcc_{prefix}_{secret}"


def authenticate_card_key(session: Session, presented: str | None) -> CardKey | None:
    """The active card key ``presented`` is, else None (constant-time digest compare,
    against a dummy digest for an unknown prefix); records its use once a minute."""
    match = KEY_PATTERN.match(presented.strip()) if isinstance(presented, str) else None
    if match is None:
        hmac.compare_digest(_UNKNOWN_DIGEST, _UNKNOWN_DIGEST)
        return None
    prefix, secret = match.group(1), match.group(2)
    key = session.scalar(select(CardKey).where(CardKey.prefix == prefix))
    expected = key.secret_hash if key is not None else _UNKNOWN_DIGEST
    matches = hmac.compare_digest(_digest(secret), expected)
    if key is None or not matches or key.revoked_at is not None:
        return None
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at >= _LAST_USED_RESOLUTION:
        key.last_used_at = now
        session.flush()
    return key


def list_card_keys(session: Session, connection_id: str | None = None) -> list[CardKey]:
    """Card keys (of one connection, or all), oldest first; rows hold only digests."""
    query = select(CardKey).order_by(CardKey.created_at, CardKey.id)
    if connection_id is not None:
        query = query.where(CardKey.connection_id == connection_id)
    return list(session.scalars(query))


def find_card_key(session: Session, id_or_prefix: str) -> CardKey | None:
    """The key with this id or prefix (a whole key also works, by its prefix)."""
    match = KEY_PATTERN.match(id_or_prefix)
    prefix = match.group(1) if match else id_or_prefix
    key = session.scalar(select(CardKey).where(CardKey.prefix == prefix))
    return key if key is not None else session.get(CardKey, id_or_prefix)


def revoke_card_key(session: Session, key: CardKey) -> CardKey:
    """Revoke (idempotent: the first revocation time is kept)."""
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
        logger.info("card key %s revoked (id %s)", key.prefix, key.id)
    return key


def card_key_out(key: CardKey) -> dict[str, object]:
    return {
        "id": key.id,
        "connection_id": key.connection_id,
        "name": key.name,
        "prefix": key.prefix,
        "created_at": key.created_at.isoformat(),
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }
