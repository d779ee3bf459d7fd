"""writeback payload and key visibility

The outbox row keeps what to write (note title, HTML and text, or summary
fields), so a retry writes exactly what the review rendered. An API key may
be limited to some connections (``api_keys.connection_ids``; NULL: all).

Revision ID: a6324a52c9c8
Revises: 636186ff111e
Create Date: 2026-11-27 07:32:44.283711
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "a6324a52c9c8"
down_revision: str | None = "636186ff111e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "connection_ids",
                sa.JSON(none_as_null=True).with_variant(
                    postgresql.JSONB(none_as_null=True), "postgresql"
                ),
                nullable=True,
            )
        )
    with op.batch_alter_table("writebacks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "payload",
                sa.JSON(none_as_null=True).with_variant(
                    postgresql.JSONB(none_as_null=True), "postgresql"
                ),
                nullable=False,
                server_default=sa.text("'{}'"),
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("writebacks", schema=None) as batch_op:
        batch_op.drop_column("payload")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("connection_ids")
