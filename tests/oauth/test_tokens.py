"""Token endpoint calls, their error mapping, the signed state, and credential shapes."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.connections.credential_shapes import CredentialsShapeError, check_credentials
from app.connections.models import Provider
from app.connections.oauth import (
    OAuthNotConfigured,
    account_id,
    authorize_url,
    code_challenge,
    digest,
    exchange_code,
    provider_config,
    refresh_token,
    same_account,
    sign_state,
    state_keys,
    verify_state,
)
from app.security.crypto import generate_key
from integrations.base import AuthError, InvalidRequestError, RateLimitedError, RetriableError
from tests.conftest import TEST_SECRET_KEY

from .conftest import (
    HS_CLIENT_ID,
    HS_CLIENT_SECRET,
    SF_CLIENT_ID,
    SF_CLIENT_SECRET,
    sf_signature,
)

REFRESH = "refresh-token-secret-value-1234567890"
ATTEMPT = "5b0c7d1e-2f3a-4b5c-8d9e-0f1a2b3c4d5e"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        secret_keys=TEST_SECRET_KEY,
        salesforce_client_id=SF_CLIENT_ID,
        salesforce_client_secret=SF_CLIENT_SECRET,
        hubspot_client_id=HS_CLIENT_ID,
        hubspot_client_secret=HS_CLIENT_SECRET,
    )


def client_for(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def answer(status: int, body: Any = None, **headers: str) -> httpx.Client:
    return client_for(lambda _request: httpx.Response(status, json=body, headers=headers))


def sf_tokens(**changes: Any) -> dict[str, Any]:
    identity = "https://login.salesforce.com/id/00D5g000004ABCDEAA/0055g00000AbCdEAAZ"
    body = {
        "access_token": "00D!new-access-token",
        "instance_url": "https://acme.my.salesforce.com",
        "id": identity,
        "issued_at": "1795000000000",
        "signature": sf_signature(identity, "1795000000000"),
        "token_type": "Bearer",
    }
    body.update(changes)
    return body


# ---------------------------------------------------------------- refresh: error mapping


@pytest.mark.parametrize("provider", [Provider.SALESFORCE, Provider.HUBSPOT])
def test_invalid_grant_is_an_auth_error_that_refreshing_cannot_fix(
    settings: Settings, provider: Provider
) -> None:
    client = answer(400, {"error": "invalid_grant", "error_description": "expired " + REFRESH})

    with pytest.raises(AuthError) as caught:
        refresh_token(provider, REFRESH, settings, client)

    assert caught.value.refreshable is False
    assert "invalid_grant" in str(caught.value) and "400" in str(caught.value)
    assert REFRESH not in str(caught.value) and SF_CLIENT_SECRET not in str(caught.value)


def test_hubspot_bad_refresh_token_status_is_named(settings: Settings) -> None:
    client = answer(400, {"status": "BAD_REFRESH_TOKEN", "message": "missing or invalid"})
    with pytest.raises(AuthError, match="BAD_REFRESH_TOKEN"):
        refresh_token(Provider.HUBSPOT, REFRESH, settings, client)


@pytest.mark.parametrize("provider", [Provider.SALESFORCE, Provider.HUBSPOT])
def test_429_is_retriable_after_the_crms_retry_after(
    settings: Settings, provider: Provider
) -> None:
    client = answer(429, {"status": "error", "errorType": "RATE_LIMIT"}, **{"Retry-After": "12"})

    with pytest.raises(RetriableError) as caught:
        refresh_token(provider, REFRESH, settings, client)

    assert isinstance(caught.value, RateLimitedError)
    assert caught.value.retry_after == 12.0


def test_5xx_with_an_http_date_retry_after(settings: Settings) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    client = answer(503, None, **{"Retry-After": when})

    with pytest.raises(RetriableError) as caught:
        refresh_token(Provider.SALESFORCE, REFRESH, settings, client)

    assert caught.value.retry_after is not None and 80 <= caught.value.retry_after <= 90
    assert not isinstance(caught.value, RateLimitedError)


def test_5xx_without_retry_after_and_timeouts_are_retriable(settings: Settings) -> None:
    with pytest.raises(RetriableError) as caught:
        refresh_token(Provider.HUBSPOT, REFRESH, settings, answer(502, None))
    assert caught.value.retry_after is None

    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(RetriableError, match="timed out"):
        refresh_token(Provider.HUBSPOT, REFRESH, settings, client_for(timeout))

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect {request.url}", request=request)

    with pytest.raises(RetriableError, match="ConnectError") as unreachable:
        refresh_token(Provider.HUBSPOT, REFRESH, settings, client_for(refused))
    assert REFRESH not in str(unreachable.value)


def test_401_invalid_client_is_an_auth_error(settings: Settings) -> None:
    with pytest.raises(AuthError, match="invalid_client"):
        refresh_token(
            Provider.SALESFORCE, REFRESH, settings, answer(401, {"error": "invalid_client"})
        )


def test_a_200_without_an_access_token_is_retriable(settings: Settings) -> None:
    with pytest.raises(RetriableError):
        refresh_token(Provider.HUBSPOT, REFRESH, settings, answer(200, {"nope": 1}))
    bad_json = client_for(lambda _r: httpx.Response(200, content=b"<html>"))
    with pytest.raises(RetriableError):
        refresh_token(Provider.HUBSPOT, REFRESH, settings, bad_json)


# ---------------------------------------------------------------- refresh: success


def test_salesforce_refresh_keeps_the_refresh_token_and_checks_the_answer(
    settings: Settings,
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=sf_tokens())

    credentials = refresh_token(Provider.SALESFORCE, REFRESH, settings, client_for(handler))

    assert credentials == {
        "auth": "oauth",
        "access_token": "00D!new-access-token",
        "refresh_token": REFRESH,
        "instance_url": "https://acme.my.salesforce.com",
        "issued_at": "1795000000000",
        "identity_url": sf_tokens()["id"],
    }
    assert str(seen[0].url) == "https://login.salesforce.com/services/oauth2/token"
    form = seen[0].content.decode()
    assert "grant_type=refresh_token" in form and f"client_id={SF_CLIENT_ID}" in form
    assert account_id(Provider.SALESFORCE, credentials, settings, answer(500)) == (
        "00D5g000004ABCDEAA"
    )


def test_salesforce_answer_with_a_wrong_signature_is_refused(settings: Settings) -> None:
    client = answer(200, sf_tokens(signature=sf_signature("https://x/id/00Dother/005", "1")))
    with pytest.raises(AuthError, match="signature"):
        refresh_token(Provider.SALESFORCE, REFRESH, settings, client)


def test_salesforce_instance_url_is_validated_on_refresh(settings: Settings) -> None:
    client = answer(200, sf_tokens(instance_url="https://evil.example.com"))
    with pytest.raises(InvalidRequestError, match="instance URL"):
        refresh_token(Provider.SALESFORCE, REFRESH, settings, client)


def test_hubspot_refresh_takes_the_new_refresh_token_and_expiry(settings: Settings) -> None:
    client = answer(200, {"access_token": "a1", "refresh_token": "r2", "expires_in": 1800})

    credentials = refresh_token(Provider.HUBSPOT, REFRESH, settings, client)

    assert credentials["refresh_token"] == "r2" and credentials["access_token"] == "a1"
    expires_at = datetime.fromisoformat(credentials["expires_at"])
    assert timedelta(minutes=29) < expires_at - datetime.now(UTC) <= timedelta(minutes=30)


def test_code_exchange_without_a_refresh_token_is_refused(settings: Settings) -> None:
    client = answer(200, {"access_token": "a1", "expires_in": 1800})
    with pytest.raises(InvalidRequestError, match="no refresh token"):
        exchange_code(Provider.HUBSPOT, "code", "http://x/cb", settings, client)


def test_hubspot_portal_id_and_the_token_url_kept_out_of_logs(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    token = "CJSP5qf1KxICAQEYs-gDIIGOBii1hQIyGQ-secret"

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/oauth/v1/access-tokens/{token}"
        return httpx.Response(200, json={"hub_id": 4412345, "token": token})

    with caplog.at_level(logging.DEBUG):
        portal = account_id(
            Provider.HUBSPOT, {"access_token": token}, settings, client_for(handler)
        )
        # httpx's own request log line goes through the same redaction.
        logging.getLogger("httpx").info(
            "HTTP Request: %s %s", "GET", f"https://api.hubapi.com/oauth/v1/access-tokens/{token}"
        )

    assert portal == "4412345"
    assert token not in caplog.text
    assert "[redacted]" in caplog.text
    with pytest.raises(AuthError):
        account_id(Provider.HUBSPOT, {"access_token": token}, settings, answer(401, {}))


# ---------------------------------------------------------------- configuration


def test_missing_client_credentials_name_the_settings(tmp_path: Path) -> None:
    bare = Settings(data_dir=tmp_path, secret_keys=TEST_SECRET_KEY)
    with pytest.raises(OAuthNotConfigured, match="DEALCOACH_SALESFORCE_CLIENT_ID"):
        provider_config(Provider.SALESFORCE, bare)
    with pytest.raises(OAuthNotConfigured, match="DEALCOACH_HUBSPOT_CLIENT_SECRET"):
        provider_config(Provider.HUBSPOT, bare.model_copy(update={"hubspot_client_id": "x"}))
    with pytest.raises(OAuthNotConfigured):
        provider_config(Provider.FAKE, bare)


def test_emulator_urls_come_from_settings_and_need_https_outside_sandbox(
    settings: Settings,
) -> None:
    local = settings.model_copy(
        update={
            "salesforce_login_url": "http://sf.localhost:9000",
            "hubspot_oauth_url": "http://hs.localhost:9001",
            "hubspot_authorize_url": "http://hs.localhost:9001/oauth/authorize",
        }
    )
    with pytest.raises(OAuthNotConfigured, match="https"):
        provider_config(Provider.SALESFORCE, local)
    sandbox = local.model_copy(update={"sandbox": True})
    assert provider_config(Provider.SALESFORCE, sandbox).token_url == (
        "http://sf.localhost:9000/services/oauth2/token"
    )
    hubspot = provider_config(Provider.HUBSPOT, sandbox)
    assert hubspot.token_url == "http://hs.localhost:9001/oauth/v1/token"
    assert SF_CLIENT_SECRET not in repr(provider_config(Provider.SALESFORCE, sandbox))
    url = authorize_url(hubspot, state="s", redirect_uri="http://x/cb", code_challenge="c")
    assert url.startswith("http://hs.localhost:9001/oauth/authorize?")
    assert "scope=crm.objects.deals.read%20crm.objects.deals.write" in url


def test_pkce_challenge_is_rfc7636_s256() -> None:
    # The example of RFC 7636, appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


# ---------------------------------------------------------------- state


def test_state_verifies_and_binds_attempt_nonce_and_provider(settings: Settings) -> None:
    nonce_hash = digest("the-nonce")
    state = sign_state(settings, Provider.SALESFORCE, ATTEMPT, nonce_hash)

    claims = verify_state(settings, Provider.SALESFORCE, state)

    assert claims is not None and (claims.attempt_id, claims.nonce_hash) == (ATTEMPT, nonce_hash)
    assert "the-nonce" not in state
    assert verify_state(settings, Provider.HUBSPOT, state) is None
    other_key = settings.model_copy(update={"secret_keys": generate_key()})
    assert verify_state(other_key, Provider.SALESFORCE, state) is None
    for index in range(len(state)):
        if state[index] == ".":
            continue
        changed = state[:index] + ("A" if state[index] != "A" else "B") + state[index + 1 :]
        assert verify_state(settings, Provider.SALESFORCE, changed) is None, index
    assert verify_state(settings, Provider.SALESFORCE, None) is None
    assert verify_state(settings, Provider.SALESFORCE, state + "é") is None


def test_state_survives_a_key_rotation_and_is_not_the_raw_key(settings: Settings) -> None:
    state = sign_state(settings, Provider.HUBSPOT, ATTEMPT, digest("n"))
    rotated = settings.model_copy(update={"secret_keys": f"{generate_key()},{TEST_SECRET_KEY}"})

    assert verify_state(rotated, Provider.HUBSPOT, state) is not None
    (key,) = state_keys(settings)

    assert key != base64.urlsafe_b64decode(TEST_SECRET_KEY) and len(key) == 32


def test_sandbox_without_keys_signs_with_the_development_key(tmp_path: Path) -> None:
    sandbox = Settings(data_dir=tmp_path, sandbox=True)
    state = sign_state(sandbox, Provider.HUBSPOT, ATTEMPT, digest("n"))
    assert verify_state(sandbox, Provider.HUBSPOT, state) is not None


# ---------------------------------------------------------------- account ids


def test_salesforce_ids_match_in_15_and_18_character_forms() -> None:
    assert same_account(Provider.SALESFORCE, "00D5g000004ABCD", "00D5g000004ABCDEAA")
    assert same_account(Provider.SALESFORCE, "00D5g000004ABCDEAA", "00D5g000004ABCD")
    assert not same_account(Provider.SALESFORCE, "00D5g000004abcd", "00D5g000004ABCDEAA")
    assert same_account(Provider.HUBSPOT, " 4412345", "4412345")
    assert not same_account(Provider.HUBSPOT, "44123450", "4412345")


# ---------------------------------------------------------------- credential shapes


@pytest.mark.parametrize(
    ("provider", "credentials"),
    [
        ("hubspot", {"access_token": "pat-na1-x"}),
        ("hubspot", {"auth": "oauth", "access_token": "a", "refresh_token": "r"}),
        ("salesforce", {"auth": "jwt", "username": "u", "consumer_key": "k", "private_key": "p"}),
        ("salesforce", {"auth": "client_credentials", "consumer_key": "k", "consumer_secret": "s"}),
        ("salesforce", {"access_token": "a", "refresh_token": "r"}),
        ("fake", {"anything": "goes"}),
        ("salesforce", {}),
    ],
)
def test_accepted_credential_shapes(provider: str, credentials: dict[str, str]) -> None:
    check_credentials(provider, credentials)


@pytest.mark.parametrize(
    ("provider", "credentials", "named"),
    [
        ("hubspot", {"token": "pat"}, "access_token"),
        ("salesforce", {"auth": "jwt", "username": "u", "consumer_key": "k"}, "private_key"),
        ("salesforce", {"auth": "client_credentials", "consumer_key": "k"}, "consumer_secret"),
        ("salesforce", {"auth": "password", "access_token": "a"}, "'jwt'"),
        ("hubspot", {"auth": "oauth", "access_token": "a", "refresh_token": " "}, "refresh_token"),
    ],
)
def test_refused_credential_shapes_name_the_key(
    provider: str, credentials: dict[str, str], named: str
) -> None:
    with pytest.raises(CredentialsShapeError) as caught:
        check_credentials(provider, credentials)
    assert named in str(caught.value)
    for key, value in credentials.items():
        if key != "auth" and len(value) > 2:
            assert value not in str(caught.value)
