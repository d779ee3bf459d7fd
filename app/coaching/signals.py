"""The signal rules: one function per code of the vocabulary (COACHING.md).

Every rule reads a :class:`DealSnapshot` and a :class:`ReviewContext` and
returns a signal with evidence, or ``None``. Rules apply to open deals only
(the engine never calls them for closed deals). Day counts are whole calendar
days between UTC dates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from app.coaching.playbook import CompiledPlaybook, Thresholds, normalise_role
from app.coaching.results import SEVERITIES, Evidence, Severity, Signal
from app.coaching.snapshot import Change, DealSnapshot, Stage

_LEVEL = {"low": 0, "medium": 1, "high": 2}
_LATE_PHASES = frozenset({"propose", "negotiate", "commit"})
_EARLY_PHASES = frozenset({"discover", "qualify"})
_CLOSING_PHASES = frozenset({"negotiate", "commit"})


@dataclass(slots=True)
class ReviewContext:
    """What every rule needs besides the deal: the playbook, the time, the phase."""

    playbook: CompiledPlaybook
    thresholds: Thresholds
    as_of: datetime
    today: date
    phase: str
    #: When the deal entered its current stage (None: unknown), whether that is
    #: exact or a lower bound ("at least"), and the field it was read from.
    stage_entered_at: datetime | None
    stage_entered_exact: bool
    stage_entered_field: str
    #: The deal's contact roles, normalised, each with "Role (contact)" for evidence.
    roles: Mapping[str, str]
    #: The deal's free text (next_step, description, name), lowercased once.
    lowered: Mapping[str, str]
    #: Levels every signal of this deal moves (see :func:`severity_shift`).
    severity_shift: int
    #: The deal is a renewal (its type, name or stage says so).
    renewal: bool = False


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


_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def spoken_date(value: date | datetime, today: date) -> str:
    """ "31 January" (the year added when it is not ``today``'s)."""
    day = value.date() if isinstance(value, datetime) else value
    text = f"{day.day} {_MONTHS[day.month - 1]}"
    return text if day.year == today.year else f"{text} {day.year}"


def quote_text(text: str, limit: int = 80) -> str:
    """Free text as a question quotes it: one line, at most ``limit`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3].rstrip() + "..."


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


def roles_present(deal: DealSnapshot) -> str:
    """The contacts holding a role, as a question names them: "Ann Lee (Champion), ..."
    (the role alone when the CRM gives no name)."""
    named = []
    for contact in deal.contacts:
        if not contact.roles:
            continue
        roles = quote_text(", ".join(contact.roles), 40)
        named.append(f"{quote_text(contact.name, 40)} ({roles})" if contact.name else roles)
        if len(named) == 3:
            break
    return ", ".join(named)


def _pushes(deal: DealSnapshot) -> list[Change[date]]:
    return [
        change
        for change in deal.close_date_history
        if change.old is not None and change.new is not None and change.new > change.old
    ]


def _quiet(deal: DealSnapshot, c: ReviewContext) -> bool:
    """No activity within the playbook's window (the no_recent_activity reading)."""
    last = deal.last_activity_at
    since = deal.created_at if last is None else last
    return _days(since, c.today) > c.thresholds.no_activity_days


# ---------------------------------------------------------------- the rules


def close_date_passed(deal: DealSnapshot, c: ReviewContext) -> Signal | None:
    if deal.close_date is None or deal.close_date >= c.today:
        return None
    days = (c.today - deal.close_date).days
    base: Severity = "high" if days > c.thresholds.close_date_passed_high_days else "medium"
    late = c.phase in _LATE_PHASES
    return _signal(
        "close_date_passed",
        base,
        deal,
        c,
        f"Close date {deal.close_date.isoformat()} passed {days} days ago",
        (Evidence("close_date", deal.close_date.isoformat(), deal.close_date),),
        {
            "days": days,
            "close_date": deal.close_date.isoformat(),
            "push_count": len(_pushes(deal)),
            "late": 1 if late else 0,
            "quiet": 1 if _quiet(deal, c) else 0,
        },
    )


def close_date_pushed(deal: DealSnapshot, c: ReviewContext) -> Signal | None:
    pushes = _pushes(deal)
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
    moves = ", ".join(
        f"{spoken_date(ch.old, c.today)} to {spoken_date(ch.new, c.today)} on "
        f"{spoken_date(ch.at, c.today)}"
        for ch in pushes[-3:]
        if ch.old is not None and ch.new is not None
    )
    if count > 3:
        moves = f"latest: {moves}"
    first = pushes[0].old
    return _signal(
        "close_date_pushed",
        base,
        deal,
        c,
        f"Close date moved later {count} times (now {current})",
        evidence,
        {
            "count": count,
            "close_date": current,
            "moves": moves,
            "first_close_on": spoken_date(first, c.today) if first is not None else "",
        },
    )


def stalled_in_stage(deal: DealSnapshot, c: ReviewContext) -> Signal | None:
    entered = c.stage_entered_at
    if entered is None:
        return None  # the CRM does not say when this stage began: no clock, no claim
    t = c.thresholds
    limit = t.stalled_days_by_stage.get(deal.stage.key)
    if limit is None:
        limit = t.stalled_days_by_phase.get(c.phase, t.stalled_days)  # type: ignore[call-overload]
    days = _days(entered, c.today)
    if days <= limit:
        return None
    base: Severity = "high" if days > limit * t.stalled_high_factor else "medium"
    since = entered.date().isoformat()
    if c.stage_entered_exact:
        message = f"{days} days in {deal.stage.label} (limit {limit})"
        detail = f"in this stage since {since}"
        stage_days = f"{days} days"
    else:
        message = (
            f"At least {days} days in {deal.stage.label} (limit {limit}): "
            f"the stage history starts on {since} with the deal already in it"
        )
        detail = f"already in this stage when the history starts on {since}"
        stage_days = f"at least {days} days"
    return _signal(
        "stalled_in_stage",
        base,
        deal,
        c,
        message,
        (Evidence(c.stage_entered_field, deal.stage.label, entered, detail),),
        {
            "days": days,
            "limit": limit,
            "stage_days": stage_days,
            "since": spoken_date(entered, c.today),
            "at_least": 0 if c.stage_entered_exact else 1,
        },
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
            {"days": age, "last_on": "", "never": 1},
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
        {"days": days, "last_on": spoken_date(deal.last_activity_at, c.today), "never": 0},
    )


def next_step_missing(deal: DealSnapshot, c: ReviewContext) -> Signal | None:
    if deal.next_step is not None and deal.next_step.strip():
        return None
    if deal.has_future_activity:
        return None
    if deal.next_activity_at is not None and deal.next_activity_at >= c.as_of:
        return None
    ahead = (deal.close_date - c.today).days if deal.close_date is not None else 0
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
        {"closes_ahead": ahead if ahead > 0 else 0},
    )


