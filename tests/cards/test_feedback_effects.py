"""Feedback closes the loop: noise is hidden on its deal, demoted across a connection,
left out of the next note, and counted per question in the admin API."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.admin.keys import create_api_key
from app.db import session_scope
from app.feedback.service import (
    DEMOTE_MIN_NOISE,
    FeedbackFilter,
    arrange_prompt_dicts,
    is_demoted,
)
from app.writeback.models import WriteBack
from tests.pipeline.conftest import sample_deal
from tests.salesforce_webhooks.conftest import sfid

from .conftest import AS_OF, OPP, OPP_2, USER, SalesforceCard, manager_ids, review

STALLED = "stalled_in_stage.next_move"
QUIET = "no_recent_activity.real_conversation"


def prompt_of(stored: dict[str, Any], question: str, audience: str = "manager") -> dict[str, Any]:
    return next(
        p for p in stored["prompts"] if p["question_id"] == question and p["audience"] == audience
    )


def user(n: int) -> str:
    return sfid(f"0055g0000000{n:03d}")


def deal_as_of(hours: int) -> datetime:
    return AS_OF + timedelta(hours=hours)


# ---------------------------------------------------------------- the rule, pure


def prompts(*questions: str, first: int = 2) -> list[dict[str, Any]]:
    out = []
    for audience in ("manager", "rep"):
        for index, question in enumerate(questions):
            out.append(
                {
                    "id": f"p_{audience[0]}_{question}",
                    "question_id": question,
                    "audience": audience,
                    "shown_first": index < first,
                }
            )
    return out


def test_a_hidden_prompt_takes_its_rep_twin_and_the_next_one_moves_up() -> None:
    arranged = arrange_prompt_dicts(
        prompts("a", "b", "c"), FeedbackFilter(hidden_prompts=frozenset({"p_m_a"}))
    )
    assert [(p["id"], p["shown_first"]) for p in arranged] == [
        ("p_m_b", True),
        ("p_m_c", True),
        ("p_r_b", True),
        ("p_r_c", True),
    ]
    # Noise on the rep wording hides the manager one too.
    arranged = arrange_prompt_dicts(
        prompts("a", "b"), FeedbackFilter(hidden_prompts=frozenset({"p_r_b"}))
    )
    assert [p["id"] for p in arranged] == ["p_m_a", "p_r_a"]


def test_demoted_questions_go_last_in_their_order_and_lose_shown_first() -> None:
    arranged = arrange_prompt_dicts(
        prompts("a", "b", "c", "d"), FeedbackFilter(demoted_questions=frozenset({"a", "c"}))
    )
    managers = [
        (p["question_id"], p["shown_first"]) for p in arranged if p["audience"] == "manager"
    ]
    assert managers == [("b", True), ("d", True), ("a", False), ("c", False)]
    assert arrange_prompt_dicts(prompts("a", "b"), FeedbackFilter()) == prompts("a", "b")


@pytest.mark.parametrize(
    ("useful", "noise", "demoted"),
    [(0, DEMOTE_MIN_NOISE - 1, False), (0, 3, True), (1, 3, True), (2, 3, False), (2, 4, True)],
)
def test_the_demotion_rule(useful: int, noise: int, demoted: bool) -> None:
    assert is_demoted(useful, noise) is demoted


# ---------------------------------------------------------------- on the running service


def test_noise_hides_the_prompt_on_that_deal_until_its_evidence_changes(
    sf_card: SalesforceCard,
) -> None:
    svc = sf_card.service
    deal = sample_deal(OPP)
    stored = review(svc, sf_card.connection_id, deal)
    quiet = prompt_of(stored, QUIET)
    twin = prompt_of(stored, QUIET, "rep")
    assert quiet["id"] in manager_ids(sf_card.get().json())
    assert sf_card.feedback(quiet["id"], "noise").status_code == 201

    for viewer in (USER, user(2), None):
        shown = sf_card.get(user=viewer).json()
        assert quiet["id"] not in manager_ids(shown)
        assert twin["id"] not in [p["id"] for p in shown["rep"]]
        assert len(shown["manager"]) == len(stored["prompts"]) // 2 - 1

    # Another deal with the very same evidence (same prompt ids) still shows it.
    review(svc, sf_card.connection_id, sample_deal(OPP_2))
    assert quiet["id"] in manager_ids(sf_card.get(OPP_2).json())

    # Reviewed again with the same evidence: still hidden.
    review(svc, sf_card.connection_id, deal, deal_as_of(1))
    assert quiet["id"] not in manager_ids(sf_card.get().json())

    # The evidence changes (the last activity moves): a new prompt id, shown again.
    assert deal.last_activity_at is not None
    changed = replace(deal, last_activity_at=deal.last_activity_at - timedelta(days=10))
    again = review(svc, sf_card.connection_id, changed, deal_as_of(2))
    renewed = prompt_of(again, QUIET)
    assert renewed["id"] != quiet["id"]
    assert renewed["id"] in manager_ids(sf_card.get().json())


def test_useful_after_noise_brings_the_prompt_back(sf_card: SalesforceCard) -> None:
    first = sf_card.get().json()["manager"][0]["id"]
    assert sf_card.feedback(first, "noise").status_code == 201
    assert first not in manager_ids(sf_card.get().json())
    assert sf_card.feedback(first, "useful", user=user(9)).status_code == 201
    shown = sf_card.get().json()
    assert first in manager_ids(shown)
    assert {p["id"]: p["feedback"] for p in shown["manager"]}[first] == "noise"


def test_a_question_marked_noise_often_on_a_connection_is_ranked_last(
    sf_card: SalesforceCard,
) -> None:
    svc = sf_card.service
    opportunities = [sfid(f"0065g00000Rank{n}") for n in range(1, 7)]
    for opportunity in opportunities:
        review(svc, sf_card.connection_id, sample_deal(opportunity))
    probe = opportunities[-1]
    stored = review(svc, sf_card.connection_id, sample_deal(probe), deal_as_of(1))
    stalled = prompt_of(stored, STALLED)["id"]
    assert manager_ids(sf_card.get(probe).json())[0] == stalled

    def counts() -> dict[str, Any]:
        response = svc.client.get(
            "/api/v1/feedback/questions",
            params={"connection_id": sf_card.connection_id},
            headers=svc.auth(svc.read_key),
        )
        assert response.status_code == 200, response.text
        return {item["question_id"]: item for item in response.json()["items"]}

    # Two useful, three noise (each from another user on another deal): 3 < 2 x 2, kept.
    for index, opportunity in enumerate(opportunities[:2]):
        assert (
            sf_card.feedback(
                stalled, "useful", opportunity=opportunity, user=user(index)
            ).status_code
            == 201
        )
    for index, opportunity in enumerate(opportunities[2:5]):
        assert (
            sf_card.feedback(
                stalled, "noise", opportunity=opportunity, user=user(10 + index)
            ).status_code
            == 201
        )
    assert counts()[STALLED] | {"connection_id": None} == {
        "connection_id": None,
        "question_id": STALLED,
        "useful": 2,
        "noise": 3,
        "demoted": False,
    }
    assert manager_ids(sf_card.get(probe).json())[0] == stalled

    # A fourth noise (an admin's, through the admin API): 4 >= 2 x 2, demoted.
    review_id = sf_card.get(probe).json()["review_url"].rsplit("/", 1)[1]
    admin = svc.client.post(
        f"/api/v1/reviews/{review_id}/feedback",
        headers=svc.auth(),
        json={"prompt_id": stalled, "verdict": "noise"},
    )
    assert admin.status_code == 201, admin.text
    assert counts()[STALLED]["noise"] == 4 and counts()[STALLED]["demoted"] is True
    # On the probe deal itself the admin's noise hides it; on a fresh deal it comes last.
    assert stalled not in manager_ids(sf_card.get(probe).json())
    fresh = sfid("0065g00000FrEsH")
    review(svc, sf_card.connection_id, sample_deal(fresh))
    order = manager_ids(sf_card.get(fresh).json())
    assert order[-1] == stalled and len(order) == len(stored["prompts"]) // 2


def test_feedback_counts_respect_connection_limited_keys(
    sf_card: SalesforceCard, other_org: SalesforceCard
) -> None:
    svc = sf_card.service
    prompt = other_org.get(OPP_2).json()["manager"][0]["id"]
    assert other_org.feedback(prompt, "noise", opportunity=OPP_2).status_code == 201
    with session_scope(svc.runtime.sessions) as session:
        _, limited = create_api_key(session, "one org", "read", [sf_card.connection_id])
    mine = svc.client.get("/api/v1/feedback/questions", headers=svc.auth(limited)).json()
    assert mine["items"] == []
    assert (
        svc.client.get(
            "/api/v1/feedback/questions",
            params={"connection_id": other_org.connection_id},
            headers=svc.auth(limited),
        ).status_code
        == 404
    )
    everything = svc.client.get("/api/v1/feedback/questions", headers=svc.auth()).json()
    assert [item["connection_id"] for item in everything["items"]] == [other_org.connection_id]


def test_the_next_note_leaves_out_a_prompt_marked_noise(sf_card: SalesforceCard) -> None:
    svc = sf_card.service
    deal = sample_deal(OPP)
    first = review(svc, sf_card.connection_id, deal)
    stalled = prompt_of(first, STALLED)
    assert sf_card.feedback(stalled["id"], "noise").status_code == 201

    assert deal.last_activity_at is not None
    changed = replace(deal, last_activity_at=deal.last_activity_at - timedelta(days=10))
    second = review(svc, sf_card.connection_id, changed, deal_as_of(1))
    assert prompt_of(second, STALLED)["id"] == stalled["id"]  # the stored review keeps it

    with session_scope(svc.runtime.sessions) as session:
        notes = session.scalars(
            select(WriteBack)
            .where(WriteBack.deal_external_id == OPP)
            .order_by(WriteBack.created_at)
        ).all()
        payloads = [dict(row.payload) for row in notes]
    assert len(payloads) == 2
    assert stalled["text"] in payloads[0]["text"]
    assert stalled["text"] not in payloads[1]["text"]
    assert prompt_of(second, QUIET)["text"] in payloads[1]["text"]
