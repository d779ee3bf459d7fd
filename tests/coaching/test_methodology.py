"""Methodology elements (MEDDPICC, BANT, SPICED) and the stage-to-phase rule."""

from __future__ import annotations

import pytest

from app.coaching.engine import phase_for
from app.coaching.playbook import compile_playbook, keyword_pattern, load_playbook_text
from app.coaching.results import ElementJudgement
from app.coaching.snapshot import Contact, Stage

from .factories import (
    CHAMPION,
    CLOSED_LOST,
    CLOSED_WON,
    DISCOVERY,
    ECONOMIC_BUYER,
    MEDDPICC_FIELDS,
    NEGOTIATION,
    PROPOSAL,
    SOLUTION,
    codes,
    make_deal,
    playbook,
    review,
    signal,
)

MEDDPICC_ELEMENTS = {
    "identify_pain": "discover",
    "metrics": "qualify",
    "economic_buyer": "solution",
    "decision_criteria": "solution",
    "champion": "solution",
    "decision_process": "propose",
    "competition": "propose",
    "paper_process": "negotiate",
}


def _without(*names: str) -> dict[str, str]:
    return {k: v for k, v in MEDDPICC_FIELDS.items() if k not in names}


def _judgement(deal_overrides: dict[str, object], element: str, name: str = "meddpicc"):
    result = review(make_deal(**deal_overrides), playbook(name))
    return next(j for j in result.methodology if j.element == element)


# --------------------------------------------------------------- judging one element


@pytest.mark.parametrize(
    ("fields", "next_step", "status", "source", "value"),
    [
        pytest.param({"Metrics__c": "Close in 4 days"}, "", "confirmed", "Metrics__c",
                     "Close in 4 days", id="field-filled"),
        pytest.param({"dealcoach_metrics": " 3x pipeline "}, "", "confirmed",
                     "dealcoach_metrics", "3x pipeline", id="second-field-name"),
        pytest.param({"Metrics__c": "TBD"}, "", "ambiguous", "Metrics__c", "TBD", id="tbd"),
        pytest.param({"Metrics__c": " n/a "}, "", "ambiguous", "Metrics__c", "n/a", id="n/a"),
        pytest.param({"Metrics__c": "   "}, "", "absent", "Metrics__c/dealcoach_metrics", None,
                     id="blank-field"),
        pytest.param({}, "Agree the ROI model", "ambiguous", "next_step", "mentions 'roi'",
                     id="keyword"),
        pytest.param({}, "", "absent", "Metrics__c/dealcoach_metrics", None, id="nothing"),
        pytest.param({"Metrics__c": "TBD"}, "Agree the ROI model", "ambiguous", "Metrics__c",
                     "TBD", id="first-ambiguous-finding-kept"),
    ],
)  # fmt: skip
def test_given_metrics_data_when_judged_then_status_and_source_field(
    fields: dict[str, str], next_step: str, status: str, source: str, value: str | None
) -> None:
    judged = _judgement({"fields": fields, "next_step": next_step, "description": None}, "metrics")

    assert (judged.status, judged.source, judged.value) == (status, source, value)


def test_given_placeholder_in_one_field_and_value_in_another_when_judged_then_confirmed() -> None:
    """The strongest finding wins: a "TBD" does not hide a filled field of the same element."""
    judged = _judgement(
        {"fields": {"Metrics__c": "TBD", "dealcoach_metrics": "Close in 4 days"}}, "metrics"
    )

    assert (judged.status, judged.source) == ("confirmed", "dealcoach_metrics")


def test_given_economic_buyer_contact_role_when_judged_then_confirmed_from_contact_roles() -> None:
    judged = _judgement(
        {"fields": _without("Economic_Buyer__c"), "contacts": (CHAMPION, ECONOMIC_BUYER)},
        "economic_buyer",
    )

    assert judged == ElementJudgement(
        "economic_buyer",
        "Economic buyer",
        "confirmed",
        "contacts.roles",
        "Economic Buyer (Dana Ruiz)",
        True,
    )


def test_given_only_a_keyword_mention_when_judged_then_economic_buyer_is_ambiguous() -> None:
    judged = _judgement(
        {
            "fields": _without("Economic_Buyer__c"),
            "contacts": (CHAMPION,),
            "description": "The CFO asked for a business case",
        },
        "economic_buyer",
    )

    assert (judged.status, judged.source, judged.value) == (
        "ambiguous",
        "description",
        "mentions 'cfo'",
    )


def test_given_nothing_about_the_buyer_when_judged_then_absent_from_first_source() -> None:
    judged = _judgement(
        {"fields": _without("Economic_Buyer__c"), "contacts": (CHAMPION,)}, "economic_buyer"
    )

    assert (judged.status, judged.source, judged.value) == ("absent", "contacts.roles", None)


