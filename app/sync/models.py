"""Sync jobs: an admin's ``POST .../sync`` request, as a resource to poll."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, StrEnumType, UTCDateTime, enum_check, new_id, utcnow


class SyncJobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    """A sync of the connection was already running; it covers this request."""


class SyncJob(Base):
    """One requested sync of a connection; ``detail`` says what it did or why it failed
    (in our words: never the CRM's own error text)."""

    __tablename__ = "sync_jobs"
    __table_args__ = (enum_check("state", SyncJobState),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    connection_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("connections.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[SyncJobState] = mapped_column(
        StrEnumType(SyncJobState), default=SyncJobState.QUEUED
    )
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    detail: Mapped[str | None] = mapped_column(Text)