#: A next step that names no outcome: the whole text is a generic follow-up.
_VAGUE_NEXT_STEP = re.compile(
    r"(?:follow[- ]?ups?|follow up|check[- ]?in|touch base|catch[- ]?up|chase|chasing|ping|"
    r"call|meeting|email|send (?:an )?(?:email|info|information)|waiting|wait|tbd|tbc|"
    r"next steps?|update)"
    r"(?: (?:call|meeting|email|with (?:them|the customer|client)))?"
    r"(?: (?:booked|scheduled|sent|planned|tbd|tbc|next week|soon))?"
)
_PUNCTUATION = re.compile(r"[^\w\s-]")
#: Price talk once the deal is in negotiation or commit: a contradiction to discuss.
_PRICING = re.compile(r"\b(?:pric|discount|renegotiat|re-negotiat|re-quote|requote)")


def next_step_vague(deal: DealSnapshot, c: ReviewContext) -> Signal | None:
    """A next step that is a generic follow-up, or a pricing talk in a closing phase."""
    text = (deal.next_step or "").strip()
    closing = c.phase in _CLOSING_PHASES
    if not text or (len(text) > 60 and not closing):
        return None  # a generic follow-up is short; only price talk matters when long
    plain = " ".join(_PUNCTUATION.sub(" ", text.lower()).split())
    pricing = closing and _PRICING.search(plain) is not None
    if not pricing and not _VAGUE_NEXT_STEP.fullmatch(plain):
        return None
    quoted = quote_text(text)
    message = (
        f"Next step '{quoted}' talks price in {deal.stage.label}"
        if pricing
        else f"Next step '{quoted}' does not say what the customer will do"
    )
    return _signal(
        "next_step_vague",
        "low",
        deal,
        c,
        message,
        (Evidence("next_step", quoted),),
        {"next_step": quoted, "pricing": 1 if pricing else 0},
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
    who = ""
    if deal.contacts:
        first = deal.contacts[0]
        role = quote_text(first.roles[0], 40) if first.roles else ""
        if first.name:
            who = f"{quote_text(first.name, 60)} ({role})" if role else quote_text(first.name, 60)
        elif role:
            who = f"their {role}"
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
        {"contacts": contacts, "contact": who, "none": 1 if contacts == 0 else 0},
    )


