"""The Salesforce card endpoints: card keys, their scope both ways, the review, feedback."""

from __future__ import annotations

import json
from dataclasses import replace

from tests.pipeline.conftest import Service, sample_deal

from .conftest import (
    CARD_HEADER,
    OPP,
    OPP_2,
    OTHER_USER,
    USER,
    SalesforceCard,
    create_card_key,
    review,
)

CONTRACT_KEYS = {
    "deal_id",
    "deal_name",
    "stage",
    "reviewed_at",
    "health",
    "summary",
    "manager",
    "rep",
    "signals",
    "review_url",
}
PROMPT_KEYS = {"id", "text", "why", "severity", "signal", "feedback"}


def test_the_review_has_the_contract_shape(sf_card: SalesforceCard) -> None:
    response = sf_card.get()
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == CONTRACT_KEYS
    assert body["deal_id"] == OPP
    assert body["deal_name"] == sample_deal(OPP).name
    assert body["stage"] == sample_deal(OPP).stage.label
    assert body["reviewed_at"].endswith("Z")
    assert body["health"]["band"] in {"healthy", "at_risk", "critical"}
    assert 0 <= body["health"]["score"] <= 100
    assert body["manager"] and len(body["manager"]) == len(body["rep"])
    for prompt in body["manager"] + body["rep"]:
        assert set(prompt) == PROMPT_KEYS
        assert prompt["feedback"] is None
        assert prompt["id"].startswith("p_")
    assert body["manager"][0]["text"] != body["rep"][0]["text"]
    assert body["signals"]
    for signal in body["signals"]:
        assert set(signal) == {"code", "severity", "message", "evidence"}
        for item in signal["evidence"]:
            assert set(item) == {"field", "value", "at"}
    assert body["review_url"].startswith("http://testserver/api/v1/reviews/")
    # The review URL is the admin API's: the card key does not open it.
    path = body["review_url"].removeprefix("http://testserver")
    assert sf_card.service.client.get(path, headers={CARD_HEADER: sf_card.key}).status_code == 401
    assert sf_card.service.client.get(path, headers=sf_card.service.auth()).status_code == 200


def test_a_deal_without_a_review_is_the_no_review_problem(sf_card: SalesforceCard) -> None:
    response = sf_card.get(OPP_2)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"] == "https://dealcoach.dev/problems/no-review"
    assert problem["title"] == "No review yet"
    assert problem["status"] == 404 and problem["detail"]


def test_the_answer_stays_well_under_1_mb_for_a_deal_with_huge_text(
    sf_card: SalesforceCard,
) -> None:
    huge = "Renewal blocked by legal. " * 40_000  # ~1 MB of description
    deal = replace(sample_deal(OPP), description=huge, name="N" * 5000, next_step=huge)
    review(sf_card.service, sf_card.connection_id, deal)
    response = sf_card.get()
    assert response.status_code == 200
    assert len(response.content) < 200_000, len(response.content)


def test_missing_unknown_and_revoked_card_keys_are_401(sf_card: SalesforceCard) -> None:
    client = sf_card.service.client
    assert sf_card.get().status_code == 200
    assert client.get(sf_card.url()).status_code == 401
    forged = sf_card.key[:-4] + ("AAAA" if not sf_card.key.endswith("AAAA") else "BBBB")
    assert sf_card.get(key=forged).status_code == 401
    assert sf_card.get(key="dcc_nope").status_code == 401
    keys = client.get(
        f"/api/v1/connections/{sf_card.connection_id}/card-keys", headers=sf_card.service.auth()
    ).json()["items"]
    [row] = keys
    assert row["prefix"] == sf_card.key[4:12] and "key" not in row and row["last_used_at"]
    revoked = client.post(
        f"/api/v1/connections/{sf_card.connection_id}/card-keys/{row['id']}/revoke",
        headers=sf_card.service.auth(),
    )
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    response = sf_card.get()
    assert response.status_code == 401
    assert sf_card.key not in response.text


def test_admin_keys_do_not_open_the_cards(sf_card: SalesforceCard) -> None:
    svc = sf_card.service
    for api_key in (svc.admin_key, svc.read_key):
        assert sf_card.get(key=api_key).status_code == 401
        as_bearer = svc.client.get(sf_card.url(), headers=svc.auth(api_key))
        assert as_bearer.status_code == 401
        posted = svc.client.post(
            sf_card.url(what="feedback"),
            headers={CARD_HEADER: api_key},
            json={"prompt_id": "p_x", "verdict": "noise", "user_id": USER},
        )
        assert posted.status_code == 401


