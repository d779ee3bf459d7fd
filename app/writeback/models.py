"""The write-back outbox: each note or field update meant for the CRM, claimed before the call."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, StrEnumType, UTCDateTime, enum_check, new_id, utcnow


class WriteBackTarget(StrEnum):
    NOTE = "note"
    TASK = "task"
    SUMMARY_FIELDS = "summary_fields"


class WriteBackState(StrEnum):
    PENDING = "pending"
    WRITTEN = "written"
    FAILED = "failed"
    """Failed for now; retried at ``next_attempt_at``."""
    DEAD = "dead"
    """Given up on (too many attempts, or an error that retrying cannot fix)."""
    SUPERSEDED = "superseded"
    """A summary-field write replaced by a newer review's summary before it was sent."""


class WriteBack(Base):
    """One intended write to the CRM.

    ``dedupe_key`` is unique: inserting it claims the write, so a second
    worker cannot write the same note. ``marker`` is put into the note text,
    so a write that reached the CRM but was not recorded here is found before
    writing again. The reconciler looks for due rows through the
    ``(state, next_attempt_at)`` index.
    """

    __tablename__ = "writebacks"
    __table_args__ = (
        Index("ix_writebacks_due", "state", "next_attempt_at"),
        enum_check("target", WriteBackTarget),
        enum_check("state", WriteBackState),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    review_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("reviews.id", ondelete="CASCADE"), index=True
    )
    connection_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("connections.id", ondelete="CASCADE"), index=True
    )
    deal_external_id: Mapped[str] = mapped_column(String(255))
    target: Mapped[WriteBackTarget] = mapped_column(StrEnumType(WriteBackTarget))
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    marker: Mapped[str] = mapped_column(String(128))
    state: Mapped[WriteBackState] = mapped_column(
        StrEnumType(WriteBackState), default=WriteBackState.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Set while a sender holds the row (its lease); results are recorded only by the
    holder of the claim (``attempts`` as the claim's version)."""
    claimed_by: Mapped[str | None] = mapped_column(String(120))
    """The process holding the claim (``app.leases.PROCESS_ID``): once that process is
    gone (:func:`app.leases.gone_owners`), the claim is taken over before its lease ends."""
    last_error: Mapped[str | None] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    """What to write, rendered when the review was stored: title, html, text (notes) or
    fields (summary). The outbox holds the exact effect, so a retry writes the same."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    written_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RetiredAccount(Base):
    """A CRM account (org, portal) that had a connection which was deleted.

    Notes carry a marker scoped to the account, not to our connection row, so a
    connection created again for the account finds the notes the old one wrote:
    while an account is listed here (or has another connection), a deal's first
    note through a connection is looked up by its marker before it is written.
    """

    __tablename__ = "retired_accounts"

    account_key: Mapped[str] = mapped_column(String(300), primary_key=True)
    retired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
