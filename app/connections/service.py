"""Connections: create, change, and open them as provider contexts.

Credentials and the webhook secret are encrypted at rest (``SecretBox``) and
never leave this module in clear except inside a :class:`ConnectionContext`
handed to an adapter. Instance URLs are checked against the CRM's domains
before anything is stored (no outbound connection is made to check them).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.connections.models import Connection, ConnectionStatus, Provider
from app.connections.schemas import (
    ConnectionCreate,
    ConnectionOut,
    ConnectionUpdate,
    CredentialsUpdate,
)
from app.db import new_id, utcnow
from app.security.crypto import SecretBox, SecretDecryptError
from app.security.urls import validate_instance_url
from integrations.base import ConnectionContext


class ConnectionConflict(ValueError):
    """Another connection already has this provider and external account id."""


def _checked_url(provider: Provider, url: str | None, settings: Settings) -> str | None:
    if url is None:
        if provider == Provider.SALESFORCE:
            raise ValueError("instance_url: Salesforce connections need the org's instance URL")
        return None
    return validate_instance_url(provider.value, url, sandbox=settings.sandbox)


def outbound_token(box: SecretBox, connection: Connection) -> str | None:
    """The unguessable token in a Salesforce Outbound Message URL, derived from the
    connection's webhook secret (so it can be shown again, and rotates with it)."""
    if connection.webhook_secret_encrypted is None:
        return None
    secret = box.decrypt_text(connection.webhook_secret_encrypted)
    message = f"outbound-message-url:{connection.id}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:40]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


#: After a webhook secret is replaced, the old one is still accepted this long:
#: Salesforce retries an Outbound Message (to the URL it was queued with) for 24 h.
WEBHOOK_SECRET_GRACE = timedelta(hours=25)


def _apply_webhook_secret(box: SecretBox, connection: Connection, secret: str | None) -> None:
    """Set (or clear) the webhook secret. A replaced secret and its Outbound Message
    token stay valid for :data:`WEBHOOK_SECRET_GRACE`; clearing the secret ends
    every grace at once."""
    try:
        current = webhook_secret_of(box, connection)
    except SecretDecryptError:
        current = None  # stored under a lost key: it verifies nothing, so no grace for it
    if secret and current and current != secret:
        # One replaced secret is kept: a second rotation within the grace ends the
        # first one's grace (messages still queued for it are then refused).
        connection.previous_webhook_secret_encrypted = connection.webhook_secret_encrypted
        connection.previous_webhook_token_hash = connection.webhook_token_hash
        connection.webhook_secret_rotated_at = utcnow()
    elif not secret or current is None:
        connection.previous_webhook_secret_encrypted = None
        connection.previous_webhook_token_hash = None
        connection.webhook_secret_rotated_at = None
    connection.webhook_secret_encrypted = box.encrypt_text(secret) if secret else None
    token = outbound_token(box, connection)
    connection.webhook_token_hash = token_hash(token) if token else None


def previous_webhook_secret_of(
    box: SecretBox, connection: Connection, now: datetime | None = None
) -> str | None:
    """The replaced webhook secret while its grace period lasts, else None."""
    rotated = connection.webhook_secret_rotated_at
    if connection.previous_webhook_secret_encrypted is None or rotated is None:
        return None
    if (now or utcnow()) - rotated > WEBHOOK_SECRET_GRACE:
        return None
    return box.decrypt_text(connection.previous_webhook_secret_encrypted)


def previous_token_hash_of(connection: Connection, now: datetime | None = None) -> str | None:
    """The replaced Outbound Message token's hash while its grace period lasts."""
    rotated = connection.webhook_secret_rotated_at
    if connection.previous_webhook_token_hash is None or rotated is None:
        return None
    if (now or utcnow()) - rotated > WEBHOOK_SECRET_GRACE:
        return None
    return connection.previous_webhook_token_hash


def create_connection(
    session: Session, box: SecretBox, data: ConnectionCreate, settings: Settings
) -> Connection:
    """Raises ValueError (InstanceUrlError) for a refused URL, ConnectionConflict for a twin."""
    instance_url = _checked_url(data.provider, data.instance_url, settings)
    check_settings(session, data.settings.model_dump(exclude_none=True))
    twin = session.scalar(
        select(Connection.id).where(
            Connection.provider == data.provider,
            Connection.external_account_id == data.external_account_id,
        )
    )
    if twin is not None:
        raise ConnectionConflict(
            f"a {data.provider.value} connection for account {data.external_account_id} exists"
        )
    connection = Connection(
        id=new_id(),  # the webhook URL token is derived from it
        provider=data.provider,
        name=data.name,
        external_account_id=data.external_account_id,
        instance_url=instance_url,
        credentials_encrypted=box.encrypt_json(dict(data.credentials))
        if data.credentials
        else None,
        settings=data.settings.model_dump(exclude_none=True),
        status=ConnectionStatus.ACTIVE,
    )
    _apply_webhook_secret(box, connection, data.webhook_secret)
    session.add(connection)
    session.flush()
    return connection


def update_connection(
    session: Session, connection: Connection, data: ConnectionUpdate, settings: Settings
) -> Connection:
    if data.name is not None:
        connection.name = data.name
    if "instance_url" in data.model_fields_set:
        connection.instance_url = _checked_url(
            Provider(connection.provider), data.instance_url, settings
        )
    if data.settings is not None:
        changes = data.settings.model_dump(exclude_unset=True)
        merged = {**(connection.settings or {}), **changes}
        connection.settings = {k: v for k, v in merged.items() if v is not None}
        check_settings(session, connection.settings)
    session.flush()
    return connection


