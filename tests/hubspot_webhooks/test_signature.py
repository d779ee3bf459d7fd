"""integrations/hubspot/signature.py against HubSpot's own SDK (hubspot-api-client)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hubspot.utils.signature import Signature

from integrations.hubspot.signature import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    decode_uri,
    sign_v3,
    verify_v3,
)

from .conftest import CLIENT_SECRET, hubspot_signature

URL = "https://coach.example.com/webhooks/hubspot"
BODY = b'[{"eventId":1,"portalId":62515,"subscriptionType":"deal.creation","objectId":7}]'
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
STAMP = int(NOW.timestamp() * 1000)


def headers(signature: str, stamp: int | str = STAMP) -> dict[str, str]:
    return {SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: str(stamp)}


def check(
    sent: dict[str, str],
    *,
    uri: str = URL,
    body: bytes = BODY,
    secrets: tuple[str, ...] = (CLIENT_SECRET,),
    now: datetime = NOW,
    method: str = "POST",
) -> int:
    return verify_v3(method=method, uri=uri, body=body, headers=sent, secrets=secrets, now=now)


def test_a_signature_made_by_the_hubspot_sdk_is_accepted() -> None:
    sdk = hubspot_signature(CLIENT_SECRET, "POST", URL, BODY, STAMP)
    assert check(headers(sdk)) == 0
    assert sign_v3(CLIENT_SECRET, "POST", URL, BODY, STAMP) == sdk


def test_our_signature_passes_the_sdk_check() -> None:
    # The SDK checks the timestamp against its own clock: sign "now" for it.
    now = int(datetime.now(UTC).timestamp() * 1000)
    ours = sign_v3(CLIENT_SECRET, "GET", URL + "?portalId=62515", b"", now)
    assert Signature.is_valid(
        ours,
        CLIENT_SECRET,
        "",
        http_uri=URL + "?portalId=62515",
        http_method="GET",
        signature_version="v3",
        timestamp=str(now),
    )


def test_the_index_names_the_secret_that_matched() -> None:
    sdk = hubspot_signature(CLIENT_SECRET, "POST", URL, BODY, STAMP)
    assert check(headers(sdk), secrets=("another-secret", CLIENT_SECRET)) == 1


@pytest.mark.parametrize("position", [0, 10, len(BODY) - 1])
def test_a_flipped_byte_of_the_body_is_refused(position: int) -> None:
    sdk = hubspot_signature(CLIENT_SECRET, "POST", URL, BODY, STAMP)
    changed = bytearray(BODY)
    changed[position] ^= 0x01
    with pytest.raises(SignatureError, match="invalid signature"):
        check(headers(sdk), body=bytes(changed))


def test_a_flipped_character_of_the_signature_is_refused() -> None:
    sdk = hubspot_signature(CLIENT_SECRET, "POST", URL, BODY, STAMP)
    flipped = ("B" if sdk[5] != "B" else "C").join((sdk[:5], sdk[6:]))
    with pytest.raises(SignatureError):
        check(headers(flipped))


def test_a_wrong_secret_is_refused() -> None:
    sdk = hubspot_signature("not-the-client-secret", "POST", URL, BODY, STAMP)
    with pytest.raises(SignatureError, match="invalid signature"):
        check(headers(sdk))


def test_another_url_or_method_is_refused() -> None:
    sdk = hubspot_signature(CLIENT_SECRET, "POST", URL, BODY, STAMP)
    with pytest.raises(SignatureError):
        check(headers(sdk), uri="https://evil.example.com/webhooks/hubspot")
    with pytest.raises(SignatureError):
        check(headers(sdk), uri=URL + "?portalId=1")
    with pytest.raises(SignatureError):
        check(headers(sdk), method="PUT")


def test_a_changed_timestamp_is_refused() -> None:
    sdk = hubspot_signature(CLIENT_SECRET, "POST", URL, BODY, STAMP)
    with pytest.raises(SignatureError, match="invalid signature"):
        check(headers(sdk, STAMP + 1))


def test_a_stale_timestamp_is_refused_even_with_a_good_signature() -> None:
    old = STAMP - int(timedelta(minutes=5, seconds=1).total_seconds() * 1000)
    sdk = hubspot_signature(CLIENT_SECRET, "POST", URL, BODY, old)
    with pytest.raises(SignatureError, match="older than 5 minutes"):
        check(headers(sdk, old))
    recent = STAMP - int(timedelta(minutes=4, seconds=50).total_seconds() * 1000)
    assert check(headers(hubspot_signature(CLIENT_SECRET, "POST", URL, BODY, recent), recent)) == 0


def test_a_future_timestamp_is_refused_beyond_a_small_skew() -> None:
    future = STAMP + 60_000
    sdk = hubspot_signature(CLIENT_SECRET, "POST", URL, BODY, future)
    with pytest.raises(SignatureError, match="in the future"):
        check(headers(sdk, future))
    skewed = STAMP + 5_000
    assert check(headers(hubspot_signature(CLIENT_SECRET, "POST", URL, BODY, skewed), skewed)) == 0


@pytest.mark.parametrize(
    "sent",
    [
        {},
        {SIGNATURE_HEADER: "abc"},
        {TIMESTAMP_HEADER: str(STAMP)},
        {SIGNATURE_HEADER: "abc", TIMESTAMP_HEADER: "12.5"},
        {SIGNATURE_HEADER: "abc", TIMESTAMP_HEADER: "١٢٣"},
        {SIGNATURE_HEADER: "abc", TIMESTAMP_HEADER: "9" * 40},
        {SIGNATURE_HEADER: "é" * 10, TIMESTAMP_HEADER: str(STAMP)},
    ],
)
def test_missing_or_malformed_headers_are_refused(sent: dict[str, str]) -> None:
    with pytest.raises(SignatureError):
        check(sent)


def test_no_secret_configured_is_refused() -> None:
    sdk = hubspot_signature(CLIENT_SECRET, "POST", URL, BODY, STAMP)
    with pytest.raises(SignatureError, match="no client secret"):
        check(headers(sdk), secrets=())


def test_hubspots_listed_escapes_are_decoded_and_nothing_else() -> None:
    raw = "https://x.example/a%3Ab%2Fc%3fd%40e%21f%24g%27h%28i%29j%2Ak%2Cl%3Bm%20n%25o%253A"
    assert decode_uri(raw) == "https://x.example/a:b/c?d@e!f$g'h(i)j*k,l;m%20n%25o%253A"


def test_a_url_with_escapes_verifies_against_hubspots_decoded_signing() -> None:
    # HubSpot signs the decoded URI; the request arrives with the escapes.
    sent_uri = URL + "?userEmail=ana%40acme.example&portalId=62515"
    signed_uri = URL + "?userEmail=ana@acme.example&portalId=62515"
    sdk = hubspot_signature(CLIENT_SECRET, "GET", signed_uri, b"", STAMP)
    assert check(headers(sdk), uri=sent_uri, body=b"", method="GET") == 0
