"""A HubSpot connection on a running service, and webhook batches as HubSpot signs them.

The ``service`` fixture (``tests/pipeline/conftest.py``) runs the app with its
embedded worker on SQLite and on PostgreSQL, in sandbox mode. Signatures are
made with ``hubspot-api-client``'s own ``Signature`` (v3), independently of the
code under test. ``hubspot`` adds a HubSpot connection whose kind has no adapter
(the review jobs it enqueues wait); ``hubspot_fake`` one served by the fake CRM.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from hubspot.utils.signature import Signature
from sqlalchemy import update

from app.coaching.snapshot import DealSnapshot
from app.config import Settings
from app.connections.models import Connection
from app.db import session_scope
from integrations.base import NoteRequest, NoteResult
from integrations.fake import FakeProvider
from integrations.fake.store import FakeCrm
from integrations.hubspot.signature import sign_v3
from integrations.registry import PROVIDERS, ProviderKind
from tests.pipeline.conftest import (  # noqa: F401  (the fixture)
    Service,
    running_service,
    service,
    service_settings,
)

CLIENT_SECRET = "hs-client-secret-0123456789abcdef"
PORTAL = "62515"
OTHER_PORTAL = "99001"
APP_ID = "54321"
WEBHOOK_PATH = "/webhooks/hubspot"


def now_ms() -> int:
    return int(time.time() * 1000)


def hubspot_signature(secret: str, method: str, uri: str, body: bytes, timestamp: int | str) -> str:
    """What HubSpot sends in ``X-HubSpot-Signature-v3`` (computed by the HubSpot SDK; a
    body that is not UTF-8, which the SDK cannot take, is signed by the code under test)."""
    try:
        body.decode()
    except UnicodeDecodeError:
        return sign_v3(secret, method, uri, body, timestamp)
    return str(
        Signature.get_signature(
            secret,
            body.decode(),
            signature_version="v3",
            http_uri=uri,
            http_method=method,
            timestamp=str(timestamp),
        )
    )


def signed(
    secret: str, method: str, uri: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    stamp = now_ms() if timestamp is None else timestamp
    return {
        "X-HubSpot-Signature-v3": hubspot_signature(secret, method, uri, body, stamp),
        "X-HubSpot-Request-Timestamp": str(stamp),
        "Content-Type": "application/json",
    }


def event(
    object_id: int,
    *,
    portal: str = PORTAL,
    subscription: str = "deal.propertyChange",
    prop: str | None = "dealstage",
    value: str | None = "contractsent",
    occurred: int = 1_764_226_800_000,
    event_id: int = 100,
    **extra: Any,
) -> dict[str, Any]:
    """One event as HubSpot sends it."""
    item: dict[str, Any] = {
        "eventId": event_id,
        "subscriptionId": 2211,
        "portalId": int(portal),
        "appId": int(APP_ID),
        "occurredAt": occurred,
        "subscriptionType": subscription,
        "attemptNumber": 0,
        "objectId": object_id,
        "changeSource": "CRM",
    }
    if prop is not None:
        item["propertyName"] = prop
        item["propertyValue"] = value
    item.update(extra)
    return item


def batch(*events: dict[str, Any]) -> bytes:
    return json.dumps(list(events)).encode()


class NumericIdFakeProvider(FakeProvider):
    """The fake CRM behind HubSpot's numeric deal ids: HubSpot deal ``123`` is the fake
    CRM's ``D123`` (the fake CRM names its deals ``D<digits>``)."""

    def fetch_deal(self, deal_id: str) -> DealSnapshot:
        return replace(super().fetch_deal(f"D{deal_id}"), id=deal_id)

    def write_notes(self, notes: Sequence[NoteRequest]) -> list[NoteResult]:
        return super().write_notes([replace(n, deal_id=f"D{n.deal_id}") for n in notes])

    def find_note(self, deal_id: str, marker: str) -> str | None:
        return super().find_note(f"D{deal_id}", marker)


@dataclass
class HubSpotApp:
    service: Service
    connection_id: str
    url: str
    crm: FakeCrm | None = None
    seen: list[int] = field(default_factory=list)

    def post(
        self,
        body: bytes,
        *,
        secret: str = CLIENT_SECRET,
        timestamp: int | None = None,
        signed_url: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = signed(secret, "POST", signed_url or self.url, body, timestamp)
        if headers is not None:
            sent = headers
        response: httpx.Response = self.service.client.post(
            WEBHOOK_PATH, content=body, headers=sent
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


def add_hubspot_connection(
    svc: Service, portal: str = PORTAL, secret: str | None = CLIENT_SECRET
) -> tuple[str, dict[str, str]]:
    response = svc.client.post(
        "/api/v1/connections",
        headers=svc.auth(),
        json={
            "provider": "hubspot",
            "name": f"HubSpot {portal}",
            "external_account_id": portal,
            "instance_url": "https://api.hubapi.com",
            "credentials": {"access_token": "pat-na1-00000000-0000-0000-0000-000000000000"},
            "webhook_secret": secret,
        },
    )
    assert response.status_code == 201, response.text
    connection_id = str(response.json()["id"])
    shown = svc.client.get(f"/api/v1/connections/{connection_id}", headers=svc.auth())
    assert shown.status_code == 200, shown.text
    return connection_id, shown.json()["webhook_urls"]


@pytest.fixture
def hubspot(service: Service, monkeypatch: pytest.MonkeyPatch) -> HubSpotApp:  # noqa: F811
    """A HubSpot connection (portal 62515) with the app's client secret as its
    webhook secret; no HubSpot adapter is registered, so nothing calls HubSpot."""
    monkeypatch.delitem(PROVIDERS, ProviderKind.HUBSPOT, raising=False)
    connection_id, urls = add_hubspot_connection(service)
    return HubSpotApp(service, connection_id, urls["hubspot"])


@pytest.fixture
def hubspot_fake(service: Service, monkeypatch: pytest.MonkeyPatch) -> HubSpotApp:  # noqa: F811
    """A HubSpot connection whose deals are fetched from (and notes written to) the fake
    CRM: the fake provider is registered for the ``hubspot`` kind, and the connection's
    instance URL points at a fake CRM account (set in the database: the API accepts
    only HubSpot's own hosts for a HubSpot connection)."""
    monkeypatch.setitem(PROVIDERS, ProviderKind.HUBSPOT, NumericIdFakeProvider)
    crm = FakeCrm(service.tmp / "crm-hubspot.db", account_id=PORTAL)
    connection_id, urls = add_hubspot_connection(service)
    with session_scope(service.runtime.sessions) as session:
        session.execute(
            update(Connection)
            .where(Connection.id == connection_id)
            .values(instance_url=crm.instance_url)
        )
    service.client.put(
        f"/api/v1/connections/{connection_id}/credentials",
        headers=service.auth(),
        json={"credentials": crm.credentials(), "webhook_secret": CLIENT_SECRET},
    ).raise_for_status()
    return HubSpotApp(service, connection_id, urls["hubspot"], crm)


@pytest.fixture
def app_secret_service(
    db_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Service]:
    """The service with ``DEALCOACH_HUBSPOT_CLIENT_SECRET`` set (the deployment-wide
    app secret), and no HubSpot adapter."""
    monkeypatch.delitem(PROVIDERS, ProviderKind.HUBSPOT, raising=False)
    settings = service_settings(db_settings, tmp_path, hubspot_client_secret=CLIENT_SECRET)
    with running_service(settings, tmp_path, monkeypatch) as svc:
        yield svc
