"""webhook load: indexed inbox, per-deal doorbells, owned leases

- ``webhook_deliveries.deal_external_id`` (the event's deal, filled from
  ``deal_external_ids``) with the indexes ``(connection_id, deal_external_id,
  status)`` and ``(status, received_at)``: a new event costs the same with
  thousands waiting.
- ``webhook_inbox_deals``: one row per deal with events waiting and a review
  job on its way (one job per deal at a time).
- ``writebacks.claimed_by``, ``process_heartbeats`` and ``leases``: a claim
  held by a process that is gone is taken over at once, and the token refresh
  holds a committed lease instead of a row lock across its HTTP call.
- ``retired_accounts``: CRM accounts whose connection was deleted; a new
  connection for one looks a deal's first note up by its (account-scoped)
  marker before writing it.

Revision ID: 7c3e9a1d5f20
Revises: 7e3a9c1d5b20
Create Date: 2026-12-03 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c3e9a1d5f20"
down_revision: str | None = "7e3a9c1d5b20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deal_external_id", sa.String(length=255), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE webhook_deliveries SET deal_external_id = deal_external_ids->>0 "
            "WHERE deal_external_ids IS NOT NULL"
        )
    else:
        op.execute(
            "UPDATE webhook_deliveries SET deal_external_id = "
            "json_extract(deal_external_ids, '$[0]') WHERE deal_external_ids IS NOT NULL"
        )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_deliveries_deal",
            ["connection_id", "deal_external_id", "status"],
            unique=False,
        )
        batch_op.create_index(
            "ix_webhook_deliveries_waiting", ["status", "received_at"], unique=False
        )
    op.create_table(
        "webhook_inbox_deals",
        sa.Column("connection_id", sa.String(length=36), nullable=False),
        sa.Column("deal_external_id", sa.String(length=255), nullable=False),
        sa.Column("rung_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_webhook_inbox_deals_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "connection_id", "deal_external_id", name=op.f("pk_webhook_inbox_deals")
        ),
    )
    with op.batch_alter_table("webhook_inbox_deals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_inbox_deals_rung_at"), ["rung_at"], unique=False
        )
    with op.batch_alter_table("writebacks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=120), nullable=True))
    op.create_table(
        "process_heartbeats",
        sa.Column("owner", sa.String(length=120), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_process_heartbeats")),
    )
    with op.batch_alter_table("process_heartbeats", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_process_heartbeats_beat_at"), ["beat_at"], unique=False
        )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("owner", sa.String(length=120), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )

    op.create_table(
        "retired_accounts",
        sa.Column("account_key", sa.String(length=300), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_key", name=op.f("pk_retired_accounts")),
    )


def downgrade() -> None:
    op.drop_table("retired_accounts")
    op.drop_table("leases")
    with op.batch_alter_table("process_heartbeats", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_process_heartbeats_beat_at"))
    op.drop_table("process_heartbeats")
    with op.batch_alter_table("writebacks", schema=None) as batch_op:
        batch_op.drop_column("claimed_by")
    with op.batch_alter_table("webhook_inbox_deals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_inbox_deals_rung_at"))
    op.drop_table("webhook_inbox_deals")
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_waiting")
        batch_op.drop_index("ix_webhook_deliveries_deal")
        batch_op.drop_column("deal_external_id")
