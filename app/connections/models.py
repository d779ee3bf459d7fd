"""A connection: one CRM account (a Salesforce org or a HubSpot portal) the service works on."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, StrEnumType, UTCDateTime, enum_check, new_id, utcnow


class Provider(StrEnum):
    SALESFORCE = "salesforce"
    HUBSPOT = "hubspot"
    FAKE = "fake"


class ConnectionStatus(StrEnum):
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"
    PAUSED = "paused"
    ERROR = "error"


class Connection(Base):
    """A CRM account with its (encrypted) credentials, settings and sync position.

    ``webhook_token_hash`` is the hash of the secret token in the Salesforce
    Outbound Message URL, which identifies the connection on delivery.
    ``sync_watermark`` is the provider's incremental-sync checkpoint.
    """

    __tablename__ = "connections"
    __table_args__ = (
        UniqueConstraint("provider", "external_account_id"),
        enum_check("provider", Provider),
        enum_check("status", ConnectionStatus),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    provider: Mapped[Provider] = mapped_column(StrEnumType(Provider))
    name: Mapped[str] = mapped_column(String(200))
    external_account_id: Mapped[str] = mapped_column(String(255))
    instance_url: Mapped[str | None] = mapped_column(String(500))
    credentials_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    webhook_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    webhook_token_hash: Mapped[str | None] = mapped_column(String(128), unique=True)
    # The webhook secret before the last rotation, accepted for a grace period (see
    # ``app.connections.service.WEBHOOK_SECRET_GRACE``) so in-flight deliveries land.
    previous_webhook_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_webhook_token_hash: Mapped[str | None] = mapped_column(String(128))
    webhook_secret_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[ConnectionStatus] = mapped_column(
        StrEnumType(ConnectionStatus), default=ConnectionStatus.ACTIVE
    )
    last_error: Mapped[str | None] = mapped_column(Text)
    sync_watermark: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class OAuthAttempt(Base):
    """One try at connecting a CRM account with OAuth (``app/connections/oauth_service.py``).

    Made by ``POST .../oauth/start``; its ticket (only the SHA-256 is stored)
    is spent once by ``GET /oauth/begin/{ticket}``, which records the hash of
    the nonce put in the admin's browser cookie; the CRM's callback spends the
    attempt itself (``used_at``). Everything expires at ``expires_at``.
    ``code_verifier_encrypted`` is the PKCE verifier, encrypted like credentials.
    """

    __tablename__ = "oauth_attempts"
    __table_args__ = (enum_check("provider", Provider),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    connection_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("connections.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[Provider] = mapped_column(StrEnumType(Provider))
    ticket_hash: Mapped[str] = mapped_column(String(64), unique=True)
    nonce_hash: Mapped[str | None] = mapped_column(String(64))
    code_verifier_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    created_by_key_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    begun_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
