"""Salesforce stage-change webhooks: Outbound Messages and signed JSON.

Two ways for an org to tell the service that an opportunity changed stage,
each with its own endpoint (``app/webhooks/router.py``):

Outbound Message (:func:`parse_outbound_message`)
    ``POST /webhooks/salesforce/{connection_id}/outbound/{token}``: the SOAP
    message a record-triggered Flow or a workflow rule sends, no code in the
    org. It is not signed: the endpoint checks the unguessable ``token`` of
    the URL (``app.connections.service.outbound_token``) and the parser checks
    that ``OrganizationId`` is the connection's org. The XML is parsed with
    ``defusedxml`` (no DTD, hence no entity expansion and no external
    entities) after a size check. One event per ``Notification`` (1 to 100);
    its identity is a SHA-256 of (org id, notification id), which Salesforce
    keeps across its retries, so a redelivery stores nothing new. The reply is
    the exact ``Ack`` envelope Salesforce waits for (:data:`OUTBOUND_ACK`);
    anything else and it retries for 24 hours.

Signed JSON (:func:`parse_signed_json`)
    ``POST /webhooks/salesforce/{connection_id}/events``: a Flow HTTP Callout
    or Apex (through a Named Credential) posts::

        {"events": [{"id": "<unique event id>",
                     "opportunityId": "006...",
                     "stageName": "Negotiation/Review",
                     "occurredAt": "2026-11-27T07:00:00.000Z"}]}

    (1 to :data:`MAX_JSON_EVENTS` events) with the headers
    ``X-Dealcoach-Timestamp: <epoch seconds>`` and
    ``X-Dealcoach-Signature: sha256=<hex HMAC-SHA256(webhook secret,
    timestamp + "." + raw body)>`` (:func:`sign_salesforce_json`). A timestamp
    more than five minutes from the time of receipt is refused (401), so a
    captured request cannot be replayed later; within the window a replay
    deduplicates on the identity, a SHA-256 of (org id, event id,
    opportunity id).

Ids: every id that leaves a webhook is checked with :func:`is_salesforce_id`
(15 or 18 ASCII letters and digits; for 18, the case-safe checksum). A
notification or event about anything but a valid ``Opportunity`` id (key
prefix ``006``) is stored as ``ignored`` and still acknowledged: a CRM must
never be told to retry a well-formed message the service chooses to ignore.
The event's ``deal_id`` is the opportunity id, or (for an ignored event) the
record id only when it is a valid Salesforce id, else ``""``: an unvalidated
string never reaches the inbox's deal ids, hence never a SOQL query.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard
from xml.etree.ElementTree import Element, ParseError, tostring

import defusedxml.ElementTree as SafeElementTree
from defusedxml import DefusedXmlException

from integrations import signing
from integrations.base import (
    ConnectionContext,
    InboundRequest,
    WebhookEvent,
    WebhookParse,
    WebhookRejected,
)

__all__ = [
    "MAX_JSON_EVENTS",
    "MAX_NOTIFICATIONS",
    "MAX_WEBHOOK_BODY",
    "OPPORTUNITY_PREFIX",
    "OUTBOUND_ACK",
    "OUTBOUND_ACK_CONTENT_TYPE",
    "OUTBOUND_NS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WEBHOOK_TOLERANCE",
    "is_opportunity_id",
    "is_salesforce_id",
    "parse_outbound_message",
    "parse_signed_json",
    "same_org",
    "sign_salesforce_json",
]

#: Namespaces of an Outbound Message.
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOBJECT_NS = "urn:sobject.enterprise.soap.sforce.com"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

#: The reply Salesforce needs, byte for byte, to stop retrying an Outbound Message.
OUTBOUND_ACK = (
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    b"<soapenv:Body>"
    b'<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    b"<Ack>true</Ack>"
    b"</notificationsResponse>"
    b"</soapenv:Body>"
    b"</soapenv:Envelope>"
)
OUTBOUND_ACK_CONTENT_TYPE = "text/xml; charset=utf-8"

SIGNATURE_HEADER = "X-Dealcoach-Signature"
TIMESTAMP_HEADER = "X-Dealcoach-Timestamp"
#: A signed request older (or further in the future) than this is refused as a replay.
WEBHOOK_TOLERANCE = timedelta(minutes=5)
#: Bodies larger than this are refused (413) before any parsing.
MAX_WEBHOOK_BODY = 1 << 20
#: Salesforce sends at most 100 notifications per Outbound Message.
MAX_NOTIFICATIONS = 100
#: Events per signed JSON request (each is one inbox row).
MAX_JSON_EVENTS = 200
#: Key prefix of ``Opportunity`` ids.
OPPORTUNITY_PREFIX = "006"

_ID_15 = re.compile(r"[0-9A-Za-z]{15}", re.ASCII)
_ID_18 = re.compile(r"[0-9A-Za-z]{18}", re.ASCII)
_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_MAX_EVENT_ID = 255


# ---------------------------------------------------------------- ids


def _checksum(id15: str) -> str:
    """The 3-character case-safe suffix of a 15-character id: for each block of 5
    characters, bit i is set when character i is an upper-case letter."""
    suffix = []
    for block in range(3):
        bits = 0
        for position, char in enumerate(id15[block * 5 : block * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix.append(_CHECKSUM_ALPHABET[bits])
    return "".join(suffix)


def is_salesforce_id(value: object, prefix: str | None = None) -> TypeGuard[str]:
    """Whether ``value`` is a well-formed Salesforce record id (optionally with key ``prefix``).

    Strict: exactly 15 ASCII letters and digits (case-sensitive), or 18 whose
    last three are the case-safe checksum of the first 15. Nothing else (no
    whitespace, quotes, trailing newline, non-ASCII digits) passes, so an id
    that passes is safe to put into SOQL.
    """
    if not isinstance(value, str):
        return False
    if len(value) == 15:
        valid = _ID_15.fullmatch(value) is not None
    elif len(value) == 18:
        valid = _ID_18.fullmatch(value) is not None and value[15:] == _checksum(value[:15])
    else:
        return False
    return valid and (prefix is None or value.startswith(prefix))


def is_opportunity_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a valid ``Opportunity`` id (key prefix ``006``)."""
    return is_salesforce_id(value, OPPORTUNITY_PREFIX)


