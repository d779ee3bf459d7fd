"""From signals to questions: choose, rank, cap, and word them for each audience."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from app.coaching.playbook import CompiledPlaybook, Question
from app.coaching.results import SEVERITY_RANK, Audience, Prompt, Signal
from app.coaching.snapshot import DealSnapshot
from app.coaching.vocabulary import PHASE_INDEX, SIGNAL_CODES

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


def choose_question(questions: Sequence[Question], phase: str) -> Question | None:
    """The first question meant for this phase, else the first meant for every phase."""
    fallback = None
    for question in questions:
        if question.phases is None:
            fallback = fallback or question
        elif phase in question.phases:
            return question
    return fallback


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
    """The signal's identity and evidence, without the as_of-relative facts."""
    parts = [signal.key, signal.severity]
    for item in signal.evidence:
        at = item.at.isoformat() if item.at is not None else ""
        parts.append(f"{item.field}={item.value}@{at}")
    return "|".join(parts)


def prompt_id(question_id: str, key: str, audience: Audience) -> str:
    """Stable id of a question asked of one audience on one signal's evidence ``key``."""
    digest = hashlib.blake2b(f"{question_id}|{audience}|{key}".encode(), digest_size=8)
    return f"p_{digest.hexdigest()}"


def build_prompts(
    deal: DealSnapshot, signals: Sequence[Signal], playbook: CompiledPlaybook, phase: str
) -> tuple[tuple[Prompt, ...], tuple[Prompt, ...]]:
    """Rank the signals' questions, drop repeats of one question, cap, and word them.

    Rank = severity (1-3) x stage relevance x deal-size factor; ties break by
    vocabulary order. Of questions sharing a ``topic`` only the best-ranked is
    asked. Returns (manager prompts, rep self-review prompts) in the same order.
    """
    settings = playbook.playbook.prompts
    size = size_factor(deal.amount, playbook.thresholds.reference_amount)
    element_from = playbook.element_from
    candidates: list[tuple[float, int, str, Question, Signal]] = []
    for signal in signals:
        if signal.element is not None:
            questions = playbook.element_questions.get(signal.element, ())
        else:
            questions = playbook.signal_questions.get(signal.code, ())
        question = choose_question(questions, phase)
        if question is None:
            continue
        relevance = stage_relevance(
            signal, phase, element_from.get(signal.element) if signal.element else None
        )
        score = SEVERITY_RANK[signal.severity] * relevance * size
        candidates.append((score, _CODE_ORDER[signal.code], signal.element or "", question, signal))
    candidates.sort(key=lambda item: (-item[0], item[1], item[2]))
    chosen: list[tuple[float, Question, Signal]] = []
    seen_topics: set[str] = set()
    for score, _, _, question, signal in candidates:
        topic = question.topic or question.id
        if topic in seen_topics:
            continue
        seen_topics.add(topic)
        chosen.append((score, question, signal))
        if len(chosen) == settings.max_per_deal:
            break
    manager: list[Prompt] = []
    rep: list[Prompt] = []
    audiences: tuple[Audience, Audience] = ("manager", "rep")
    for rank, (score, question, signal) in enumerate(chosen):
        shown_first = rank < settings.show_first
        key = evidence_key(signal)
        for audience, template, out in zip(
            audiences, (question.manager, question.rep), (manager, rep), strict=True
        ):
            out.append(
                Prompt(
                    id=prompt_id(question.id, key, audience),
                    question_id=question.id,
                    audience=audience,
                    text=template.format_map(signal.facts),
                    why=signal.message,
                    signal=signal.code,
                    severity=signal.severity,
                    score=score,
                    shown_first=shown_first,
                    element=signal.element,
                )
            )
    return tuple(manager), tuple(rep)
