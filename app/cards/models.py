"""Card keys: what the Salesforce card (through its Named Credential) presents."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, new_id, utcnow


class CardKey(Base):
    """A key for the ``/cards`` endpoints of one connection (and nothing else).

    Like an API key, ``prefix`` (public) finds the row and ``secret_hash`` (SHA-256)
    verifies the rest; the key is shown once. It is a separate table from
    ``api_keys`` so that neither kind of key can ever be looked up as the other.
    """

    __tablename__ = "card_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    connection_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("connections.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