def same_org(left: str, right: str) -> bool:
    """Whether two org ids name the same org: the 15- and 18-character forms of one id
    are equal on their first 15 characters (compared case-sensitively)."""
    if not (is_salesforce_id(left) and is_salesforce_id(right)):
        return False
    return hmac.compare_digest(left[:15].encode(), right[:15].encode())


def _org_key(connection: ConnectionContext) -> str:
    return connection.external_account_id[:15]


def _identity(*parts: str) -> str:
    return hashlib.sha256(json.dumps(list(parts)).encode()).hexdigest()


def _event(
    identity: str,
    record_id: object,
    occurred: datetime | None,
    detail: str,
    *,
    opportunity: bool = True,
) -> WebhookEvent:
    """A stage change of a valid opportunity id; anything else is ``ignored``."""
    if opportunity and is_opportunity_id(record_id):
        return WebhookEvent(identity, record_id, "stage_change", occurred, detail)
    # Not about an opportunity (or not an id at all): kept, acknowledged, never reviewed.
    known = record_id if is_salesforce_id(record_id) else ""
    return WebhookEvent(identity, known, "ignored", occurred, detail)


def _check_size(request: InboundRequest) -> None:
    if len(request.body) > MAX_WEBHOOK_BODY:
        raise WebhookRejected("webhook body too large", status=413)


# ---------------------------------------------------------------- Outbound Messages


def _child(parent: Element, namespace: str, name: str) -> Element | None:
    return parent.find(f"{{{namespace}}}{name}")


