"""The coaching engine: a neutral deal snapshot + a playbook + ``as_of`` -> a review.

Pure: no database, network, clock or randomness. The same input and ``as_of``
always give the same review.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from app.coaching.methodology import methodology
from app.coaching.playbook import CompiledPlaybook
from app.coaching.prompts import build_prompts, evidence_key
from app.coaching.results import Band, DealReview, Health, Signal
from app.coaching.signals import (
    RULES,
    ReviewContext,
    deal_roles,
    deal_texts,
    severity_shift,
)
from app.coaching.snapshot import DealSnapshot, Stage, is_own_field

_BAND_LABEL = {"healthy": "Healthy", "at_risk": "At risk", "critical": "Critical"}
_SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}


def phase_for(stage: Stage, playbook: CompiledPlaybook) -> str:
    """The phase of a stage: the playbook's explicit mapping, else the probability rule.

    Default rule: closed stages are ``closed``; otherwise <=10% discover,
    <=20% qualify, <=50% solution, <=75% propose, <90% negotiate, else commit.
    """
    if stage.is_closed:
        return "closed"
    explicit = playbook.stage_phases.get(stage.key)
    if explicit is not None:
        return explicit
    p = stage.probability
    if p <= 0.10:
        return "discover"
    if p <= 0.20:
        return "qualify"
    if p <= 0.50:
        return "solution"
    if p <= 0.75:
        return "propose"
    if p < 0.90:
        return "negotiate"
    return "commit"


#: History that starts this close to the deal's creation shows the deal's first stage.
_CREATION_WINDOW = timedelta(hours=1)


def stage_clock(deal: DealSnapshot) -> tuple[datetime | None, bool, str]:
    """When the deal entered its current stage: (moment, exact, the field it comes from).

    In order: the CRM's own stage-entry field (Salesforce ``LastStageChangeDate``,
    HubSpot ``hs_v2_date_entered_*``); the start of the latest run in the current
    stage in the stage history (amount- or date-only history rows are not stage
    changes, so they never restart it); the creation date, only when the history
    starts at creation with no stage change, i.e. the deal was created in this
    stage. When the history starts later, already in the current stage, its first
    row is a lower bound (``exact`` False: "at least N days"). With no history at
    all the moment is ``None``: unknown, and no stage-clock claim is made.
    """
    if deal.stage_entered_at is not None:
        return deal.stage_entered_at, True, deal.stage_entered_field or "stage_entered_at"
    key = deal.stage.key
    history = deal.stage_history
    for change in reversed(history):
        if change.new is not None and change.new.key == key:
            return change.at, True, "stage"
    start = deal.stage_history_from
    if history:
        # No recorded entry into the current stage: it began after the latest change.
        return history[-1].at, False, "stage"
    if start is None:
        return None, False, "stage"
    if start - deal.created_at <= _CREATION_WINDOW:
        return deal.created_at, True, "stage"
    return start, False, "stage"


def stage_entered_at(deal: DealSnapshot) -> datetime | None:
    """When the deal entered its current stage (see :func:`stage_clock`), or ``None``."""
    return stage_clock(deal)[0]


def is_renewal(deal: DealSnapshot, playbook: CompiledPlaybook) -> bool:
    """A renewal by its type (``Renewal``, ``existingbusiness``), or by a keyword in its
    name or stage label."""
    if deal.deal_type and deal.deal_type.strip().lower() in playbook.renewal_types:
        return True
    pattern = playbook.renewal_pattern
    if pattern is None:
        return False
    return bool(pattern.search(deal.name.lower()) or pattern.search(deal.stage.label.lower()))


def health_of(
    signals: Iterable[Signal], playbook: CompiledPlaybook, phase: str | None = None
) -> Health:
    """A 0-100 score (100 minus a penalty per signal), and a band read from the risks.

    Score:

    * each signal costs its severity's penalty (high 25, medium 12, low 5);
    * a ``not_recorded`` signal (an element, or roles, the organisation does not
      record) costs nothing: what the CRM has no place for is not a risk of the deal;
    * signals whose questions share a ``topic`` (``no_economic_buyer`` and
      ``methodology_gap[economic_buyer]``) are one problem: only the larger penalty
      counts (on a tie, the one that is not a methodology gap), the others show 0;
    * methodology gaps together cost at most ``health.methodology_penalty_cap``.

    Band, from the risks (every signal but methodology gaps and ``not_recorded`` ones):

    * ``critical``: ``health.high_signals_critical`` (2) high risks of different
      topics, or a severe one (the close date passed in the propose, negotiate or
      commit phase with no recent activity), or a score below ``at_risk_min``;
    * ``at_risk``: any medium or high risk (an absent methodology element of high
      severity counts too), or a score below ``healthy_min``;
    * ``healthy`` otherwise: a clean deal, or low risks only.

    The band is the verdict and the score is secondary: a severe risk makes a deal
    critical whatever its score, and the score is then moved into the band's range
    (:func:`_within_band`; the difference shows in the explanation as
    ``band:<band>``). Adding a signal never raises the
    score nor improves the band. ``phase`` picks the
    questions (and so the topics) the deal is asked in; without it, a signal's topic
    is that of its first question with one.
    """
    settings = playbook.playbook.health
    ordered = list(signals)
    penalty_of = playbook.penalties
    base = [
        0 if signal.status == "not_recorded" else penalty_of[signal.severity] for signal in ordered
    ]
    topics = [_topic(signal, playbook, phase) for signal in ordered]
    kept: dict[str, int] = {}
    for index, topic in enumerate(topics):
        if topic is None:
            continue
        best = kept.get(topic)
        if best is None or base[index] > base[best]:
            kept[topic] = index
        elif base[index] == base[best] and ordered[best].code == "methodology_gap":
            kept[topic] = index  # a gap's penalty may be capped away: keep the other
    penalties: list[tuple[str, int]] = []
    total = 0
    methodology_total = 0
    for index, signal in enumerate(ordered):
        topic = topics[index]
        penalty = base[index] if topic is None or kept[topic] == index else 0
        if signal.code == "methodology_gap":
            penalty = max(0, min(penalty, settings.methodology_penalty_cap - methodology_total))
            methodology_total += penalty
        penalties.append((signal.key, penalty))
        total += penalty
    score = max(0, 100 - total)
    high_topics: set[str] = set()
    highs = 0
    serious = False
    severe = False
    for index, signal in enumerate(ordered):
        if signal.status == "not_recorded":
            continue
        if signal.code == "methodology_gap":
            serious = serious or (signal.severity == "high" and signal.status == "absent")
            continue
        if signal.severity != "low":
            serious = True
        if signal.severity == "high":
            topic = topics[index]
            if topic is None:
                highs += 1
            elif topic not in high_topics:
                high_topics.add(topic)
                highs += 1
        if (
            signal.code == "close_date_passed"
            and signal.facts.get("late")
            and signal.facts.get("quiet")
        ):
            severe = True
    band: Band
    if score < settings.at_risk_min or highs >= settings.high_signals_critical or severe:
        band = "critical"
    elif score < settings.healthy_min or serious:
        band = "at_risk"
    else:
        band = "healthy"
    shown = _within_band(score, band, settings.at_risk_min, settings.healthy_min)
    if shown != score:
        penalties.append((f"band:{band}", score - shown))
    return Health(score=shown, band=band, penalties=tuple(penalties))


def _within_band(score: int, band: Band, at_risk_min: int, healthy_min: int) -> int:
    """The score moved into its band's range, keeping the order of scores within the
    band, so that a page never shows "Critical (76/100)". An at-risk score (never below
    ``at_risk_min``) is scaled from ``at_risk_min..100`` into ``at_risk_min..healthy_min
    - 1``; a critical one from ``0..100`` into ``0..at_risk_min - 1``; a healthy one is
    kept. Worse risks still never show a higher score."""
    if band == "critical":
        return min(score, round(score * (at_risk_min - 1) / 100))
    if band == "at_risk":
        span = max(1, 100 - at_risk_min)
        scaled = at_risk_min + round((score - at_risk_min) * (healthy_min - 1 - at_risk_min) / span)
        return min(score, scaled)
    return score


def _topic(signal: Signal, playbook: CompiledPlaybook, phase: str | None) -> str | None:
    target = f"element:{signal.element}" if signal.element else signal.code
    if phase is None:
        return playbook.target_topics.get(target)
    question = playbook.question_for.get((target, phase))
    return None if question is None else question.topic


def _summary(deal: DealSnapshot, health: Health, signals: tuple[Signal, ...]) -> str:
    if deal.stage.is_closed:
        outcome = "won" if deal.stage.is_won else "lost"
        return f"Closed {outcome} ({deal.stage.label}): no coaching prompts."
    head = f"{_BAND_LABEL[health.band]} ({health.score}/100) in {deal.stage.label}"
    # What the CRM does not record is no risk of the deal: the summary leaves it out.
    signals = tuple(signal for signal in signals if signal.status != "not_recorded")
    if not signals:
        return f"{head}: no risk signals."
    top = "; ".join(signal.message for signal in signals[:2])
    more = f" (+{len(signals) - 2} more)" if len(signals) > 2 else ""
    return f"{head}: {top}{more}."


def review_deal(deal: DealSnapshot, playbook: CompiledPlaybook, as_of: datetime) -> DealReview:
    """Review one deal. ``as_of`` must be timezone-aware; it is the review time.

    Raises:
        ValueError: ``as_of`` is naive.
    """
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    as_of = as_of.astimezone(UTC)
    phase = phase_for(deal.stage, playbook)
    entered, exact, entered_field = stage_clock(deal)
    context = ReviewContext(
        playbook=playbook,
        thresholds=playbook.thresholds,
        as_of=as_of,
        today=as_of.date(),
        phase=phase,
        stage_entered_at=entered,
        stage_entered_exact=exact,
        stage_entered_field=entered_field,
        roles=deal_roles(deal),
        lowered=deal_texts(deal),
        severity_shift=severity_shift(deal.amount, phase, playbook.thresholds),
        renewal=deal.is_open and is_renewal(deal, playbook),
    )
    signals: list[Signal] = []
    if deal.is_open:
        enabled = playbook.enabled
        for code, rule in RULES:
            if code in enabled:
                signal = rule(deal, context)
                if signal is not None:
                    signals.append(signal)
    judgements, gaps = methodology(deal, context)
    signals.extend(gaps)
    signals.sort(key=lambda s: _SEVERITY_ORDER[s.severity])
    ordered = tuple(signals)
    health = health_of(ordered, playbook, phase)
    manager, rep = build_prompts(deal, ordered, playbook, phase, context)
    return DealReview(
        deal_id=deal.id,
        deal_name=deal.name,
        owner_id=deal.owner_id,
        amount=deal.amount,
        currency=deal.currency,
        close_date=deal.close_date,
        stage_key=deal.stage.key,
        stage_label=deal.stage.label,
        phase=phase,
        is_open=deal.is_open,
        is_won=deal.stage.is_closed and deal.stage.is_won,
        as_of=as_of,
        playbook=playbook.name,
        playbook_version=playbook.version,
        health=health,
        signals=ordered,
        prompts=manager,
        rep_prompts=rep,
        methodology=judgements,
        summary=_summary(deal, health, ordered),
        forecast_category=deal.forecast_category,
    )


def review_fingerprint(review: DealReview) -> str:
    """A hash of what the review says, independent of ``as_of``.

    Built from the playbook, the signals with their evidence, and the chosen
    questions; day counts that move with time are left out, so a review of
    unchanged evidence has the same fingerprint tomorrow.
    """
    parts = [review.deal_id, review.playbook, str(review.playbook_version), review.stage_key]
    parts.extend(evidence_key(signal) for signal in review.signals)
    parts.extend(prompt.question_id for prompt in review.prompts)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def snapshot_fingerprint(deal: DealSnapshot) -> str:
    """A hash of the snapshot: equal snapshots give equal fingerprints.

    Left out: ``modified_at`` (a touch is not a change), and the service's own
    summary fields (:func:`~app.coaching.snapshot.is_own_field`): writing them
    changes the deal in the CRM (Salesforce bumps ``SystemModstamp``), and the
    sync that brings that echo back must not see a change, or every write-back
    would cause another review.
    """
    # ``fields`` is a mapping: equal whatever its order, but its repr follows insertion order.
    coached = sorted((k, v) for k, v in deal.fields.items() if not is_own_field(k))
    canonical = replace(deal, fields=dict(coached), modified_at=None, recorded_fields=None)
    text = repr(canonical)
    if deal.recorded_fields is not None:
        # A frozenset's repr follows string hashing, which varies between processes.
        recorded = sorted(name for name in deal.recorded_fields if not is_own_field(name))
        text += repr(recorded)
    return hashlib.sha256(text.encode()).hexdigest()
