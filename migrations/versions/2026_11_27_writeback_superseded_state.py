"""writeback superseded state

``writebacks.state`` may be ``superseded``: a summary-field write that a newer
review's summary replaced before it was sent (sending it would put an older
summary on the deal).

Revision ID: 5b1f0c2d9e47
Revises: 832e6c97d769
Create Date: 2026-11-27 10:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5b1f0c2d9e47"
down_revision: str | None = "832e6c97d769"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = "state IN ('pending', 'written', 'failed', 'dead')"
_AFTER = "state IN ('pending', 'written', 'failed', 'dead', 'superseded')"


def _state_check(condition: str) -> None:
    with op.batch_alter_table("writebacks", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_writebacks_state"), type_="check")
        batch_op.create_check_constraint(op.f("ck_writebacks_state"), condition)


def upgrade() -> None:
    _state_check(_AFTER)


def downgrade() -> None:
    op.execute("UPDATE writebacks SET state = 'dead' WHERE state = 'superseded'")
    _state_check(_BEFORE)
