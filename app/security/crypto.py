"""Secrets at rest: CRM credentials and webhook secrets, encrypted with Fernet.

``DEALCOACH_SECRET_KEYS`` holds comma-separated Fernet keys, newest first. New
values are encrypted with the first key; any listed key decrypts. Rotation: put
a new key first, run ``dealcoach keys rotate`` (every stored secret is
re-encrypted with the newest key), then drop the old keys.

Without keys, development mode (DEALCOACH_DEV_MODE) uses a development key kept in
``<data_dir>/dev-secret.key`` (created with mode 0600); outside development mode a
missing key stops the service with :class:`SecretKeysMissing`.

No message raised or logged here contains key material or plaintext.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings

logger = logging.getLogger(__name__)

KEYS_ENV_VAR: Final = "DEALCOACH_SECRET_KEYS"
DEV_KEY_FILE_NAME: Final = "dev-secret.key"
_GENERATE_HINT: Final = "make one with `dealcoach keys generate`"

_dev_key_lock = threading.Lock()
_dev_key_warned: set[Path] = set()


class SecretKeysMissing(RuntimeError):
    """No encryption key is configured and development mode is off."""


class SecretKeyInvalid(ValueError):
    """A configured key is not a Fernet key (the message names the variable, never the key)."""


class SecretDecryptError(Exception):
    """A stored secret could not be decrypted (wrong keys, or tampered data)."""


def generate_key() -> str:
    """A new random Fernet key (url-safe base64 text), for ``DEALCOACH_SECRET_KEYS``."""
    return Fernet.generate_key().decode("ascii")


def parse_secret_keys(value: str, *, source: str = KEYS_ENV_VAR) -> list[Fernet]:
    """The Fernets of a comma-separated key list, in order; blank entries are skipped.

    Raises :class:`SecretKeyInvalid` naming ``source`` and the key's position.
    """
    entries = [entry.strip() for entry in value.split(",")]
    entries = [entry for entry in entries if entry]
    fernets = []
    for position, entry in enumerate(entries, start=1):
        try:
            fernets.append(Fernet(entry.encode("ascii")))
        except (ValueError, UnicodeEncodeError):
            # ``from None``: the underlying error must not carry the key along.
            raise SecretKeyInvalid(
                f"{source}: key {position} of {len(entries)} is not a valid Fernet key "
                f"(32 url-safe base64-encoded bytes); {_GENERATE_HINT}"
            ) from None
    return fernets


class SecretBox:
    """Encrypts and decrypts secrets with a list of Fernet keys, newest first."""

    def __init__(self, keys: Sequence[Fernet]) -> None:
        if not keys:
            raise SecretKeysMissing(f"no encryption key given; {_GENERATE_HINT}")
        self._fernet = MultiFernet(list(keys))
        self._key_count = len(keys)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        """The box for ``settings``: the configured keys, or the development key.

        Raises :class:`SecretKeysMissing` outside development mode without keys and
        :class:`SecretKeyInvalid` for a malformed key.
        """
        if settings.secret_keys and settings.secret_keys.strip(" ,"):
            return cls(parse_secret_keys(settings.secret_keys))
        if not settings.sandbox:
            raise SecretKeysMissing(
                f"{KEYS_ENV_VAR} is not set: secrets at rest need an encryption key "
                f"outside development mode; {_GENERATE_HINT} and set {KEYS_ENV_VAR} to it"
            )
        return cls([_sandbox_dev_key(settings.data_dir)])

    @property
    def key_count(self) -> int:
        """How many keys can decrypt (the first one encrypts)."""
        return self._key_count

    def encrypt_bytes(self, data: bytes) -> bytes:
        """A Fernet token of ``data`` under the newest key."""
        return self._fernet.encrypt(data)

    def decrypt_bytes(self, token: bytes) -> bytes:
        """The plaintext of ``token`` (any configured key); :class:`SecretDecryptError` if not."""
        try:
            return self._fernet.decrypt(bytes(token))
        except (InvalidToken, TypeError):
            raise SecretDecryptError(
                "a stored secret could not be decrypted with any configured key "
                f"({KEYS_ENV_VAR}): the key that encrypted it is missing, or the data "
                "was altered"
            ) from None

    def encrypt_text(self, text: str) -> bytes:
        return self.encrypt_bytes(text.encode("utf-8"))

    def decrypt_text(self, token: bytes) -> str:
        plaintext = self.decrypt_bytes(token)
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretDecryptError("a stored secret is not UTF-8 text") from None

    def encrypt_json(self, value: dict[str, Any]) -> bytes:
        """A token of ``value`` as compact JSON (a dict of JSON-serialisable values)."""
        if not isinstance(value, dict):
            raise TypeError(f"encrypt_json needs a dict, got {type(value).__name__}")
        return self.encrypt_bytes(
            json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        )

    def decrypt_json(self, token: bytes) -> dict[str, Any]:
        plaintext = self.decrypt_bytes(token)
        try:
            value = json.loads(plaintext.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise SecretDecryptError("a stored secret is not a JSON object") from None
        if not isinstance(value, dict):
            raise SecretDecryptError("a stored secret is not a JSON object")
        return value

    def rotate(self, token: bytes) -> bytes:
        """``token`` re-encrypted under the newest key (same plaintext and timestamp)."""
        try:
            return self._fernet.rotate(bytes(token))
        except (InvalidToken, TypeError):
            raise SecretDecryptError(
                f"a stored secret could not be decrypted with any configured key "
                f"({KEYS_ENV_VAR}); nothing was re-encrypted"
            ) from None


def _sandbox_dev_key(data_dir: Path) -> Fernet:
    """The development key in ``<data_dir>/dev-secret.key``, created (0600) on first use."""
    path = (data_dir / DEV_KEY_FILE_NAME).resolve()
    with _dev_key_lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            _create_dev_key_file(path)
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        content = path.read_text(encoding="ascii", errors="replace")
        if path not in _dev_key_warned:
            _dev_key_warned.add(path)
            logger.warning(
                "development mode: secrets are encrypted with the development key in %s; "
                "set %s outside development mode",
                path,
                KEYS_ENV_VAR,
            )
    fernets = parse_secret_keys(content, source=str(path))
    if len(fernets) != 1:
        raise SecretKeyInvalid(f"{path}: expected exactly one Fernet key; {_GENERATE_HINT}")
    return fernets[0]


def _create_dev_key_file(path: Path) -> None:
    """Write a new key to ``path`` (0600) atomically; a key another process wrote first wins."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        # A hard link is created completely or not at all, and never replaces a file.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def rotate_secrets(session: Session, box: SecretBox) -> int:
    """Re-encrypt every connection's credentials and webhook secrets (the current one,
    and one replaced but still in its grace period) with the newest key.

    Returns the number of secrets (encrypted values) re-encrypted. Rows are
    locked (``FOR UPDATE`` on PostgreSQL) while this runs. Flushes only; if
    any value cannot be decrypted, :class:`SecretDecryptError` is raised and
    the caller's rollback leaves every row as it was.
    """
    from app.connections.models import Connection

    count = 0
    connections = session.scalars(
        select(Connection).order_by(Connection.id).with_for_update()
    ).all()
    for connection in connections:
        try:
            if connection.credentials_encrypted is not None:
                connection.credentials_encrypted = box.rotate(connection.credentials_encrypted)
                count += 1
            if connection.webhook_secret_encrypted is not None:
                connection.webhook_secret_encrypted = box.rotate(
                    connection.webhook_secret_encrypted
                )
                count += 1
            if connection.previous_webhook_secret_encrypted is not None:
                connection.previous_webhook_secret_encrypted = box.rotate(
                    connection.previous_webhook_secret_encrypted
                )
                count += 1
        except SecretDecryptError:
            raise SecretDecryptError(
                f"connection {connection.id}: a stored secret could not be decrypted with any "
                f"configured key ({KEYS_ENV_VAR}); nothing was re-encrypted"
            ) from None
    session.flush()
    logger.info("re-encrypted %d secrets of %d connections", count, len(connections))
    return count
