"""HubSpot webhook batches -> inbox events (pure; the signature is checked by the caller).

HubSpot POSTs a JSON array of up to 100 events to the app's one target URL,
for every account (portal) the app is installed in::

    [{"eventId": 100, "subscriptionId": 2211, "portalId": 62515, "appId": 54321,
      "occurredAt": 1764226800000, "subscriptionType": "deal.propertyChange",
      "attemptNumber": 0, "objectId": 18765432137, "propertyName": "dealstage",
      "propertyValue": "contractsent", "changeSource": "CRM"}]

Handled (everything else is kept as ``ignored`` and acknowledged):

- ``deal.propertyChange`` of ``dealstage`` -> ``stage_change``;
- ``deal.creation`` -> ``created``;
- the generic ``object.propertyChange`` (of ``dealstage``) and
  ``object.creation`` with ``objectTypeId`` ``"0-3"`` (deals), likewise.

``eventId`` is not unique across deliveries, so an event's identity is a
SHA-256 of (portal, subscription type, object id, property name, property
value, occurredAt): a redelivery of the same change stores nothing new.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from integrations.base import WebhookEvent, WebhookRejected

__all__ = [
    "DEAL_OBJECT_TYPE",
    "MAX_EVENTS",
    "PortalEvent",
    "event_identity",
    "parse_batch",
    "portal_ids",
]

#: HubSpot's object type id of deals (generic ``object.*`` subscriptions).
DEAL_OBJECT_TYPE: Final = "0-3"
#: HubSpot sends at most 100 events per request; more than this is not HubSpot.
MAX_EVENTS: Final = 1000
_STAGE_PROPERTY: Final = "dealstage"
Kind = Literal["stage_change", "created", "ignored"]
_MAX_ID_DIGITS: Final = 20
_MAX_TEXT: Final = 1000


@dataclass(frozen=True, slots=True)
class PortalEvent:
    """One inbox event and the HubSpot account (portal) it belongs to."""

    portal_id: str
    event: WebhookEvent


def _digits(value: object) -> str | None:
    """A HubSpot numeric id (int, or a string of ASCII digits) as text, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        text = str(value)
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        text = value.lstrip("0") or "0"
    else:
        return None
    return text if len(text) <= _MAX_ID_DIGITS else None


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value[:_MAX_TEXT]
    return json.dumps(value)[:_MAX_TEXT]


def event_identity(item: dict[str, Any], portal: str) -> str:
    """The identity of one event (see the module docstring)."""
    parts = [
        portal,
        _text(item.get("subscriptionType")),
        _text(item.get("objectId")),
        _text(item.get("propertyName")),
        _text(item.get("propertyValue")),
        _text(item.get("occurredAt")),
    ]
    return hashlib.sha256(json.dumps(["hubspot", *parts]).encode()).hexdigest()


def _kind(item: dict[str, Any]) -> Kind:
    subscription = item.get("subscriptionType")
    prop = item.get("propertyName")
    if subscription == "deal.propertyChange":
        return "stage_change" if prop == _STAGE_PROPERTY else "ignored"
    if subscription == "deal.creation":
        return "created"
    if str(item.get("objectTypeId", "")) == DEAL_OBJECT_TYPE:
        if subscription == "object.propertyChange":
            return "stage_change" if prop == _STAGE_PROPERTY else "ignored"
        if subscription == "object.creation":
            return "created"
    return "ignored"


def _occurred(value: object) -> datetime | None:
    stamp = _digits(value)
    if stamp is None:
        return None
    try:
        return datetime.fromtimestamp(int(stamp) / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def parse_batch(body: bytes) -> list[PortalEvent]:
    """The events of one (already authenticated) request body.

    Raises :class:`WebhookRejected` (400) when the body is not a JSON array of
    1 to :data:`MAX_EVENTS` objects each with a numeric ``portalId`` and a
    string ``subscriptionType``. An event about anything but a deal, or about a
    deal property other than the stage, is ``ignored``; its ``deal_id`` is the
    object id only when that is numeric (else ``""``).
    """
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise WebhookRejected("the body is not JSON", status=400) from None
    if not isinstance(payload, list) or not 1 <= len(payload) <= MAX_EVENTS:
        raise WebhookRejected(
            f"the body must be a JSON array of 1 to {MAX_EVENTS} events", status=400
        )
    events: list[PortalEvent] = []
    for item in payload:
        if not isinstance(item, dict):
            raise WebhookRejected("each event must be a JSON object", status=400)
        portal = _digits(item.get("portalId"))
        if portal is None or not isinstance(item.get("subscriptionType"), str):
            raise WebhookRejected(
                "each event needs a numeric portalId and a subscriptionType", status=400
            )
        object_id = _digits(item.get("objectId"))
        kind: Kind = _kind(item) if object_id is not None else "ignored"
        detail = json.dumps(item, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        event = WebhookEvent(
            identity=event_identity(item, portal),
            deal_id=object_id or "",
            kind=kind,
            occurred_at=_occurred(item.get("occurredAt")),
            detail=detail,
        )
        events.append(PortalEvent(portal, event))
    return events


def portal_ids(body: bytes) -> list[str]:
    """The portal ids a body names, best effort (before it is authenticated), in order."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return []
    if not isinstance(payload, list):
        return []
    seen: dict[str, None] = {}
    for item in payload[:MAX_EVENTS]:
        if isinstance(item, dict):
            portal = _digits(item.get("portalId"))
            if portal is not None:
                seen.setdefault(portal, None)
    return list(seen)
