"""The OAuth connect flow end to end: start, begin (cookie), callback; and its refusals."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, update

from app.connections.models import Connection, ConnectionStatus, OAuthAttempt
from app.db import session_scope, utcnow
from tests.pipeline.conftest import Service

from .conftest import (
    HS_CLIENT_ID,
    HS_PORTAL,
    SF_CLIENT_ID,
    SF_ORG_15,
    OAuthService,
    s256,
)

COOKIE = "dealcoach_oauth"  # over http (the tests' public URL); __Host-... over https


class Flow:
    """One admin connecting one connection; every HTTP answer is kept for leak checks."""

    def __init__(self, env: OAuthService, provider: str, connection_id: str) -> None:
        self.env, self.provider, self.connection_id = env, provider, connection_id
        self.answers: list[httpx.Response] = []
        self.state = ""
        self.nonce = ""
        self.authorize: dict[str, str] = {}

    @property
    def client(self) -> Any:
        return self.env.svc.client

    def keep(self, response: httpx.Response) -> httpx.Response:
        self.answers.append(response)
        return response

    def start(self) -> dict[str, Any]:
        response = self.keep(
            self.client.post(
                f"/api/v1/connections/{self.connection_id}/oauth/start",
                headers=self.env.svc.auth(),
            )
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def begin(self, begin_url: str | None = None) -> httpx.Response:
        begin_url = begin_url or self.start()["begin_url"]
        response = self.keep(self.client.get(urlsplit(begin_url).path, follow_redirects=False))
        if response.status_code == 302:
            query = parse_qs(urlsplit(response.headers["location"]).query)
            self.authorize = {key: values[0] for key, values in query.items()}
            self.state = self.authorize["state"]
            self.nonce = self.client.cookies.get(COOKIE)
        return response

    def grant_code(self, code: str = "the-code") -> str:
        """The CRM issues ``code`` for the challenge it was shown."""
        self.env.crm.codes[code] = self.authorize["code_challenge"]
        return code

    def callback(self, **params: str) -> httpx.Response:
        return self.keep(
            self.client.get(
                f"/oauth/callback/{params.pop('provider', self.provider)}",
                params=params,
                follow_redirects=False,
            )
        )

    def connect(self) -> httpx.Response:
        self.begin()
        return self.callback(code=self.grant_code(), state=self.state)


def make_connection(svc: Service, provider: str, account: str | None = None) -> str:
    body = {
        "salesforce": {
            "provider": "salesforce",
            "name": "Acme Salesforce",
            "external_account_id": account or SF_ORG_15,
            "instance_url": "https://acme.my.salesforce.com",
        },
        "hubspot": {
            "provider": "hubspot",
            "name": "Acme HubSpot",
            "external_account_id": account or HS_PORTAL,
            "instance_url": "https://api.hubapi.com",
        },
    }[provider]
    response = svc.client.post("/api/v1/connections", headers=svc.auth(), json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def stored(svc: Service, connection_id: str) -> tuple[Connection, dict[str, Any] | None]:
    with session_scope(svc.runtime.sessions) as session:
        connection = session.get(Connection, connection_id)
        assert connection is not None
        session.expunge(connection)
    if connection.credentials_encrypted is None:
        return connection, None
    return connection, svc.runtime.box.decrypt_json(connection.credentials_encrypted)


def attempts(svc: Service) -> list[OAuthAttempt]:
    with session_scope(svc.runtime.sessions) as session:
        rows = list(session.scalars(select(OAuthAttempt).order_by(OAuthAttempt.created_at)))
        for row in rows:
            session.expunge(row)
        return rows


def assert_no_secret_in(answers: list[httpx.Response], secrets: list[str]) -> None:
    for answer in answers:
        visible = answer.text + repr(dict(answer.headers))
        for secret in secrets:
            assert secret not in visible, f"a secret leaked into {answer.request.url}"


def assert_refused(flow: Flow, response: httpx.Response, *, calls: int = 0) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "Connected" not in response.text
    assert "Not connected" in response.text
    _, credentials = stored(flow.env.svc, flow.connection_id)
    assert credentials is None
    assert len(flow.env.crm.token_calls()) == calls
    assert_no_secret_in(flow.answers, flow.env.crm.issued)


# ---------------------------------------------------------------- happy paths


def test_salesforce_connects_and_stores_the_tokens_encrypted(oauth: OAuthService) -> None:
    svc, crm = oauth.svc, oauth.crm
    connection_id = make_connection(svc, "salesforce")
    flow = Flow(oauth, "salesforce", connection_id)

    started = flow.start()
    assert started["begin_url"].startswith("http://testserver/oauth/begin/")
    assert started["redirect_uri"] == "http://testserver/oauth/callback/salesforce"
    begin = flow.begin(started["begin_url"])

    assert begin.status_code == 302
    location = begin.headers["location"]
    assert location.startswith("https://login.salesforce.com/services/oauth2/authorize?")
    assert flow.authorize["client_id"] == SF_CLIENT_ID
    assert flow.authorize["response_type"] == "code"
    assert flow.authorize["scope"] == "api refresh_token"
    assert flow.authorize["redirect_uri"] == "http://testserver/oauth/callback/salesforce"
    assert flow.authorize["code_challenge_method"] == "S256"
    cookie = begin.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    assert "secure" not in cookie  # plain http public URL in the tests
    assert begin.headers["referrer-policy"] == "no-referrer"
    assert flow.nonce and flow.nonce not in flow.state  # only its hash travels in the state

    done = flow.callback(code=flow.grant_code(), state=flow.state)

    assert done.status_code == 200, done.text
    assert "Connected" in done.text
    assert f'{COOKIE}=""' in done.headers["set-cookie"] or "Max-Age=0" in done.headers["set-cookie"]
    (token_call,) = crm.token_calls()
    form = parse_qs(token_call.content.decode())
    assert form["grant_type"] == ["authorization_code"]
    assert s256(form["code_verifier"][0]) == flow.authorize["code_challenge"]
    connection, credentials = stored(svc, connection_id)
    access, refresh = crm.issued[:2]
    assert credentials is not None
    assert credentials["auth"] == "oauth"
    assert credentials["access_token"] == access
    assert credentials["refresh_token"] == refresh
    assert credentials["instance_url"] == "https://acme.my.salesforce.com"
    assert credentials["issued_at"] == "1795000000000"
    assert connection.status == ConnectionStatus.ACTIVE
    assert connection.instance_url == "https://acme.my.salesforce.com"
    assert access.encode() not in connection.credentials_encrypted  # type: ignore[operator]
    shown = svc.client.get(f"/api/v1/connections/{connection_id}", headers=svc.auth())
    assert shown.json()["has_credentials"] is True
    flow.answers.append(shown)
    assert_no_secret_in(flow.answers, [*crm.issued, form["code_verifier"][0]])
    (attempt,) = attempts(svc)
    assert attempt.used_at is not None and attempt.begun_at is not None
    ticket = urlsplit(started["begin_url"]).path.rsplit("/", 1)[1]
    assert ticket not in repr(vars(attempt)) and attempt.ticket_hash != ticket


def test_hubspot_connects_with_the_portal_checked(oauth: OAuthService) -> None:
    svc, crm = oauth.svc, oauth.crm
    connection_id = make_connection(svc, "hubspot")
    flow = Flow(oauth, "hubspot", connection_id)

    flow.begin()
    assert (
        flow.answers[-1].headers["location"].startswith("https://app.hubspot.com/oauth/authorize?")
    )
    assert flow.authorize["client_id"] == HS_CLIENT_ID
    assert flow.authorize["scope"] == (
        "crm.objects.deals.read crm.objects.deals.write crm.objects.contacts.read oauth"
    )
    done = flow.callback(code=flow.grant_code(), state=flow.state)

    assert done.status_code == 200, done.text
    connection, credentials = stored(svc, connection_id)
    assert credentials is not None
    assert credentials["auth"] == "oauth"
    assert credentials["access_token"] == crm.issued[0]
    assert credentials["refresh_token"] == crm.issued[1]
    assert "expires_at" in credentials and "instance_url" not in credentials
    assert connection.instance_url == "https://api.hubapi.com"
    info_calls = [r for r in crm.requests if r.method == "GET"]
    assert len(info_calls) == 1  # the portal id of the new token
    assert_no_secret_in(flow.answers, crm.issued)


def test_needs_reauth_connection_becomes_active_again(oauth: OAuthService) -> None:
    svc = oauth.svc
    connection_id = make_connection(svc, "hubspot")
    with session_scope(svc.runtime.sessions) as session:
        session.execute(
            update(Connection)
            .where(Connection.id == connection_id)
            .values(status=ConnectionStatus.NEEDS_REAUTH, last_error="refused")
        )

    assert Flow(oauth, "hubspot", connection_id).connect().status_code == 200

    connection, _ = stored(svc, connection_id)
    assert connection.status == ConnectionStatus.ACTIVE and connection.last_error is None


# ---------------------------------------------------------------- refusals (CSRF and more)


def test_callback_without_the_cookie_is_refused(oauth: OAuthService) -> None:
    flow = Flow(oauth, "salesforce", make_connection(oauth.svc, "salesforce"))
    flow.begin()
    code = flow.grant_code()
    flow.client.cookies.clear()

    response = flow.callback(code=code, state=flow.state)

    assert_refused(flow, response)
    assert "did not start" in response.text
    assert attempts(oauth.svc)[0].used_at is None


def test_callback_with_another_browsers_cookie_is_refused(oauth: OAuthService) -> None:
    svc = oauth.svc
    connection_id = make_connection(svc, "salesforce")
    victim = Flow(oauth, "salesforce", connection_id)
    victim.begin()
    victim_code = victim.grant_code("victim-code")
    svc.client.cookies.clear()
    attacker = Flow(oauth, "salesforce", connection_id)
    attacker.begin()  # the attacker's own browser now holds the attacker's cookie

    response = attacker.callback(code=victim_code, state=victim.state)
    assert_refused(victim, response)

    # And the attacker's state in the victim's browser is refused too.
    svc.client.cookies.clear()
    svc.client.cookies.set(COOKIE, victim.nonce)
    attacker_code = attacker.grant_code("attacker-code")
    response = victim.callback(code=attacker_code, state=attacker.state)
    assert_refused(victim, response)
    assert all(row.used_at is None for row in attempts(svc))


def test_tampered_state_is_refused(oauth: OAuthService) -> None:
    flow = Flow(oauth, "salesforce", make_connection(oauth.svc, "salesforce"))
    flow.begin()
    code = flow.grant_code()
    version, attempt_id, nonce_hash, mac = flow.state.split(".")
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    other_attempt = "00000000-0000-4000-8000-000000000000"
    for state in (
        f"{version}.{attempt_id}.{nonce_hash}.{flipped}",
        f"{version}.{other_attempt}.{nonce_hash}.{mac}",
        f"{version}.{attempt_id}.{'0' * 64}.{mac}",
        "",
        "v1.garbage",
    ):
        assert_refused(flow, flow.callback(code=code, state=state))
    assert_refused(flow, flow.callback(code=code))
    # A Salesforce state at HubSpot's callback: the MAC covers the provider.
    assert_refused(flow, flow.callback(code=code, state=flow.state, provider="hubspot"))
    assert attempts(oauth.svc)[0].used_at is None


def test_replayed_state_is_refused(oauth: OAuthService) -> None:
    svc, crm = oauth.svc, oauth.crm
    connection_id = make_connection(svc, "salesforce")
    flow = Flow(oauth, "salesforce", connection_id)
    assert flow.connect().status_code == 200
    _, first = stored(svc, connection_id)
    svc.client.cookies.set(COOKIE, flow.nonce)  # even with the cookie put back

    response = flow.callback(code=flow.grant_code("second-code"), state=flow.state)

    assert response.status_code == 400
    assert "already used" in response.text
    assert len(crm.token_calls()) == 1
    assert stored(svc, connection_id)[1] == first


def test_a_begin_link_works_once(oauth: OAuthService) -> None:
    flow = Flow(oauth, "hubspot", make_connection(oauth.svc, "hubspot"))
    begin_url = flow.start()["begin_url"]
    assert flow.begin(begin_url).status_code == 302

    again = flow.begin(begin_url)

    assert again.status_code == 400 and "already used" in again.text
    assert "set-cookie" not in again.headers
    assert flow.begin(begin_url.replace("/begin/", "/begin/x")).status_code == 400


def test_racing_callbacks_with_one_state_exchange_the_code_once(oauth: OAuthService) -> None:
    svc, crm = oauth.svc, oauth.crm
    connection_id = make_connection(svc, "salesforce")
    flow = Flow(oauth, "salesforce", connection_id)
    flow.begin()
    code = flow.grant_code()
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def call() -> None:
        barrier.wait()
        response = svc.client.get(
            "/oauth/callback/salesforce",
            params={"code": code, "state": flow.state},
            follow_redirects=False,
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(statuses) == [200, 400, 400, 400]
    assert len(crm.token_calls()) == 1


def test_expired_attempt_is_refused(oauth: OAuthService) -> None:
    svc = oauth.svc
    flow = Flow(oauth, "salesforce", make_connection(svc, "salesforce"))
    flow.begin()
    code = flow.grant_code()
    with session_scope(svc.runtime.sessions) as session:
        session.execute(update(OAuthAttempt).values(expires_at=utcnow() - timedelta(seconds=1)))

    response = flow.callback(code=code, state=flow.state)

    assert_refused(flow, response)
    assert "expired" in response.text


def test_expired_begin_link_is_refused(oauth: OAuthService) -> None:
    svc = oauth.svc
    flow = Flow(oauth, "salesforce", make_connection(svc, "salesforce"))
    begin_url = flow.start()["begin_url"]
    with session_scope(svc.runtime.sessions) as session:
        session.execute(update(OAuthAttempt).values(expires_at=utcnow() - timedelta(seconds=1)))

    response = flow.begin(begin_url)

    assert response.status_code == 400 and "expired" in response.text


def test_salesforce_org_mismatch_stores_nothing(oauth: OAuthService) -> None:
    oauth.crm.sf_org = "00D5g000009ZZZZEAA"
    flow = Flow(oauth, "salesforce", make_connection(oauth.svc, "salesforce"))

    response = flow.connect()

    assert_refused(flow, response, calls=1)
    assert "00D5g000009ZZZZEAA" in response.text and SF_ORG_15 in response.text
    assert "set-cookie" in response.headers  # the attempt is spent: the cookie goes


def test_hubspot_portal_mismatch_stores_nothing(oauth: OAuthService) -> None:
    oauth.crm.hs_portal = 999
    flow = Flow(oauth, "hubspot", make_connection(oauth.svc, "hubspot"))

    response = flow.connect()

    assert_refused(flow, response, calls=1)
    assert "portal 999" in response.text


@pytest.mark.parametrize(
    "instance_url",
    [
        "https://evil.example.com",
        "http://acme.my.salesforce.com.evil.io",
        "https://user:pw@acme.my.salesforce.com",
        "javascript:alert(1)",
    ],
)
def test_refused_instance_url_stores_nothing(oauth: OAuthService, instance_url: str) -> None:
    oauth.crm.sf_instance_url = instance_url
    flow = Flow(oauth, "salesforce", make_connection(oauth.svc, "salesforce"))

    response = flow.connect()

    assert_refused(flow, response, calls=1)
    assert "instance URL" in response.text
    assert stored(oauth.svc, flow.connection_id)[0].instance_url == (
        "https://acme.my.salesforce.com"
    )


def test_access_denied_at_the_crm_stores_nothing_and_spends_the_attempt(
    oauth: OAuthService,
) -> None:
    flow = Flow(oauth, "hubspot", make_connection(oauth.svc, "hubspot"))
    flow.begin()

    response = flow.callback(error="access_denied", state=flow.state)

    assert_refused(flow, response)
    assert "access_denied" in response.text
    assert attempts(oauth.svc)[0].used_at is not None
    # Reflected text is escaped, odd error codes are not echoed.
    odd = flow.callback(error="<script>alert(1)</script>", state="x")
    assert odd.status_code == 400 and "<script>" not in odd.text


def test_code_refused_by_the_crm_stores_nothing(oauth: OAuthService) -> None:
    flow = Flow(oauth, "salesforce", make_connection(oauth.svc, "salesforce"))
    flow.begin()

    response = flow.callback(code="never-issued", state=flow.state)

    assert_refused(flow, response, calls=1)
    assert "invalid_grant" in response.text


def test_crm_unavailable_answers_502(oauth: OAuthService) -> None:
    def unavailable(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": "30"})

    oauth.crm.override = unavailable
    flow = Flow(oauth, "hubspot", make_connection(oauth.svc, "hubspot"))

    response = flow.connect()

    assert response.status_code == 502
    assert stored(oauth.svc, flow.connection_id)[1] is None


def test_without_client_id_start_answers_409_and_stores_nothing(service: Service) -> None:
    for provider, variable in (
        ("salesforce", "DEALCOACH_SALESFORCE_CLIENT_ID"),
        ("hubspot", "DEALCOACH_HUBSPOT_CLIENT_ID"),
    ):
        connection_id = make_connection(service, provider)
        response = service.client.post(
            f"/api/v1/connections/{connection_id}/oauth/start", headers=service.auth()
        )
        assert response.status_code == 409
        assert variable in response.json()["detail"]
    assert attempts(service) == []


def test_start_needs_an_admin_key_and_an_oauth_provider(oauth: OAuthService) -> None:
    svc = oauth.svc
    connection_id = make_connection(svc, "hubspot")
    path = f"/api/v1/connections/{connection_id}/oauth/start"
    assert svc.client.post(path).status_code == 401
    assert svc.client.post(path, headers=svc.auth(svc.read_key)).status_code == 403
    assert (
        svc.client.post("/api/v1/connections/nope/oauth/start", headers=svc.auth()).status_code
        == 404
    )
    fake_id, _ = svc.add_fake_connection()
    fake = svc.client.post(f"/api/v1/connections/{fake_id}/oauth/start", headers=svc.auth())
    assert fake.status_code == 409 and "directly" in fake.json()["detail"]
    assert svc.client.get("/oauth/callback/fake?code=x&state=y").status_code == 404
