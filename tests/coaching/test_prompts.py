"""From signals to questions: ranking, cap, pairing, stable ids, topics."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from app.coaching.playbook import compile_playbook, load_playbook_text
from app.coaching.results import DealReview
from app.coaching.snapshot import Change, Contact

from .factories import (
    AS_OF,
    CHAMPION,
    MEDDPICC_FIELDS,
    NEGOTIATION,
    PROPOSAL,
    SOLUTION,
    codes,
    day,
    days_ago,
    make_deal,
    review,
    signal,
)


def _troubled_deal(**overrides: object):
    """A large deal in Negotiation with most things wrong: many more signals than prompts."""
    values: dict[str, object] = {
        "stage": NEGOTIATION,
        "amount": 500_000.0,
        "stage_history": (Change(days_ago(50), PROPOSAL, NEGOTIATION),),
        "close_date": day(-10),
        "close_date_history": (
            Change(days_ago(90), day(-60), day(-40)),
            Change(days_ago(60), day(-40), day(-20)),
            Change(days_ago(30), day(-20), day(-10)),
        ),
        "last_activity_at": days_ago(40),
        "next_step": None,
        "contacts": (CHAMPION,),
        "forecast_category": "Commit",
        "fields": {k: v for k, v in MEDDPICC_FIELDS.items() if k != "Paper_Process__c"},
        "description": None,
    }
    values.update(overrides)
    return make_deal(**values)


def _question_ids(result: DealReview, audience: str = "manager") -> list[str]:
    prompts = result.prompts if audience == "manager" else result.rep_prompts
    return [p.question_id for p in prompts]


def test_given_many_signals_when_reviewed_then_five_prompts_three_shown_first() -> None:
    result = review(_troubled_deal())

    assert len(result.signals) > 5
    assert len(result.prompts) == 5
    assert [p.shown_first for p in result.prompts] == [True, True, True, False, False]


def test_given_mixed_signals_when_reviewed_then_risks_come_first_ranked_by_score() -> None:
    deal = make_deal(
        close_date=day(-5),  # medium x 0.8 (solution), x 1.3 (a passed date, solution)
        last_activity_at=days_ago(40),  # high x 0.8
        owner_history=(Change(days_ago(3), "005X", "005A"),),  # low x 0.8
        fields={k: v for k, v in MEDDPICC_FIELDS.items() if k != "Metrics__c"},  # medium gap
        description=None,
    )

    result = review(deal)

    # Risks before methodology, even a low risk before a medium gap.
    assert [(p.signal, p.element) for p in result.prompts] == [
        ("no_recent_activity", None),
        ("close_date_passed", None),
        ("owner_changed", None),
        ("methodology_gap", "metrics"),
    ]
    scores = [p.score for p in result.prompts[:3]]
    assert scores == sorted(scores, reverse=True)


def test_given_more_risks_than_places_when_capped_then_related_risks_merge_and_none_drops() -> None:
    result = review(_troubled_deal())

    risks = {s.code for s in result.signals if s.code != "methodology_gap"}
    assert len(risks) == 7
    assert [p.signal for p in result.prompts] == [
        "close_date_passed",  # the pushes tell the same story: one question for both
        "stalled_in_stage",
        "no_recent_activity",  # with the missing next step folded in
        "single_threaded",
        "no_economic_buyer",
    ]
    asked = " ".join(p.why for p in result.prompts)
    messages = {s.code: s.message for s in result.signals}
    assert all(messages[code] in asked for code in risks)  # every risk is in a why
    assert result.prompts[0].text.startswith(
        "The close date has moved 3 times and the latest one, 5 June, passed 10 days ago."
    )
    # The paper-process gap waits: risks come first.
    assert "methodology_gap" not in {p.signal for p in result.prompts}


def test_given_one_signal_when_reviewed_then_score_is_severity_times_relevance_times_size() -> None:
    deal = make_deal(
        stage=NEGOTIATION,
        amount=500_000.0,
        contacts=(CHAMPION, Contact("003EB", ("Economic Buyer",))),
        stage_history=(Change(days_ago(10), PROPOSAL, NEGOTIATION),),
        last_activity_at=days_ago(20),
    )

    result = review(deal)

    assert codes(result) == {"no_recent_activity"}
    (prompt,) = result.prompts
    assert prompt.severity == "high"
    assert prompt.score == pytest.approx(3 * 1.0 * (1 + math.log10(1 + 500_000 / 50_000)))


def test_given_same_signal_when_deal_is_bigger_then_its_prompt_scores_higher() -> None:
    small = review(make_deal(amount=60_000.0, contacts=(CHAMPION,)))
    large = review(make_deal(amount=600_000.0, contacts=(CHAMPION,)))

    assert small.prompts[0].signal == large.prompts[0].signal == "single_threaded"
    assert large.prompts[0].score > small.prompts[0].score


def test_given_prompts_when_reviewed_then_each_says_why_from_its_signal() -> None:
    result = review(_troubled_deal())

    messages = {s.key: s.message for s in result.signals}
    for prompt in (*result.prompts, *result.rep_prompts):
        key = f"{prompt.signal}:{prompt.element}" if prompt.element else prompt.signal
        first, *folded = prompt.why.split("; ")
        assert first == messages[key]
        assert set(folded) <= set(messages.values())
        assert prompt.severity == signal(result, key).severity


def test_given_prompts_when_reviewed_then_manager_and_rep_versions_pair_up() -> None:
    result = review(_troubled_deal())

    assert _question_ids(result, "manager") == _question_ids(result, "rep")
    for manager, rep in zip(result.prompts, result.rep_prompts, strict=True):
        assert (manager.audience, rep.audience) == ("manager", "rep")
        assert manager.text != rep.text
        assert manager.id != rep.id
        assert (manager.why, manager.shown_first, manager.score) == (
            rep.why,
            rep.shown_first,
            rep.score,
        )


def test_given_question_with_placeholders_when_prompted_then_facts_fill_them() -> None:
    result = review(_troubled_deal())

    stalled = next(p for p in result.prompts if p.signal == "stalled_in_stage")
    assert stalled.text.startswith("It has been in Negotiation for 50 days (since 26 April).")
    assert "{" not in "".join(p.text for p in (*result.prompts, *result.rep_prompts))


def _steady_deal(**overrides: object):
    """Signals whose evidence does not move with time: no clock crosses a threshold in a day."""
    values: dict[str, object] = {
        "amount": 60_000.0,
        "contacts": (CHAMPION,),
        "next_step": "",
        "fields": {**MEDDPICC_FIELDS, "Metrics__c": "TBD"},
    }
    values.update(overrides)
    return make_deal(**values)


def test_given_unchanged_evidence_when_reviewed_a_day_later_then_prompt_ids_are_stable() -> None:
    today = review(_steady_deal())
    tomorrow = review(_steady_deal(), as_of=AS_OF + timedelta(days=1))

    assert len(today.prompts) >= 3
    assert [p.id for p in today.prompts] == [p.id for p in tomorrow.prompts]
    assert [p.id for p in today.rep_prompts] == [p.id for p in tomorrow.rep_prompts]


def test_given_changed_evidence_when_reviewed_then_only_that_prompt_gets_a_new_id() -> None:
    before = {p.signal: p.id for p in review(_steady_deal()).prompts}
    after = {p.signal: p.id for p in review(_steady_deal(amount=70_000.0)).prompts}

    assert before.keys() == after.keys()
    assert before["single_threaded"] != after["single_threaded"]
    assert before["next_step_missing"] == after["next_step_missing"]


def test_given_two_deals_with_same_evidence_when_reviewed_then_prompt_ids_are_equal() -> None:
    """Ids depend on the question and the evidence, not on object identity or order of calls."""
    first = review(_steady_deal())
    second = review(_steady_deal())

    assert [p.to_dict() for p in first.prompts] == [p.to_dict() for p in second.prompts]


def test_given_no_buyer_signal_and_buyer_gap_when_prompted_then_the_topic_is_asked_once() -> None:
    deal = make_deal(
        stage=PROPOSAL,
        stage_history=(Change(days_ago(10), SOLUTION, PROPOSAL),),
        contacts=(CHAMPION, Contact("003T", ("Technical Buyer",))),
        fields={k: v for k, v in MEDDPICC_FIELDS.items() if k != "Economic_Buyer__c"},
        description=None,
    )

    result = review(deal)

    assert codes(result) == {"no_economic_buyer", "methodology_gap:economic_buyer"}
    assert _question_ids(result) == ["no_economic_buyer.budget_owner"]
    assert _question_ids(result, "rep") == ["no_economic_buyer.budget_owner"]


def test_given_max_per_deal_in_playbook_when_reviewed_then_the_cap_follows_it() -> None:
    custom = compile_playbook(
        load_playbook_text(
            "name: terse\nextends: meddpicc\nprompts:\n  max_per_deal: 2\n  show_first: 1\n",
            "terse",
        )
    )

    result = review(_troubled_deal(), custom)

    assert [p.shown_first for p in result.prompts] == [True, False]
    assert len(result.rep_prompts) == 2
    assert _question_ids(result) == _question_ids(review(_troubled_deal()))[:2]


def test_given_larger_cap_in_playbook_when_reviewed_then_more_prompts_are_asked() -> None:
    custom = compile_playbook(
        load_playbook_text(
            "name: wordy\nextends: meddpicc\nprompts:\n  max_per_deal: 12\n  show_first: 4\n",
            "wordy",
        )
    )

    result = review(_troubled_deal(), custom)

    assert len(result.prompts) > 5
    assert sum(p.shown_first for p in result.prompts) == 4


def test_given_no_signals_when_reviewed_then_no_prompts() -> None:
    result = review(make_deal())

    assert result.prompts == () and result.rep_prompts == ()
    assert result.summary.endswith("no risk signals.")
