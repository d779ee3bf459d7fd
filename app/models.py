"""Every model module, imported so ``Base.metadata`` holds the whole schema.

Alembic's ``migrations/env.py`` and the tests import this module.
"""

from __future__ import annotations

from app.admin.models import ApiKey
from app.cards.models import CardKey
from app.connections.models import Connection
from app.db import Base
from app.deals.models import DealHistoryRow, DealSnapshotRow
from app.feedback.models import CardFeedback
from app.leases import Lease, ProcessHeartbeat
from app.playbooks.models import PlaybookRow
from app.reviews.models import PromptFeedback, Review
from app.sync.models import SyncJob
from app.webhooks.models import InboxDeal, WebhookDelivery
from app.writeback.models import RetiredAccount, WriteBack

__all__ = [
    "ApiKey",
    "Base",
    "CardFeedback",
    "CardKey",
    "Connection",
    "DealHistoryRow",
    "DealSnapshotRow",
    "InboxDeal",
    "Lease",
    "PlaybookRow",
    "ProcessHeartbeat",
    "PromptFeedback",
    "RetiredAccount",
    "Review",
    "SyncJob",
    "WebhookDelivery",
    "WriteBack",
]