def test_a_card_key_does_not_open_the_admin_api(sf_card: SalesforceCard) -> None:
    svc = sf_card.service
    for path in (
        "/api/v1/connections",
        f"/api/v1/connections/{sf_card.connection_id}",
        "/api/v1/reviews",
        "/api/v1/feedback/questions",
        f"/api/v1/connections/{sf_card.connection_id}/card-keys",
    ):
        assert svc.client.get(path, headers=svc.auth(sf_card.key)).status_code == 401, path
        assert svc.client.get(path, headers={CARD_HEADER: sf_card.key}).status_code == 401, path
    created = svc.client.post(
        f"/api/v1/connections/{sf_card.connection_id}/card-keys",
        headers=svc.auth(sf_card.key),
        json={"name": "escalation"},
    )
    assert created.status_code == 401


def test_a_card_reads_only_its_own_connections_deals(
    sf_card: SalesforceCard, other_org: SalesforceCard
) -> None:
    assert other_org.get(OPP_2).status_code == 200
    # OPP_2 has a review, but on the other connection: not found for this card.
    assert sf_card.get(OPP_2).status_code == 404
    assert other_org.get(OPP).status_code == 404
    review_of_other = other_org.get(OPP_2).json()
    prompt = review_of_other["manager"][0]["id"]
    assert sf_card.feedback(prompt, opportunity=OPP_2).status_code == 404
    assert other_org.feedback(prompt, opportunity=OPP_2).status_code == 201


def test_only_admin_keys_create_card_keys_and_only_for_visible_connections(
    sf_card: SalesforceCard,
) -> None:
    svc = sf_card.service
    url = f"/api/v1/connections/{sf_card.connection_id}/card-keys"
    assert svc.client.post(url, headers=svc.auth(svc.read_key), json={}).status_code == 403
    assert (
        svc.client.post(
            url.replace(sf_card.connection_id, "nope"), headers=svc.auth(), json={}
        ).status_code
        == 404
    )
    assert svc.client.post(url, headers=svc.auth(), json={"name": ""}).status_code == 422
    assert svc.client.post(url, headers=svc.auth(), json={"scope": "admin"}).status_code == 422


def test_bad_ids_are_422(sf_card: SalesforceCard) -> None:
    assert sf_card.get("001000000000001").status_code == 422  # an Account id
    assert sf_card.get("006'; DROP TABLE").status_code in (404, 422)
    assert sf_card.get(user="not-a-user").status_code == 422
    assert sf_card.get(user=sf_card.connection_id).status_code == 422


def test_feedback_is_recorded_with_its_user_and_shown_back(sf_card: SalesforceCard) -> None:
    body = sf_card.get().json()
    prompt = body["manager"][0]["id"]
    useful = body["manager"][1]["id"]
    response = sf_card.feedback(useful, "useful")
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["prompt_id"] == useful and answer["verdict"] == "useful"
    assert answer["recorded_at"].endswith("Z")
    # A second answer replaces the first.
    assert sf_card.feedback(prompt, "useful").status_code == 201
    assert sf_card.feedback(prompt, "useful").status_code == 201
    mine = sf_card.get().json()
    verdicts = {p["id"]: p["feedback"] for p in mine["manager"]}
    assert verdicts[prompt] == "useful" and verdicts[useful] == "useful"
    theirs = sf_card.get(user=OTHER_USER).json()
    assert all(p["feedback"] is None for p in theirs["manager"])
    anonymous = sf_card.get(user=None).json()
    assert all(p["feedback"] is None for p in anonymous["manager"])


def test_bad_feedback_is_refused_clearly(sf_card: SalesforceCard) -> None:
    prompt = sf_card.get().json()["manager"][0]["id"]
    cases = [
        (sf_card.feedback(prompt, body=b"{not json"), 400),
        (sf_card.feedback(prompt, body=b"[1, 2]"), 400),
        (sf_card.feedback(prompt, "brilliant"), 422),
        (sf_card.feedback("p_0000000000000000"), 422),
        (sf_card.feedback("", "noise"), 422),
        (
            sf_card.feedback(
                prompt, body=json.dumps({"prompt_id": prompt, "verdict": "noise"}).encode()
            ),
            422,
        ),
        (sf_card.feedback(prompt, user="not-a-user"), 422),
        (sf_card.feedback(prompt, body=b'{"prompt_id": "' + b"x" * (64 * 1024) + b'"}'), 413),
        (sf_card.feedback(prompt, opportunity=OPP_2), 404),
    ]
    for response, expected in cases:
        assert response.status_code == expected, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    errors = sf_card.feedback(prompt, "brilliant").json()["errors"]
    assert errors == [{"field": "verdict", "message": "must be 'useful' or 'noise'"}]


def test_a_hubspot_connections_card_key_does_not_open_salesforce_cards(
    service: Service, sf_card: SalesforceCard
) -> None:
    from tests.hubspot_webhooks.conftest import add_hubspot_connection

    connection_id, _ = add_hubspot_connection(service)
    key = create_card_key(service, connection_id)
    assert sf_card.get(key=key).status_code == 401
