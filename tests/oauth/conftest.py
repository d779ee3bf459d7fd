"""Fixtures of the OAuth tests: the pipeline's ``service``, and one with the CRMs' apps
configured and their OAuth endpoints played by :class:`FakeOAuthServers`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import httpx
import pytest
from fastapi.testclient import TestClient

from app.admin.keys import create_api_key
from app.config import Settings
from app.db import session_scope
from app.jobs import configure_queue, reset_queue
from app.main import create_app
from app.runtime import get_runtime, set_runtime
from tests.pipeline.conftest import Service, service, service_settings

__all__ = ["FakeOAuthServers", "OAuthService", "oauth", "service"]

SF_CLIENT_ID = "sf-client-id-123"
SF_CLIENT_SECRET = "sf-client-secret-456"
HS_CLIENT_ID = "hs-client-id-789"
HS_CLIENT_SECRET = "hs-client-secret-000"
SF_ORG_18 = "00D5g000004ABCDEAA"
SF_ORG_15 = SF_ORG_18[:15]
HS_PORTAL = "4412345"
SF_TOKEN_URL = "https://login.salesforce.com/services/oauth2/token"
HS_TOKEN_URL = "https://api.hubapi.com/oauth/v1/token"
HS_INFO_PREFIX = "https://api.hubapi.com/oauth/v1/access-tokens/"


def sf_signature(identity: str, issued_at: str, secret: str = SF_CLIENT_SECRET) -> str:
    mac = hmac.new(secret.encode(), f"{identity}{issued_at}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


@dataclass
class FakeOAuthServers:
    """The token endpoints of Salesforce and HubSpot, as an ``httpx.MockTransport``.

    ``codes`` maps a valid authorization code to the PKCE challenge it was issued
    for (None: not checked); each code works once. Tokens are fresh per grant and
    recorded in ``issued`` so tests can look for them in every answer.
    """

    codes: dict[str, str | None] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    sf_org: str = SF_ORG_18
    sf_instance_url: str = "https://acme.my.salesforce.com"
    hs_portal: int = int(HS_PORTAL)
    override: Callable[[httpx.Request], httpx.Response | None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counter: int = 0

    def token_calls(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "POST"]

    def _token(self, kind: str) -> str:
        with self._lock:
            self._counter += 1
            token = f"{kind}-{self._counter}-{'x' * 24}"
        self.issued.append(token)
        return token

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.override is not None:
            answer = self.override(request)
            if answer is not None:
                return answer
        url = str(request.url)
        if request.method == "POST" and url in (SF_TOKEN_URL, HS_TOKEN_URL):
            return self._grant(request, salesforce=url == SF_TOKEN_URL)
        if request.method == "GET" and url.startswith(HS_INFO_PREFIX):
            token = unquote(url[len(HS_INFO_PREFIX) :])
            if token not in self.issued:
                return httpx.Response(404, json={"status": "error", "message": "not found"})
            return httpx.Response(
                200, json={"token": token, "hub_id": self.hs_portal, "app_id": 1, "user": "u@x"}
            )
        return httpx.Response(404, json={"error": "not_found"})

    def _grant(self, request: httpx.Request, *, salesforce: bool) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        client = (
            (SF_CLIENT_ID, SF_CLIENT_SECRET) if salesforce else (HS_CLIENT_ID, HS_CLIENT_SECRET)
        )
        if (form.get("client_id"), form.get("client_secret")) != client:
            return httpx.Response(401, json={"error": "invalid_client"})
        if form.get("grant_type") == "authorization_code":
            provider = "salesforce" if salesforce else "hubspot"
            if form.get("redirect_uri") != f"http://testserver/oauth/callback/{provider}":
                return httpx.Response(400, json={"error": "redirect_uri_mismatch"})
            with self._lock:
                if form.get("code") not in self.codes:
                    return httpx.Response(400, json={"error": "invalid_grant"})
                challenge = self.codes.pop(form["code"])
            if challenge is not None and s256(form.get("code_verifier", "")) != challenge:
                return httpx.Response(400, json={"error": "invalid_grant"})
        elif form.get("grant_type") != "refresh_token" or not form.get("refresh_token"):
            return httpx.Response(400, json={"error": "unsupported_grant_type"})
        access, refresh = self._token("access"), self._token("refresh")
        if salesforce:
            identity = f"https://login.salesforce.com/id/{self.sf_org}/0055g00000AbCdEAAZ"
            issued_at = "1795000000000"
            body: dict[str, Any] = {
                "access_token": access,
                "refresh_token": refresh,
                "instance_url": self.sf_instance_url,
                "id": identity,
                "issued_at": issued_at,
                "signature": sf_signature(identity, issued_at),
                "token_type": "Bearer",
                "scope": "api refresh_token",
            }
        else:
            body = {"access_token": access, "refresh_token": refresh, "expires_in": 1800}
        return httpx.Response(
            200, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )


@dataclass
class OAuthService:
    svc: Service
    crm: FakeOAuthServers


@pytest.fixture
def oauth(db_settings: Settings, tmp_path: Path) -> Iterator[OAuthService]:
    """The service with both CRMs' apps configured; OAuth calls go to ``crm``."""
    settings = service_settings(
        db_settings,
        tmp_path,
        salesforce_client_id=SF_CLIENT_ID,
        salesforce_client_secret=SF_CLIENT_SECRET,
        hubspot_client_id=HS_CLIENT_ID,
        hubspot_client_secret=HS_CLIENT_SECRET,
    )
    configure_queue(settings, immediate=True)
    app = create_app(settings, embedded_worker=False)
    crm = FakeOAuthServers()
    app.state.oauth_http_client = httpx.Client(transport=httpx.MockTransport(crm))
    try:
        with TestClient(app) as client:
            with session_scope(get_runtime().sessions) as session:
                _, admin = create_api_key(session, "admin", "admin")
                _, read = create_api_key(session, "reader", "read")
            yield OAuthService(Service(settings, client, tmp_path, admin, read, app), crm)
    finally:
        app.state.oauth_http_client.close()
        reset_queue()
        set_runtime(None)
