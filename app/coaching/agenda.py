"""The pipeline-review agenda for one owner: exceptions only, ranked by risk x value."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from app.coaching.results import DealReview

Period = Literal["month", "quarter"]
_EARLY_PHASES = frozenset({"discover", "qualify"})
_STALE_CODES = frozenset({"no_recent_activity", "stalled_in_stage"})


@dataclass(frozen=True, slots=True)
class AgendaItem:
    review: DealReview
    risk: float
    exposure: float

    def to_dict(self) -> dict[str, Any]:
        review = self.review
        return {
            "deal_id": review.deal_id,
            "deal_name": review.deal_name,
            "amount": review.amount,
            "stage": review.stage_label,
            "health": {"score": review.health.score, "band": review.health.band},
            "risk": round(self.risk, 3),
            "exposure": round(self.exposure, 2),
            "signals": [signal.key for signal in review.signals],
            "prompts": [p.to_dict() for p in review.prompts if p.shown_first],
            "summary": review.summary,
        }


@dataclass(frozen=True, slots=True)
class PipelineIntegrity:
    """Figures about the data itself, for the start of a pipeline review."""

    open_deals: int
    open_amount: float
    close_date_passed: int
    next_step_missing: int
    stale: int
    closing_this_period_early_stage: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "open_deals": self.open_deals,
            "open_amount": self.open_amount,
            "close_date_passed": self.close_date_passed,
            "next_step_missing": self.next_step_missing,
            "stale": self.stale,
            "closing_this_period_early_stage": self.closing_this_period_early_stage,
        }


@dataclass(frozen=True, slots=True)
class Agenda:
    owner_id: str | None
    as_of: datetime
    period_start: date
    period_end: date
    items: tuple[AgendaItem, ...]
    integrity: PipelineIntegrity

    def to_dict(self) -> dict[str, Any]:
        return {
            "owner_id": self.owner_id,
            "as_of": self.as_of.isoformat().replace("+00:00", "Z"),
            "period": {"start": self.period_start.isoformat(), "end": self.period_end.isoformat()},
            "integrity": self.integrity.to_dict(),
            "items": [item.to_dict() for item in self.items],
        }


def period_bounds(today: date, period: Period) -> tuple[date, date]:
    """First and last day of the month or calendar quarter that holds ``today``."""
    if period == "month":
        start = today.replace(day=1)
    else:
        start = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    months = 1 if period == "month" else 3
    year, month = divmod(start.month - 1 + months, 12)
    if start.year + year > date.max.year:  # the calendar's last period ends with it
        return start, date.max
    end = date(start.year + year, month + 1, 1).toordinal() - 1
    return start, date.fromordinal(end)


#: Signals that put an open deal on the agenda whatever its health: the forecast
#: depends on them.
_ALWAYS_CODES = frozenset({"close_date_passed", "forecast_mismatch"})


def is_exception(review: DealReview) -> bool:
    """A deal worth the meeting's time: open, and not healthy, or with a high signal,
    a close date in the past or a forecast category its stage does not support."""
    if not review.is_open:
        return False
    return review.health.band != "healthy" or any(
        s.severity == "high" or s.code in _ALWAYS_CODES for s in review.signals
    )


def pipeline_agenda(
    reviews: Iterable[DealReview],
    owner_id: str | None,
    as_of: datetime,
    period: Period = "quarter",
) -> Agenda:
    """Build the agenda from this owner's reviews (``owner_id=None``: every owner).

    Items rank by exposure = risk x amount (risk = (100 - health) / 100); deals
    without an amount follow, by risk. Integrity figures count every open deal.
    """
    start, end = period_bounds(as_of.astimezone(UTC).date(), period)
    items = []
    open_deals = 0
    open_amount = 0.0
    passed = missing = stale = early = 0
    for review in reviews:
        if owner_id is not None and review.owner_id != owner_id:
            continue
        if not review.is_open:
            continue
        open_deals += 1
        open_amount += review.amount or 0.0
        codes = {signal.code for signal in review.signals}
        passed += "close_date_passed" in codes
        missing += "next_step_missing" in codes
        stale += bool(codes & _STALE_CODES)
        closes_in_period = review.close_date is not None and start <= review.close_date <= end
        early += closes_in_period and review.phase in _EARLY_PHASES
        if is_exception(review):
            risk = (100 - review.health.score) / 100
            items.append(AgendaItem(review, risk, risk * (review.amount or 0.0)))
    items.sort(key=lambda item: (-item.exposure, -item.risk, item.review.deal_id))
    return Agenda(
        owner_id=owner_id,
        as_of=as_of,
        period_start=start,
        period_end=end,
        items=tuple(items),
        integrity=PipelineIntegrity(open_deals, open_amount, passed, missing, stale, early),
    )
