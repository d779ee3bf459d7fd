"""webhook secret grace

``connections.previous_webhook_secret_encrypted``, ``previous_webhook_token_hash``
and ``webhook_secret_rotated_at``: after a webhook secret is replaced, the old one
(and the Outbound Message URL token derived from it) is accepted for a grace
period, so deliveries signed or queued before the rotation are not lost.

Revision ID: 9c4d2e7a1b30
Revises: 5b1f0c2d9e47
Create Date: 2026-11-27 10:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9c4d2e7a1b30"
down_revision: str | None = "5b1f0c2d9e47"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("previous_webhook_secret_encrypted", sa.LargeBinary(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("previous_webhook_token_hash", sa.String(length=128), nullable=True)
        )
        batch_op.add_column(
            sa.Column("webhook_secret_rotated_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.drop_column("webhook_secret_rotated_at")
        batch_op.drop_column("previous_webhook_token_hash")
        batch_op.drop_column("previous_webhook_secret_encrypted")
