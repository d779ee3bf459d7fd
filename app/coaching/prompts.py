"""From signals to questions: choose, rank, cap, and word them for each audience."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import datetime

from app.coaching.playbook import CompiledPlaybook, Question
from app.coaching.results import SEVERITY_RANK, Prompt, Signal
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
    question_for = playbook.question_for
    candidates: list[tuple[float, int, str, Question, Signal]] = []
    for signal in signals:
        element = signal.element
        target = f"element:{element}" if element else signal.code
        question = question_for.get((target, phase))
        if question is None:
            continue
        relevance = stage_relevance(signal, phase, element_from.get(element) if element else None)
        score = SEVERITY_RANK[signal.severity] * relevance * size
        candidates.append((score, _CODE_ORDER[signal.code], element or "", question, signal))
    candidates.sort(key=_rank_key)
    manager: list[Prompt] = []
    rep: list[Prompt] = []
    seen_topics: set[str] = set()
    for score, _, _, question, signal in candidates:
        topic = question.topic or question.id
        if topic in seen_topics:
            continue
        seen_topics.add(topic)
        shown_first = len(manager) < settings.show_first
        manager_id, rep_id = prompt_ids(question.id, evidence_key(signal))
        facts = signal.facts
        code, severity, why, element = signal.code, signal.severity, signal.message, signal.element
        text = question.manager
        manager.append(
            Prompt(
                manager_id,
                question.id,
                "manager",
                text.format_map(facts) if "{" in text else text,
                why,
                code,
                severity,
                score,
                shown_first,
                element,
            )
        )
        text = question.rep
        rep.append(
            Prompt(
                rep_id,
                question.id,
                "rep",
                text.format_map(facts) if "{" in text else text,
                why,
                code,
                severity,
                score,
                shown_first,
                element,
            )
        )
        if len(manager) == settings.max_per_deal:
            break
    return tuple(manager), tuple(rep)


def _rank_key(item: tuple[float, int, str, Question, Signal]) -> tuple[float, int, str]:
    return (-item[0], item[1], item[2])
