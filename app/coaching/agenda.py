"""The pipeline-review agenda: exceptions only, in the order a manager should take them.

Order: deals closing in the period come first (a past-due deal counts as closing
in it), led by the past-due ones and the commit mismatches (``forecast_mismatch``);
then the other in-period exceptions; then every exception closing after the period
(or without a close date). Within each group, by exposure = risk x amount
(risk = (100 - health) / 100), then risk. Each item carries its close date,
forecast category and top question with its why; text and HTML group the items
by owner.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

import nh3

from app.coaching.render import ALLOWED_TAGS, BAND_LABEL, clean_text
from app.coaching.results import DealReview, Prompt, Signal

Period = Literal["month", "quarter"]
_EARLY_PHASES = frozenset({"discover", "qualify"})
_STALE_CODES = frozenset({"no_recent_activity", "stalled_in_stage"})
#: Signals that put an open deal on the agenda whatever its health: the forecast
#: depends on them.
_ALWAYS_CODES = frozenset({"close_date_passed", "forecast_mismatch"})


def _iso(value: date | datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def issues(review: DealReview) -> list[Signal]:
    """The signals that say something is wrong: an element the organisation never
    records (``status`` ``not_recorded``) is a question to explore, not an issue."""
    return [signal for signal in review.signals if signal.status != "not_recorded"]


def is_past_due(review: DealReview, today: date) -> bool:
    """Open, with a close date before ``today`` (judged from the date, so a stored
    review from before the date passed still counts)."""
    return review.is_open and review.close_date is not None and review.close_date < today


@dataclass(frozen=True, slots=True)
class AgendaItem:
    review: DealReview
    risk: float
    exposure: float
    #: Closes by the end of the period (past-due deals included).
    in_period: bool = True
    past_due: bool = False
    forecast_mismatch: bool = False

    @property
    def leads(self) -> bool:
        """Past due, or a commit its stage does not support, closing in the period."""
        return self.in_period and (self.past_due or self.forecast_mismatch)

    @property
    def top_prompt(self) -> Prompt | None:
        return self.review.prompts[0] if self.review.prompts else None

    def sort_key(self) -> tuple[int, float, float, str]:
        group = 0 if self.leads else 1 if self.in_period else 2
        return (group, -self.exposure, -self.risk, self.review.deal_id)

    def to_dict(self) -> dict[str, Any]:
        review = self.review
        top = self.top_prompt
        return {
            "deal_id": review.deal_id,
            "deal_name": review.deal_name,
            "owner_id": review.owner_id,
            "amount": review.amount,
            "currency": review.currency,
            "close_date": _iso(review.close_date),
            "forecast_category": review.forecast_category,
            "stage": review.stage_label,
            "phase": review.phase,
            "health": {"score": review.health.score, "band": review.health.band},
            "risk": round(self.risk, 3),
            "exposure": round(self.exposure, 2),
            "in_period": self.in_period,
            "past_due": self.past_due,
            "forecast_mismatch": self.forecast_mismatch,
            "top_question": None if top is None else {"text": top.text, "why": top.why},
            "signals": [signal.key for signal in review.signals],
            "prompts": [p.to_dict() for p in review.prompts if p.shown_first],
            "summary": review.summary,
            "reviewed_at": _iso(review.as_of),
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
    period: Period = "quarter"

    def by_owner(self) -> list[tuple[str | None, list[AgendaItem]]]:
        """The items grouped by owner, in rank order within each; owners in the order
        of their highest-ranked item."""
        groups: dict[str | None, list[AgendaItem]] = {}
        for item in self.items:
            groups.setdefault(item.review.owner_id, []).append(item)
        return list(groups.items())

    def head_dict(self) -> dict[str, Any]:
        """Everything but the items (the API pages the items)."""
        return {
            "owner_id": self.owner_id,
            "as_of": _iso(self.as_of),
            "period": {"start": self.period_start.isoformat(), "end": self.period_end.isoformat()},
            "integrity": self.integrity.to_dict(),
            "exceptions": len(self.items),
            "owners": [
                {
                    "owner_id": owner,
                    "exceptions": len(items),
                    "exposure": round(sum(item.exposure for item in items), 2),
                }
                for owner, items in self.by_owner()
            ],
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.head_dict(), "items": [item.to_dict() for item in self.items]}


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


def is_exception(review: DealReview, today: date | None = None) -> bool:
    """A deal worth the meeting's time: open, and past due (with ``today``), or with an
    issue (:func:`issues`) while not healthy, or a high one, a close date in the past
    or a forecast category its stage does not support. A deal whose only signals are
    elements the organisation does not record is not one."""
    if not review.is_open:
        return False
    if today is not None and is_past_due(review, today):
        return True
    found = issues(review)
    if not found:
        return False
    return review.health.band != "healthy" or any(
        s.severity == "high" or s.code in _ALWAYS_CODES for s in found
    )


def pipeline_agenda(
    reviews: Iterable[DealReview],
    owner_id: str | None,
    as_of: datetime,
    period: Period = "quarter",
) -> Agenda:
    """Build the agenda from these reviews (``owner_id=None``: every owner).

    Reads ``reviews`` once and keeps only the exceptions, so a generator of any
    size will do. Integrity figures count every open deal of the owner.
    """
    today = as_of.astimezone(UTC).date()
    start, end = period_bounds(today, period)
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
        codes = {signal.code for signal in issues(review)}
        past_due = is_past_due(review, today)
        passed += past_due
        missing += "next_step_missing" in codes
        stale += bool(codes & _STALE_CODES)
        closes_in_period = review.close_date is not None and start <= review.close_date <= end
        early += closes_in_period and review.phase in _EARLY_PHASES
        if is_exception(review, today):
            risk = (100 - review.health.score) / 100
            items.append(
                AgendaItem(
                    review,
                    risk,
                    risk * (review.amount or 0.0),
                    in_period=review.close_date is not None and review.close_date <= end,
                    past_due=past_due,
                    forecast_mismatch="forecast_mismatch" in codes,
                )
            )
    items.sort(key=AgendaItem.sort_key)
    return Agenda(
        owner_id=owner_id,
        as_of=as_of,
        period_start=start,
        period_end=end,
        items=tuple(items),
        integrity=PipelineIntegrity(open_deals, open_amount, passed, missing, stale, early),
        period=period,
    )


# ----------------------------------------------------------------------------- rendering


def _amount(review: DealReview) -> str:
    if review.amount is None:
        return "no amount"
    currency = f" {clean_text(review.currency, 5)}" if review.currency else ""
    return f"{review.amount:,.0f}{currency}"


def _when(item: AgendaItem, today: date) -> str:
    review = item.review
    if review.close_date is None:
        return "no close date"
    closes = f"closes {review.close_date.isoformat()}"
    if item.past_due:
        return f"{closes} ({(today - review.close_date).days} days past due)"
    if not item.in_period:
        return f"{closes} (after this period)"
    return closes


def _forecast(review: DealReview, item: AgendaItem) -> str:
    if not review.forecast_category:
        return "no forecast category"
    return f"forecast {clean_text(review.forecast_category, 40)}" + (
        " (stage does not support it)" if item.forecast_mismatch else ""
    )


def _owner_label(owner: str | None) -> str:
    return f"Owner {clean_text(owner, 80)}" if owner else "No owner"


def _integrity_line(agenda: Agenda) -> str:
    figures = agenda.integrity
    return (
        f"{figures.open_deals} open deals worth {figures.open_amount:,.0f}; "
        f"{figures.close_date_passed} with a close date in the past, "
        f"{figures.next_step_missing} without a next step, {figures.stale} stale, "
        f"{figures.closing_this_period_early_stage} closing this {agenda.period} "
        "from an early stage"
    )


def _empty_line(agenda: Agenda) -> str | None:
    if not agenda.integrity.open_deals:
        return "No open deals for this owner." if agenda.owner_id else "No open deals."
    if not agenda.items:
        return "No exceptions: no open deal needs the meeting's time."
    return None


def render_agenda_text(agenda: Agenda) -> str:
    """The agenda as text, grouped by owner; items numbered within each owner."""
    today = agenda.as_of.astimezone(UTC).date()
    who = clean_text(agenda.owner_id, 80) if agenda.owner_id else "all owners"
    lines = [
        f"Pipeline review for {who}, {agenda.period_start} to {agenda.period_end}",
        f"  {_integrity_line(agenda)}",
    ]
    for owner, items in agenda.by_owner():
        plural = "s" if len(items) != 1 else ""
        lines.extend(["", f"{_owner_label(owner)}: {len(items)} exception{plural}"])
        for rank, item in enumerate(items, start=1):
            review = item.review
            lines.append(
                f"{rank}. {clean_text(review.deal_name, 120)} ({_amount(review)}, "
                f"{clean_text(review.stage_label, 60)}): "
                f"{BAND_LABEL[review.health.band]} {review.health.score}/100"
            )
            lines.append(f"   {_when(item, today)} · {_forecast(review, item)}")
            top = item.top_prompt
            if top is not None:
                lines.append(f"   Ask: {clean_text(top.text, 600)}")
                lines.append(f"   why: {clean_text(top.why)}")
    empty = _empty_line(agenda)
    if empty:
        lines.extend(["", empty])
    return "\n".join(lines)


def _h(value: object, limit: int = 300) -> str:
    return html.escape(clean_text(value, limit), quote=True)


def render_agenda_html(agenda: Agenda) -> str:
    """The agenda as sanitised HTML (the notes' tag allowlist), grouped by owner."""
    today = agenda.as_of.astimezone(UTC).date()
    who = agenda.owner_id or "all owners"
    parts = [
        f"<p><strong>Pipeline review for {_h(who, 80)}, {agenda.period_start} to "
        f"{agenda.period_end}</strong><br>{_h(_integrity_line(agenda))}</p>"
    ]
    for owner, items in agenda.by_owner():
        parts.append(f"<p><strong>{_h(_owner_label(owner))}</strong> ({len(items)})</p>")
        entries = []
        for item in items:
            review = item.review
            top = item.top_prompt
            question = (
                "" if top is None else f"<br>{_h(top.text, 600)}<br><em>Why: {_h(top.why)}</em>"
            )
            entries.append(
                f"<li><strong>{_h(review.deal_name, 120)}</strong> ({_h(_amount(review))}, "
                f"{_h(review.stage_label, 60)}): {BAND_LABEL[review.health.band]} "
                f"{review.health.score}/100<br>{_h(_when(item, today))} · "
                f"{_h(_forecast(review, item))}{question}</li>"
            )
        parts.append("<ol>" + "".join(entries) + "</ol>")
    empty = _empty_line(agenda)
    if empty:
        parts.append(f"<p>{empty}</p>")
    cleaned: str = nh3.clean("".join(parts), tags=set(ALLOWED_TAGS), attributes={}, link_rel=None)
    return cleaned
