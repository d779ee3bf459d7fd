"""writeback claim lease

``writebacks.claimed_until``: the lease of the sender holding a row, so an
admin's retry cannot start a second send and results are recorded only by
the claim's holder.

Revision ID: 832e6c97d769
Revises: 342ed46442b2
Create Date: 2026-11-27 08:33:25.889568
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "832e6c97d769"
down_revision: str | None = "342ed46442b2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("writebacks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("writebacks", schema=None) as batch_op:
        batch_op.drop_column("claimed_until")
