"""The coaching engine: a neutral deal snapshot + a playbook + ``as_of`` -> a review.

Pure: no database, network, clock or randomness. The same input and ``as_of``
always give the same review.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime

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


def stage_entered_at(deal: DealSnapshot) -> datetime:
    """When the deal entered its current stage.

    The CRM's own date when it gives one; else the latest stage change into the
    current stage (amount- or date-only history rows are not stage changes, so
    they never restart this clock); else the deal's creation.
    """
    if deal.stage_entered_at is not None:
        return deal.stage_entered_at
    key = deal.stage.key
    for change in reversed(deal.stage_history):
        if change.new is not None and change.new.key == key:
            return change.at
    return deal.created_at


def health_of(
    signals: Iterable[Signal], playbook: CompiledPlaybook, phase: str | None = None
) -> Health:
    """100 minus a penalty per signal by severity, banded, the band floored by severity.

    * Signals whose questions share a ``topic`` (``no_economic_buyer`` and
      ``methodology_gap[economic_buyer]``) are one problem: only the larger
      penalty counts (on a tie, the one that is not a methodology gap); the
      others are listed with penalty 0.
    * Methodology gaps together cost at most ``health.methodology_penalty_cap``.
    * Any high signal makes the band at most ``at_risk``, and
      ``health.high_signals_critical`` of them (a topic counts once) make it
      ``critical``, whatever the score.

    ``phase`` picks the questions (and so the topics) the deal is asked in; without
    it, a signal's topic is that of its first question with one.
    """
    settings = playbook.playbook.health
    ordered = list(signals)
    base = [playbook.penalties[signal.severity] for signal in ordered]
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
    band: Band
    if score >= settings.healthy_min:
        band = "healthy"
    elif score >= settings.at_risk_min:
        band = "at_risk"
    else:
        band = "critical"
    high_topics = {topics[i] for i, s in enumerate(ordered) if s.severity == "high" and topics[i]}
    highs = len(high_topics) + sum(
        1 for i, s in enumerate(ordered) if s.severity == "high" and topics[i] is None
    )
    if highs >= settings.high_signals_critical:
        band = "critical"
    elif highs and band == "healthy":
        band = "at_risk"
    return Health(score=score, band=band, penalties=tuple(penalties))


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
    context = ReviewContext(
        playbook=playbook,
        thresholds=playbook.thresholds,
        as_of=as_of,
        today=as_of.date(),
        phase=phase,
        stage_entered_at=stage_entered_at(deal),
        roles=deal_roles(deal),
        lowered=deal_texts(deal),
        severity_shift=severity_shift(deal.amount, phase, playbook.thresholds),
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
    manager, rep = build_prompts(deal, ordered, playbook, phase)
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
    canonical = replace(deal, fields=dict(coached), modified_at=None)
    return hashlib.sha256(repr(canonical).encode()).hexdigest()
