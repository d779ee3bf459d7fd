"""Rate limits, injected faults and authentication, as the SDK sees them."""

from __future__ import annotations

import json
import time

import pytest
from hubspot import HubSpot
from hubspot.crm.deals import PublicObjectSearchRequest
from hubspot.crm.deals.exceptions import ApiException, ServiceException, UnauthorizedException
from hubspot.crm.pipelines.exceptions import ApiException as PipelinesApiException
from hubspot.oauth.exceptions import ApiException as OAuthApiException

from integrations.hubspot.emulator import HubSpotEmulator

from .conftest import client, sdk_call


def test_given_the_ten_second_limit_when_exceeded_then_429_rate_limit_body_and_headers() -> None:
    with HubSpotEmulator(ten_second_limit=5) as emulator:
        emulator.seed(2)
        api = client(emulator).crm.pipelines.pipelines_api
        remaining = []
        for _ in range(5):
            call = sdk_call(api, "get_all", "deals")
            remaining.append(int(call.headers["x-hubspot-ratelimit-remaining"]))
            assert call.headers["x-hubspot-ratelimit-max"] == "5"
            assert call.headers["x-hubspot-ratelimit-interval-milliseconds"] == "10000"
            assert "x-hubspot-ratelimit-daily" not in call.headers  # OAuth: no daily headers
        assert remaining == [4, 3, 2, 1, 0]
        with pytest.raises(PipelinesApiException) as caught:
            api.get_all("deals")
        assert caught.value.status == 429
        body = json.loads(caught.value.body)
        assert body["status"] == "error" and body["errorType"] == "RATE_LIMIT"
        assert body["policyName"] == "TEN_SECONDLY_ROLLING" and body["correlationId"]
        assert body["message"]
        assert caught.value.headers["X-HubSpot-RateLimit-Remaining"] == "0"
        assert emulator.call_counts()["rate_limited"] == 1


