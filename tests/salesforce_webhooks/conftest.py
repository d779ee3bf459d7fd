"""A Salesforce connection on a running service, and requests as Salesforce sends them.

The ``service`` fixture (``tests/pipeline/conftest.py``) runs the app with its
embedded worker on SQLite and on PostgreSQL, in sandbox mode. ``sf`` adds a
Salesforce connection through the API and reads its webhook URLs back (with
no Salesforce adapter registered: see the fixture).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import httpx
import pytest

from integrations.registry import PROVIDERS, ProviderKind
from integrations.salesforce.webhooks import sign_salesforce_json
from tests.pipeline.conftest import Service, service  # noqa: F401  (the fixture)

SECRET = "sf-whsec-test-0123456789abcdef"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ALPHABET = _UPPER + "012345"


def sfid(id15: str) -> str:
    """The 18-character form of a 15-character id (written independently of the code
    under test: each 5-character block, read backwards, is a binary number of
    upper-case flags)."""
    assert len(id15) == 15
    suffix = ""
    for start in (0, 5, 10):
        flags = "".join("1" if c in _UPPER else "0" for c in reversed(id15[start : start + 5]))
        suffix += _ALPHABET[int(flags, 2)]
    return id15 + suffix


ORG_15 = "00D5g000004SaLe"
ORG_ID = sfid(ORG_15)
OTHER_ORG = sfid("00D5g000009OtHr")
ACTION_ID = sfid("04k5g000000AcTn")
OPP_1 = sfid("0065g00000AbCdE")
OPP_2 = sfid("0065g00000XyZ12")
OPP_3 = sfid("0065g00000QrStU")
ACCOUNT = sfid("0015g00000AcCnT")


def notification_id(n: int) -> str:
    return sfid(f"04l5g{n:010d}")


@dataclass(frozen=True)
class Notification:
    id: str
    record_id: str
    sobject_type: str = "Opportunity"
    stage: str = "Negotiation/Review"
    name: str = "Acme & Co - 200 Widgets"


def outbound_message(
    *notifications: Notification, org_id: str = ORG_ID, action_id: str = ACTION_ID
) -> bytes:
    """An Outbound Message as Salesforce sends it (enterprise namespace for the sObject)."""
    org_15 = org_id[:15]
    items = "".join(
        f"""
   <Notification>
    <Id>{n.id}</Id>
    <sObject xsi:type="sf:{n.sobject_type}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>{escape(n.record_id)}</sf:Id>
     <sf:LastModifiedDate>2026-11-27T07:00:00.000Z</sf:LastModifiedDate>
     <sf:Name>{escape(n.name)}</sf:Name>
     <sf:StageName>{escape(n.stage)}</sf:StageName>
     <sf:SystemModstamp>2026-11-27T07:00:01.000Z</sf:SystemModstamp>
    </sObject>
   </Notification>"""
        for n in notifications
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" \
xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{org_id}</OrganizationId>
   <ActionId>{action_id}</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/59.0/{org_15}</EnterpriseUrl>
   <PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/59.0/{org_15}</PartnerUrl>{items}
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>
""".encode()


SOAP_HEADERS = {
    "Content-Type": "text/xml; charset=utf-8",
    "SOAPAction": '""',
    "User-Agent": "Jakarta Commons-HttpClient/3.1",
}


def json_events(*events: tuple[str, str]) -> bytes:
    """Signed-JSON events as (event id, opportunity id)."""
    return json.dumps(
        {
            "events": [
                {
                    "id": event_id,
                    "opportunityId": opportunity_id,
                    "stageName": "Proposal/Price Quote",
                    "occurredAt": "2026-11-27T07:00:00.000Z",
                }
                for event_id, opportunity_id in events
            ]
        }
    ).encode()


@dataclass
class SalesforceOrg:
    service: Service
    connection_id: str
    outbound_url: str
    events_url: str

    def post_outbound(self, body: bytes, url: str | None = None) -> httpx.Response:
        response: httpx.Response = self.service.client.post(
            url or self.outbound_url, content=body, headers=SOAP_HEADERS
        )
        return response

    def post_json(
        self,
        body: bytes,
        *,
        timestamp: int | None = None,
        signed_body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        stamp = int(time.time()) if timestamp is None else timestamp
        sent = sign_salesforce_json(signed_body or body, SECRET, stamp)
        if headers is not None:
            sent = headers
        sent = {**sent, "Content-Type": "application/json"}
        response: httpx.Response = self.service.client.post(
            self.events_url, content=body, headers=sent
        )
        return response

    def deliveries(self) -> list[dict[str, Any]]:
        response = self.service.client.get(
            "/api/v1/webhook-deliveries",
            params={"connection_id": self.connection_id, "limit": 200},
            headers=self.service.auth(),
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items


def add_salesforce_connection(
    svc: Service, org_id: str = ORG_ID, secret: str | None = SECRET
) -> SalesforceOrg:
    response = svc.client.post(
        "/api/v1/connections",
        headers=svc.auth(),
        json={
            "provider": "salesforce",
            "name": "Acme Salesforce",
            "external_account_id": org_id,
            "instance_url": "https://acme.my.salesforce.com",
            "credentials": {"access_token": "00D5g000004SaLe!AQ-test-token"},
            "webhook_secret": secret,
        },
    )
    assert response.status_code == 201, response.text
    connection_id = str(response.json()["id"])
    shown = svc.client.get(f"/api/v1/connections/{connection_id}", headers=svc.auth())
    assert shown.status_code == 200, shown.text
    urls = shown.json()["webhook_urls"]
    return SalesforceOrg(svc, connection_id, urls.get("outbound_message", ""), urls["signed_json"])


@pytest.fixture
def sf(service: Service, monkeypatch: pytest.MonkeyPatch) -> SalesforceOrg:  # noqa: F811
    """A Salesforce connection whose kind has no adapter registered, whether or not one
    exists: these tests are about the webhook endpoints, and the embedded worker must
    never call a real org (``acme.my.salesforce.com``) for the reviews they enqueue."""
    monkeypatch.delitem(PROVIDERS, ProviderKind.SALESFORCE, raising=False)
    return add_salesforce_connection(service)