def no_economic_buyer(deal: DealSnapshot, c: ReviewContext) -> Signal | None:
    t = c.thresholds
    probability = deal.stage.probability
    if probability < t.economic_buyer_probability or not deal.contacts_known:
        return None
    if not c.playbook.economic_buyer_roles.isdisjoint(c.roles):
        return None
    percent = round(probability * 100)
    stage_evidence = Evidence("stage", deal.stage.label, None, f"probability {percent}%")
    if not deal.roles_recorded:
        count = deal.number_of_contacts
        signal = _signal(
            "no_economic_buyer",
            "low",
            deal,
            c,
            f"Economic buyer unknown: the {count} contacts on the deal carry no role or label",
            (
                Evidence("contacts.roles", None, None, f"{count} contacts, none with a role"),
                stage_evidence,
            ),
            {"probability": percent, "roles_present": "", "unknown": 1},
        )
        signal.severity = "low"
        signal.status = "not_recorded"
        return signal
    present = roles_present(deal)
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
            stage_evidence,
        ),
        {"probability": percent, "roles_present": present, "unknown": 0},
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
    # The cut: the latest decrease (the amount may have fallen in steps).
    cut = next(
        (
            ch
            for ch in reversed(deal.amount_history)
            if ch.old is not None and ch.new is not None and ch.new < ch.old
        ),
        None,
    )
    facts: dict[str, str | int | float] = {
        "drop_pct": drop_pct,
        "peak": _money(peak),
        "now": _money(deal.amount),
        "fall": f"from {_money(peak)} to {_money(deal.amount)}",
        "cut_on": "",
        "days_after": "",
        "after_stage": "",
        "late": 0,
        "pricing_step": "",
    }
    evidence = [
        Evidence("amount", _money(peak), peak_at, "highest recorded amount"),
        Evidence("amount", _money(deal.amount), None, "current amount"),
    ]
    entered = c.stage_entered_at
    if cut is not None:
        facts["cut_on"] = spoken_date(cut.at, c.today)
        if cut.old != peak or cut.new != deal.amount:
            # It fell in steps: the date is the last step's, so say which step it was.
            facts["fall"] = (
                f"from {_money(cut.old)} to {_money(cut.new)} ({_money(peak)} at its peak)"
            )
        evidence.append(Evidence("amount", _money(cut.new), cut.at, f"cut from {_money(cut.old)}"))
        if entered is not None and c.stage_entered_exact and cut.at >= entered:
            after = _days(entered, cut.at.date())
            facts["days_after"] = (
                "the same day" if after == 0 else ("1 day" if after == 1 else f"{after} days")
            )
            facts["after_stage"] = deal.stage.label
            facts["late"] = 1 if c.phase in _CLOSING_PHASES else 0
            evidence.append(
                Evidence(c.stage_entered_field, deal.stage.label, entered, "stage entered")
            )
    if facts["late"] and deal.next_step and _PRICING.search(deal.next_step.lower()):
        facts["pricing_step"] = quote_text(deal.next_step)
    return _signal(
        "amount_decreased",
        "high" if drop >= t.amount_decrease_high_ratio else "medium",
        deal,
        c,
        f"Amount {_money(deal.amount)} is {drop_pct}% below its peak of {_money(peak)}",
        tuple(evidence),
        facts,
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
                {
                    "from_stage": old.label,
                    "days": days,
                    "moved_on": spoken_date(change.at, c.today),
                },
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
    ahead = (deal.close_date - c.today).days if deal.close_date is not None else -1
    evidence = [
        Evidence("forecast_category", quote_text(category, 40)),
        Evidence("stage", deal.stage.label, None, f"probability {percent}%"),
    ]
    if deal.close_date is not None:
        evidence.append(Evidence("close_date", deal.close_date.isoformat(), deal.close_date))
    return _signal(
        "forecast_mismatch",
        "high",
        deal,
        c,
        f"Forecast {quote_text(category, 40)} at {percent}% stage probability",
        tuple(evidence),
        {
            "category": quote_text(category, 40),
            "probability": percent,
            "closes_soon": ahead if 0 <= ahead <= c.thresholds.close_soon_days + 15 else 0,
        },
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
        {"days": days, "changed_on": spoken_date(change.at, c.today)},
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
        {"days": days, "created_on": spoken_date(deal.created_at, c.today)},
    )


Rule = Callable[[DealSnapshot, ReviewContext], Signal | None]

#: The rules in vocabulary order; ``methodology_gap`` lives in methodology.py.
RULES: tuple[tuple[str, Rule], ...] = (
    ("close_date_passed", close_date_passed),
    ("close_date_pushed", close_date_pushed),
    ("stalled_in_stage", stalled_in_stage),
    ("no_recent_activity", no_recent_activity),
    ("next_step_missing", next_step_missing),
    ("next_step_vague", next_step_vague),
    ("single_threaded", single_threaded),
    ("no_economic_buyer", no_economic_buyer),
    ("amount_decreased", amount_decreased),
    ("stage_regressed", stage_regressed),
    ("close_date_unrealistic", close_date_unrealistic),
    ("forecast_mismatch", forecast_mismatch),
    ("owner_changed", owner_changed),
    ("deal_aging", deal_aging),
)

__all__ = [
    "RULES",
    "ReviewContext",
    "quote_text",
    "roles_present",
    "scale_severity",
    "spoken_date",
]