def test_given_searches_over_five_a_second_then_429_secondly_without_headers(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    api = hs.crm.deals.search_api
    request = PublicObjectSearchRequest(limit=1)
    statuses = []
    for _ in range(6):
        try:
            api.do_search(request)
            statuses.append(200)
        except ApiException as error:
            statuses.append(error.status)
            body = json.loads(error.body)
            assert body["policyName"] == "SECONDLY" and body["errorType"] == "RATE_LIMIT"
            assert "X-HubSpot-RateLimit-Max" not in error.headers
    assert statuses == [200] * 5 + [429]
    time.sleep(1.05)
    assert api.do_search(request).total == 18


def test_given_a_private_app_token_then_daily_headers(seeded: HubSpotEmulator) -> None:
    hs = client(seeded, seeded.private_app_token())
    call = sdk_call(hs.crm.pipelines.pipelines_api, "get_all", "deals")
    assert int(call.headers["x-hubspot-ratelimit-daily-remaining"]) < int(
        call.headers["x-hubspot-ratelimit-daily"]
    )


def test_given_a_429_storm_then_the_next_calls_fail_and_then_recover(
    seeded: HubSpotEmulator, hs: HubSpot
) -> None:
    seeded.inject_rate_limit(3)
    api = hs.crm.deals.basic_api
    deal_id = seeded.deal_ids()[0]
    for _ in range(3):
        with pytest.raises(ApiException) as caught:
            api.get_by_id(deal_id)
        assert caught.value.status == 429
        assert json.loads(caught.value.body)["policyName"] == "TEN_SECONDLY_ROLLING"
    assert api.get_by_id(deal_id).id == deal_id


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_given_injected_5xx_then_a_service_exception_with_hubspots_body(
    seeded: HubSpotEmulator, hs: HubSpot, status: int
) -> None:
    seeded.inject_errors(1, status)
    with pytest.raises(ServiceException) as caught:
        hs.crm.deals.basic_api.get_by_id(seeded.deal_ids()[0])
    assert caught.value.status == status
    assert json.loads(caught.value.body)["status"] == "error"


def test_given_a_delay_then_answers_are_slow(seeded: HubSpotEmulator, hs: HubSpot) -> None:
    seeded.set_delay(0.4, count=1)
    started = time.monotonic()
    hs.crm.pipelines.pipelines_api.get_all("deals")
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    hs.crm.pipelines.pipelines_api.get_all("deals")
    assert time.monotonic() - started < 0.4


def test_given_expired_tokens_then_401_and_a_refresh_works(seeded: HubSpotEmulator) -> None:
    access, refresh = seeded.issue_tokens()
    hs = client(seeded, access)
    deal_id = seeded.deal_ids()[0]
    assert hs.crm.deals.basic_api.get_by_id(deal_id).id == deal_id
    assert seeded.expire_tokens() >= 1
    with pytest.raises(UnauthorizedException) as caught:
        hs.crm.deals.basic_api.get_by_id(deal_id)
    assert json.loads(caught.value.body)["category"] == "EXPIRED_AUTHENTICATION"
    tokens = sdk_call(
        HubSpot(host=seeded.base_url).oauth.tokens_api,
        "create",
        grant_type="refresh_token",
        refresh_token=refresh,
        client_id=seeded.CLIENT_ID,
        client_secret=seeded.CLIENT_SECRET,
    )
    assert tokens.model.expires_in == 1800 and tokens.model.token_type == "bearer"
    assert client(seeded, tokens.model.access_token).crm.deals.basic_api.get_by_id(deal_id)


def test_given_an_authorization_code_then_tokens_once(seeded: HubSpotEmulator) -> None:
    tokens_api = HubSpot(host=seeded.base_url).oauth.tokens_api
    redirect = "http://127.0.0.1:9/oauth/callback"
    code = seeded.authorization_code(redirect)
    answer = tokens_api.create(
        grant_type="authorization_code",
        code=code,
        redirect_uri=redirect,
        client_id=seeded.CLIENT_ID,
        client_secret=seeded.CLIENT_SECRET,
    )
    assert answer.refresh_token and answer.access_token
    hs = client(seeded, answer.access_token)
    assert len(hs.crm.pipelines.pipelines_api.get_all("deals").results) == 2
    with pytest.raises(OAuthApiException) as caught:  # a code works once
        tokens_api.create(
            grant_type="authorization_code",
            code=code,
            redirect_uri=redirect,
            client_id=seeded.CLIENT_ID,
            client_secret=seeded.CLIENT_SECRET,
        )
    assert caught.value.status == 400
    assert json.loads(caught.value.body)["status"] == "BAD_AUTH_CODE"
    with pytest.raises(OAuthApiException) as wrong:
        tokens_api.create(
            grant_type="refresh_token",
            refresh_token=answer.refresh_token,
            client_id=seeded.CLIENT_ID,
            client_secret="wrong",
        )
    assert json.loads(wrong.value.body)["status"] == "BAD_CLIENT_SECRET"


def test_given_no_or_unknown_token_then_401_invalid_authentication(
    seeded: HubSpotEmulator,
) -> None:
    with pytest.raises(UnauthorizedException) as caught:
        client(seeded, "nope").crm.deals.basic_api.get_by_id(seeded.deal_ids()[0])
    assert json.loads(caught.value.body)["category"] == "INVALID_AUTHENTICATION"


def test_call_counts_per_endpoint(seeded: HubSpotEmulator, hs: HubSpot) -> None:
    seeded.reset_calls()
    hs.crm.pipelines.pipelines_api.get_all("deals")
    hs.crm.deals.search_api.do_search(PublicObjectSearchRequest(limit=1))
    hs.crm.deals.basic_api.get_by_id(seeded.deal_ids()[0])
    counts = seeded.call_counts()
    assert counts["pipelines"] == 1 and counts["deals_search"] == 1 and counts["deals_get"] == 1
    assert counts["api"] == 3
