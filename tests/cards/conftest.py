"""Cards on a running service: a Salesforce org with a card key, a HubSpot portal with
the app's client secret, and reviews stored for their deals.

Reviews are made by the real pipeline (``store_and_review``) from a realistic
snapshot, in-process: the card endpoints only read what is stored. No CRM adapter
is registered for either kind, so nothing these tests queue can call a CRM.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from app.coaching.snapshot import DealSnapshot
from app.connections.models import Connection
from app.db import session_scope
from app.reviews.models import Review, ReviewTrigger
from app.reviews.pipeline import store_and_review
from integrations.registry import PROVIDERS, ProviderKind
from tests.hubspot_webhooks.conftest import (
    APP_ID,
    CLIENT_SECRET,
    PORTAL,
    add_hubspot_connection,
    signed,
)
from tests.pipeline.conftest import Service, sample_deal, service  # noqa: F401  (the fixture)
from tests.salesforce_webhooks.conftest import ORG_ID, OTHER_ORG, add_salesforce_connection, sfid

OPP = sfid("0065g00000CaRdA")
OPP_2 = sfid("0065g00000CaRdB")
USER = sfid("0055g00000UsErA")
OTHER_USER = sfid("0055g00000UsErB")
HS_DEAL = "123456"
HS_USER = "777"
AS_OF = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
CARD_HEADER = "X-Dealcoach-Card-Key"


def review(
    svc: Service, connection_id: str, deal: DealSnapshot, as_of: datetime = AS_OF
) -> dict[str, Any]:
    """Review ``deal`` for the connection through the pipeline; the stored review."""
    with session_scope(svc.runtime.sessions) as session:
        connection = session.get(Connection, connection_id)
        assert connection is not None
        result = store_and_review(
            session, connection, deal, trigger=ReviewTrigger.MANUAL, as_of=as_of
        )
        assert result is not None
        row: Review = result.review
        return {"id": row.id, "prompts": list(row.prompts), "signals": list(row.signals)}


@dataclass
class SalesforceCard:
    service: Service
    connection_id: str
    key: str

    def url(self, opportunity: str = OPP, what: str = "review") -> str:
        return f"/cards/v1/salesforce/opportunities/{opportunity}/{what}"

    def get(
        self, opportunity: str = OPP, user: str | None = USER, key: str | None = None
    ) -> httpx.Response:
        params = {"user_id": user} if user else {}
        response: httpx.Response = self.service.client.get(
            self.url(opportunity), params=params, headers={CARD_HEADER: key or self.key}
        )
        return response

    def feedback(
        self,
        prompt_id: str,
        verdict: str = "noise",
        *,
        opportunity: str = OPP,
        user: str = USER,
        body: bytes | None = None,
        key: str | None = None,
    ) -> httpx.Response:
        content = (
            body
            if body is not None
            else json.dumps({"prompt_id": prompt_id, "verdict": verdict, "user_id": user}).encode()
        )
        response: httpx.Response = self.service.client.post(
            self.url(opportunity, "feedback"),
            content=content,
            headers={CARD_HEADER: key or self.key, "Content-Type": "application/json"},
        )
        return response


def create_card_key(svc: Service, connection_id: str, name: str = "Salesforce card") -> str:
    response = svc.client.post(
        f"/api/v1/connections/{connection_id}/card-keys", headers=svc.auth(), json={"name": name}
    )
    assert response.status_code == 201, response.text
    key = str(response.json()["key"])
    return key


@pytest.fixture
def sf_card(service: Service, monkeypatch: pytest.MonkeyPatch) -> SalesforceCard:  # noqa: F811
    """A Salesforce connection with a card key and a review of ``OPP``."""
    monkeypatch.delitem(PROVIDERS, ProviderKind.SALESFORCE, raising=False)
    org = add_salesforce_connection(service)
    key = create_card_key(service, org.connection_id)
    review(service, org.connection_id, sample_deal(OPP))
    return SalesforceCard(service, org.connection_id, key)


@pytest.fixture
def other_org(service: Service, sf_card: SalesforceCard) -> SalesforceCard:  # noqa: F811
    """A second Salesforce org with its own card key and a review of ``OPP_2``."""
    org = add_salesforce_connection(service, org_id=OTHER_ORG)
    key = create_card_key(service, org.connection_id)
    review(service, org.connection_id, sample_deal(OPP_2, 3))
    return SalesforceCard(service, org.connection_id, key)


@dataclass
class HubSpotCard:
    service: Service
    connection_id: str
    portal: str = PORTAL

    def url(self, deal: str = HS_DEAL, what: str = "review", **params: str) -> str:
        query = {"appId": APP_ID, "portalId": self.portal, "userId": HS_USER, **params}
        text = "&".join(f"{k}={v}" for k, v in query.items())
        return f"http://testserver/cards/v1/hubspot/deals/{deal}/{what}?{text}"

    def get(
        self,
        deal: str = HS_DEAL,
        *,
        secret: str = CLIENT_SECRET,
        timestamp: int | None = None,
        url: str | None = None,
        signed_url: str | None = None,
        **params: str,
    ) -> httpx.Response:
        target = url or self.url(deal, **params)
        headers = signed(secret, "GET", signed_url or target, b"", timestamp)
        response: httpx.Response = self.service.client.get(target, headers=headers)
        return response

    def feedback(
        self,
        prompt_id: str,
        verdict: str = "noise",
        *,
        deal: str = HS_DEAL,
        body: bytes | None = None,
        signed_body: bytes | None = None,
        secret: str = CLIENT_SECRET,
        **params: str,
    ) -> httpx.Response:
        content = (
            body
            if body is not None
            else json.dumps({"prompt_id": prompt_id, "verdict": verdict}).encode()
        )
        target = self.url(deal, "feedback", **params)
        headers = signed(secret, "POST", target, signed_body or content)
        response: httpx.Response = self.service.client.post(
            target, content=content, headers=headers
        )
        return response


@pytest.fixture
def hs_card(service: Service, monkeypatch: pytest.MonkeyPatch) -> HubSpotCard:  # noqa: F811
    """A HubSpot connection (portal 62515, the app's client secret as its webhook
    secret) with a review of deal ``123456``."""
    monkeypatch.delitem(PROVIDERS, ProviderKind.HUBSPOT, raising=False)
    connection_id, _urls = add_hubspot_connection(service)
    review(service, connection_id, sample_deal(HS_DEAL))
    return HubSpotCard(service, connection_id)


def manager_ids(body: dict[str, Any]) -> list[str]:
    return [p["id"] for p in body["manager"]]


def later(deal: DealSnapshot, **changes: Any) -> DealSnapshot:
    return replace(deal, **changes)


__all__ = ["ORG_ID"]
