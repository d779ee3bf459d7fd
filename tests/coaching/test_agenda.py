"""The pipeline-review agenda: exceptions only, ranked by risk x value, integrity figures."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from app.coaching.agenda import (
    is_exception,
    period_bounds,
    pipeline_agenda,
    render_agenda_html,
    render_agenda_text,
)
from app.coaching.results import DealReview, Evidence, Signal
from app.coaching.snapshot import Change

from .factories import (
    AS_OF,
    CHAMPION,
    CLOSED_LOST,
    CLOSED_WON,
    DISCOVERY,
    PROPOSAL,
    QUALIFICATION,
    day,
    days_ago,
    make_deal,
    review,
)


def _review(deal_id: str, owner: str = "005A", **overrides: object) -> DealReview:
    return review(make_deal(id=deal_id, owner_id=owner, **overrides))


def _pipeline() -> dict[str, DealReview]:
    reviews = {
        # healthy, nothing high: not an exception
        "quiet": _review("quiet"),
        # scores 75, but its high signal floors the band at at_risk: an exception
        "commit_early": _review(
            "commit_early",
            stage=PROPOSAL,
            stage_history=(Change(days_ago(5), DISCOVERY, PROPOSAL),),
            forecast_category="Commit",
        ),
        # at risk, large
        "big_risky": _review(
            "big_risky", amount=400_000.0, close_date=day(-40), last_activity_at=days_ago(20)
        ),
        # critical, small
        "small_critical": _review(
            "small_critical",
            amount=5_000.0,
            close_date=day(-40),
            last_activity_at=days_ago(40),
            next_step=None,
            created_at=days_ago(400),
        ),
        # at risk, no amount: follows the priced deals
        "unpriced": _review(
            "unpriced", amount=None, close_date=day(-40), last_activity_at=days_ago(20)
        ),
        # early stage closing this quarter
        "early_close": _review(
            "early_close",
            stage=QUALIFICATION,
            stage_history=(Change(days_ago(5), DISCOVERY, QUALIFICATION),),
            close_date=day(10),
        ),
        # closed deals with terrible data: never on the agenda, never counted
        "won": _review("won", stage=CLOSED_WON, close_date=day(-100), next_step=None),
        "lost": _review("lost", stage=CLOSED_LOST, close_date=day(-100), next_step=None),
        # another owner's critical deal
        "theirs": _review(
            "theirs", owner="005B", amount=900_000.0, close_date=day(-40), next_step=None
        ),
    }
    return reviews


def test_given_healthy_deal_without_high_signal_when_checked_then_it_is_not_an_exception() -> None:
    reviews = _pipeline()

    assert reviews["quiet"].health.band == "healthy"
    assert not is_exception(reviews["quiet"])
    # A high signal makes it one (and, since the severity floor, its band is at_risk).
    assert (reviews["commit_early"].health.score, reviews["commit_early"].health.band) == (
        57,  # 75 before it is moved into the at-risk range (40..69)
        "at_risk",
    )
    assert is_exception(reviews["commit_early"])
    assert not is_exception(reviews["won"]) and not is_exception(reviews["lost"])


def test_given_owner_when_agenda_built_then_only_exceptions_ranked_by_risk_times_amount() -> None:
    agenda = pipeline_agenda(_pipeline().values(), "005A", AS_OF)

    ids = [item.review.deal_id for item in agenda.items]
    # Past due in the period first, by exposure; early_close (one medium risk, at risk)
    # closes in the period too; the commit mismatch closes next quarter.
    assert ids == ["big_risky", "small_critical", "unpriced", "early_close", "commit_early"]
    exposures = [item.exposure for item in agenda.items[:3]]
    assert exposures == sorted(exposures, reverse=True)
    assert agenda.items[-1].exposure > agenda.items[1].exposure
    big = agenda.items[0]
    assert big.risk == pytest.approx((100 - big.review.health.score) / 100)
    assert big.exposure == pytest.approx(big.risk * 400_000)


def test_given_unpriced_deals_when_ranked_then_they_follow_by_risk() -> None:
    riskier = _review("riskier", amount=None, close_date=day(-40), last_activity_at=days_ago(40))
    milder = _review("milder", amount=None, close_date=day(-40), last_activity_at=days_ago(20))

    agenda = pipeline_agenda([milder, riskier], None, AS_OF)

    assert [item.review.deal_id for item in agenda.items] == ["riskier", "milder"]
    assert all(item.exposure == 0 for item in agenda.items)


def test_given_no_owner_filter_when_agenda_built_then_every_owner_is_included() -> None:
    agenda = pipeline_agenda(_pipeline().values(), None, AS_OF)

    assert agenda.items[0].review.deal_id == "theirs"
    assert agenda.integrity.open_deals == 7


def test_given_other_owner_when_agenda_built_then_only_their_deals_count() -> None:
    agenda = pipeline_agenda(_pipeline().values(), "005B", AS_OF)

    assert [item.review.deal_id for item in agenda.items] == ["theirs"]
    assert agenda.integrity.open_deals == 1
    assert agenda.integrity.open_amount == 900_000.0


def test_given_pipeline_when_agenda_built_then_integrity_figures_count_open_deals() -> None:
    agenda = pipeline_agenda(_pipeline().values(), "005A", AS_OF)

    assert agenda.integrity.to_dict() == {
        "open_deals": 6,
        "open_amount": 20_000.0 * 3 + 400_000.0 + 5_000.0,
        "close_date_passed": 3,
        "next_step_missing": 1,
        "stale": 3,
        "closing_this_period_early_stage": 1,
    }


def test_given_early_deal_closing_next_quarter_when_counted_then_it_is_not_in_this_period() -> None:
    later = _review(
        "later",
        stage=QUALIFICATION,
        stage_history=(Change(days_ago(5), DISCOVERY, QUALIFICATION),),
        close_date=date(2025, 7, 1),
    )
    late_stage = _review("late", stage=PROPOSAL, close_date=date(2025, 6, 30), contacts=(CHAMPION,))

    quarter = pipeline_agenda([later, late_stage], None, AS_OF)

    assert quarter.integrity.closing_this_period_early_stage == 0
    assert (quarter.period_start, quarter.period_end) == (date(2025, 4, 1), date(2025, 6, 30))


def test_given_month_period_when_agenda_built_then_period_is_the_month() -> None:
    closing = _review(
        "early",
        stage=DISCOVERY,
        stage_history=(),
        created_at=days_ago(5),
        close_date=date(2025, 6, 30),
    )

    agenda = pipeline_agenda([closing], None, AS_OF, period="month")

    assert (agenda.period_start, agenda.period_end) == (date(2025, 6, 1), date(2025, 6, 30))
    assert agenda.integrity.closing_this_period_early_stage == 1


@pytest.mark.parametrize(
    ("today", "period", "bounds"),
    [
        (date(2025, 1, 1), "quarter", (date(2025, 1, 1), date(2025, 3, 31))),
        (date(2025, 3, 31), "quarter", (date(2025, 1, 1), date(2025, 3, 31))),
        (date(2025, 4, 1), "quarter", (date(2025, 4, 1), date(2025, 6, 30))),
        (date(2025, 8, 15), "quarter", (date(2025, 7, 1), date(2025, 9, 30))),
        (date(2025, 12, 31), "quarter", (date(2025, 10, 1), date(2025, 12, 31))),
        (date(2024, 2, 10), "month", (date(2024, 2, 1), date(2024, 2, 29))),
        (date(2025, 2, 28), "month", (date(2025, 2, 1), date(2025, 2, 28))),
        (date(2025, 12, 1), "month", (date(2025, 12, 1), date(2025, 12, 31))),
        (date(2025, 4, 30), "month", (date(2025, 4, 1), date(2025, 4, 30))),
        (date(9999, 11, 15), "quarter", (date(9999, 10, 1), date(9999, 12, 31))),
        (date(9999, 12, 31), "month", (date(9999, 12, 1), date(9999, 12, 31))),
    ],
)
def test_given_a_day_when_bounded_then_the_quarter_or_month_holding_it(
    today: date, period: str, bounds: tuple[date, date]
) -> None:
    assert period_bounds(today, period) == bounds  # type: ignore[arg-type]


def test_given_agenda_when_serialised_then_items_carry_only_shown_first_prompts() -> None:
    agenda = pipeline_agenda(_pipeline().values(), "005A", AS_OF)

    data = agenda.to_dict()

    assert data["owner_id"] == "005A"
    assert data["as_of"] == "2025-06-15T12:00:00Z"
    assert data["period"] == {"start": "2025-04-01", "end": "2025-06-30"}
    first = data["items"][0]
    assert first["deal_id"] == "big_risky"
    assert first["signals"] == ["close_date_passed", "no_recent_activity"]
    assert first["close_date"] == "2025-05-06" and first["forecast_category"] is None
    assert first["past_due"] is True and first["in_period"] is True
    top = agenda.items[0].review.prompts[0]
    assert first["top_question"] == {"text": top.text, "why": top.why}
    assert data["owners"] == [
        {
            "owner_id": "005A",
            "exceptions": len(data["items"]),
            "exposure": sum(i["exposure"] for i in data["items"]),
        }
    ]
    assert all(p["shown_first"] for item in data["items"] for p in item["prompts"])
    assert all(len(item["prompts"]) <= 3 for item in data["items"])


def test_given_no_reviews_when_agenda_built_then_it_is_empty() -> None:
    agenda = pipeline_agenda([], "005A", AS_OF)

    assert agenda.items == ()
    assert agenda.integrity.open_deals == 0


def test_given_healthy_deal_with_a_passed_close_date_when_checked_then_it_is_an_exception() -> None:
    passed = _review("passed", close_date=day(-3))

    assert [(s.code, s.severity) for s in passed.signals] == [("close_date_passed", "medium")]
    assert passed.health.band == "at_risk"  # one medium risk makes a deal at risk
    assert is_exception(passed)


def test_given_healthy_deal_with_a_forecast_mismatch_when_checked_then_it_is_an_exception() -> None:
    # Small and early: the mismatch is scaled down to medium, and the score stays healthy.
    committed = _review(
        "committed",
        amount=5_000.0,
        stage=QUALIFICATION,
        stage_history=(Change(days_ago(5), DISCOVERY, QUALIFICATION),),
        forecast_category="Commit",
    )

    assert [(s.code, s.severity) for s in committed.signals] == [("forecast_mismatch", "medium")]
    assert committed.health.band == "at_risk"  # one medium risk makes a deal at risk
    assert is_exception(committed)
    assert pipeline_agenda([committed], None, AS_OF).items[0].review is committed


def test_given_closed_deal_with_a_passed_close_date_when_checked_then_it_is_no_exception() -> None:
    assert not is_exception(_review("won", stage=CLOSED_WON, close_date=day(-3)))


# ---------------------------------------------------------------- the order of the meeting


def _commit_mismatch(deal_id: str, close_in: int, amount: float = 20_000.0) -> DealReview:
    return _review(
        deal_id,
        amount=amount,
        stage=PROPOSAL,
        stage_history=(Change(days_ago(5), DISCOVERY, PROPOSAL),),
        forecast_category="Commit",
        close_date=day(close_in),
    )


def test_given_exceptions_in_and_after_the_period_then_in_period_ones_come_first() -> None:
    # AS_OF is 2025-06-15: the quarter ends in 15 days.
    past_due = _review(
        "past_due", amount=10_000.0, close_date=day(-2), last_activity_at=days_ago(20)
    )
    mismatch = _commit_mismatch("mismatch", close_in=10, amount=15_000.0)
    in_period = _review(
        "in_period", amount=50_000.0, close_date=day(10), last_activity_at=days_ago(40)
    )
    later_huge = _review(
        "later_huge", amount=5_000_000.0, close_date=day(60), last_activity_at=days_ago(40)
    )
    later_mismatch = _commit_mismatch("later_mismatch", close_in=60, amount=900_000.0)
    undated = _review("undated", amount=1_000_000.0, close_date=None, last_activity_at=days_ago(40))

    agenda = pipeline_agenda(
        [later_huge, undated, later_mismatch, in_period, mismatch, past_due], None, AS_OF
    )

    ids = [item.review.deal_id for item in agenda.items]
    assert ids[:2] == sorted(ids[:2], key=lambda i: -agenda.items[ids.index(i)].exposure)
    assert set(ids[:2]) == {"past_due", "mismatch"}  # lead: past due and commit mismatches
    assert ids[2] == "in_period"  # a larger exposure, but neither past due nor a mismatch
    assert set(ids[3:]) == {"later_huge", "later_mismatch", "undated"}
    assert [i.leads for i in agenda.items] == [True, True, False, False, False, False]
    assert not any(item.in_period for item in agenda.items[3:])


def test_given_a_deal_whose_only_signal_is_an_unrecorded_element_then_it_is_no_exception() -> None:
    quiet = _review("unrecorded")
    gap = Signal(
        code="methodology_gap",
        severity="low",
        message="Paper process is not recorded in the CRM",
        evidence=(Evidence("Paper_Process__c", None),),
        element="paper_process",
        status="not_recorded",
    )
    only_unrecorded = replace(quiet, signals=(gap,))
    with_a_real_issue = replace(quiet, signals=(gap, *_review("x", close_date=day(-3)).signals))

    assert not is_exception(only_unrecorded, AS_OF.date())
    assert pipeline_agenda([only_unrecorded], None, AS_OF).items == ()
    assert is_exception(with_a_real_issue, AS_OF.date())
    # Not an issue in the integrity figures either.
    figures = pipeline_agenda([only_unrecorded], None, AS_OF).integrity
    assert (figures.open_deals, figures.stale, figures.next_step_missing) == (1, 0, 0)


def test_given_a_stored_review_from_before_the_close_date_passed_then_it_counts_as_past_due() -> (
    None
):
    earlier = review(make_deal(id="stale", close_date=day(5)), as_of=AS_OF - timedelta(days=20))
    assert "close_date_passed" not in {s.code for s in earlier.signals}

    agenda = pipeline_agenda([earlier], None, AS_OF + timedelta(days=10))

    assert [item.review.deal_id for item in agenda.items] == ["stale"]
    assert agenda.items[0].past_due and agenda.items[0].leads
    assert agenda.integrity.close_date_passed == 1


def test_given_several_owners_then_text_and_html_group_items_by_owner() -> None:
    agenda = pipeline_agenda(_pipeline().values(), None, AS_OF)

    groups = agenda.by_owner()
    assert [owner for owner, _ in groups] == ["005B", "005A"]  # by their top item
    assert sum(len(items) for _, items in groups) == len(agenda.items)
    text = render_agenda_text(agenda)
    lines = text.splitlines()
    mine = len(groups[1][1])
    assert lines.index("Owner 005B: 1 exception") < lines.index(f"Owner 005A: {mine} exceptions")
    assert "   closes 2025-05-06 (40 days past due) · no forecast category" in lines
    assert any(line.startswith("   Ask: ") for line in lines)
    assert any(line.startswith("   why: ") for line in lines)
    assert (
        "closes 2025-07-30 (after this period) · forecast Commit (stage does not support it)"
        in text
    )
    document = render_agenda_html(agenda)
    assert document.index("Owner 005B") < document.index("Owner 005A")
    assert document.count("<li>") == len(agenda.items)
    assert "<script" not in document


def test_given_hostile_names_then_the_agenda_html_is_escaped() -> None:
    hostile = _review("x", name="<script>alert(1)</script>", close_date=day(-3), owner="<b>o</b>")

    document = render_agenda_html(pipeline_agenda([hostile], None, AS_OF))

    assert "<script" not in document and "&lt;script&gt;" in document
    assert "<b>o</b>" not in document
