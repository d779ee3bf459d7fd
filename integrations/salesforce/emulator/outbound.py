"""Outbound Messages: the SOAP notification Salesforce POSTs, and its delivery loop.

One message carries 1-100 ``Notification`` elements (each an id and the record's
latest values). Salesforce retries a message whose reply is not HTTP 200 with the
Ack envelope (``notificationsResponse`` in the outbound namespace with
``<Ack>true</Ack>``), with growing gaps for up to 24 h; the emulator retries
``max_attempts`` times with a doubling backoff (``backoff``, capped at
``max_backoff`` seconds). The Ack check parses the reply as XML: element names and
namespaces must be exactly the envelope's; prefixes and whitespace may differ.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import defusedxml.ElementTree as SafeET
import httpx

from .schema import SObjectDef
from .values import parse_datetime

__all__ = ["ACK", "OUTBOUND_NS", "Delivery", "build_envelope", "deliver", "is_ack"]

OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOBJECT_NS = "urn:sobject.enterprise.soap.sforce.com"
#: The reply Salesforce expects (what a receiver should answer).
ACK = (
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    '<soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    "<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"
)
MAX_NOTIFICATIONS = 100


@dataclass
class Delivery:
    """One outbound message and what became of it."""

    url: str
    notification_ids: tuple[str, ...]
    record_ids: tuple[str, ...]
    envelope: str
    attempts: int = 0
    acked: bool = False
    statuses: list[int | None] = field(default_factory=list)  # None: no HTTP answer


def _soap_value(kind: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if kind == "datetime" and isinstance(value, str):
        return parse_datetime(value).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    if kind in {"currency", "double", "percent"} and isinstance(value, int | float):
        return repr(float(value))
    return str(value)


def build_envelope(
    *,
    organization_id: str,
    action_id: str,
    session_id: str | None,
    enterprise_url: str,
    partner_url: str,
    sobject: SObjectDef,
    notifications: Sequence[tuple[str, Mapping[str, Any]]],
    fields: Sequence[str],
) -> str:
    """The SOAP envelope for ``notifications`` ((notification id, record) pairs)."""
    if not 1 <= len(notifications) <= MAX_NOTIFICATIONS:
        raise ValueError(f"an outbound message carries 1-{MAX_NOTIFICATIONS} notifications")
    session = (
        f"<SessionId>{escape(session_id)}</SessionId>"
        if session_id
        else '<SessionId xsi:nil="true"/>'
    )
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_NS}" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">',
        "<soapenv:Body>",
        f'<notifications xmlns="{OUTBOUND_NS}">',
        f"<OrganizationId>{escape(organization_id)}</OrganizationId>",
        f"<ActionId>{escape(action_id)}</ActionId>",
        session,
        f"<EnterpriseUrl>{escape(enterprise_url)}</EnterpriseUrl>",
        f"<PartnerUrl>{escape(partner_url)}</PartnerUrl>",
    ]
    for notification_id, record in notifications:
        parts.append(f"<Notification><Id>{escape(notification_id)}</Id>")
        parts.append(
            f'<sObject xsi:type={quoteattr("sf:" + sobject.name)} xmlns:sf="{SOBJECT_NS}">'
        )
        for name in fields:
            definition = sobject.field(name)
            if definition is None:
                continue
            value = record.get(definition.name)
            if value is None:
                continue  # null fields are left out
            text = escape(_soap_value(definition.type, value))
            parts.append(f"<sf:{definition.name}>{text}</sf:{definition.name}>")
        parts.append("</sObject></Notification>")
    parts.append("</notifications></soapenv:Body></soapenv:Envelope>")
    return "".join(parts)


def is_ack(status: int, body: bytes) -> bool:
    """Whether a reply acknowledges the message (HTTP 200 and the Ack envelope)."""
    if status != 200:
        return False
    try:
        root = SafeET.fromstring(body)
    except Exception:
        return False
    if root.tag != f"{{{SOAP_NS}}}Envelope":
        return False
    response = root.find(f"{{{SOAP_NS}}}Body/{{{OUTBOUND_NS}}}notificationsResponse")
    if response is None:
        return False
    ack = response.find(f"{{{OUTBOUND_NS}}}Ack")
    return ack is not None and (ack.text or "").strip() == "true"


def deliver(
    delivery: Delivery,
    *,
    max_attempts: int = 5,
    backoff: float = 0.05,
    max_backoff: float = 2.0,
    timeout: float = 10.0,
    verify: bool | str = True,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POST the message until it is acknowledged or ``max_attempts`` are spent."""
    headers = {
        "Content-Type": "text/xml; charset=utf-8",
        "SOAPAction": '""',
        "User-Agent": "Salesforce - Outbound Message (dealcoach emulator)",
    }
    with httpx.Client(timeout=timeout, verify=verify) as client:
        for attempt in range(max_attempts):
            if attempt:
                sleep(min(max_backoff, backoff * 2 ** (attempt - 1)))
            delivery.attempts += 1
            try:
                response = client.post(
                    delivery.url, content=delivery.envelope.encode("utf-8"), headers=headers
                )
            except httpx.HTTPError:
                delivery.statuses.append(None)
                continue
            delivery.statuses.append(response.status_code)
            if is_ack(response.status_code, response.content):
                delivery.acked = True
                break
    return delivery
