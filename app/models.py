"""Every model module, imported so ``Base.metadata`` holds the whole schema.

Alembic's ``migrations/env.py`` and the tests import this module.
"""

from __future__ import annotations

from app.admin.models import ApiKey
from app.connections.models import Connection
from app.db import Base
from app.deals.models import DealHistoryRow, DealSnapshotRow
from app.playbooks.models import PlaybookRow
from app.reviews.models import PromptFeedback, Review
from app.sync.models import SyncJob
from app.webhooks.models import WebhookDelivery
from app.writeback.models import WriteBack

__all__ = [
    "ApiKey",
    "Base",
    "Connection",
    "DealHistoryRow",
    "DealSnapshotRow",
    "PlaybookRow",
    "PromptFeedback",
    "Review",
    "SyncJob",
    "WebhookDelivery",
    "WriteBack",
]
