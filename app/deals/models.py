"""The deal store: the current snapshot of each deal and the history we keep ourselves."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKey,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, StrEnumType, UTCDateTime, enum_check, new_id, utcnow


class HistorySource(StrEnum):
    CRM = "crm"
    """The CRM's own field history (OpportunityFieldHistory, HubSpot property history)."""
    OBSERVED = "observed"
    """A change we saw between two of our snapshots."""


class DealSnapshotRow(Base):
    """The latest snapshot of one deal; ``data`` holds the serialised neutral snapshot.

    The other columns copy what lists and filters need. ``fingerprint`` is a
    hash of ``data``, so an unchanged deal is recognised without a diff.
    """

    __tablename__ = "deal_snapshots"
    __table_args__ = (
        UniqueConstraint("connection_id", "external_id"),
        Index("ix_deal_snapshots_owner", "connection_id", "owner_id"),
        Index("ix_deal_snapshots_stage", "connection_id", "stage_key"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    connection_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("connections.id", ondelete="CASCADE")
    )
    external_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(500))
    owner_id: Mapped[str | None] = mapped_column(String(255))
    stage_key: Mapped[str] = mapped_column(String(255))
    amount: Mapped[float | None] = mapped_column(Numeric(20, 4, asdecimal=False))
    close_date: Mapped[date | None] = mapped_column(Date)
    is_closed: Mapped[bool] = mapped_column(Boolean, default=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    fingerprint: Mapped[str] = mapped_column(String(64))
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class DealHistoryRow(Base):
    """One change of one field of a deal, from the CRM or observed by us.

    Values are stored as text (ISO dates, decimal strings, stage keys).
    """

    __tablename__ = "deal_history"
    __table_args__ = (
        Index("ix_deal_history_deal", "connection_id", "deal_external_id", "changed_at"),
        enum_check("source", HistorySource),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    connection_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("connections.id", ondelete="CASCADE")
    )
    deal_external_id: Mapped[str] = mapped_column(String(255))
    field: Mapped[str] = mapped_column(String(100))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[HistorySource] = mapped_column(StrEnumType(HistorySource))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
