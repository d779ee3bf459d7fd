"""The webhook inbox: every delivery stored once (unique on its identity) before any work."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.connections.models import Provider
from app.db import Base, JSONType, StrEnumType, UTCDateTime, enum_check, new_id, utcnow


class DeliveryStatus(StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"
    IGNORED = "ignored"
    FAILED = "failed"


class WebhookDelivery(Base):
    """One webhook delivery as received.

    ``identity`` is a hash that is the same for redeliveries of the same event
    (for example, the provider's event ids), so the insert deduplicates.
    ``headers`` keeps only non-secret headers; signatures are not stored.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("provider", "identity"),
        enum_check("provider", Provider),
        enum_check("status", DeliveryStatus),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    connection_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("connections.id", ondelete="SET NULL"), index=True
    )
    provider: Mapped[Provider] = mapped_column(StrEnumType(Provider))
    identity: Mapped[str] = mapped_column(String(128))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    headers: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[DeliveryStatus] = mapped_column(
        StrEnumType(DeliveryStatus), default=DeliveryStatus.RECEIVED
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    deal_external_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
