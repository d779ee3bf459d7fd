"""Reviews the coaching engine produced, and what people said about their prompts."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, StrEnumType, UTCDateTime, enum_check, new_id, utcnow


class ReviewTrigger(StrEnum):
    WEBHOOK = "webhook"
    SYNC = "sync"
    MANUAL = "manual"
    CLI = "cli"
    API = "api"


class Verdict(StrEnum):
    USEFUL = "useful"
    NOISE = "noise"


class Review(Base):
    """One engine review of one deal at ``as_of``.

    ``connection_id`` is empty for reviews of files (``dealcoach review --file``).
    ``input_fingerprint`` identifies the snapshot and playbook reviewed;
    ``content_fingerprint`` the coaching content, so an unchanged review is not
    written back again; ``marker`` is the stable tag put into the CRM note.
    ``signals`` and ``prompts`` are the engine's ``to_dict()`` lists.
    """

    __tablename__ = "reviews"
    __table_args__ = (
        Index("ix_reviews_deal", "connection_id", "deal_external_id", "created_at"),
        enum_check("trigger", ReviewTrigger),
        CheckConstraint("health_score BETWEEN 0 AND 100", name="health_score"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    connection_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("connections.id", ondelete="CASCADE")
    )
    deal_external_id: Mapped[str] = mapped_column(String(255))
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    trigger: Mapped[ReviewTrigger] = mapped_column(StrEnumType(ReviewTrigger))
    playbook_name: Mapped[str] = mapped_column(String(200))
    playbook_version: Mapped[int] = mapped_column(Integer)
    input_fingerprint: Mapped[str] = mapped_column(String(64))
    content_fingerprint: Mapped[str] = mapped_column(String(64))
    marker: Mapped[str] = mapped_column(String(128))
    health_score: Mapped[int] = mapped_column(Integer)
    health_band: Mapped[str] = mapped_column(String(32))
    signals: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    prompts: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    summary: Mapped[str] = mapped_column(Text, default="")
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)


class PromptFeedback(Base):
    """A verdict on one prompt of one review.

    Unique per (review, prompt, API key). Note that SQL treats NULLs as
    distinct, so feedback without an API key is not deduplicated by the
    database.
    """

    __tablename__ = "prompt_feedback"
    __table_args__ = (
        UniqueConstraint("review_id", "prompt_id", "api_key_id"),
        enum_check("verdict", Verdict),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    review_id: Mapped[str] = mapped_column(String(36), ForeignKey("reviews.id", ondelete="CASCADE"))
    prompt_id: Mapped[str] = mapped_column(String(128))
    verdict: Mapped[Verdict] = mapped_column(StrEnumType(Verdict))
    comment: Mapped[str | None] = mapped_column(Text)
    api_key_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("api_keys.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
