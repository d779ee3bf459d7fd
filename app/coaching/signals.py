"""The signal rules: one function per code of the vocabulary (COACHING.md).

Every rule reads a :class:`DealSnapshot` and a :class:`ReviewContext` and
returns a signal with evidence, or ``None``. Rules apply to open deals only
(the engine never calls them for closed deals). Day counts are whole calendar
days between UTC dates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from app.coaching.playbook import CompiledPlaybook, Thresholds, normalise_role
from app.coaching.results import SEVERITIES, Evidence, Severity, Signal
from app.coaching.snapshot import DealSnapshot, Stage

_LEVEL = {"low": 0, "medium": 1, "high": 2}
_LATE_PHASES = frozenset({"propose", "negotiate", "commit"})
_EARLY_PHASES = frozenset({"discover", "qualify"})


@dataclass(slots=True)
class ReviewContext:
    """What every rule needs besides the deal: the playbook, the time, the phase."""

    playbook: CompiledPlaybook
    thresholds: Thresholds
    as_of: datetime
    today: date
    phase: str
    stage_entered_at: datetime
    #: The deal's contact roles, normalised, each with "Role (contact)" for evidence.
    roles: Mapping[str, str]
    #: The deal's free text (next_step, description, name), lowercased once.
    lowered: Mapping[str, str]
    #: Levels every signal of this deal moves (see :func:`severity_shift`).
    severity_shift: int


def deal_roles(deal: DealSnapshot) -> dict[str, str]:
    """Normalised role -> "Role (contact)", the first contact holding it."""
    roles: dict[str, str] = {}
    for contact in deal.contacts:
        for role in contact.roles:
            roles.setdefault(normalise_role(role), f"{role} ({contact.name or contact.id})")
    return roles


def deal_texts(deal: DealSnapshot) -> dict[str, str]:
    """The free-text fields that keyword sources search, lowercased."""
    return {
        "next_step": (deal.next_step or "").lower(),
        "description": (deal.description or "").lower(),
        "name": deal.name.lower(),
    }


def _days(earlier: date | datetime, today: date) -> int:
    """Whole calendar days from ``earlier`` to ``today`` (UTC dates)."""
    day = earlier.date() if isinstance(earlier, datetime) else earlier
    return (today - day).days


def _money(amount: float | None) -> str:
    if amount is None:
        return "none"
    return f"{amount:,.0f}"


def severity_shift(amount: float | None, phase: str, thresholds: Thresholds) -> int:
    """How many levels a deal's signals move: size and lateness scale severity.

    A large deal (``large_deal_amount`` or more) in a late phase goes up one
    level; a small or unpriced deal (below ``small_deal_amount``) in an early
    phase goes down one level; otherwise none.
    """
    value = amount or 0.0
    if value >= thresholds.large_deal_amount and phase in _LATE_PHASES:
        return 1
    if value < thresholds.small_deal_amount and phase in _EARLY_PHASES:
        return -1
    return 0


def scale_severity(base: Severity, context: ReviewContext) -> Severity:
    """A rule's base severity moved by the deal's :func:`severity_shift`."""
    index = _LEVEL[base] + context.severity_shift
    return SEVERITIES[0 if index < 0 else (2 if index > 2 else index)]


def _signal(
    code: str,
    base: Severity,
    deal: DealSnapshot,
    context: ReviewContext,
    message: str,
    evidence: tuple[Evidence, ...],
    facts: dict[str, str | int | float],
) -> Signal:
    facts["stage"] = deal.stage.label
    facts["deal"] = deal.name
    return Signal(code, scale_severity(base, context), message, evidence, facts)


# ---------------------------------------------------------------- the rules


def close_date_passed(deal: DealSnapshot, c: ReviewContext) -> Signal | None:
    if deal.close_date is None or deal.close_date >= c.today:
        return None
    days = (c.today - deal.close_date).days
    base: Severity = "high" if days > c.thresholds.close_date_passed_high_days else "medium"
    return _signal(
        "close_date_passed",
        base,
        deal,
        c,
        f"Close date {deal.close_date.isoformat()} passed {days} days ago",
        (Evidence("close_date", deal.close_date.isoformat(), deal.close_date),),
        {"days": days, "close_date": deal.close_date.isoformat()},
    )


def close_date_pushed(deal: DealSnapshot, c: ReviewContext) -> Signal | None:
    pushes = [
        change
        for change in deal.close_date_history
        if change.old is not None and change.new is not None and change.new > change.old
    ]
    count = len(pushes)
    if count < c.thresholds.push_count:
        return None
    base: Severity = "high" if count >= c.thresholds.push_count_high else "medium"
    evidence = tuple(
        Evidence(
            "close_date",
            change.new.isoformat() if change.new else None,
            change.at,
            f"moved from {change.old} to {change.new}",
        )
        for change in pushes
    )
    current = deal.close_date.isoformat() if deal.close_date else "none"
    return _signal(
        "close_date_pushed",
        base,
        deal,
        c,
        f"Close date moved later {count} times (now {current})",
        evidence,
        {"count": count, "close_date": current},
    )


def stalled_in_stage(deal: DealSnapshot, c: ReviewContext) -> Signal | None:
    t = c.thresholds
    limit = t.stalled_days_by_stage.get(deal.stage.key)
    if limit is None:
        limit = t.stalled_days_by_phase.get(c.phase, t.stalled_days)  # type: ignore[call-overload]
    days = _days(c.stage_entered_at, c.today)
    if days <= limit:
        return None
    base: Severity = "high" if days > limit * t.stalled_high_factor else "medium"
    return _signal(
        "stalled_in_stage",
        base,
        deal,
        c,
        f"{days} days in {deal.stage.label} (limit {limit})",
        (
            Evidence(
                "stage",
                deal.stage.label,
                c.stage_entered_at,
                f"in this stage since {c.stage_entered_at.date().isoformat()}",
            ),
        ),
        {"days": days, "limit": limit},
    )


def no_recent_activity(deal: DealSnapshot, c: ReviewContext) -> Signal | None:
    t = c.thresholds
    if deal.last_activity_at is None:
        age = _days(deal.created_at, c.today)
        if age <= t.no_activity_days:
            return None
        return _signal(
            "no_recent_activity",
            "high" if age > t.no_activity_high_days else "medium",
            deal,
            c,
            f"No activity logged on a deal {age} days old",
            (Evidence("last_activity_at", None, None, f"deal created {deal.created_at.date()}"),),
            {"days": age},
        )
    days = _days(deal.last_activity_at, c.today)
    if days <= t.no_activity_days:
        return None
    return _signal(
        "no_recent_activity",
        "high" if days > t.no_activity_high_days else "medium",
        deal,
        c,
        f"Last activity {days} days ago",
        (
            Evidence(
                "last_activity_at", deal.last_activity_at.date().isoformat(), deal.last_activity_at
            ),
        ),
        {"days": days},
    )


def next_step_missing(deal: DealSnapshot, c: ReviewContext) -> Signal | None:
    if deal.next_step is not None and deal.next_step.strip():
        return None
    if deal.has_future_activity:
        return None
    if deal.next_activity_at is not None and deal.next_activity_at >= c.as_of:
        return None
    return _signal(
        "next_step_missing",
        "low",
        deal,
        c,
        "No next step and no activity scheduled",
        (
            Evidence("next_step", None),
            Evidence(
                "next_activity_at",
                deal.next_activity_at.isoformat() if deal.next_activity_at else None,
                deal.next_activity_at,
            ),
        ),
        {},
    )


def single_threaded(deal: DealSnapshot, c: ReviewContext) -> Signal | None:
    t = c.thresholds
    if not deal.contacts_known:
        return None
    if deal.amount is None or deal.amount < t.single_threaded_amount:
        return None
    contacts = deal.number_of_contacts
    if contacts > t.single_threaded_max_contacts:
        return None
    return _signal(
        "single_threaded",
        "medium",
        deal,
        c,
        f"{'No contacts' if contacts == 0 else 'Only one contact'} on a {_money(deal.amount)} deal",
        (
            Evidence("contacts", str(contacts)),
            Evidence("amount", _money(deal.amount)),
        ),
        {"contacts": contacts},
    )


def no_economic_buyer(deal: DealSnapshot, c: ReviewContext) -> Signal | None:
    t = c.thresholds
    probability = deal.stage.probability
    if probability < t.economic_buyer_probability or not deal.contacts_known:
        return None
    if not c.playbook.economic_buyer_roles.isdisjoint(c.roles):
        return None
    percent = round(probability * 100)
    return _signal(
        "no_economic_buyer",
        "high" if probability >= t.economic_buyer_high_probability else "medium",
        deal,
        c,
        f"No economic buyer or decision maker among the contacts at {percent}% stage probability",
        (
            Evidence(
                "contacts.roles",
                ", ".join(sorted({r for contact in deal.contacts for r in contact.roles})) or None,
            ),
            Evidence("stage", deal.stage.label, None, f"probability {percent}%"),
        ),
        {"probability": percent},
    )


def amount_decreased(deal: DealSnapshot, c: ReviewContext) -> Signal | None:
    if deal.amount is None or not deal.amount_history:
        return None
    peak = deal.amount
    peak_at: datetime | None = None
    for change in deal.amount_history:
        for value in (change.old, change.new):
            if value is not None and value > peak:
                peak = value
                peak_at = change.at
    if peak <= 0:
        return None
    # Capped: a negative amount far below a huge peak would overflow to infinity.
    drop = min((peak - deal.amount) / peak, 1000.0)
    t = c.thresholds
    if drop < t.amount_decrease_ratio:
        return None
    drop_pct = round(drop * 100)
    return _signal(
        "amount_decreased",
        "high" if drop >= t.amount_decrease_high_ratio else "medium",
        deal,
        c,
        f"Amount {_money(deal.amount)} is {drop_pct}% below its peak of {_money(peak)}",
        (
            Evidence("amount", _money(peak), peak_at, "highest recorded amount"),
            Evidence("amount", _money(deal.amount), None, "current amount"),
        ),
        {"drop_pct": drop_pct},
    )


def stage_regressed(deal: DealSnapshot, c: ReviewContext) -> Signal | None:
    window = c.thresholds.stage_regression_days
    for change in reversed(deal.stage_history):
        days = _days(change.at, c.today)
        if days > window:
            return None
        if days < 0:  # recorded after as_of: not yet happened at review time
            continue
        old: Stage | None = change.old
        new: Stage | None = change.new
        if old is None or new is None or old.order is None or new.order is None:
            continue
        if new.order < old.order:
            return _signal(
                "stage_regressed",
                "medium",
                deal,
                c,
                f"Moved back from {old.label} to {new.label} {days} days ago",
                (Evidence("stage", new.label, change.at, f"moved back from {old.label}"),),
                {"from_stage": old.label, "days": days},
            )
    return None


def close_date_unrealistic(deal: DealSnapshot, c: ReviewContext) -> Signal | None:
    if deal.close_date is None:
        return None
    t = c.thresholds
    days = (deal.close_date - c.today).days
    if not 0 <= days <= t.close_soon_days:
        return None
    if deal.stage.probability > t.close_soon_max_probability:
        return None
    percent = round(deal.stage.probability * 100)
    return _signal(
        "close_date_unrealistic",
        "medium",
        deal,
        c,
        f"Closes in {days} days from {deal.stage.label} ({percent}% probability)",
        (
            Evidence("close_date", deal.close_date.isoformat(), deal.close_date),
            Evidence("stage", deal.stage.label, None, f"probability {percent}%"),
        ),
        {"days": days, "probability": percent},
    )


def forecast_mismatch(deal: DealSnapshot, c: ReviewContext) -> Signal | None:
    category = deal.forecast_category
    if not category or category.lower() not in c.playbook.commit_categories:
        return None
    if deal.stage.probability >= c.thresholds.forecast_min_probability:
        return None
    percent = round(deal.stage.probability * 100)
    return _signal(
        "forecast_mismatch",
        "high",
        deal,
        c,
        f"Forecast {category} at {percent}% stage probability",
        (
            Evidence("forecast_category", category),
            Evidence("stage", deal.stage.label, None, f"probability {percent}%"),
        ),
        {"category": category, "probability": percent},
    )


def owner_changed(deal: DealSnapshot, c: ReviewContext) -> Signal | None:
    if not deal.owner_history:
        return None
    change = deal.owner_history[-1]
    days = _days(change.at, c.today)
    if days > c.thresholds.owner_change_days or days < 0:
        return None
    return _signal(
        "owner_changed",
        "low",
        deal,
        c,
        f"Owner changed {days} days ago",
        (Evidence("owner_id", change.new, change.at, f"from {change.old}"),),
        {"days": days},
    )


def deal_aging(deal: DealSnapshot, c: ReviewContext) -> Signal | None:
    t = c.thresholds
    days = _days(deal.created_at, c.today)
    if days <= t.deal_age_days:
        return None
    return _signal(
        "deal_aging",
        "medium" if days > t.deal_age_high_days else "low",
        deal,
        c,
        f"Open for {days} days",
        (Evidence("created_at", deal.created_at.date().isoformat(), deal.created_at),),
        {"days": days},
    )


Rule = Callable[[DealSnapshot, ReviewContext], Signal | None]

#: The rules in vocabulary order; ``methodology_gap`` lives in methodology.py.
RULES: tuple[tuple[str, Rule], ...] = (
    ("close_date_passed", close_date_passed),
    ("close_date_pushed", close_date_pushed),
    ("stalled_in_stage", stalled_in_stage),
    ("no_recent_activity", no_recent_activity),
    ("next_step_missing", next_step_missing),
    ("single_threaded", single_threaded),
    ("no_economic_buyer", no_economic_buyer),
    ("amount_decreased", amount_decreased),
    ("stage_regressed", stage_regressed),
    ("close_date_unrealistic", close_date_unrealistic),
    ("forecast_mismatch", forecast_mismatch),
    ("owner_changed", owner_changed),
    ("deal_aging", deal_aging),
)

__all__ = ["RULES", "ReviewContext", "scale_severity"]
