"""From signals to questions: choose, rank, cap, and word them for each audience."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from app.coaching.playbook import CompiledPlaybook, Question
from app.coaching.results import SEVERITY_RANK, Prompt, Signal
from app.coaching.signals import ReviewContext, quote_text, spoken_date
from app.coaching.snapshot import DealSnapshot
from app.coaching.vocabulary import COMMON_FACTS, PHASE_INDEX, SIGNAL_CODES

#: How much a deal-execution signal matters in each phase: late problems cost more.
PHASE_RELEVANCE = {
    "discover": 0.6,
    "qualify": 0.7,
    "solution": 0.8,
    "propose": 0.9,
    "negotiate": 1.0,
    "commit": 1.0,
    "closed": 0.0,
}
_CODE_ORDER = {code: index for index, code in enumerate(SIGNAL_CODES)}


def stage_relevance(signal: Signal, phase: str, element_from: int | None) -> float:
    """How much the signal matters at this phase (0.0 to 1.0).

    A methodology gap grows more relevant the further past its due phase the
    deal is (0.6 at the due phase, at most 0.9, so that at equal severity a
    late-stage execution signal comes first); other signals follow
    :data:`PHASE_RELEVANCE`.
    """
    if element_from is not None:
        return min(0.9, 0.6 + 0.1 * (PHASE_INDEX[phase] - element_from))
    return PHASE_RELEVANCE[phase]


def size_factor(amount: float | None, reference: float) -> float:
    """1.0 for an unpriced deal; grows with the logarithm of the amount."""
    if not amount or amount <= 0:
        return 1.0
    return 1.0 + math.log10(1.0 + amount / reference)


def evidence_key(signal: Signal) -> str:
    """The signal's identity and evidence, without the as_of-relative facts.

    Times enter as POSIX timestamps (dates as ordinals): cheaper than ISO text.
    """
    parts = [signal.key, signal.severity]
    for item in signal.evidence:
        at = item.at
        if at is None:
            stamp = ""
        elif isinstance(at, datetime):
            stamp = str(int(at.timestamp()))
        else:
            stamp = f"d{at.toordinal()}"
        parts.append(f"{item.field}={item.value}@{stamp}")
    return "|".join(parts)


def prompt_ids(question_id: str, key: str) -> tuple[str, str]:
    """Stable ids of a question on one signal's evidence ``key``: (manager, rep)."""
    digest = hashlib.blake2b(f"{question_id}|{key}".encode(), digest_size=16).hexdigest()
    return f"p_{digest[:16]}", f"p_{digest[16:]}"


#: Risks that tell one story: when a deal has more risks than prompt places,
#: a lower-ranked risk folds into a higher-ranked one of its group first.
_STORY = {
    "close_date_passed": "timing",
    "close_date_pushed": "timing",
    "close_date_unrealistic": "timing",
    "forecast_mismatch": "timing",
    "no_recent_activity": "engagement",
    "next_step_missing": "engagement",
    "next_step_vague": "engagement",
    "stalled_in_stage": "progress",
    "stage_regressed": "progress",
    "deal_aging": "progress",
    "single_threaded": "people",
    "no_economic_buyer": "people",
    "owner_changed": "people",
    "amount_decreased": "value",
}
_STATUS_ORDER = {"absent": 0, "ambiguous": 1, "not_recorded": 2}
_ONE_DAY = re.compile(r"\b1 days\b")


class _Facts(dict[str, object]):
    """A question's facts: a fact the signal does not give renders empty."""

    def __missing__(self, key: str) -> str:
        return ""


def common_facts(deal: DealSnapshot, today: date, renewal: bool) -> dict[str, object]:
    """The facts every question may use (``COMMON_FACTS``)."""
    close = deal.close_date
    return {
        "stage": deal.stage.label,
        "deal": deal.name,
        "amount": f"{deal.amount:,.0f}" if deal.amount else "the quoted amount",
        "close_on": spoken_date(close, today) if close is not None else "the close date",
        "days_to_close": (close - today).days if close is not None else "",
        "close_ahead": 1 if close is not None and close > today else 0,
        "renewal": 1 if renewal else 0,
        "next_step": quote_text(deal.next_step) if deal.next_step else "",
    }


def _holds(
    needs_fired: tuple[str, ...],
    needs_facts: tuple[str, ...],
    facts: Mapping[str, object],
    common: Callable[[], Mapping[str, object]],
    fired: set[str],
) -> bool:
    for code in needs_fired:
        if code not in fired:
            return False
    for name in needs_facts:
        if not (facts.get(name) or (name in COMMON_FACTS and common().get(name))):
            return False
    return True


@dataclass(slots=True)
class _Candidate:
    kind: int  # 0 risk, 1 methodology gap, 2 discovery (not recorded)
    score: float
    order: tuple[float, ...]
    question: Question
    signal: Signal
    folded: list[Signal]


