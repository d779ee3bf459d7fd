"""Webhook events as a HubSpot app receives them, signed (v3) and retried.

A request is a POST of a JSON array of 1-100 events::

    [{"eventId": 1733412, "subscriptionId": 2981123, "portalId": 8765432,
      "appId": 1234567, "occurredAt": 1763629200000,
      "subscriptionType": "object.propertyChange", "objectTypeId": "0-3",
      "attemptNumber": 0, "objectId": 18800000001, "propertyName": "dealstage",
      "propertyValue": "contractsent", "changeSource": "CRM_UI",
      "sourceId": "userId:9912001"}]

(``"deal.propertyChange"`` subscriptions, the legacy style, carry no
``objectTypeId``.) Headers: ``X-HubSpot-Signature-v3`` = base64 of
HMAC-SHA256(client secret, method + URI + body + timestamp),
``X-HubSpot-Request-Timestamp`` (ms), and the older ``X-HubSpot-Signature``
(v1: hex SHA-256 of secret + body) with ``X-HubSpot-Signature-Version: v1``.
A request whose answer is not 2xx within 5 seconds (or that fails) is sent again
with the same events and ``attemptNumber`` + 1, freshly signed, after a doubling
backoff, at most ``max_attempts`` times (HubSpot: 10 times over 24 hours).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = [
    "MAX_EVENTS",
    "RESPONSE_TIMEOUT",
    "WebhookDelivery",
    "deliver",
    "sign_v1",
    "sign_v3",
]

MAX_EVENTS = 100
RESPONSE_TIMEOUT = 5.0


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """The ``X-HubSpot-Signature-v3`` value."""
    message = method.encode() + uri.encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def sign_v1(secret: str, body: bytes) -> str:
    """The legacy ``X-HubSpot-Signature`` (v1) value."""
    return hashlib.sha256(secret.encode() + body).hexdigest()


@dataclass
class WebhookDelivery:
    """One webhook request (its events) and what became of it."""

    url: str
    events: list[dict[str, Any]]
    attempts: int = 0
    delivered: bool = False
    statuses: list[int | None] = field(default_factory=list)  # None: no answer in time
    durations: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "delivered": self.delivered,
            "attempts": self.attempts,
            "statuses": list(self.statuses),
            "object_ids": [event["objectId"] for event in self.events],
            "event_ids": [event["eventId"] for event in self.events],
        }


def deliver(
    delivery: WebhookDelivery,
    secret: str,
    *,
    max_attempts: int = 10,
    backoff: float = 0.2,
    max_backoff: float = 5.0,
    timeout: float = RESPONSE_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    headers: Mapping[str, str] | None = None,
) -> WebhookDelivery:
    """POST the events until a 2xx answer arrives within ``timeout`` or attempts run out."""
    with httpx.Client(timeout=httpx.Timeout(timeout), trust_env=False) as client:
        for attempt in range(max_attempts):
            if attempt:
                sleep(min(max_backoff, backoff * 2 ** (attempt - 1)))
            events = [{**event, "attemptNumber": attempt} for event in delivery.events]
            body = json.dumps(events, separators=(",", ":")).encode()
            timestamp = str(now_ms())
            request_headers = {
                "Content-Type": "application/json",
                "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/) (dealcoach emulator)",
                "X-HubSpot-Signature-v3": sign_v3(secret, "POST", delivery.url, body, timestamp),
                "X-HubSpot-Request-Timestamp": timestamp,
                "X-HubSpot-Signature": sign_v1(secret, body),
                "X-HubSpot-Signature-Version": "v1",
                **(headers or {}),
            }
            delivery.attempts += 1
            started = time.monotonic()
            try:
                response = client.post(delivery.url, content=body, headers=request_headers)
            except httpx.HTTPError:
                delivery.statuses.append(None)
                delivery.durations.append(time.monotonic() - started)
                continue
            elapsed = time.monotonic() - started
            delivery.durations.append(elapsed)
            delivery.statuses.append(response.status_code)
            if 200 <= response.status_code < 300 and elapsed <= timeout:
                delivery.delivered = True
                break
    return delivery


def property_change_event(
    *,
    event_id: int,
    subscription_id: int,
    portal_id: int,
    app_id: int,
    occurred_at_ms: int,
    object_id: str,
    property_name: str,
    property_value: str | None,
    change_source: str,
    source_id: str | None,
    legacy: bool,
) -> dict[str, Any]:
    """One ``object.propertyChange`` (or legacy ``deal.propertyChange``) event."""
    event: dict[str, Any] = {
        "eventId": event_id,
        "subscriptionId": subscription_id,
        "portalId": portal_id,
        "appId": app_id,
        "occurredAt": occurred_at_ms,
        "subscriptionType": "deal.propertyChange" if legacy else "object.propertyChange",
        "attemptNumber": 0,
        "objectId": int(object_id),
        "propertyName": property_name,
        "propertyValue": "" if property_value is None else property_value,
        "changeSource": change_source,
    }
    if not legacy:
        event["objectTypeId"] = "0-3"
    if source_id is not None:
        event["sourceId"] = source_id
    return event


def batches(events: Sequence[dict[str, Any]], size: int = MAX_EVENTS) -> list[list[dict[str, Any]]]:
    return [list(events[i : i + size]) for i in range(0, len(events), size)]
