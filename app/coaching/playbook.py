"""Playbooks: methodology, thresholds and the question bank, as validated YAML.

A playbook is a YAML document. Built-ins (MEDDPICC, the default; BANT; SPICED)
live in ``app/coaching/playbooks/``. A custom playbook names a base with
``extends`` and overrides what it needs: mappings merge key by key, questions
merge by ``id``, an element set to ``null`` is removed, other lists replace.
An invalid playbook raises :class:`PlaybookError` naming the offending key.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from app.coaching.vocabulary import (
    COMMON_FACTS,
    PHASE_INDEX,
    PHASES,
    SIGNAL_CODES,
    SIGNAL_FACTS,
    Phase,
    SignalCode,
)

BUILT_IN_PLAYBOOKS: tuple[str, ...] = ("meddpicc", "bant", "spiced", "core")
DEFAULT_PLAYBOOK = "meddpicc"
TextField = Literal["next_step", "description", "name"]


class PlaybookError(ValueError):
    """A playbook could not be loaded; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _not_a_boolean(value: object) -> object:
    # YAML reads `yes`/`true` as booleans, which pydantic would take as 1.0.
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    return value


#: A float threshold: integers are welcome (50000), booleans are not.
Number = Annotated[float, BeforeValidator(_not_a_boolean)]
#: A day count for ``stalled_days_by_*``: a whole number of days, at least one.
Days = Annotated[int, Field(ge=1, strict=True)]


class Thresholds(_Strict):
    """Every threshold of the signal vocabulary, with the defaults of COACHING.md.

    Integer thresholds are strict: ``true`` or ``2.5`` is rejected, not coerced.
    """

    close_date_passed_high_days: int = Field(30, ge=0, strict=True)
    push_count: int = Field(2, ge=1, strict=True)
    push_count_high: int = Field(3, ge=1, strict=True)
    stalled_days: int = Field(30, ge=1, strict=True)
    stalled_days_by_phase: dict[Phase, Days] = Field(default_factory=dict)
    stalled_days_by_stage: dict[str, Days] = Field(default_factory=dict)
    stalled_high_factor: Number = Field(2.0, ge=1.0)
    no_activity_days: int = Field(14, ge=1, strict=True)
    no_activity_high_days: int = Field(28, ge=1, strict=True)
    single_threaded_amount: Number = Field(50_000, ge=0)
    single_threaded_max_contacts: int = Field(1, ge=0, strict=True)
    economic_buyer_probability: Number = Field(0.5, ge=0, le=1)
    economic_buyer_high_probability: Number = Field(0.75, ge=0, le=1)
    amount_decrease_ratio: Number = Field(0.2, gt=0, lt=1)
    amount_decrease_high_ratio: Number = Field(0.5, gt=0, lt=1)
    stage_regression_days: int = Field(30, ge=1, strict=True)
    close_soon_days: int = Field(30, ge=0, strict=True)
    close_soon_max_probability: Number = Field(0.2, ge=0, le=1)
    forecast_min_probability: Number = Field(0.7, ge=0, le=1)
    owner_change_days: int = Field(30, ge=1, strict=True)
    deal_age_days: int = Field(180, ge=1, strict=True)
    deal_age_high_days: int = Field(360, ge=1, strict=True)
    large_deal_amount: Number = Field(100_000, ge=0)
    small_deal_amount: Number = Field(10_000, ge=0)
    reference_amount: Number = Field(50_000, gt=0)

    @model_validator(mode="after")
    def _high_not_below_base(self) -> Thresholds:
        if self.push_count_high < self.push_count:
            raise ValueError("push_count_high must be at least push_count")
        if self.no_activity_high_days < self.no_activity_days:
            raise ValueError("no_activity_high_days must be at least no_activity_days")
        if self.deal_age_high_days < self.deal_age_days:
            raise ValueError("deal_age_high_days must be at least deal_age_days")
        if self.amount_decrease_high_ratio < self.amount_decrease_ratio:
            raise ValueError("amount_decrease_high_ratio must be at least amount_decrease_ratio")
        if self.small_deal_amount > self.large_deal_amount:
            raise ValueError("small_deal_amount cannot exceed large_deal_amount")
        return self