def test_given_every_element_when_reviewed_then_each_is_judged_with_its_field() -> None:
    result = review(make_deal())

    assert {j.element for j in result.methodology} == set(MEDDPICC_ELEMENTS)
    assert all(j.status == "confirmed" and j.source for j in result.methodology)


# --------------------------------------------------------------- gaps by phase


def test_given_early_phase_when_reviewed_then_elements_not_yet_expected_raise_no_gap() -> None:
    deal = make_deal(stage=DISCOVERY, stage_history=(), fields={}, contacts=(), description=None)

    result = review(deal)

    expected = {j.element: j.expected for j in result.methodology}
    assert expected == {key: key == "identify_pain" for key in MEDDPICC_ELEMENTS}
    assert {s.key for s in result.signals if s.code == "methodology_gap"} == {
        "methodology_gap:identify_pain"
    }


@pytest.mark.parametrize(
    ("stage", "due"),
    [
        (DISCOVERY, {"identify_pain"}),
        (SOLUTION, {"identify_pain", "metrics", "economic_buyer", "decision_criteria", "champion"}),
        (PROPOSAL, set(MEDDPICC_ELEMENTS) - {"paper_process"}),
        (NEGOTIATION, set(MEDDPICC_ELEMENTS)),
    ],
    ids=lambda value: value.key if isinstance(value, Stage) else "",
)
def test_given_phase_when_nothing_is_known_then_one_gap_per_due_element(
    stage: Stage, due: set[str]
) -> None:
    deal = make_deal(stage=stage, stage_history=(), fields={}, contacts=(), description=None)

    gaps = [s for s in review(deal).signals if s.code == "methodology_gap"]

    assert sorted(g.element for g in gaps if g.element) == sorted(due)
    assert len(gaps) == len(due)
    assert all(g.status == "absent" and g.key == f"methodology_gap:{g.element}" for g in gaps)


def test_given_gap_when_reviewed_then_evidence_names_the_field_and_due_phase() -> None:
    deal = make_deal(fields=_without("Metrics__c"), next_step="Send the deck", description=None)

    gap = signal(review(deal), "methodology_gap:metrics")

    assert [(e.field, e.value, e.detail) for e in gap.evidence] == [
        ("Metrics__c/dealcoach_metrics", None, "Metrics expected from the qualify phase")
    ]
    assert gap.facts["element_label"] == "Metrics"


@pytest.mark.parametrize(
    ("stage", "metrics", "severity"),
    [
        pytest.param(SOLUTION, None, "medium", id="absent-one-phase-past"),
        pytest.param(SOLUTION, "TBD", "low", id="ambiguous-one-phase-past"),
        pytest.param(PROPOSAL, None, "high", id="absent-two-phases-past"),
        pytest.param(PROPOSAL, "TBD", "medium", id="ambiguous-two-phases-past"),
    ],
)
def test_given_metrics_gap_when_reviewed_then_severity_grows_with_lateness(
    stage: Stage, metrics: str | None, severity: str
) -> None:
    fields = _without("Metrics__c") | ({"Metrics__c": metrics} if metrics else {})
    deal = make_deal(stage=stage, stage_history=(), fields=fields, next_step="Call", description="")

    assert signal(review(deal), "methodology_gap:metrics").severity == severity


def test_given_ambiguous_element_on_a_large_late_deal_when_reviewed_then_never_high() -> None:
    deal = make_deal(
        stage=NEGOTIATION,
        stage_history=(),
        amount=900_000.0,
        contacts=(ECONOMIC_BUYER, CHAMPION, Contact("003Z", ())),
        fields=_without("Metrics__c") | {"Metrics__c": "tbc"},
    )

    gap = signal(review(deal), "methodology_gap:metrics")

    assert (gap.status, gap.severity) == ("ambiguous", "medium")


def test_given_ambiguous_and_absent_elements_when_reviewed_then_status_is_on_the_signal() -> None:
    deal = make_deal(
        fields=_without("Metrics__c", "Champion__c") | {"Metrics__c": "?"},
        contacts=(ECONOMIC_BUYER,),
        next_step="",
        has_future_activity=True,
        description=None,
    )

    result = review(deal)

    assert signal(result, "methodology_gap:metrics").status == "ambiguous"
    assert signal(result, "methodology_gap:champion").status == "absent"
    assert codes(result) == {"methodology_gap:metrics", "methodology_gap:champion"}


# --------------------------------------------------------------- BANT and SPICED


def test_given_bant_when_reviewed_then_its_four_elements_are_judged() -> None:
    deal = make_deal(
        stage=SOLUTION,
        fields={"Budget__c": "EUR 40k approved", "Timeline__c": "TBD"},
        contacts=(Contact("003D", ("Decision Maker",), name="Lee"),),
        description="Struggling with manual invoicing",
        next_step="",
        has_future_activity=True,
    )

    result = review(deal, playbook("bant"))

    judged = {j.element: (j.status, j.source) for j in result.methodology}
    assert judged == {
        "need": ("ambiguous", "description"),
        "budget": ("confirmed", "Budget__c"),
        "timeline": ("ambiguous", "Timeline__c"),
        "authority": ("confirmed", "contacts.roles"),
    }
    assert codes(result) == {"methodology_gap:need", "methodology_gap:timeline"}
    assert result.playbook == "bant"


