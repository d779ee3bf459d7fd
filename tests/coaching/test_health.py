"""Health: 100 minus a penalty per signal, banded, methodology gaps capped together."""

from __future__ import annotations

import pytest

from app.coaching.engine import health_of
from app.coaching.playbook import compile_playbook, load_playbook_text
from app.coaching.results import Evidence, Health, Signal

from .factories import CLOSED_LOST, NEGOTIATION, day, days_ago, make_deal, playbook, review


def _raw(health: Health) -> int:
    """The score before it is moved into its band's range: 100 minus the signals'
    penalties (the rules these tests check)."""
    return 100 - sum(p for key, p in health.penalties if not key.startswith("band:"))


def _rules(health: Health) -> tuple[tuple[str, int], ...]:
    """The signals' penalties, without the band's own entry."""
    return tuple((key, p) for key, p in health.penalties if not key.startswith("band:"))


def _signals(*severities: str, code: str = "no_recent_activity") -> list[Signal]:
    return [
        Signal(
            code=code,
            severity=severity,  # type: ignore[arg-type]
            message="m",
            evidence=(Evidence("f", "v"),),
            element=f"e{index}" if code == "methodology_gap" else None,
        )
        for index, severity in enumerate(severities)
    ]


def test_given_no_signals_when_scored_then_health_is_a_full_hundred() -> None:
    health = health_of([], playbook())

    assert (health.score, health.band, health.penalties) == (100, "healthy", ())


@pytest.mark.parametrize(
    ("severities", "score"),
    [(("high",), 75), (("medium",), 88), (("low",), 95), (("high", "medium", "low"), 58)],
)
def test_given_signals_when_scored_then_each_costs_its_severity_penalty(
    severities: tuple[str, ...], score: int
) -> None:
    assert _raw(health_of(_signals(*severities), playbook())) == score


def test_given_penalties_when_scored_then_the_explanation_lists_each_signal() -> None:
    health = health_of(_signals("high", "low"), playbook())

    assert _rules(health) == (("no_recent_activity", 25), ("no_recent_activity", 5))


def test_given_too_many_signals_when_scored_then_health_stops_at_zero() -> None:
    health = health_of(_signals(*["high"] * 10), playbook())

    assert (health.score, health.band) == (0, "critical")


#: One point a low signal, so every score is reachable.
_ONE_POINT = compile_playbook(
    load_playbook_text("name: points\nextends: meddpicc\nhealth:\n  penalty_low: 1\n", "points")
)


@pytest.mark.parametrize(
    ("lows", "score", "band"),
    [
        (0, 100, "healthy"),
        (30, 70, "healthy"),
        (31, 69, "at_risk"),
        (60, 40, "at_risk"),
        (61, 39, "critical"),
        (100, 0, "critical"),
    ],
)
def test_given_score_at_a_band_boundary_when_scored_then_band_follows_70_and_40(
    lows: int, score: int, band: str
) -> None:
    health = health_of(_signals(*["low"] * lows), _ONE_POINT)

    assert (_raw(health), health.band) == (score, band)


def test_given_many_methodology_gaps_when_scored_then_their_penalty_is_capped_at_fifty() -> None:
    gaps = _signals(*["medium"] * 6, code="methodology_gap")

    health = health_of([*gaps, *_signals("low")], playbook())

    assert [penalty for _, penalty in _rules(health)] == [12, 12, 12, 12, 2, 0, 5]
    assert _raw(health) == 100 - 50 - 5


def test_given_a_deal_with_every_element_missing_when_reviewed_then_gaps_cost_at_most_50() -> None:
    deal = make_deal(stage=NEGOTIATION, fields={}, contacts=(), description=None, next_step="x")

    result = review(deal)

    gap_penalty = sum(p for key, p in result.health.penalties if key.startswith("methodology_gap"))
    gap_count = sum(1 for s in result.signals if s.code == "methodology_gap")
    assert gap_count == 8
    assert gap_penalty == 50


def test_given_a_review_when_scored_then_health_matches_its_signals() -> None:
    result = review(make_deal(close_date=day(-40), last_activity_at=days_ago(20)))

    assert [s.severity for s in result.signals] == ["high", "medium"]
    assert (_raw(result.health), result.health.band) == (63, "at_risk")
    assert result.summary.startswith("At risk (51/100) in Solution: ")  # 63 within 40..69


# --------------------------------------------------------------- severity floors the band


def test_given_default_settings_then_gaps_cap_at_fifty_and_two_highs_are_critical() -> None:
    settings = playbook().playbook.health

    assert (settings.methodology_penalty_cap, settings.high_signals_critical) == (50, 2)


