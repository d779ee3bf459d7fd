"""A fake CRM for tests and the demo: state in a SQLite file, a provider over it, webhooks.

See :mod:`integrations.fake.store` (the CRM and its test controls) and
:mod:`integrations.fake.provider` (the :class:`~integrations.base.CrmProvider`).
"""

from integrations.fake.provider import (
    FakeProvider,
    parse_fake_webhook,
    sign_fake_webhook,
    store_path,
)
from integrations.fake.store import DEAL_ID_PATTERN, FakeCrm, FakeNote, fake_instance_url

__all__ = [
    "DEAL_ID_PATTERN",
    "FakeCrm",
    "FakeNote",
    "FakeProvider",
    "fake_instance_url",
    "parse_fake_webhook",
    "sign_fake_webhook",
    "store_path",
]
