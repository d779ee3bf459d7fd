"""initial schema

Revision ID: 636186ff111e
Revises: (first revision)
Create Date: 2026-11-27 07:06:40.365228

Connections, the deal store (snapshots and history), reviews and prompt
feedback, the write-back outbox, the webhook inbox, stored playbooks and API
keys. Enumerations are strings with CHECK constraints; timestamps are
``timestamptz`` on PostgreSQL; JSON is JSONB on PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "636186ff111e"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("secret_hash", sa.String(length=255), nullable=False),
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("last_used_at", _timestamp(), nullable=True),
        sa.Column("revoked_at", _timestamp(), nullable=True),
        sa.CheckConstraint("scope IN ('admin', 'read')", name=op.f("ck_api_keys_scope")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )

    op.create_table(
        "connections",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("external_account_id", sa.String(length=255), nullable=False),
        sa.Column("instance_url", sa.String(length=500), nullable=True),
        sa.Column("credentials_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("webhook_secret_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("webhook_token_hash", sa.String(length=128), nullable=True),
        sa.Column("settings", _json(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sync_watermark", _json(), nullable=True),
        sa.Column("last_synced_at", _timestamp(), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.CheckConstraint(
            "provider IN ('salesforce', 'hubspot', 'fake')", name=op.f("ck_connections_provider")
        ),
        sa.CheckConstraint(
            "status IN ('active', 'needs_reauth', 'paused', 'error')",
            name=op.f("ck_connections_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connections")),
        sa.UniqueConstraint(
            "provider",
            "external_account_id",
            name=op.f("uq_connections_provider_external_account_id"),
        ),
        sa.UniqueConstraint("webhook_token_hash", name=op.f("uq_connections_webhook_token_hash")),
    )

    op.create_table(
        "playbooks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source_yaml", sa.Text(), nullable=False),
        sa.Column("extends", sa.String(length=200), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_playbooks")),
        sa.UniqueConstraint("name", name=op.f("uq_playbooks_name")),
    )

    op.create_table(
        "deal_snapshots",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("connection_id", sa.String(length=36), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("owner_id", sa.String(length=255), nullable=True),
        sa.Column("stage_key", sa.String(length=255), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=4, asdecimal=False), nullable=True),
        sa.Column("close_date", sa.Date(), nullable=True),
        sa.Column("is_closed", sa.Boolean(), nullable=False),
        sa.Column("data", _json(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("fetched_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_deal_snapshots_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deal_snapshots")),
        sa.UniqueConstraint(
            "connection_id", "external_id", name=op.f("uq_deal_snapshots_connection_id_external_id")
        ),
    )
    op.create_index("ix_deal_snapshots_owner", "deal_snapshots", ["connection_id", "owner_id"])
    op.create_index("ix_deal_snapshots_stage", "deal_snapshots", ["connection_id", "stage_key"])

    op.create_table(
        "deal_history",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("connection_id", sa.String(length=36), nullable=False),
        sa.Column("deal_external_id", sa.String(length=255), nullable=False),
        sa.Column("field", sa.String(length=100), nullable=False),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("changed_at", _timestamp(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("recorded_at", _timestamp(), nullable=False),
        sa.CheckConstraint("source IN ('crm', 'observed')", name=op.f("ck_deal_history_source")),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_deal_history_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deal_history")),
    )
    op.create_index(
        "ix_deal_history_deal", "deal_history", ["connection_id", "deal_external_id", "changed_at"]
    )

    op.create_table(
        "reviews",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("connection_id", sa.String(length=36), nullable=True),
        sa.Column("deal_external_id", sa.String(length=255), nullable=False),
        sa.Column("as_of", _timestamp(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("playbook_name", sa.String(length=200), nullable=False),
        sa.Column("playbook_version", sa.Integer(), nullable=False),
        sa.Column("input_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("content_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("marker", sa.String(length=128), nullable=False),
        sa.Column("health_score", sa.Integer(), nullable=False),
        sa.Column("health_band", sa.String(length=32), nullable=False),
        sa.Column("signals", _json(), nullable=False),
        sa.Column("prompts", _json(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "trigger IN ('webhook', 'sync', 'manual', 'cli', 'api')",
            name=op.f("ck_reviews_trigger"),
        ),
        sa.CheckConstraint("health_score BETWEEN 0 AND 100", name=op.f("ck_reviews_health_score")),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_reviews_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
    )
    op.create_index(
        "ix_reviews_deal", "reviews", ["connection_id", "deal_external_id", "created_at"]
    )

    op.create_table(
        "prompt_feedback",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("review_id", sa.String(length=36), nullable=False),
        sa.Column("prompt_id", sa.String(length=128), nullable=False),
        sa.Column("verdict", sa.String(length=32), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("api_key_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.CheckConstraint(
            "verdict IN ('useful', 'noise')", name=op.f("ck_prompt_feedback_verdict")
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_prompt_feedback_api_key_id_api_keys"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["review_id"],
            ["reviews.id"],
            name=op.f("fk_prompt_feedback_review_id_reviews"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_feedback")),
        sa.UniqueConstraint(
            "review_id",
            "prompt_id",
            "api_key_id",
            name=op.f("uq_prompt_feedback_review_id_prompt_id_api_key_id"),
        ),
    )
    op.create_index(op.f("ix_prompt_feedback_api_key_id"), "prompt_feedback", ["api_key_id"])

    op.create_table(
        "writebacks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("review_id", sa.String(length=36), nullable=False),
        sa.Column("connection_id", sa.String(length=36), nullable=False),
        sa.Column("deal_external_id", sa.String(length=255), nullable=False),
        sa.Column("target", sa.String(length=32), nullable=False),
        sa.Column("dedupe_key", sa.String(length=255), nullable=False),
        sa.Column("marker", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _timestamp(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.Column("written_at", _timestamp(), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'written', 'failed', 'dead')", name=op.f("ck_writebacks_state")
        ),
        sa.CheckConstraint(
            "target IN ('note', 'task', 'summary_fields')", name=op.f("ck_writebacks_target")
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_writebacks_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["review_id"],
            ["reviews.id"],
            name=op.f("fk_writebacks_review_id_reviews"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_writebacks")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_writebacks_dedupe_key")),
    )
    op.create_index(op.f("ix_writebacks_connection_id"), "writebacks", ["connection_id"])
    op.create_index(op.f("ix_writebacks_review_id"), "writebacks", ["review_id"])
    op.create_index("ix_writebacks_due", "writebacks", ["state", "next_attempt_at"])

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("connection_id", sa.String(length=36), nullable=True),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("identity", sa.String(length=128), nullable=False),
        sa.Column("received_at", _timestamp(), nullable=False),
        sa.Column("headers", _json(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("processed_at", _timestamp(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("deal_external_ids", _json(), nullable=False),
        sa.CheckConstraint(
            "provider IN ('salesforce', 'hubspot', 'fake')",
            name=op.f("ck_webhook_deliveries_provider"),
        ),
        sa.CheckConstraint(
            "status IN ('received', 'processed', 'ignored', 'failed')",
            name=op.f("ck_webhook_deliveries_status"),
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_webhook_deliveries_connection_id_connections"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint(
            "provider", "identity", name=op.f("uq_webhook_deliveries_provider_identity")
        ),
    )
    op.create_index(
        op.f("ix_webhook_deliveries_connection_id"), "webhook_deliveries", ["connection_id"]
    )


def downgrade() -> None:
    # Children first; each table's indexes go with it.
    op.drop_table("webhook_deliveries")
    op.drop_table("writebacks")
    op.drop_table("prompt_feedback")
    op.drop_table("reviews")
    op.drop_table("deal_history")
    op.drop_table("deal_snapshots")
    op.drop_table("playbooks")
    op.drop_table("connections")
    op.drop_table("api_keys")
