"""The webhook inbox: every delivery stored once (unique on its identity) before any work."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
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
        # A deal's waiting events (the review job's claim, the receiver's checks) and the
        # reconciler's oldest waiting events: both indexed, so the cost of a new event
        # does not grow with the number waiting.
        Index("ix_webhook_deliveries_deal", "connection_id", "deal_external_id", "status"),
        Index("ix_webhook_deliveries_waiting", "status", "received_at"),
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
    deal_external_id: Mapped[str | None] = mapped_column(String(255))
    """The event's deal (an event is about one deal), indexed; ``deal_external_ids``
    keeps the same id as a list for the API."""


class InboxDeal(Base):
    """A deal of a connection with webhook events waiting and a review job on its way.

    The doorbell of the inbox: the receiver inserts it with ``ON CONFLICT DO
    NOTHING`` and enqueues a job only when the insert added it, so a burst of
    events about one deal rings once; the job deletes it when it has claimed the
    deal's events (and puts it back, with a new job, if more arrived meanwhile).
    ``rung_at`` lets the reconciler ring again for a job that was lost.
    """

    __tablename__ = "webhook_inbox_deals"

    connection_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    deal_external_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    rung_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