def test_given_spiced_when_reviewed_then_its_five_elements_are_judged() -> None:
    deal = make_deal(
        stage=PROPOSAL,
        stage_history=(),
        fields={"Situation__c": "Excel", "Pain__c": "Late closes", "Impact__c": "2 FTE"},
        contacts=(CHAMPION,),
        description="",
        next_step="Go-live before the audit",
    )

    result = review(deal, playbook("spiced"))

    judged = {j.element: j.status for j in result.methodology}
    assert judged == {
        "situation": "confirmed",
        "pain": "confirmed",
        "impact": "confirmed",
        "critical_event": "ambiguous",
        "decision": "absent",
    }
    assert signal(result, "methodology_gap:decision").status == "absent"


def test_given_core_playbook_when_reviewed_then_no_methodology_at_all() -> None:
    result = review(make_deal(fields={}, contacts=()), playbook("core"))

    assert result.methodology == ()
    assert not any(s.code == "methodology_gap" for s in result.signals)


# --------------------------------------------------------------- stage phases


@pytest.mark.parametrize(
    ("probability", "phase"),
    [
        (0.0, "discover"),
        (0.10, "discover"),
        (0.11, "qualify"),
        (0.20, "qualify"),
        (0.21, "solution"),
        (0.50, "solution"),
        (0.51, "propose"),
        (0.75, "propose"),
        (0.76, "negotiate"),
        (0.89, "negotiate"),
        (0.90, "commit"),
        (1.0, "commit"),
    ],
)
def test_given_stage_probability_when_no_mapping_then_default_phase_rule(
    probability: float, phase: str
) -> None:
    assert phase_for(Stage("s", "S", 1, probability), playbook()) == phase


@pytest.mark.parametrize("stage", [CLOSED_WON, CLOSED_LOST], ids=["won", "lost"])
def test_given_closed_stage_when_phased_then_closed(stage: Stage) -> None:
    assert phase_for(stage, playbook()) == "closed"


def test_given_explicit_stage_phases_when_phased_then_the_mapping_wins() -> None:
    custom = compile_playbook(
        load_playbook_text(
            "name: mapped\nextends: meddpicc\nstage_phases:\n"
            "  discovery: negotiate\n  closed_won: discover\n",
            "mapped",
        )
    )

    assert phase_for(DISCOVERY, custom) == "negotiate"
    assert phase_for(SOLUTION, custom) == "solution"  # unmapped: probability rule
    assert phase_for(CLOSED_WON, custom) == "closed"  # closed stays closed
    deal = make_deal(stage=DISCOVERY, stage_history=(), fields={}, contacts=())
    assert review(deal, custom).phase == "negotiate"
    assert "methodology_gap:paper_process" in codes(review(deal, custom))


# --------------------------------------------------------------- keywords match at word starts


@pytest.mark.parametrize(
    ("keyword", "text", "matches"),
    [
        pytest.param("struggl", "they are struggling with month-end", True, id="stem-prefix"),
        pytest.param("losing", "closing next week", False, id="losing-not-closing"),
        pytest.param("losing", "they are losing customers", True, id="losing"),
        pytest.param("board", "onboarding call", False, id="board-not-onboarding"),
        pytest.param("board", "new dashboard", False, id="board-not-dashboard"),
        pytest.param("board", "board meeting on friday", True, id="board"),
        pytest.param("roi", "android app", False, id="roi-not-android"),
        pytest.param("roi", "agree the roi model", True, id="roi"),
        pytest.param("roi", "(roi) model", True, id="after-punctuation"),
        pytest.param("sign-off", "cfo sign-off friday", True, id="hyphenated"),
        pytest.param("vp ", "vpn rollout", False, id="vp-space-not-vpn"),
        pytest.param("vp ", "the vp of finance", True, id="vp-space"),
        pytest.param("%", "cut scrap 20%", True, id="non-word-start-matches-anywhere"),
    ],
)
def test_given_a_keyword_when_matched_then_only_at_the_start_of_a_word(
    keyword: str, text: str, matches: bool
) -> None:
    assert (keyword_pattern([keyword]).search(text) is not None) is matches


def test_given_a_next_step_about_closing_when_judged_then_losing_does_not_find_pain() -> None:
    judged = _judgement(
        {"fields": _without("Identify_Pain__c"), "next_step": "Closing call", "description": None},
        "identify_pain",
    )

    assert judged.status == "absent"


def test_given_a_vpn_project_when_judged_with_bant_then_it_is_no_authority() -> None:
    judged = _judgement(
        {"fields": {}, "contacts": (), "next_step": "VPN rollout plan", "description": None},
        "authority",
        "bant",
    )

    assert judged.status == "absent"