class Source(_Strict):
    """Where an element is judged from: exactly one of ``field``, ``contact_roles``,
    ``keywords``. A filled field or a matching contact role confirms the element
    by default; a keyword mention makes it ambiguous by default (``status`` overrides).
    """

    field: list[str] | None = None
    contact_roles: list[str] | None = None
    keywords: list[str] | None = None
    in_: list[TextField] = Field(default=["next_step", "description"], alias="in")
    status: Literal["confirmed", "ambiguous"] | None = None

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Source:
        kinds = [k for k in ("field", "contact_roles", "keywords") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError("a source needs exactly one of field, contact_roles, keywords")
        for index, keyword in enumerate(self.keywords or ()):
            if not keyword.strip():
                raise ValueError(
                    f"keywords.{index}: an empty or blank keyword would match every text"
                )
        return self


class Element(_Strict):
    label: str
    from_phase: Phase
    sources: list[Source] = Field(min_length=1)


class Question(_Strict):
    """A question for the manager and its self-review wording for the rep."""

    id: str = Field(min_length=1, pattern=r"^[a-z0-9_.\-]+$")
    signal: SignalCode | None = None
    element: str | None = None
    phases: list[Phase] | None = None
    topic: str | None = Field(
        None, description="Questions sharing a topic are asked once a deal (the best-ranked)."
    )
    when: list[str] | None = Field(
        None,
        description=(
            "Ask this wording only when each of these holds: a fact of the signal "
            "(non-empty, non-zero), or 'signal:<code>' (that signal fired too). The "
            "first question whose conditions hold is asked."
        ),
    )
    covers: list[SignalCode] | None = Field(
        None,
        description="Signals this question also answers: when they fired, they are "
        "folded into it (their evidence joins its why) instead of asked apart.",
    )
    manager: str = Field(min_length=1)
    rep: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_target(self) -> Question:
        if (self.signal is None) == (self.element is None):
            raise ValueError("a question names exactly one of signal or element")
        if self.signal == "methodology_gap":
            raise ValueError("methodology gaps take element questions: set element, not signal")
        return self


class PromptSettings(_Strict):
    max_per_deal: int = Field(5, ge=1, le=20, strict=True)
    show_first: int = Field(3, ge=1, le=20, strict=True)


class HealthSettings(_Strict):
    """The health score: 100 minus penalties, then banded; high signals floor the band."""

    penalty_high: int = Field(25, ge=0, le=100, strict=True)
    penalty_medium: int = Field(12, ge=0, le=100, strict=True)
    penalty_low: int = Field(5, ge=0, le=100, strict=True)
    methodology_penalty_cap: int = Field(50, ge=0, le=100, strict=True)
    healthy_min: int = Field(70, ge=1, le=100, strict=True)
    at_risk_min: int = Field(40, ge=0, le=99, strict=True)
    #: This many high risks (a topic counts once) make the band ``critical``.
    high_signals_critical: int = Field(2, ge=1, le=100, strict=True)


class Playbook(_Strict):
    """A validated playbook (after ``extends`` has been resolved)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    version: int = Field(1, ge=1)
    label: str | None = None
    description: str | None = None
    extends: str | None = None
    stage_phases: dict[str, Phase] = Field(default_factory=dict)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    economic_buyer_roles: list[str] = Field(
        default=["Economic Buyer", "Economic Decision Maker", "Decision Maker"]
    )
    forecast_commit_categories: list[str] = Field(default=["Commit", "Closed"])
    ambiguous_values: list[str] = Field(
        default=["tbd", "tbc", "unknown", "?", "n/a", "na", "not sure", "pending", "-"]
    )
    disabled_signals: list[SignalCode] = Field(default_factory=list)
    #: A deal is a renewal when its type (Salesforce ``Type``, HubSpot ``dealtype``)
    #: is one of these (case-insensitive), or its name or stage label has a keyword.
    renewal_types: list[str] = Field(
        default=["renewal", "existingbusiness", "existing business", "existing customer - renewal"]
    )
    renewal_keywords: list[str] = Field(default=["renewal", "renew"])
    #: The element a renewal's discovery question is about when it is not recorded
    #: (what the customer got from us this term), if the playbook has it.
    renewal_element: str | None = None
    elements: dict[str, Element] = Field(default_factory=dict)
    questions: list[Question] = Field(min_length=1)
    prompts: PromptSettings = Field(default_factory=PromptSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)

    @model_validator(mode="after")
    def _consistent(self) -> Playbook:
        ids = [q.id for q in self.questions]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"questions: duplicate id {duplicates[0]!r}")
        for index, question in enumerate(self.questions):
            where = f"questions.{index} ({question.id})"
            if question.element is not None and question.element not in self.elements:
                raise ValueError(f"{where}: element {question.element!r} is not in elements")
            facts = SIGNAL_FACTS["methodology_gap" if question.element else str(question.signal)]
            for condition in question.when or ():
                code = condition.removeprefix("signal:")
                known = (
                    code in SIGNAL_CODES
                    if condition.startswith("signal:")
                    else (condition in facts or condition in COMMON_FACTS)
                )
                if not known:
                    raise ValueError(f"{where}: unknown condition {condition!r} in when")
            for text in (question.manager, question.rep):
                for name in _placeholders(text, where):
                    if name not in facts and name not in COMMON_FACTS:
                        allowed = ", ".join(sorted(facts | COMMON_FACTS))
                        raise ValueError(f"{where}: unknown placeholder {{{name}}}; use {allowed}")
        covered = {q.signal for q in self.questions if q.signal} | {
            f"element:{q.element}" for q in self.questions if q.element
        }
        for code in SIGNAL_CODES:
            wanted = code not in _OPTIONAL_QUESTIONS and code not in self.disabled_signals
            if wanted and code not in covered:
                raise ValueError(f"questions: no question for signal {code!r}")
        for element in self.elements:
            if f"element:{element}" not in covered:
                raise ValueError(f"questions: no question for element {element!r}")
        if self.renewal_element is not None and self.renewal_element not in self.elements:
            raise ValueError(f"renewal_element: {self.renewal_element!r} is not in elements")
        for stage, phase in self.stage_phases.items():
            if phase == "closed":
                raise ValueError(
                    f"stage_phases.{stage}: closed stages map to closed by themselves; "
                    "map open stages to an open phase"
                )
        if self.prompts.show_first > self.prompts.max_per_deal:
            raise ValueError("prompts.show_first cannot exceed prompts.max_per_deal")
        if self.health.at_risk_min >= self.health.healthy_min:
            raise ValueError("health.at_risk_min must be below health.healthy_min")
        return self


#: Signals a playbook need not word a question for: methodology gaps take element
#: questions, and a vague next step is a newer check older playbooks predate.
_OPTIONAL_QUESTIONS = frozenset({"methodology_gap", "next_step_vague"})


def _placeholders(text: str, where: str) -> list[str]:
    """The ``{name}`` placeholders of a question; format specs and conversions
    (``{days:>9}``, ``{stage!r}``) are rejected: a question is words, not a template
    language, and a spec such as ``{stage:>99999}`` would blow a prompt up."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"{where}: bad placeholder in {text!r}: {exc}") from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if spec or conversion:
            shown = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise ValueError(
                f"{where}: placeholder {{{shown[:40]}}} has a format spec or conversion; "
                "use a plain {name}"
            )
        names.append(name)
    return names


# ---------------------------------------------------------------- loading


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if key == "questions" and isinstance(value, list) and isinstance(base.get(key), list):
            by_id: dict[Any, Any] = {}
            for item in [*base[key], *value]:
                if isinstance(item, Mapping) and "id" in item:
                    by_id[item["id"]] = item
                else:  # malformed: keep it so validation reports it
                    by_id[id(item)] = item
            merged[key] = list(by_id.values())
        elif value is None and key in base and key != "extends":
            merged.pop(key)
        elif isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            merged[key] = _deep_merge(dict(base[key]), value)
        else:
            merged[key] = value
    return merged


def _extend(base: dict[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``child`` over its base. An element the child sets to null is removed, and
    with it the base's questions for that element (else the merge could never validate)."""
    elements = child.get("elements")
    questions = base.get("questions")
    if isinstance(elements, Mapping) and isinstance(questions, list):
        removed = {key for key, value in elements.items() if value is None}
        base = dict(base)
        base["questions"] = [
            q for q in questions if not (isinstance(q, Mapping) and q.get("element") in removed)
        ]
    return _deep_merge(base, child)


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PlaybookError(f"playbook {origin}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PlaybookError(f"playbook {origin}: expected a mapping at the top level")
    return data


def _built_in_source(name: str) -> str:
    return resources.files("app.coaching.playbooks").joinpath(f"{name}.yaml").read_text("utf-8")


def _raw_playbook(
    name_or_path: str, base_dir: Path | None, seen: tuple[str, ...]
) -> dict[str, Any]:
    if name_or_path.lower() in BUILT_IN_PLAYBOOKS:
        origin = name_or_path.lower()
        data = _read_yaml(_built_in_source(origin), origin)
        here: Path | None = None
    else:
        path = Path(name_or_path)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        origin = str(path)
        if not path.is_file():
            known = ", ".join(BUILT_IN_PLAYBOOKS)
            raise PlaybookError(f"playbook {name_or_path}: no such file or built-in ({known})")
        data = _read_yaml(path.read_text("utf-8"), origin)
        here = path.parent
    if origin in seen:
        raise PlaybookError(f"playbook {origin}: extends itself through {' -> '.join(seen)}")
    parent = data.get("extends")
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise PlaybookError(f"playbook {origin}: extends: expected a playbook name or path")
    base = _raw_playbook(parent, here, (*seen, origin))
    base.pop("name", None)
    return _extend(base, data)


def parse_playbook(data: Mapping[str, Any], origin: str = "<playbook>") -> Playbook:
    """Validate an already-merged playbook mapping."""
    try:
        return Playbook.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        location = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        extra = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise PlaybookError(f"playbook {origin}: {location}: {message}{extra}") from None


def load_playbook(name_or_path: str = DEFAULT_PLAYBOOK) -> Playbook:
    """Load a built-in playbook by name, or a YAML file (which may ``extends`` another)."""
    data = _raw_playbook(name_or_path, Path.cwd(), ())
    return parse_playbook(data, name_or_path)


def load_playbook_text(text: str, origin: str = "<playbook>") -> Playbook:
    """Load a playbook from YAML text; ``extends`` may name a built-in playbook only."""
    data = _read_yaml(text, origin)
    parent = data.get("extends")
    if parent is not None:
        if not isinstance(parent, str) or parent.lower() not in BUILT_IN_PLAYBOOKS:
            known = ", ".join(BUILT_IN_PLAYBOOKS)
            raise PlaybookError(f"playbook {origin}: extends: must name a built-in ({known})")
        base = _raw_playbook(parent, None, (origin,))
        base.pop("name", None)
        data = _extend(base, data)
    return parse_playbook(data, origin)


# ---------------------------------------------------------------- compiled form


def normalise_role(role: str) -> str:
    """Roles compare case- and spacing-insensitively: 'Economic  buyer' == 'economic_buyer'."""
    return "_".join(role.replace("-", " ").replace("_", " ").lower().split())


@dataclass(frozen=True, slots=True)
class CompiledSource:
    kind: Literal["field", "contact_roles", "keywords"]
    names: tuple[str, ...]
    in_: tuple[str, ...]
    status: Literal["confirmed", "ambiguous"]
    #: keywords only: one pattern matching any of them (one scan per text).
    pattern: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True)
class CompiledElement:
    key: str
    label: str
    from_index: int
    sources: tuple[CompiledSource, ...]
    #: Named as the source of an ``absent`` judgement: the first source's field(s).
    absent_source: str
    #: The evidence detail of a gap, e.g. "Metrics expected from the qualify phase".
    expected_note: str
    #: Every field its sources name (an organisation recording one has a place for it).
    field_names: tuple[str, ...] = ()
    #: It has a field or contact-role source (else free text is its only place).
    structured: bool = False


@dataclass(frozen=True, slots=True)
class CompiledPlaybook:
    """The playbook in the shape the engine reads fast: lookups prepared once."""

    playbook: Playbook
    thresholds: Thresholds
    enabled: frozenset[str]
    economic_buyer_roles: frozenset[str]
    commit_categories: frozenset[str]
    ambiguous_values: frozenset[str]
    elements: tuple[CompiledElement, ...]
    signal_questions: Mapping[str, tuple[Question, ...]]
    element_questions: Mapping[str, tuple[Question, ...]]
    stage_phases: Mapping[str, Phase]
    penalties: Mapping[str, int]
    element_from: Mapping[str, int]
    #: (signal code, or "element:<key>") and phase -> its first question (for topics).
    question_for: Mapping[tuple[str, str], Question]
    #: (signal code, or "element:<key>") and phase -> the questions to choose from, in
    #: order, each with its ``when`` split into the signals and the facts it needs:
    #: the first whose conditions hold is asked.
    question_choices: Mapping[
        tuple[str, str], tuple[tuple[Question, tuple[str, ...], tuple[str, ...]], ...]
    ]
    renewal_types: frozenset[str]
    renewal_pattern: re.Pattern[str] | None
    renewal_element: str | None
    #: (signal code, or "element:<key>") -> the topic of its questions, when they have one
    #: (the first question's that does): for a phase-less lookup.
    target_topics: Mapping[str, str]

    @property
    def name(self) -> str:
        return self.playbook.name

    @property
    def version(self) -> int:
        return self.playbook.version


def keyword_pattern(words: Sequence[str]) -> re.Pattern[str]:
    """One pattern matching any of the (lowercased) keywords at the start of a word.

    Prefix matching keeps stems (``struggl`` matches "struggling") while
    ``losing`` no longer matches "closing", nor ``roi`` "android". A keyword
    that starts with a non-word character (``%``, ``$``) matches anywhere.
    """
    return re.compile(
        "|".join((r"\b" if _WORD_START.match(word) else "") + re.escape(word) for word in words)
    )


_WORD_START = re.compile(r"\w")


def compile_playbook(playbook: Playbook) -> CompiledPlaybook:
    """Prepare a validated playbook for the engine."""
    elements = []
    for key, element in playbook.elements.items():
        sources = []
        for source in element.sources:
            if source.field:
                sources.append(
                    CompiledSource("field", tuple(source.field), (), source.status or "confirmed")
                )
            elif source.contact_roles:
                roles = tuple(normalise_role(r) for r in source.contact_roles)
                sources.append(
                    CompiledSource("contact_roles", roles, (), source.status or "confirmed")
                )
            elif source.keywords:
                words = tuple(k.lower() for k in source.keywords)
                status = source.status or "ambiguous"
                pattern = keyword_pattern(words)
                sources.append(
                    CompiledSource("keywords", words, tuple(source.in_), status, pattern)
                )
        first = sources[0]
        if first.kind == "field":
            absent_source = "/".join(first.names)
        elif first.kind == "contact_roles":
            absent_source = "contacts.roles"
        else:
            absent_source = "/".join(first.in_)
        elements.append(
            CompiledElement(
                key,
                element.label,
                PHASE_INDEX[element.from_phase],
                tuple(sources),
                absent_source,
                f"{element.label} expected from the {element.from_phase} phase",
                tuple(name for src in sources if src.kind == "field" for name in src.names),
                any(src.kind != "keywords" for src in sources),
            )
        )
    by_signal: dict[str, list[Question]] = {}
    by_element: dict[str, list[Question]] = {}
    for raw_question in playbook.questions:
        # Fold YAML line breaks once here, not on every prompt.
        question = raw_question.model_copy(
            update={
                "manager": " ".join(raw_question.manager.split()),
                "rep": " ".join(raw_question.rep.split()),
            }
        )
        if question.signal:
            by_signal.setdefault(question.signal, []).append(question)
        elif question.element:
            by_element.setdefault(question.element, []).append(question)
    health = playbook.health
    choices = _question_table(by_signal, by_element)
    return CompiledPlaybook(
        playbook=playbook,
        thresholds=playbook.thresholds,
        enabled=frozenset(SIGNAL_CODES) - frozenset(playbook.disabled_signals),
        economic_buyer_roles=frozenset(normalise_role(r) for r in playbook.economic_buyer_roles),
        commit_categories=frozenset(c.lower() for c in playbook.forecast_commit_categories),
        ambiguous_values=frozenset(v.strip().lower() for v in playbook.ambiguous_values),
        elements=tuple(elements),
        signal_questions={k: tuple(v) for k, v in by_signal.items()},
        element_questions={k: tuple(v) for k, v in by_element.items()},
        stage_phases=dict(playbook.stage_phases),
        penalties={
            "high": health.penalty_high,
            "medium": health.penalty_medium,
            "low": health.penalty_low,
        },
        element_from={element.key: element.from_index for element in elements},
        question_for={key: value[0] for key, value in choices.items()},
        question_choices={
            key: tuple((q, *_conditions(q)) for q in value) for key, value in choices.items()
        },
        renewal_types=frozenset(t.strip().lower() for t in playbook.renewal_types),
        renewal_pattern=(
            keyword_pattern([k.lower() for k in playbook.renewal_keywords])
            if playbook.renewal_keywords
            else None
        ),
        renewal_element=playbook.renewal_element,
        target_topics=_target_topics(by_signal, by_element),
    )


def _target_topics(
    by_signal: Mapping[str, list[Question]], by_element: Mapping[str, list[Question]]
) -> dict[str, str]:
    topics: dict[str, str] = {}
    targets = [*by_signal.items(), *((f"element:{k}", v) for k, v in by_element.items())]
    for target, questions in targets:
        topic = next((q.topic for q in questions if q.topic), None)
        if topic is not None:
            topics[target] = topic
    return topics


def _conditions(question: Question) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A question's ``when``: (signals that must have fired, facts that must be set)."""
    when = question.when or ()
    fired = tuple(c.removeprefix("signal:") for c in when if c.startswith("signal:"))
    facts = tuple(c for c in when if not c.startswith("signal:"))
    return fired, facts


def _question_table(
    by_signal: Mapping[str, list[Question]], by_element: Mapping[str, list[Question]]
) -> dict[tuple[str, str], tuple[Question, ...]]:
    """For every target and phase, the questions to choose from: those meant for the
    phase, then those meant for every phase, each group in playbook order."""
    table: dict[tuple[str, str], tuple[Question, ...]] = {}
    targets = [*by_signal.items(), *((f"element:{k}", v) for k, v in by_element.items())]
    for target, questions in targets:
        for phase in PHASES:
            chosen = tuple(q for q in questions if q.phases and phase in q.phases) + tuple(
                q for q in questions if q.phases is None
            )
            if chosen:
                table[(target, phase)] = chosen
    return table


__all__ = [
    "BUILT_IN_PLAYBOOKS",
    "DEFAULT_PLAYBOOK",
    "PHASES",
    "CompiledPlaybook",
    "Playbook",
    "PlaybookError",
    "compile_playbook",
    "keyword_pattern",
    "load_playbook",
    "load_playbook_text",
    "normalise_role",
    "parse_playbook",
]
