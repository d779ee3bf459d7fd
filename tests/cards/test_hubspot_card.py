"""The HubSpot card endpoints: requests signed v3 like hubspot.fetch signs them."""

from __future__ import annotations

import json

from sqlalchemy import select

from app.db import session_scope
from app.feedback.models import CardFeedback
from tests.hubspot_webhooks.conftest import (
    CLIENT_SECRET,
    OTHER_PORTAL,
    add_hubspot_connection,
    now_ms,
    signed,
)
from tests.pipeline.conftest import Service, sample_deal

from .conftest import CARD_HEADER, HS_DEAL, HubSpotCard, create_card_key, review


def test_a_signed_request_reads_the_portals_review(hs_card: HubSpotCard) -> None:
    response = hs_card.get()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["deal_id"] == HS_DEAL
    assert body["manager"] and all(p["feedback"] is None for p in body["manager"])


def test_escapes_in_the_query_verify_as_hubspot_signs_them(hs_card: HubSpotCard) -> None:
    # HubSpot signs the URI with %40 (and the other listed escapes) decoded.
    sent = hs_card.url(userEmail="ana%40acme.example")
    signed_as = hs_card.url(userEmail="ana@acme.example")
    assert hs_card.get(url=sent, signed_url=signed_as).status_code == 200


def test_refused_signatures_are_401(hs_card: HubSpotCard) -> None:
    assert hs_card.get(secret="another-app-secret").status_code == 401
    assert hs_card.get(timestamp=now_ms() - 6 * 60 * 1000).status_code == 401
    assert hs_card.get(timestamp=now_ms() + 6 * 60 * 1000).status_code == 401
    # Signed for another user or portal than the query now says: refused.
    assert hs_card.get(url=hs_card.url(), signed_url=hs_card.url(userId="1")).status_code == 401
    tampered = hs_card.url().replace("userId=777", "userId=778")
    assert hs_card.get(url=tampered, signed_url=hs_card.url()).status_code == 401
    unsigned = hs_card.service.client.get(hs_card.url())
    assert unsigned.status_code == 401
    assert unsigned.headers["content-type"].startswith("application/problem+json")
    no_portal = hs_card.url().replace("portalId=62515&", "")
    assert hs_card.get(url=no_portal).status_code == 401


def test_a_card_key_or_an_api_key_does_not_replace_the_signature(
    service: Service, hs_card: HubSpotCard
) -> None:
    key = create_card_key(service, hs_card.connection_id)
    assert service.client.get(hs_card.url(), headers={CARD_HEADER: key}).status_code == 401
    assert service.client.get(hs_card.url(), headers=service.auth()).status_code == 401


def test_a_portal_reads_only_its_own_deals(service: Service, hs_card: HubSpotCard) -> None:
    other_id, _ = add_hubspot_connection(service, portal=OTHER_PORTAL, secret="second-secret")
    review(service, other_id, sample_deal("999", 4))
    other = HubSpotCard(service, other_id, OTHER_PORTAL)
    assert other.get("999", secret="second-secret").status_code == 200
    # Deal 999 has a review, on the other portal's connection: not found here.
    assert hs_card.get("999").status_code == 404
    # The other portal's request signed with this app's secret: refused.
    assert other.get("999").status_code == 401
    # A portal with no connection: nothing can verify it.
    assert hs_card.get(url=hs_card.url().replace("62515", "31337")).status_code == 401


def test_bad_ids_are_422(hs_card: HubSpotCard) -> None:
    assert hs_card.get("abc").status_code == 422
    assert hs_card.get(url=hs_card.url().replace("userId=777", "userId=ana")).status_code == 422


def test_feedback_is_recorded_for_the_signed_user(hs_card: HubSpotCard) -> None:
    prompt = hs_card.get().json()["manager"][0]["id"]
    response = hs_card.feedback(prompt, "useful")
    assert response.status_code == 201, response.text
    assert response.json()["verdict"] == "useful"
    mine = hs_card.get().json()
    assert {p["id"]: p["feedback"] for p in mine["manager"]}[prompt] == "useful"
    someone_else = hs_card.get(url=hs_card.url().replace("userId=777", "userId=778")).json()
    assert all(p["feedback"] is None for p in someone_else["manager"])
    # A user_id in the body does not choose the user.
    body = json.dumps({"prompt_id": prompt, "verdict": "noise", "user_id": "778"}).encode()
    assert hs_card.feedback(prompt, body=body).status_code == 201
    with session_scope(hs_card.service.runtime.sessions) as session:
        rows = session.execute(select(CardFeedback.crm_user_id, CardFeedback.verdict)).all()
    assert [(user, str(verdict)) for user, verdict in rows] == [("777", "noise")]


def test_bad_feedback_is_refused_clearly(hs_card: HubSpotCard) -> None:
    prompt = hs_card.get().json()["manager"][0]["id"]
    good = json.dumps({"prompt_id": prompt, "verdict": "noise"}).encode()
    tampered = json.dumps({"prompt_id": prompt, "verdict": "useful"}).encode()
    cases = [
        (hs_card.feedback(prompt, body=tampered, signed_body=good), 401),
        (hs_card.feedback(prompt, secret="nope"), 401),
        (hs_card.feedback(prompt, body=b"{oops"), 400),
        (hs_card.feedback(prompt, "meh"), 422),
        (hs_card.feedback("p_ffffffffffffffff"), 422),
        (hs_card.feedback(prompt, body=b'{"prompt_id": "' + b"x" * (64 * 1024) + b'"}'), 413),
        (hs_card.feedback(prompt, deal="424242"), 404),
    ]
    for response, expected in cases:
        assert response.status_code == expected, response.text


def test_without_a_user_the_review_is_shown_and_feedback_is_refused(hs_card: HubSpotCard) -> None:
    anonymous = hs_card.get(url=hs_card.url().replace("&userId=777", ""))
    assert anonymous.status_code == 200, anonymous.text
    prompt = anonymous.json()["manager"][0]["id"]
    body = json.dumps({"prompt_id": prompt, "verdict": "noise"}).encode()
    target = hs_card.url(what="feedback").replace("&userId=777", "")
    response = hs_card.service.client.post(
        target, content=body, headers=signed(CLIENT_SECRET, "POST", target, body)
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "userId"