def _text(element: Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


def _sobject_time(sobject: Element) -> datetime | None:
    """When the record last changed, if the message carries it (best effort)."""
    for name in ("SystemModstamp", "LastModifiedDate"):
        value = _text(_child(sobject, SOBJECT_NS, name))
        if value:
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                continue
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    return None


def _notifications(body: bytes) -> Element:
    try:
        root = SafeElementTree.fromstring(
            body, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException:
        raise WebhookRejected("DTDs and entities are not accepted", status=400) from None
    except (ParseError, LookupError, ValueError):
        raise WebhookRejected("the body is not well-formed XML", status=400) from None
    if root.tag != f"{{{SOAP_ENV_NS}}}Envelope":
        raise WebhookRejected("the body is not a SOAP envelope", status=400)
    soap_body = _child(root, SOAP_ENV_NS, "Body")
    notifications = None if soap_body is None else _child(soap_body, OUTBOUND_NS, "notifications")
    if notifications is None:
        raise WebhookRejected("the SOAP body holds no Outbound Message notifications", status=400)
    return notifications


_NOTIFICATION_SPAN = re.compile(
    rb"<(?:[A-Za-z_][\w.-]*:)?Notification[\s>].*?</(?:[A-Za-z_][\w.-]*:)?Notification\s*>",
    re.DOTALL,
)


def _notification_texts(body: bytes, count: int) -> list[str] | None:
    """Each Notification's own text, cut from the body as received (kept as the event's
    detail; re-serialising the parsed element costs more than the rest of the parse).
    None when the cut does not find exactly ``count`` of them: the caller serialises."""
    spans = _NOTIFICATION_SPAN.findall(body)
    if len(spans) != count:
        return None
    return [span.decode("utf-8", errors="replace") for span in spans]


def parse_outbound_message(
    request: InboundRequest, connection: ConnectionContext, secret: str | None
) -> WebhookParse:
    """Parse an Outbound Message (see the module docstring) and answer with the Ack.

    ``secret`` is not used: Outbound Messages are unsigned, and the endpoint has
    already checked the secret token in the URL before calling this.

    Raises :class:`WebhookRejected`: 413 for a body over :data:`MAX_WEBHOOK_BODY`;
    400 for anything but a well-formed SOAP Outbound Message without DTD or
    entities, with 1 to 100 notifications each holding an ``Id`` and an
    ``sObject``; 403 when ``OrganizationId`` is not the connection's org.
    """
    del secret  # the URL token is the credential; the endpoint checks it
    _check_size(request)
    notifications = _notifications(request.body)
    organization = _text(_child(notifications, OUTBOUND_NS, "OrganizationId"))
    if not same_org(organization, connection.external_account_id):
        raise WebhookRejected("OrganizationId is not this connection's org", status=403)
    items = notifications.findall(f"{{{OUTBOUND_NS}}}Notification")
    if not 1 <= len(items) <= MAX_NOTIFICATIONS:
        raise WebhookRejected(
            f"an Outbound Message holds 1 to {MAX_NOTIFICATIONS} notifications", status=400
        )
    org = _org_key(connection)
    events: list[WebhookEvent] = []
    raw = _notification_texts(request.body, len(items))
    for index, item in enumerate(items):
        notification_id = _text(_child(item, OUTBOUND_NS, "Id"))
        sobject = _child(item, OUTBOUND_NS, "sObject")
        if not notification_id or len(notification_id) > _MAX_EVENT_ID or sobject is None:
            raise WebhookRejected("each Notification needs an Id and an sObject", status=400)
        declared = sobject.get(f"{{{XSI_NS}}}type", "")
        events.append(
            _event(
                _identity(org, notification_id),
                _text(_child(sobject, SOBJECT_NS, "Id")),
                _sobject_time(sobject),
                raw[index] if raw is not None else tostring(item, encoding="unicode"),
                opportunity=not declared or declared.rpartition(":")[2] == "Opportunity",
            )
        )
    return WebhookParse(
        events=tuple(events),
        reply_body=OUTBOUND_ACK,
        reply_content_type=OUTBOUND_ACK_CONTENT_TYPE,
    )


# ---------------------------------------------------------------- signed JSON


def sign_salesforce_json(body: bytes, secret: str, timestamp: int) -> dict[str, str]:
    """The headers that make ``body`` an authentic signed-JSON request sent at ``timestamp``
    (epoch seconds). What the org's Apex or Flow computes; used by tests and the demo."""
    return signing.sign(body, secret, timestamp, SIGNATURE_HEADER, TIMESTAMP_HEADER)


def _verify(request: InboundRequest, secret: str | None) -> None:
    signing.verify(request, secret, SIGNATURE_HEADER, TIMESTAMP_HEADER, WEBHOOK_TOLERANCE)


def _occurred_at(value: object) -> datetime:
    if not isinstance(value, str):
        raise WebhookRejected("occurredAt must be an ISO 8601 string", status=400)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise WebhookRejected("occurredAt must be an ISO 8601 string", status=400) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _json_event(raw: object, org: str) -> WebhookEvent:
    if not isinstance(raw, dict):
        raise WebhookRejected("each event must be an object", status=400)
    item: dict[str, Any] = raw
    event_id, opportunity_id = item.get("id"), item.get("opportunityId")
    if not isinstance(event_id, str) or not event_id or len(event_id) > _MAX_EVENT_ID:
        raise WebhookRejected("each event needs a string id (1 to 255 characters)", status=400)
    if not isinstance(opportunity_id, str) or not isinstance(item.get("stageName"), str):
        raise WebhookRejected("each event needs string opportunityId and stageName", status=400)
    occurred = _occurred_at(item.get("occurredAt"))
    detail = json.dumps(raw, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return _event(_identity(org, event_id, opportunity_id), opportunity_id, occurred, detail)


def parse_signed_json(
    request: InboundRequest, connection: ConnectionContext, secret: str | None
) -> WebhookParse:
    """Verify and parse a signed-JSON request (see the module docstring for the format).

    Raises :class:`WebhookRejected`: 413 for a body over :data:`MAX_WEBHOOK_BODY`;
    401 when not authentic (no secret configured, missing or wrong signature,
    timestamp more than five minutes from ``received_at``); 400 when authentic
    but malformed. An event whose ``opportunityId`` is not a valid Opportunity
    id is stored as ``ignored``.
    """
    _check_size(request)
    _verify(request, secret)
    try:
        payload = json.loads(request.body)
    except (UnicodeDecodeError, ValueError):
        raise WebhookRejected("webhook body is not JSON", status=400) from None
    raw_events = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(raw_events, list) or not 1 <= len(raw_events) <= MAX_JSON_EVENTS:
        raise WebhookRejected(
            f"webhook body needs an 'events' list of 1 to {MAX_JSON_EVENTS} events", status=400
        )
    org = _org_key(connection)
    events = tuple(_json_event(raw, org) for raw in raw_events)
    reply = json.dumps({"received": len(events)}).encode()
    return WebhookParse(events=events, reply_body=reply)
