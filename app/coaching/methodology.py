"""Methodology elements: judge each one, and raise a gap where the phase expects it."""

from __future__ import annotations

from app.coaching.playbook import CompiledElement, CompiledSource
from app.coaching.results import (
    SEVERITIES,
    ElementJudgement,
    ElementStatus,
    Evidence,
    Severity,
    Signal,
)
from app.coaching.signals import ReviewContext, roles_present, scale_severity
from app.coaching.snapshot import DealSnapshot
from app.coaching.vocabulary import PHASE_INDEX


def judge_element(
    element: CompiledElement,
    deal: DealSnapshot,
    context: ReviewContext,
    expected: bool,
) -> ElementJudgement:
    """Judge one element from its sources in order; the strongest finding wins.

    A source that confirms ends the search. An ambiguous finding (a placeholder
    value such as "TBD", or a keyword mention) is kept while later sources are
    tried. Nothing found is ``absent`` when the organisation has a place for the
    element (a field it records; free text, for an element judged from text alone)
    and ``not_recorded`` when it has none. Where it has none, the rep's own words
    are the record: a keyword mention confirms the element. Contact roles confirm
    but are no place of their own: the role list is the organisation's (Salesforce's
    standard one has no "Champion"), so a missing role says nothing about whether it
    records the element.
    """
    ambiguous: ElementJudgement | None = None
    for source in element.sources:
        found: ElementJudgement | None = None
        if source.kind == "field":
            for name in source.names:
                raw = deal.fields.get(name)
                if raw is None:
                    continue
                value = raw.strip()
                if not value:
                    continue
                status = (
                    "ambiguous"
                    if value.lower() in context.playbook.ambiguous_values
                    else source.status
                )
                judged = ElementJudgement(
                    element.key, element.label, status, name, value[:200], expected
                )
                if status == "confirmed":
                    return judged
                # A placeholder ("TBD") is kept, but the element's other fields may confirm it.
                found = found or judged
        elif source.kind == "contact_roles":
            for role in source.names:
                holder = context.roles.get(role)
                if holder is not None:
                    found = ElementJudgement(
                        element.key,
                        element.label,
                        source.status,
                        "contacts.roles",
                        holder,
                        expected,
                    )
                    break
        else:
            found = _keyword(element, source, context, expected)
            if found is not None and not _place(element, deal):
                found.status = "confirmed"
        if found is not None:
            if found.status == "confirmed":
                return found
            ambiguous = ambiguous or found
    if ambiguous is not None:
        return ambiguous
    missing: ElementStatus = "absent" if _place(element, deal) else "not_recorded"
    return ElementJudgement(
        element.key, element.label, missing, element.absent_source, None, expected
    )


def _place(element: CompiledElement, deal: DealSnapshot) -> bool:
    """Whether the organisation has a place for the element: a field it records, or,
    for an element judged from free text alone, the free text."""
    if not element.structured:
        return True
    recorded = deal.recorded_fields
    if recorded is None:
        return bool(element.field_names)
    return any(name in recorded for name in element.field_names)


def _keyword(
    element: CompiledElement,
    source: CompiledSource,
    context: ReviewContext,
    expected: bool,
) -> ElementJudgement | None:
    assert source.pattern is not None
    search = source.pattern.search
    for text_field in source.in_:
        text = context.lowered[text_field]
        if not text:
            continue
        match = search(text)
        if match is not None:
            return ElementJudgement(
                element.key,
                element.label,
                source.status,
                text_field,
                f"mentions {match.group(0)!r}",
                expected,
            )
    return None


def methodology(
    deal: DealSnapshot, context: ReviewContext
) -> tuple[tuple[ElementJudgement, ...], list[Signal]]:
    """Judge every element; raise ``methodology_gap`` for each expected one not confirmed.

    An element is expected from its ``from_phase`` on. An absent element is a
    medium gap (high once the deal is two or more phases past where it was
    due); an ambiguous one is low (medium two or more phases past). Deal size
    and lateness then scale it like any signal, but an ambiguous element is
    never high.
    """
    playbook = context.playbook
    phase_index = PHASE_INDEX[context.phase]
    judgements = []
    gaps: list[Signal] = []
    raise_gaps = deal.is_open and "methodology_gap" in playbook.enabled
    unrecorded: list[tuple[CompiledElement, ElementJudgement]] = []
    present: str | None = None
    for element in playbook.elements:
        expected = deal.is_open and phase_index >= element.from_index
        judgement = judge_element(element, deal, context, expected)
        judgements.append(judgement)
        if not (raise_gaps and expected) or judgement.status == "confirmed":
            continue
        if judgement.status == "not_recorded":
            unrecorded.append((element, judgement))
            continue
        late = phase_index - element.from_index >= 2
        absent = judgement.status == "absent"
        base: Severity = SEVERITIES[(1 if absent else 0) + (1 if late else 0)]
        severity = scale_severity(base, context)
        if not absent and severity == "high":
            severity = "medium"  # a mention is not proof, but it is not silence either
        gaps.append(
            Signal(
                code="methodology_gap",
                severity=severity,
                message=f"{element.label} is {judgement.status} at {deal.stage.label}",
                evidence=(
                    Evidence(
                        judgement.source or element.key,
                        judgement.value,
                        None,
                        element.expected_note,
                    ),
                ),
                facts={
                    "element_label": element.label,
                    "status": judgement.status,
                    "source": judgement.source or element.key,
                    "roles_present": present
                    if present is not None
                    else (present := roles_present(deal)),
                    "stage": deal.stage.label,
                    "deal": deal.name,
                },
                element=element.key,
                status=judgement.status,
            )
        )
    needed = _most_needed(unrecorded, context)
    if needed is not None:
        element, judgement = needed
        gaps.append(
            Signal(
                code="methodology_gap",
                severity="low",
                message=(
                    f"{element.label} is not recorded in the CRM: no field or contact "
                    "role on the deal holds it"
                ),
                evidence=(
                    Evidence(
                        judgement.source or element.key,
                        None,
                        None,
                        f"not recorded in the CRM; {element.expected_note}",
                    ),
                ),
                facts={
                    "element_label": element.label,
                    "status": "not_recorded",
                    "source": judgement.source or element.key,
                    "not_recorded": 1,
                    "stage": deal.stage.label,
                    "deal": deal.name,
                },
                element=element.key,
                status="not_recorded",
            )
        )
    return tuple(judgements), gaps


def _most_needed(
    unrecorded: list[tuple[CompiledElement, ElementJudgement]], context: ReviewContext
) -> tuple[CompiledElement, ElementJudgement] | None:
    """Of the elements the organisation does not record, the one the phase most needs.

    That is the element due most recently (the latest ``from_phase`` up to the deal's
    phase; playbook order breaks ties) that has a question for this phase; for a
    renewal, the playbook's ``renewal_element`` when it is among them.
    """
    playbook = context.playbook
    choices = playbook.question_choices
    askable = [item for item in unrecorded if (f"element:{item[0].key}", context.phase) in choices]
    if not askable:
        return None
    if context.renewal and playbook.renewal_element is not None:
        for item in askable:
            if item[0].key == playbook.renewal_element:
                return item
    best = askable[0]
    for item in askable[1:]:
        if item[0].from_index > best[0].from_index:
            best = item
    return best
