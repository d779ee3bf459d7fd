"""card keys and card feedback

``card_keys``: keys for the /cards endpoints of one connection (the Salesforce
card's Named Credential), stored as a SHA-256 of their secret part.
``card_feedback``: one CRM user's verdict (useful / noise) on one prompt of one
deal, given in a card (app/feedback).

Revision ID: 7e3a9c1d5b20
Revises: 9c4d2e7a1b30
Create Date: 2026-12-03 17:46:59.227498
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7e3a9c1d5b20"
down_revision: str | None = "9c4d2e7a1b30"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "card_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("connection_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_card_keys_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_card_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_card_keys_prefix")),
    )
    with op.batch_alter_table("card_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_card_keys_connection_id"), ["connection_id"], unique=False
        )

    op.create_table(
        "card_feedback",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("connection_id", sa.String(length=36), nullable=False),
        sa.Column("deal_external_id", sa.String(length=255), nullable=False),
        sa.Column("review_id", sa.String(length=36), nullable=False),
        sa.Column("prompt_id", sa.String(length=128), nullable=False),
        sa.Column("question_id", sa.String(length=200), nullable=False),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("verdict", sa.String(length=32), nullable=False),
        sa.Column("crm_user_id", sa.String(length=255), nullable=False),
        sa.Column("card_key_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("verdict IN ('useful', 'noise')", name=op.f("ck_card_feedback_verdict")),
        sa.ForeignKeyConstraint(
            ["card_key_id"],
            ["card_keys.id"],
            name=op.f("fk_card_feedback_card_key_id_card_keys"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_card_feedback_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["review_id"],
            ["reviews.id"],
            name=op.f("fk_card_feedback_review_id_reviews"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_card_feedback")),
        sa.UniqueConstraint(
            "connection_id",
            "deal_external_id",
            "prompt_id",
            "crm_user_id",
            name="uq_card_feedback_deal_prompt_user",
        ),
    )
    with op.batch_alter_table("card_feedback", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_card_feedback_card_key_id"), ["card_key_id"], unique=False
        )
        batch_op.create_index(
            "ix_card_feedback_question", ["connection_id", "question_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_card_feedback_review_id"), ["review_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("card_feedback", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_card_feedback_review_id"))
        batch_op.drop_index("ix_card_feedback_question")
        batch_op.drop_index(batch_op.f("ix_card_feedback_card_key_id"))

    op.drop_table("card_feedback")
    with op.batch_alter_table("card_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_card_keys_connection_id"))

    op.drop_table("card_keys")