def build_prompts(
    deal: DealSnapshot,
    signals: Sequence[Signal],
    playbook: CompiledPlaybook,
    phase: str,
    context: ReviewContext,
) -> tuple[tuple[Prompt, ...], tuple[Prompt, ...]]:
    """Choose, rank, merge, cap and word the questions of a deal's signals.

    * Each signal gets the first of its questions (for the phase) whose ``when``
      holds, worded with the deal's own facts.
    * Risks come first, ranked by severity (1-3) x stage relevance x deal-size
      factor (a passed close date weighs more the later the phase); then
      methodology gaps, the element the phase needs first; then at most one
      discovery question about what the organisation does not record.
    * A question that ``covers`` other fired signals answers them too (they fold
      into it); questions sharing a ``topic`` are asked once.
    * Every risk gets a place within ``prompts.max_per_deal``: when there are more
      risks than places, related ones fold into one prompt (its why lists each).

    Returns (manager prompts, rep self-review prompts) in the same order.
    """
    settings = playbook.playbook.prompts
    cap = settings.max_per_deal
    size = size_factor(deal.amount, playbook.thresholds.reference_amount)
    element_from = playbook.element_from
    choices = playbook.question_choices
    cache: list[dict[str, object]] = []

    def common() -> dict[str, object]:
        # Computed once a deal, and only when a question needs it.
        if not cache:
            cache.append(common_facts(deal, context.today, context.renewal))
        return cache[0]

    fired = {signal.code for signal in signals}
    late_weight = 1.0 + 0.15 * PHASE_INDEX[phase]
    candidates: list[_Candidate] = []
    for signal in signals:
        element = signal.element
        target = f"element:{element}" if element else signal.code
        options = choices.get((target, phase))
        if options is None:
            continue
        facts = signal.facts
        question = None
        for option, need_fired, need_facts in options:
            if (not need_fired and not need_facts) or _holds(
                need_fired, need_facts, facts, common, fired
            ):
                question = option
                break
        if question is None:
            continue
        due = element_from.get(element) if element else None
        relevance = stage_relevance(signal, phase, due)
        score = SEVERITY_RANK[signal.severity] * relevance * size
        if signal.status == "not_recorded" or signal.code == "methodology_gap":
            # Methodology, the element the phase needs first (the latest due); at
            # equal due, an absent element before an ambiguous or unrecorded one.
            kind = 2 if signal.status == "not_recorded" else 1
            if due is None:  # no_economic_buyer on roles not recorded
                due = element_from.get("economic_buyer", PHASE_INDEX["solution"])
            order: tuple[float, ...] = (-due, _STATUS_ORDER.get(signal.status or "", 3), -score)
        else:
            kind = 0
            if signal.code == "close_date_passed":
                score *= late_weight
            order = (-score, float(_CODE_ORDER[signal.code]))
        candidates.append(_Candidate(kind, score, order, question, signal, []))
    candidates.sort(key=lambda c: (min(c.kind, 1), c.order))

    # A question that covers other fired risks answers them too: they fold into it.
    owners: dict[str, _Candidate] = {}
    for candidate in candidates:
        code = candidate.signal.code
        if candidate.kind != 0 or code in owners:
            continue
        for covered in candidate.question.covers or ():
            if covered in fired and covered != code and covered not in owners:
                owners[covered] = candidate
    chosen: list[_Candidate] = []
    seen_topics: set[str] = set()
    discovery = False
    for candidate in candidates:
        if candidate.kind == 0:
            owner = owners.get(candidate.signal.code)
            if owner is not None and owner is not candidate:
                owner.folded.append(candidate.signal)
                owner.order = min(owner.order, candidate.order)
                continue
        topic = candidate.question.topic or candidate.question.id
        if topic in seen_topics:
            continue
        if candidate.kind == 2 or (candidate.kind == 1 and candidate.signal.severity == "low"):
            # Methodology asks every medium or high gap, and one question more: the
            # element the phase needs among low gaps and what the CRM does not record.
            if discovery:
                continue
            discovery = True
        seen_topics.add(topic)
        chosen.append(candidate)
    risks = sorted((c for c in chosen if c.kind == 0), key=lambda c: c.order)
    rest = [c for c in chosen if c.kind != 0]
    while len(risks) > cap:
        _fold_one(risks)
    ordered = (risks + rest)[:cap]

    manager: list[Prompt] = []
    rep: list[Prompt] = []
    for index, candidate in enumerate(ordered):
        signal, question = candidate.signal, candidate.question
        shown_first = index < settings.show_first
        key = evidence_key(signal)
        for extra in candidate.folded:
            key += "+" + evidence_key(extra)
        manager_id, rep_id = prompt_ids(question.id, key)
        why = signal.message
        if candidate.folded:
            why = "; ".join([why, *(s.message for s in candidate.folded)])
        wording = _Facts(common())
        wording.update(signal.facts)
        for audience, prompt_id, text, out in (
            ("manager", manager_id, question.manager, manager),
            ("rep", rep_id, question.rep, rep),
        ):
            if "{" in text:
                text = text.format_map(wording)
            if "1 days" in text:
                text = _ONE_DAY.sub("1 day", text)
            out.append(
                Prompt(
                    prompt_id,
                    question.id,
                    audience,  # type: ignore[arg-type]
                    text,
                    why,
                    signal.code,
                    signal.severity,
                    candidate.score,
                    shown_first,
                    signal.element,
                )
            )
    return tuple(manager), tuple(rep)


def _fold_one(risks: list[_Candidate]) -> None:
    """Fold the lowest-ranked risk into a higher-ranked one of the same story, or
    into the one ranked just above it when none shares its story."""
    for index in range(len(risks) - 1, 0, -1):
        story = _STORY.get(risks[index].signal.code)
        for target in risks[:index]:
            if story is not None and _STORY.get(target.signal.code) == story:
                victim = risks.pop(index)
                target.folded.extend([victim.signal, *victim.folded])
                return
    victim = risks.pop()
    risks[-1].folded.extend([victim.signal, *victim.folded])
