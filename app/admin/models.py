"""API keys for the admin API and the in-CRM cards."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, StrEnumType, UTCDateTime, enum_check, new_id, utcnow


class ApiKeyScope(StrEnum):
    ADMIN = "admin"
    READ = "read"


class ApiKey(Base):
    """An API key: the public ``prefix`` finds the row, ``secret_hash`` verifies the rest.

    The key itself is shown once at creation and never stored.
    """

    __tablename__ = "api_keys"
    __table_args__ = (enum_check("scope", ApiKeyScope),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(255))
    scope: Mapped[ApiKeyScope] = mapped_column(StrEnumType(ApiKeyScope))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    connection_ids: Mapped[list[str] | None] = mapped_column(JSONType)
    """The connections this key may see; None: every connection."""

    def can_see(self, connection_id: str | None) -> bool:
        """Whether objects of ``connection_id`` are visible to this key."""
        if self.connection_ids is None:
            return True
        return connection_id is not None and connection_id in self.connection_ids
