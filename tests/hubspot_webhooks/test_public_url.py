"""Which URL the signature covers: DEALCOACH_PUBLIC_URL when set, else the request's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings
from integrations.registry import PROVIDERS, ProviderKind
from tests.pipeline.conftest import Service, running_service, service_settings

from .conftest import CLIENT_SECRET, add_hubspot_connection, batch, event, signed


def post_signed_for(svc: Service, url: str, object_id: int) -> int:
    body = batch(event(object_id))
    headers = signed(CLIENT_SECRET, "POST", url, body)
    return svc.client.post("/webhooks/hubspot", content=body, headers=headers).status_code


def test_behind_a_proxy_the_public_url_is_what_is_signed(
    db_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(PROVIDERS, ProviderKind.HUBSPOT, raising=False)
    settings = service_settings(db_settings, tmp_path, public_url="https://coach.example.com")
    with running_service(settings, tmp_path, monkeypatch) as svc:
        _, urls = add_hubspot_connection(svc)
        assert urls["hubspot"] == "https://coach.example.com/webhooks/hubspot"
        assert post_signed_for(svc, urls["hubspot"], 1) == 200
        # Signed for the address the proxy forwarded to: not what HubSpot signs.
        assert post_signed_for(svc, "http://testserver/webhooks/hubspot", 2) == 401


def test_without_a_public_url_the_request_url_is_what_is_signed(
    db_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(PROVIDERS, ProviderKind.HUBSPOT, raising=False)
    monkeypatch.delenv("DEALCOACH_PUBLIC_URL", raising=False)
    settings = service_settings(db_settings, tmp_path)
    unset = Settings(**settings.model_dump(exclude={"public_url"}))
    assert unset.explicit_public_url is None
    with running_service(unset, tmp_path, monkeypatch) as svc:
        add_hubspot_connection(svc)
        assert post_signed_for(svc, "http://testserver/webhooks/hubspot", 1) == 200
        assert post_signed_for(svc, "http://127.0.0.1:8000/webhooks/hubspot", 2) == 401
