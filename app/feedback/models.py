"""Verdicts on prompts given in the in-CRM cards, with who gave them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, StrEnumType, UTCDateTime, enum_check, new_id, utcnow
from app.reviews.models import Verdict


class CardFeedback(Base):
    """One CRM user's verdict on one prompt of one deal (the latest answer counts).

    Unique per (connection, deal, prompt, CRM user): a prompt id is stable for
    the same question on the same evidence, so a verdict follows the prompt
    from review to review until its evidence changes. ``review_id`` is the
    review the verdict was given on; ``question_id`` (the playbook question)
    is what connection-wide counts group by. ``crm_user_id`` is the
    Salesforce running user (``005...``) or the HubSpot ``userId``;
    ``card_key_id`` the Salesforce card key the request came with.
    """

    __tablename__ = "card_feedback"
    __table_args__ = (
        UniqueConstraint(
            "connection_id",
            "deal_external_id",
            "prompt_id",
            "crm_user_id",
            name="uq_card_feedback_deal_prompt_user",
        ),
        Index("ix_card_feedback_question", "connection_id", "question_id"),
        enum_check("verdict", Verdict),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    connection_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("connections.id", ondelete="CASCADE")
    )
    deal_external_id: Mapped[str] = mapped_column(String(255))
    review_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("reviews.id", ondelete="CASCADE"), index=True
    )
    prompt_id: Mapped[str] = mapped_column(String(128))
    question_id: Mapped[str] = mapped_column(String(200))
    audience: Mapped[str] = mapped_column(String(16))
    verdict: Mapped[Verdict] = mapped_column(StrEnumType(Verdict))
    crm_user_id: Mapped[str] = mapped_column(String(255))
    card_key_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("card_keys.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
