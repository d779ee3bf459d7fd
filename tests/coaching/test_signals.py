"""Every signal of the vocabulary at both sides of its default thresholds (COACHING.md)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest

from app.coaching.engine import stage_clock, stage_entered_at
from app.coaching.playbook import compile_playbook, load_playbook_text
from app.coaching.snapshot import Change, Contact, Stage

from .factories import (
    AS_OF,
    CLOSED_LOST,
    CLOSED_WON,
    COMMIT,
    DISCOVERY,
    EVALUATION,
    NEGOTIATION,
    PROPOSAL,
    QUALIFICATION,
    RETIRED,
    SOLUTION,
    codes,
    day,
    days_ago,
    make_deal,
    maybe_signal,
    review,
    signal,
)


def _custom(yaml_text: str):
    return compile_playbook(load_playbook_text(yaml_text, "custom"))


def test_given_the_quiet_baseline_deal_when_reviewed_then_it_raises_nothing() -> None:
    result = review(make_deal())

    assert result.signals == ()
    assert result.health.score == 100


# --------------------------------------------------------------- close_date_passed


@pytest.mark.parametrize(
    ("close_in_days", "expected"),
    [(1, None), (0, None), (-1, "medium"), (-30, "medium"), (-31, "high"), (-400, "high")],
)
def test_given_close_date_offset_when_reviewed_then_close_date_passed_has_expected_severity(
    close_in_days: int, expected: str | None
) -> None:
    result = review(make_deal(close_date=day(close_in_days)))

    found = maybe_signal(result, "close_date_passed")
    assert (found.severity if found else None) == expected


def test_given_passed_close_date_when_reviewed_then_evidence_is_the_close_date() -> None:
    found = signal(review(make_deal(close_date=day(-5))), "close_date_passed")

    assert [(e.field, e.value, e.at) for e in found.evidence] == [
        ("close_date", day(-5).isoformat(), day(-5))
    ]
    assert found.facts["days"] == 5


def test_given_no_close_date_when_reviewed_then_no_close_date_signals() -> None:
    result = review(make_deal(close_date=None))

    assert not codes(result) & {"close_date_passed", "close_date_unrealistic"}


# --------------------------------------------------------------- close_date_pushed


def _moves(*pairs: tuple[int, int]) -> tuple[Change[date], ...]:
    """Close-date changes from day offsets (old, new), one a week, oldest first."""
    return tuple(
        Change(days_ago(50 - 7 * index), day(old), day(new))
        for index, (old, new) in enumerate(pairs)
    )


@pytest.mark.parametrize(
    ("moves", "expected"),
    [
        pytest.param((), None, id="never-moved"),
        pytest.param(((10, 20),), None, id="one-push"),
        pytest.param(((10, 20), (20, 30)), "medium", id="two-pushes"),
        pytest.param(((10, 20), (20, 30), (30, 45)), "high", id="three-pushes"),
        pytest.param(((10, 20), (20, 30), (30, 40), (40, 45)), "high", id="four-pushes"),
        pytest.param(((60, 50), (50, 45)), None, id="two-pull-ins"),
        pytest.param(((60, 50), (50, 40), (40, 45)), None, id="two-pull-ins-one-push"),
        pytest.param(((10, 20), (20, 15), (15, 30)), "medium", id="push-pull-push"),
    ],
)
def test_given_close_date_moves_when_reviewed_then_only_pushes_count(
    moves: tuple[tuple[int, int], ...], expected: str | None
) -> None:
    result = review(make_deal(close_date_history=_moves(*moves)))

    found = maybe_signal(result, "close_date_pushed")
    assert (found.severity if found else None) == expected


def test_given_two_pushes_when_reviewed_then_close_date_pushed_is_medium() -> None:
    history = _moves((10, 20), (20, 45))

    found = signal(review(make_deal(close_date_history=history)), "close_date_pushed")

    assert found.severity == "medium"
    assert found.facts["count"] == 2


def test_given_pushes_and_pull_ins_when_reviewed_then_evidence_lists_each_push_only() -> None:
    history = _moves((10, 20), (20, 15), (15, 30), (30, 45))

    found = signal(review(make_deal(close_date_history=history)), "close_date_pushed")

    assert [(e.field, e.value, e.at) for e in found.evidence] == [
        ("close_date", day(20).isoformat(), history[0].at),
        ("close_date", day(30).isoformat(), history[2].at),
        ("close_date", day(45).isoformat(), history[3].at),
    ]
    assert found.evidence[0].detail == f"moved from {day(10)} to {day(20)}"
    assert found.facts["count"] == 3


def test_given_close_date_first_set_when_reviewed_then_setting_it_is_not_a_push() -> None:
    history = (Change(days_ago(40), None, day(10)), *_moves((10, 20)))

    assert "close_date_pushed" not in codes(review(make_deal(close_date_history=history)))


# --------------------------------------------------------------- stalled_in_stage


@pytest.mark.parametrize(
    ("days_in_stage", "expected"),
    [(0, None), (30, None), (31, "medium"), (60, "medium"), (61, "high")],
)
def test_given_days_in_stage_when_reviewed_then_stalled_fires_above_thirty(
    days_in_stage: int, expected: str | None
) -> None:
    deal = make_deal(
        created_at=days_ago(100),
        stage_history=(Change(days_ago(days_in_stage), DISCOVERY, SOLUTION),),
    )

    found = maybe_signal(review(deal), "stalled_in_stage")

    assert (found.severity if found else None) == expected
    if found:
        assert found.facts["days"] == days_in_stage
        assert found.facts["limit"] == 30


def test_given_stalled_deal_when_reviewed_then_evidence_is_the_stage_and_its_entry() -> None:
    entered = days_ago(45)
    deal = make_deal(stage_history=(Change(entered, DISCOVERY, SOLUTION),))

    found = signal(review(deal), "stalled_in_stage")

    assert [(e.field, e.value, e.at) for e in found.evidence] == [("stage", "Solution", entered)]
    assert found.evidence[0].detail == f"in this stage since {entered.date().isoformat()}"


def test_given_recent_amount_and_close_changes_when_reviewed_then_stage_clock_keeps_going() -> None:
    deal = make_deal(
        created_at=days_ago(90),
        stage_history=(
            Change(days_ago(70), DISCOVERY, QUALIFICATION),
            Change(days_ago(40), QUALIFICATION, SOLUTION),
        ),
        amount_history=(Change(days_ago(3), 18_000.0, 20_000.0),),
        close_date_history=(Change(days_ago(1), day(40), day(45)),),
    )

    found = signal(review(deal), "stalled_in_stage")

    assert found.facts["days"] == 40
    assert stage_entered_at(deal) == days_ago(40)


def test_given_crm_stage_entry_date_when_reviewed_then_it_wins_over_history() -> None:
    deal = make_deal(
        stage_entered_at=days_ago(40),
        stage_history=(Change(days_ago(5), DISCOVERY, SOLUTION),),
    )

    assert stage_entered_at(deal) == days_ago(40)
    assert signal(review(deal), "stalled_in_stage").facts["days"] == 40


def test_given_recent_crm_stage_entry_date_when_reviewed_then_old_history_does_not_stall() -> None:
    deal = make_deal(
        stage_entered_at=days_ago(5),
        stage_history=(Change(days_ago(50), DISCOVERY, SOLUTION),),
    )

    assert "stalled_in_stage" not in codes(review(deal))


def test_given_no_stage_history_at_all_when_reviewed_then_the_stage_clock_is_unknown() -> None:
    # Nothing says when the stage began: the created date would be a guess.
    deal = make_deal(created_at=days_ago(200), stage_history=())

    assert stage_clock(deal) == (None, False, "stage")
    assert "stalled_in_stage" not in codes(review(deal))


def test_given_history_starting_at_creation_in_this_stage_then_the_clock_starts_at_creation() -> (
    None
):
    created = days_ago(35)
    deal = make_deal(
        created_at=created, stage_history=(), stage_history_from=created + timedelta(seconds=2)
    )

    assert stage_clock(deal) == (created, True, "stage")
    found = signal(review(deal), "stalled_in_stage")
    assert (found.facts["days"], found.facts["stage_days"]) == (35, "35 days")


def test_given_history_starting_inside_the_stage_then_days_count_from_it_as_at_least() -> None:
    deal = make_deal(created_at=days_ago(300), stage_history=(), stage_history_from=days_ago(45))

    found = signal(review(deal), "stalled_in_stage")

    assert (found.facts["days"], found.facts["stage_days"]) == (45, "at least 45 days")
    assert found.message.startswith("At least 45 days in Solution")
    assert found.evidence[0].at == days_ago(45)


def test_given_history_only_into_other_stages_when_reviewed_then_the_clock_is_a_lower_bound() -> (
    None
):
    deal = make_deal(
        created_at=days_ago(50),
        stage_history=(Change(days_ago(5), DISCOVERY, QUALIFICATION),),
    )

    assert stage_clock(deal) == (days_ago(5), False, "stage")


def test_given_a_crm_stage_entry_field_then_the_evidence_names_it() -> None:
    deal = make_deal(stage_entered_at=days_ago(40), stage_entered_field="LastStageChangeDate")

    found = signal(review(deal), "stalled_in_stage")

    assert found.evidence[0].field == "LastStageChangeDate"
    assert found.facts["stage_days"] == "40 days"


def test_given_deal_that_returned_to_its_stage_when_reviewed_then_clock_runs_from_the_return() -> (
    None
):
    deal = make_deal(
        stage_history=(
            Change(days_ago(50), DISCOVERY, SOLUTION),
            Change(days_ago(45), SOLUTION, PROPOSAL),
            Change(days_ago(12), PROPOSAL, SOLUTION),
        )
    )

    assert stage_entered_at(deal) == days_ago(12)
    assert "stalled_in_stage" not in codes(review(deal))


def test_given_per_stage_limit_in_playbook_when_reviewed_then_it_replaces_the_default() -> None:
    custom = _custom(
        "name: strict\nextends: meddpicc\nthresholds:\n  stalled_days_by_stage:\n    solution: 10\n"
    )
    deal = make_deal(stage_history=(Change(days_ago(11), DISCOVERY, SOLUTION),))

    assert "stalled_in_stage" not in codes(review(deal))
    assert signal(review(deal, custom), "stalled_in_stage").facts["limit"] == 10


def test_given_per_phase_limit_in_playbook_when_reviewed_then_it_replaces_the_default() -> None:
    custom = _custom(
        "name: strict\nextends: meddpicc\nthresholds:\n  stalled_days_by_phase:\n    solution: 20\n"
    )
    deal = make_deal(stage_history=(Change(days_ago(21), DISCOVERY, SOLUTION),))

    assert signal(review(deal, custom), "stalled_in_stage").facts["limit"] == 20


# --------------------------------------------------------------- no_recent_activity


@pytest.mark.parametrize(
    ("days_silent", "expected"),
    [(0, None), (14, None), (15, "medium"), (28, "medium"), (29, "high")],
)
def test_given_days_since_last_activity_when_reviewed_then_silence_over_fourteen_days_fires(
    days_silent: int, expected: str | None
) -> None:
    found = maybe_signal(
        review(make_deal(last_activity_at=days_ago(days_silent))), "no_recent_activity"
    )

    assert (found.severity if found else None) == expected


def test_given_activity_late_in_the_day_when_reviewed_then_days_are_calendar_days() -> None:
    # 14 days and 23 hours ago, but 15 calendar days before as_of's date.
    last = datetime(2025, 5, 31, 23, 30, tzinfo=AS_OF.tzinfo)

    found = signal(review(make_deal(last_activity_at=last)), "no_recent_activity")

    assert found.facts["days"] == 15


def test_given_silent_deal_when_reviewed_then_evidence_is_the_last_activity() -> None:
    last = days_ago(20)

    found = signal(review(make_deal(last_activity_at=last)), "no_recent_activity")

    assert [(e.field, e.value, e.at) for e in found.evidence] == [
        ("last_activity_at", last.date().isoformat(), last)
    ]
    assert found.facts["days"] == 20


@pytest.mark.parametrize(
    ("age_days", "expected"),
    [(10, None), (14, None), (15, "medium"), (28, "medium"), (29, "high")],
)
def test_given_no_activity_ever_when_reviewed_then_it_fires_only_on_deals_older_than_fourteen_days(
    age_days: int, expected: str | None
) -> None:
    deal = make_deal(last_activity_at=None, created_at=days_ago(age_days), stage_history=())

    found = maybe_signal(review(deal), "no_recent_activity")

    assert (found.severity if found else None) == expected
    if found:
        assert [(e.field, e.value) for e in found.evidence] == [("last_activity_at", None)]
        assert found.facts["days"] == age_days


def test_given_the_same_silence_when_deal_is_large_and_late_then_severity_is_higher() -> None:
    big_late = make_deal(
        amount=500_000.0,
        stage=NEGOTIATION,
        stage_history=(Change(days_ago(10), PROPOSAL, NEGOTIATION),),
        last_activity_at=days_ago(20),
    )
    small_early = make_deal(
        amount=5_000.0,
        stage=DISCOVERY,
        stage_history=(),
        created_at=days_ago(25),
        last_activity_at=days_ago(20),
    )

    big = signal(review(big_late), "no_recent_activity")
    small = signal(review(small_early), "no_recent_activity")

    assert (big.severity, small.severity) == ("high", "low")
    assert big.evidence[0].at == small.evidence[0].at


def test_given_no_activity_days_seven_in_a_playbook_when_reviewed_then_eight_days_fires() -> None:
    custom = _custom("name: eager\nextends: meddpicc\nthresholds:\n  no_activity_days: 7\n")
    deal = make_deal(last_activity_at=days_ago(8))

    assert "no_recent_activity" not in codes(review(deal))
    assert signal(review(deal, custom), "no_recent_activity").facts["days"] == 8
    assert "no_recent_activity" not in codes(
        review(make_deal(last_activity_at=days_ago(7)), custom)
    )


def test_given_signal_disabled_in_a_playbook_when_reviewed_then_it_is_suppressed() -> None:
    custom = _custom("name: quiet\nextends: meddpicc\ndisabled_signals: [no_recent_activity]\n")
    deal = make_deal(last_activity_at=days_ago(60), close_date=day(-3))

    assert "no_recent_activity" in codes(review(deal))
    assert codes(review(deal, custom)) == {"close_date_passed"}


def test_given_methodology_gap_disabled_when_reviewed_then_elements_judged_but_no_gaps() -> None:
    custom = _custom("name: quiet\nextends: meddpicc\ndisabled_signals: [methodology_gap]\n")

    result = review(make_deal(fields={}), custom)

    assert result.signals == ()
    status = {j.element: j.status for j in result.methodology}
    assert status["metrics"] == "absent"
    assert status["economic_buyer"] == "confirmed"  # by the contact role


# --------------------------------------------------------------- next_step_missing


@pytest.mark.parametrize(
    ("overrides", "fires"),
    [
        pytest.param({"next_step": None}, True, id="none"),
        pytest.param({"next_step": ""}, True, id="empty"),
        pytest.param({"next_step": " \t\n "}, True, id="blank"),
        pytest.param({"next_step": "Call"}, False, id="written"),
        pytest.param({"next_step": None, "has_future_activity": True}, False, id="crm-flag"),
        pytest.param({"next_step": None, "next_activity_at": days_ago(-1)}, False, id="scheduled"),
        pytest.param({"next_step": None, "next_activity_at": AS_OF}, False, id="scheduled-now"),
        pytest.param({"next_step": None, "next_activity_at": days_ago(1)}, True, id="was-due"),
    ],
)
def test_given_next_step_and_schedule_when_reviewed_then_next_step_missing_fires_if_neither(
    overrides: dict[str, object], fires: bool
) -> None:
    assert ("next_step_missing" in codes(review(make_deal(**overrides)))) is fires


def test_given_missing_next_step_when_reviewed_then_evidence_names_both_fields() -> None:
    overdue = days_ago(3)

    found = signal(review(make_deal(next_step=" ", next_activity_at=overdue)), "next_step_missing")

    assert [(e.field, e.value, e.at) for e in found.evidence] == [
        ("next_step", None, None),
        ("next_activity_at", overdue.isoformat(), overdue),
    ]
    assert found.severity == "low"


# --------------------------------------------------------------- single_threaded


def _contacts(count: int) -> tuple[Contact, ...]:
    return tuple(Contact(f"003{index}", ("Evaluator",)) for index in range(count))


@pytest.mark.parametrize(
    ("amount", "contacts", "contact_count", "fires"),
    [
        (49_999.99, 1, None, False),
        (50_000.0, 1, None, True),
        (50_000.0, 0, None, True),
        (50_000.0, 2, None, False),
        (900_000.0, 1, None, True),
        (50_000.0, 1, 3, False),  # the CRM counts more contacts than it lists
        (50_000.0, 1, 0, True),  # a smaller CRM count does not hide listed ones
        (None, 0, None, False),
    ],
)
def test_given_amount_and_contacts_when_reviewed_then_single_threaded_fires_on_big_lonely_deals(
    amount: float | None, contacts: int, contact_count: int | None, fires: bool
) -> None:
    deal = make_deal(amount=amount, contacts=_contacts(contacts), contact_count=contact_count)

    assert ("single_threaded" in codes(review(deal))) is fires


def test_given_single_threaded_deal_when_reviewed_then_evidence_is_contacts_and_amount() -> None:
    found = signal(review(make_deal(amount=75_000.0, contacts=_contacts(1))), "single_threaded")

    assert [(e.field, e.value) for e in found.evidence] == [
        ("contacts", "1"),
        ("amount", "75,000"),
    ]
    assert found.severity == "medium"


@pytest.mark.parametrize(
    ("stage", "code"),
    [(SOLUTION, "single_threaded"), (NEGOTIATION, "no_economic_buyer")],
)
def test_given_contacts_not_fetched_when_reviewed_then_no_contact_signal_is_guessed(
    stage: Stage, code: str
) -> None:
    deal = make_deal(
        stage=stage,
        stage_history=(Change(days_ago(5), DISCOVERY, stage),),
        amount=90_000.0,
        contacts=(),
    )

    assert code in codes(review(deal))
    assert code not in codes(review(replace(deal, contacts_known=False)))


# --------------------------------------------------------------- no_economic_buyer


def _stage_at(probability: float) -> Stage:
    return Stage("custom", "Custom", 4, probability)


@pytest.mark.parametrize(
    ("probability", "expected"),
    [(0.40, None), (0.49, None), (0.50, "medium"), (0.74, "medium"), (0.75, "high"), (0.9, "high")],
)
def test_given_stage_probability_without_buyer_when_reviewed_then_no_economic_buyer_from_fifty(
    probability: float, expected: str | None
) -> None:
    deal = make_deal(stage=_stage_at(probability), stage_history=(), contacts=(CHAMPION_ONLY,))

    found = maybe_signal(review(deal), "no_economic_buyer")

    assert (found.severity if found else None) == expected


CHAMPION_ONLY = Contact("003CH", ("Champion", "Technical Buyer"), name="Sam Lee")


@pytest.mark.parametrize(
    "role",
    [
        "Economic Buyer",
        "Decision Maker",
        "economic  buyer",
        "ECONOMIC_BUYER",
        "Economic Decision Maker",
    ],
)
def test_given_a_buyer_role_when_reviewed_then_no_economic_buyer_is_silent(role: str) -> None:
    deal = make_deal(
        stage=PROPOSAL, stage_history=(), contacts=(CHAMPION_ONLY, Contact("003X", (role,)))
    )

    assert "no_economic_buyer" not in codes(review(deal))


def test_given_no_buyer_at_sixty_percent_when_reviewed_then_evidence_is_roles_and_stage() -> None:
    deal = make_deal(stage=PROPOSAL, stage_history=(), contacts=(CHAMPION_ONLY,))

    found = signal(review(deal), "no_economic_buyer")

    assert [(e.field, e.value, e.detail) for e in found.evidence] == [
        ("contacts.roles", "Champion, Technical Buyer", None),
        ("stage", "Proposal", "probability 60%"),
    ]
    assert found.facts["probability"] == 60


# --------------------------------------------------------------- amount_decreased


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (100_000.0, None),
        (80_001.0, None),
        (80_000.0, "medium"),  # exactly 20% below the peak
        (50_001.0, "medium"),
        (50_000.0, "high"),
        (0.0, "high"),
    ],
)
def test_given_amount_below_its_peak_when_reviewed_then_decrease_of_twenty_percent_fires(
    current: float, expected: str | None
) -> None:
    deal = make_deal(
        amount=current,
        amount_history=(
            Change(days_ago(40), 60_000.0, 100_000.0),
            Change(days_ago(5), 100_000.0, current),
        ),
    )

    found = maybe_signal(review(deal), "amount_decreased")

    assert (found.severity if found else None) == expected


@pytest.mark.parametrize(("peak", "current"), [(10.0, 8.0), (70_000.0, 56_000.0), (3.0, 2.4)])
def test_given_exactly_twenty_percent_drop_when_reviewed_then_amount_decreased_fires(
    peak: float, current: float
) -> None:
    deal = make_deal(amount=current, amount_history=(Change(days_ago(5), peak, current),))

    assert "amount_decreased" in codes(review(deal))


def test_given_decreased_amount_when_reviewed_then_evidence_is_peak_and_current() -> None:
    peak_at = days_ago(40)
    deal = make_deal(
        amount=60_000.0,
        amount_history=(
            Change(peak_at, 30_000.0, 90_000.0),
            Change(days_ago(5), 90_000.0, 60_000.0),
        ),
    )

    found = signal(review(deal), "amount_decreased")

    assert [(e.field, e.value, e.at) for e in found.evidence] == [
        ("amount", "90,000", peak_at),
        ("amount", "60,000", None),
        ("amount", "60,000", days_ago(5)),
        ("stage", "Solution", days_ago(10)),  # the cut came 5 days after the stage began
    ]
    assert found.facts["drop_pct"] == 33
    assert (found.facts["after_stage"], found.facts["days_after"]) == ("Solution", "5 days")
    assert (found.facts["peak"], found.facts["now"]) == ("90,000", "60,000")


def test_given_amount_that_only_grew_when_reviewed_then_no_decrease() -> None:
    deal = make_deal(amount=90_000.0, amount_history=(Change(days_ago(5), 30_000.0, 90_000.0),))

    assert "amount_decreased" not in codes(review(deal))


# --------------------------------------------------------------- stage_regressed


@pytest.mark.parametrize(
    ("days", "old", "new", "fires"),
    [
        (0, PROPOSAL, SOLUTION, True),
        (30, PROPOSAL, SOLUTION, True),
        (31, PROPOSAL, SOLUTION, False),
        (5, DISCOVERY, SOLUTION, False),  # forward
        (5, RETIRED, SOLUTION, False),  # the engine cannot place a retired stage
    ],
)
def test_given_stage_move_when_reviewed_then_a_move_back_within_thirty_days_fires(
    days: int, old: Stage, new: Stage, fires: bool
) -> None:
    deal = make_deal(stage_history=(Change(days_ago(days), old, new),))

    assert ("stage_regressed" in codes(review(deal))) is fires


def test_given_regression_then_advance_when_reviewed_then_the_regression_still_counts() -> None:
    moved_back = days_ago(20)
    deal = make_deal(
        stage=PROPOSAL,
        fields={},
        stage_history=(
            Change(days_ago(25), SOLUTION, NEGOTIATION),
            Change(moved_back, NEGOTIATION, SOLUTION),
            Change(days_ago(3), SOLUTION, PROPOSAL),
        ),
    )

    found = signal(review(deal), "stage_regressed")

    assert [(e.field, e.value, e.at) for e in found.evidence] == [("stage", "Solution", moved_back)]
    assert found.evidence[0].detail == "moved back from Negotiation"
    assert found.facts == {**found.facts, "from_stage": "Negotiation", "days": 20}


# --------------------------------------------------------------- close_date_unrealistic


@pytest.mark.parametrize(
    ("stage", "close_in", "fires"),
    [
        (QUALIFICATION, 0, True),
        (QUALIFICATION, 30, True),
        (QUALIFICATION, 31, False),
        (QUALIFICATION, -1, False),  # passed: close_date_passed covers it
        (DISCOVERY, 10, True),
        (Stage("q2", "Scoping", 2, 0.21), 10, False),
        (SOLUTION, 10, False),
    ],
)
def test_given_close_soon_from_early_stage_when_reviewed_then_close_date_unrealistic_fires(
    stage: Stage, close_in: int, fires: bool
) -> None:
    deal = make_deal(stage=stage, stage_history=(), close_date=day(close_in))

    assert ("close_date_unrealistic" in codes(review(deal))) is fires


def test_given_unrealistic_close_when_reviewed_then_evidence_is_date_and_stage() -> None:
    deal = make_deal(stage=QUALIFICATION, stage_history=(), close_date=day(12))

    found = signal(review(deal), "close_date_unrealistic")

    assert [(e.field, e.value, e.at) for e in found.evidence] == [
        ("close_date", day(12).isoformat(), day(12)),
        ("stage", "Qualification", None),
    ]
    assert (found.facts["days"], found.facts["probability"]) == (12, 20)


# --------------------------------------------------------------- forecast_mismatch


@pytest.mark.parametrize(
    ("category", "probability", "fires"),
    [
        ("Commit", 0.69, True),
        ("Commit", 0.70, False),
        ("commit", 0.40, True),
        ("Closed", 0.60, True),
        ("Best Case", 0.10, False),
        ("Pipeline", 0.60, False),
        (None, 0.10, False),
        ("", 0.10, False),
    ],
)
def test_given_forecast_category_and_probability_when_reviewed_then_commit_below_seventy_fires(
    category: str | None, probability: float, fires: bool
) -> None:
    deal = make_deal(stage=_stage_at(probability), stage_history=(), forecast_category=category)

    assert ("forecast_mismatch" in codes(review(deal))) is fires


def test_given_commit_forecast_at_sixty_percent_when_reviewed_then_evidence_and_high() -> None:
    deal = make_deal(stage=PROPOSAL, stage_history=(), forecast_category="Commit")

    found = signal(review(deal), "forecast_mismatch")

    assert found.severity == "high"
    assert [(e.field, e.value) for e in found.evidence] == [
        ("forecast_category", "Commit"),
        ("stage", "Proposal"),
        ("close_date", day(45).isoformat()),
    ]


# --------------------------------------------------------------- owner_changed


@pytest.mark.parametrize(("days", "fires"), [(0, True), (30, True), (31, False), (-2, False)])
def test_given_owner_change_when_reviewed_then_a_change_in_the_last_thirty_days_fires(
    days: int, fires: bool
) -> None:
    deal = make_deal(owner_history=(Change(days_ago(days), "005OLD", "005A"),))

    assert ("owner_changed" in codes(review(deal))) is fires


def test_given_owner_change_when_reviewed_then_evidence_is_the_latest_change() -> None:
    handed_over = days_ago(4)
    deal = make_deal(
        owner_history=(
            Change(days_ago(90), "005X", "005OLD"),
            Change(handed_over, "005OLD", "005A"),
        )
    )

    found = signal(review(deal), "owner_changed")

    assert [(e.field, e.value, e.at, e.detail) for e in found.evidence] == [
        ("owner_id", "005A", handed_over, "from 005OLD")
    ]
    assert (found.severity, found.facts["days"]) == ("low", 4)


# --------------------------------------------------------------- deal_aging


@pytest.mark.parametrize(
    ("age", "expected"), [(180, None), (181, "low"), (360, "low"), (361, "medium")]
)
def test_given_deal_age_when_reviewed_then_deals_older_than_180_days_are_aging(
    age: int, expected: str | None
) -> None:
    found = maybe_signal(review(make_deal(created_at=days_ago(age))), "deal_aging")

    assert (found.severity if found else None) == expected
    if found:
        assert [(e.field, e.at) for e in found.evidence] == [("created_at", days_ago(age))]
        assert found.facts["days"] == age


# --------------------------------------------------------------- closed deals


def _everything_wrong(**overrides: object) -> dict[str, object]:
    return {
        "amount": 500_000.0,
        "amount_history": (Change(days_ago(5), 900_000.0, 500_000.0),),
        "created_at": days_ago(400),
        "close_date": day(-60),
        "close_date_history": _moves((1, 10), (10, 20), (20, 30)),
        "last_activity_at": None,
        "next_step": None,
        "contacts": (),
        "forecast_category": "Commit",
        "owner_history": (Change(days_ago(2), "005X", "005A"),),
        "stage_history": (Change(days_ago(3), NEGOTIATION, PROPOSAL),),
        "fields": {},
        **overrides,
    }


@pytest.mark.parametrize("stage", [CLOSED_WON, CLOSED_LOST], ids=["won", "lost"])
def test_given_closed_deal_with_bad_data_when_reviewed_then_no_signals_and_no_prompts(
    stage: Stage,
) -> None:
    deal = make_deal(**_everything_wrong(stage=stage))

    result = review(deal)

    assert result.signals == ()
    assert result.prompts == () and result.rep_prompts == ()
    assert result.phase == "closed" and result.is_open is False
    assert (result.health.score, result.health.band) == (100, "healthy")
    assert all(not judgement.expected for judgement in result.methodology)
    assert "no coaching prompts" in result.summary


def test_given_the_same_bad_data_on_an_open_deal_when_reviewed_then_every_rule_fires() -> None:
    result = review(make_deal(**_everything_wrong(stage=COMMIT)))

    assert {s.code for s in result.signals} >= {
        "close_date_passed",
        "close_date_pushed",
        "no_recent_activity",
        "next_step_missing",
        "single_threaded",
        "no_economic_buyer",
        "amount_decreased",
        "stage_regressed",
        "owner_changed",
        "deal_aging",
        "methodology_gap",
    }


def test_given_every_signal_when_reviewed_then_each_carries_evidence() -> None:
    result = review(make_deal(**_everything_wrong(stage=EVALUATION)))

    assert result.signals
    assert all(s.evidence for s in result.signals)


def test_given_naive_as_of_when_reviewed_then_engine_refuses() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        review(make_deal(), as_of=AS_OF.replace(tzinfo=None))


def test_given_an_amount_cut_in_two_steps_when_asked_then_the_last_step_is_named() -> None:
    # 150,000 -> 120,000 before the stage began, then 120,000 -> 95,000 after it: "fell from
    # 150,000 to 95,000 N days after the stage" would put the whole fall after the stage.
    deal = make_deal(
        amount=95_000.0,
        amount_history=(
            Change(days_ago(30), 150_000.0, 120_000.0),
            Change(days_ago(5), 120_000.0, 95_000.0),
        ),
    )

    found = signal(review(deal), "amount_decreased")
    asked = [p.text for p in review(deal).prompts if p.signal == "amount_decreased"]

    assert found.facts["fall"] == "from 120,000 to 95,000 (150,000 at its peak)"
    assert asked and "fell from 120,000 to 95,000 (150,000 at its peak)" in asked[0]
    assert "from 150,000 to 95,000" not in asked[0]