def check_settings(session: Session, settings: Mapping[str, Any]) -> None:
    """Settings that name things must name things that exist (ValueError naming the field)."""
    from app.coaching.playbook import PlaybookError
    from app.playbooks.service import compiled_playbook

    name = str(settings.get("playbook", "meddpicc"))
    try:
        compiled_playbook(session, name)
    except PlaybookError:
        raise ValueError(f"settings.playbook: no playbook named {name!r}") from None


def update_credentials(
    session: Session, box: SecretBox, connection: Connection, data: CredentialsUpdate
) -> Connection:
    """New credentials reactivate a connection that needed re-authorisation."""
    if data.credentials is not None:
        connection.credentials_encrypted = box.encrypt_json(dict(data.credentials))
        if connection.status in (ConnectionStatus.NEEDS_REAUTH, ConnectionStatus.ERROR):
            connection.status = ConnectionStatus.ACTIVE
            connection.last_error = None
    if "webhook_secret" in data.model_fields_set:
        _apply_webhook_secret(box, connection, data.webhook_secret)
    session.flush()
    return connection


def set_status(
    session: Session, connection: Connection, status: ConnectionStatus, error: str | None = None
) -> None:
    connection.status = status
    connection.last_error = error[:2000] if error else None
    session.flush()


def store_credentials(
    session: Session, box: SecretBox, connection: Connection, credentials: Mapping[str, Any]
) -> None:
    """Store refreshed credentials (the refresher owns the transaction)."""
    connection.credentials_encrypted = box.encrypt_json(dict(credentials))
    session.flush()


def credentials_of(box: SecretBox, connection: Connection) -> dict[str, Any]:
    if connection.credentials_encrypted is None:
        return {}
    return box.decrypt_json(connection.credentials_encrypted)


def context_for(box: SecretBox, connection: Connection) -> ConnectionContext:
    """What an adapter needs; the credentials in it are decrypted: never log it."""
    return ConnectionContext(
        connection_id=connection.id,
        provider=str(connection.provider),
        external_account_id=connection.external_account_id,
        instance_url=connection.instance_url,
        credentials=credentials_of(box, connection),
        settings=dict(connection.settings or {}),
    )


def webhook_secret_of(box: SecretBox, connection: Connection) -> str | None:
    if connection.webhook_secret_encrypted is None:
        return None
    return box.decrypt_text(connection.webhook_secret_encrypted)


#: Why a connection's secrets cannot be used (shown in the API and in webhook refusals).
SECRETS_UNREADABLE = (
    "the connection's stored secrets do not decrypt with the keys in DEALCOACH_SECRET_KEYS "
    "(a key was removed?): restore the key, or re-enter the credentials and webhook secret "
    "with PUT .../credentials"
)

#: Stands for the Outbound Message URL's token where the key may not see it.
MASKED_TOKEN = "********"  # noqa: S105  (a mask, not a password)


def webhook_urls(
    box: SecretBox, connection: Connection, settings: Settings, *, reveal_tokens: bool = True
) -> dict[str, str]:
    """The exact URLs an admin configures in the CRM for this connection.

    The Outbound Message URL's token is a credential (it authenticates the webhook):
    with ``reveal_tokens=False`` (keys of scope ``read``) it is masked.
    """
    base = settings.public_url
    provider = Provider(connection.provider)
    if provider == Provider.HUBSPOT:
        # One URL for the whole HubSpot app: events are routed by their portalId.
        return {"hubspot": f"{base}/webhooks/hubspot"}
    if provider == Provider.SALESFORCE:
        urls = {"signed_json": f"{base}/webhooks/salesforce/{connection.id}/events"}
        token = outbound_token(box, connection) if reveal_tokens else None
        if token or (not reveal_tokens and connection.webhook_secret_encrypted is not None):
            token = token or MASKED_TOKEN
            urls["outbound_message"] = (
                f"{base}/webhooks/salesforce/{connection.id}/outbound/{token}"
            )
        return urls
    return {"webhook": f"{base}/webhooks/fake/{connection.id}"}


def to_out(
    box: SecretBox, connection: Connection, settings: Settings, *, reveal_tokens: bool = True
) -> ConnectionOut:
    """The API's view of ``connection``; ``reveal_tokens=False`` masks URL tokens.

    A connection whose secrets no longer decrypt is still shown, with
    ``secrets_error`` set and its tokens masked (one broken row never breaks a list).
    """
    secrets_error = None
    try:
        if connection.credentials_encrypted is not None:
            credentials_of(box, connection)
        webhook_secret_of(box, connection)
        urls = webhook_urls(box, connection, settings, reveal_tokens=reveal_tokens)
    except SecretDecryptError:
        secrets_error = SECRETS_UNREADABLE
        urls = webhook_urls(box, connection, settings, reveal_tokens=False)
    return ConnectionOut(
        id=connection.id,
        provider=Provider(connection.provider),
        name=connection.name,
        external_account_id=connection.external_account_id,
        instance_url=connection.instance_url,
        status=ConnectionStatus(connection.status),
        last_error=connection.last_error,
        settings=dict(connection.settings or {}),
        has_credentials=connection.credentials_encrypted is not None,
        has_webhook_secret=connection.webhook_secret_encrypted is not None,
        webhook_urls=urls,
        secrets_error=secrets_error,
        last_synced_at=connection.last_synced_at,
        created_at=connection.created_at,
        updated_at=connection.updated_at,
    )
