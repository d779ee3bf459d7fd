"""oauth attempts

One row per try at connecting a CRM account with OAuth: the hash of the
single-use ticket the admin's browser opens, the hash of the nonce in that
browser's cookie, the encrypted PKCE verifier, and when it was begun, used
and expires (app/connections/oauth_service.py).

Revision ID: 342ed46442b2
Revises: a6324a52c9c8
Create Date: 2026-11-27 08:09:49.008016
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "342ed46442b2"
down_revision: str | None = "a6324a52c9c8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "oauth_attempts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("connection_id", sa.String(length=36), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("ticket_hash", sa.String(length=64), nullable=False),
        sa.Column("nonce_hash", sa.String(length=64), nullable=True),
        sa.Column("code_verifier_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("created_by_key_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("begun_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "provider IN ('salesforce', 'hubspot', 'fake')", name=op.f("ck_oauth_attempts_provider")
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_oauth_attempts_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_attempts")),
        sa.UniqueConstraint("ticket_hash", name=op.f("uq_oauth_attempts_ticket_hash")),
    )
    with op.batch_alter_table("oauth_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_oauth_attempts_connection_id"), ["connection_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_oauth_attempts_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("oauth_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oauth_attempts_expires_at"))
        batch_op.drop_index(batch_op.f("ix_oauth_attempts_connection_id"))

    op.drop_table("oauth_attempts")
