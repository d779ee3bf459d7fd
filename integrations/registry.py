"""Provider kind -> adapter factory and webhook parser.

Plain dicts: an adapter package adds its entry here when it exists. Asking for
a kind that has no adapter yet (or an unknown kind) raises
:class:`NotImplementedError` naming it. A CRM with more than one webhook
format has its default one in ``WEBHOOK_PARSERS`` and the others in
``WEBHOOK_CHANNEL_PARSERS`` (Salesforce: Outbound Messages, and signed JSON
as channel ``"signed_json"``).
"""

from __future__ import annotations

from typing import Protocol

from app.config import Settings
from app.connections.models import Provider as ProviderKind
from integrations.base import ConnectionContext, CrmProvider, WebhookParser
from integrations.fake import FakeProvider, parse_fake_webhook
from integrations.hubspot.adapter import HubSpotProvider
from integrations.salesforce.adapter import SalesforceProvider
from integrations.salesforce.webhooks import parse_outbound_message, parse_signed_json

__all__ = [
    "PROVIDERS",
    "WEBHOOK_CHANNEL_PARSERS",
    "WEBHOOK_PARSERS",
    "ProviderKind",
    "is_supported",
    "provider_for",
    "webhook_parser_for",
]


class ProviderFactory(Protocol):
    def __call__(
        self, context: ConnectionContext, *, settings: Settings | None = None
    ) -> CrmProvider: ...


#: The adapters that exist, by kind.
PROVIDERS: dict[ProviderKind, ProviderFactory] = {
    ProviderKind.FAKE: FakeProvider,
    ProviderKind.SALESFORCE: SalesforceProvider,
    ProviderKind.HUBSPOT: HubSpotProvider,
}

#: The webhook parsers that exist, by kind.
WEBHOOK_PARSERS: dict[ProviderKind, WebhookParser] = {
    ProviderKind.FAKE: parse_fake_webhook,
    ProviderKind.SALESFORCE: parse_outbound_message,
}

#: Further webhook formats of a kind, by (kind, channel).
WEBHOOK_CHANNEL_PARSERS: dict[tuple[ProviderKind, str], WebhookParser] = {
    (ProviderKind.SALESFORCE, "signed_json"): parse_signed_json,
}


def _kind(kind: str) -> ProviderKind:
    try:
        return ProviderKind(kind)
    except ValueError:
        known = ", ".join(member.value for member in ProviderKind)
        raise NotImplementedError(f"unknown CRM provider {kind!r} (known: {known})") from None


def is_supported(kind: str) -> bool:
    """Whether the service can work with this kind yet: an adapter or a webhook parser."""
    try:
        resolved = _kind(kind)
    except NotImplementedError:
        return False
    return resolved in PROVIDERS or resolved in WEBHOOK_PARSERS


def provider_for(context: ConnectionContext, settings: Settings | None = None) -> CrmProvider:
    """The adapter for ``context.provider``, talking to that connection's account.

    ``settings`` are the service's (sandbox mode, OAuth apps, the CA bundle for CRM
    calls); an adapter reads the process-wide ones when none are given."""
    kind = _kind(context.provider)
    factory = PROVIDERS.get(kind)
    if factory is None:
        raise NotImplementedError(f"no {kind.value} adapter has been built yet")
    return factory(context, settings=settings)


def webhook_parser_for(kind: str, channel: str | None = None) -> WebhookParser:
    """The webhook verifier/parser for a provider kind (``channel``: one of its other formats)."""
    resolved = _kind(kind)
    if channel is None:
        parser = WEBHOOK_PARSERS.get(resolved)
    else:
        parser = WEBHOOK_CHANNEL_PARSERS.get((resolved, channel))
    if parser is None:
        what = f"{resolved.value} webhook parser" + (f" for {channel!r}" if channel else "")
        raise NotImplementedError(f"no {what} has been built yet")
    return parser
