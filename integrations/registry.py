"""Provider kind -> adapter factory and webhook parser.

Plain dicts: an adapter package adds its entry here when it exists. Asking for
a kind that has no adapter yet (or an unknown kind) raises
:class:`NotImplementedError` naming it.
"""

from __future__ import annotations

from collections.abc import Callable

from app.connections.models import Provider as ProviderKind
from integrations.base import ConnectionContext, CrmProvider, WebhookParser
from integrations.fake import FakeProvider, parse_fake_webhook

__all__ = ["PROVIDERS", "WEBHOOK_PARSERS", "ProviderKind", "provider_for", "webhook_parser_for"]

ProviderFactory = Callable[[ConnectionContext], CrmProvider]

#: The adapters that exist, by kind.
PROVIDERS: dict[ProviderKind, ProviderFactory] = {
    ProviderKind.FAKE: FakeProvider,
}

#: The webhook parsers that exist, by kind.
WEBHOOK_PARSERS: dict[ProviderKind, WebhookParser] = {
    ProviderKind.FAKE: parse_fake_webhook,
}


def _kind(kind: str) -> ProviderKind:
    try:
        return ProviderKind(kind)
    except ValueError:
        known = ", ".join(member.value for member in ProviderKind)
        raise NotImplementedError(f"unknown CRM provider {kind!r} (known: {known})") from None


def provider_for(context: ConnectionContext) -> CrmProvider:
    """The adapter for ``context.provider``, talking to that connection's account."""
    kind = _kind(context.provider)
    factory = PROVIDERS.get(kind)
    if factory is None:
        raise NotImplementedError(f"no {kind.value} adapter has been built yet")
    return factory(context)


def webhook_parser_for(kind: str) -> WebhookParser:
    """The webhook verifier/parser for a provider kind."""
    resolved = _kind(kind)
    parser = WEBHOOK_PARSERS.get(resolved)
    if parser is None:
        raise NotImplementedError(f"no {resolved.value} webhook parser has been built yet")
    return parser