#: High signals cost one point: the score stays healthy, so only the floor can move the band.
_CHEAP_HIGH = compile_playbook(
    load_playbook_text("name: cheap\nextends: meddpicc\nhealth:\n  penalty_high: 1\n", "cheap")
)


@pytest.mark.parametrize(
    ("highs", "band"), [(0, "healthy"), (1, "at_risk"), (2, "critical"), (3, "critical")]
)
def test_given_high_signals_on_a_healthy_score_when_scored_then_the_band_is_floored(
    highs: int, band: str
) -> None:
    health = health_of(_signals(*["high"] * highs, "low"), _CHEAP_HIGH)

    assert _raw(health) >= 90
    assert health.band == band


def test_given_a_critical_score_and_one_high_signal_when_scored_then_it_stays_critical() -> None:
    health = health_of(_signals("high", *["medium"] * 4), playbook())

    assert (_raw(health), health.band) == (27, "critical")


def test_given_high_signals_critical_set_to_two_when_two_highs_then_critical() -> None:
    two = compile_playbook(
        load_playbook_text(
            "name: two\nextends: meddpicc\nhealth:\n  penalty_high: 1\n"
            "  high_signals_critical: 2\n",
            "two",
        )
    )

    assert health_of(_signals("high", "high"), two).band == "critical"
    assert health_of(_signals("high"), two).band == "at_risk"


def _economic_buyer_signals(no_buyer: str, gap: str) -> list[Signal]:
    return [
        *_signals(no_buyer, code="no_economic_buyer"),
        Signal(
            code="methodology_gap",
            severity=gap,  # type: ignore[arg-type]
            message="m",
            evidence=(Evidence("f", "v"),),
            element="economic_buyer",
        ),
    ]


def test_given_signals_whose_questions_share_a_topic_when_scored_then_the_larger_counts_once() -> (
    None
):
    health = health_of(_economic_buyer_signals("medium", "high"), playbook(), "negotiate")

    assert _rules(health) == (("no_economic_buyer", 0), ("methodology_gap:economic_buyer", 25))
    assert _raw(health) == 75


def test_given_equal_penalties_sharing_a_topic_when_scored_then_the_non_gap_signal_keeps_it() -> (
    None
):
    health = health_of(_economic_buyer_signals("high", "high"), playbook())

    assert _rules(health) == (("no_economic_buyer", 25), ("methodology_gap:economic_buyer", 0))


def test_given_two_high_signals_sharing_a_topic_when_counted_then_they_count_once() -> None:
    two = compile_playbook(
        load_playbook_text(
            "name: two\nextends: meddpicc\nhealth:\n  high_signals_critical: 2\n", "two"
        )
    )

    health = health_of(_economic_buyer_signals("high", "high"), two)

    assert (_raw(health), health.band) == (75, "at_risk")


def test_given_a_late_deal_without_economic_buyer_when_reviewed_then_the_buyer_costs_once() -> None:
    deal = make_deal(stage=NEGOTIATION, contacts=(), fields={}, description=None, next_step="x")

    result = review(deal)

    penalties = dict(result.health.penalties)
    buyer = [penalties["no_economic_buyer"], penalties["methodology_gap:economic_buyer"]]
    assert sorted(buyer) == [0, 25]


def test_given_a_closed_deal_when_reviewed_then_its_json_keeps_a_full_health() -> None:
    result = review(make_deal(stage=CLOSED_LOST, close_date=day(-90), next_step=None))

    data = result.to_dict()
    assert data["health"]["score"] == 100
    assert (data["is_open"], data["is_won"]) == (False, False)


@pytest.mark.parametrize(
    ("severities", "band", "shown"),
    [
        (("medium",), "at_risk", 63),  # raw 88, scaled from 40..100 into 40..69
        (("high",), "at_risk", 57),  # raw 75
        (("high", "high"), "critical", 20),  # raw 50, scaled from 0..100 into 0..39
        (("low",), "healthy", 95),  # a healthy score is kept
    ],
)
def test_given_a_band_when_scored_then_the_score_shown_lies_in_its_range(
    severities: tuple[str, ...], band: str, shown: int
) -> None:
    health = health_of(_signals(*severities), playbook())

    assert (health.band, health.score) == (band, shown)
    assert 100 - sum(p for _, p in health.penalties) == health.score, "the explanation adds up"
    low, high = {"critical": (0, 39), "at_risk": (40, 69), "healthy": (70, 100)}[band]
    assert low <= health.score <= high
