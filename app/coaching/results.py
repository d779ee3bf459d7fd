"""What the engine returns: signals with evidence, prompts, health, the deal review.

These are slotted dataclasses but not frozen: the engine builds tens of
thousands a second and a frozen dataclass costs three times as much to build.
Treat them as read-only values all the same; nothing in dealcoach mutates them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

Severity = Literal["low", "medium", "high"]
Audience = Literal["manager", "rep"]
Band = Literal["healthy", "at_risk", "critical"]
ElementStatus = Literal["confirmed", "ambiguous", "absent", "not_recorded"]

SEVERITY_RANK: Mapping[str, int] = {"low": 1, "medium": 2, "high": 3}
SEVERITIES: tuple[Severity, Severity, Severity] = ("low", "medium", "high")


def _iso(value: date | datetime | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value.isoformat()


@dataclass(slots=True)
class Evidence:
    """One fact from the CRM that raised a signal: which field, what value, when."""

    field: str
    value: str | None
    at: date | datetime | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"field": self.field, "value": self.value, "at": _iso(self.at)}
        if self.detail:
            data["detail"] = self.detail
        return data


@dataclass(slots=True)
class Signal:
    """A risk signal: a stable code, a severity, the evidence, and a readable message.

    ``facts`` holds the numbers behind the message (days, counts) for question
    templates; they move with ``as_of`` while the evidence does not.
    """

    code: str
    severity: Severity
    message: str
    evidence: tuple[Evidence, ...]
    facts: Mapping[str, str | int | float] = field(default_factory=dict)
    element: str | None = None
    status: ElementStatus | None = None

    @property
    def key(self) -> str:
        """Identity of the signal on this deal: the code, plus the element for gaps."""
        return f"{self.code}:{self.element}" if self.element else self.code

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "evidence": [item.to_dict() for item in self.evidence],
            "facts": dict(self.facts),
        }
        if self.element is not None:
            data["element"] = self.element
        if self.element is not None or self.status is not None:
            data["status"] = self.status  # "not_recorded": what the CRM does not record
        return data


@dataclass(slots=True)
class Prompt:
    """A question for the deal review, tied to the signal that raised it.

    ``id`` is stable for the same question on the same evidence, so feedback
    and "don't repeat unchanged prompts" can key on it.
    """

    id: str
    question_id: str
    audience: Audience
    text: str
    why: str
    signal: str
    severity: Severity
    score: float
    shown_first: bool
    element: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question_id": self.question_id,
            "audience": self.audience,
            "text": self.text,
            "why": self.why,
            "signal": self.signal,
            "element": self.element,
            "severity": self.severity,
            "score": round(self.score, 3),
            "shown_first": self.shown_first,
        }


@dataclass(slots=True)
class Health:
    """A 0-100 score with its band, explained by the penalty of each signal."""

    score: int
    band: Band
    penalties: tuple[tuple[str, int], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "band": self.band,
            "explanation": [{"signal": key, "penalty": value} for key, value in self.penalties],
        }


@dataclass(slots=True)
class ElementJudgement:
    """How a methodology element stands, and the field it was judged from."""

    element: str
    label: str
    status: ElementStatus
    source: str | None
    value: str | None
    expected: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "element": self.element,
            "label": self.label,
            "status": self.status,
            "source": self.source,
            "value": self.value,
            "expected": self.expected,
        }


@dataclass(slots=True)
class DealReview:
    """The engine's review of one deal at ``as_of`` under one playbook."""

    deal_id: str
    deal_name: str
    owner_id: str | None
    amount: float | None
    currency: str | None
    close_date: date | None
    stage_key: str
    stage_label: str
    phase: str
    is_open: bool
    as_of: datetime
    playbook: str
    playbook_version: int
    health: Health
    signals: tuple[Signal, ...]
    prompts: tuple[Prompt, ...]
    rep_prompts: tuple[Prompt, ...]
    methodology: tuple[ElementJudgement, ...]
    summary: str
    #: Closed and won (always False for an open deal).
    is_won: bool = False
    #: The CRM's forecast category (Salesforce ``ForecastCategoryName``), if any.
    forecast_category: str | None = None

    def prompts_for(self, audience: Audience) -> tuple[Prompt, ...]:
        """The prompts of one audience: the manager's questions or the rep's self-review."""
        return self.prompts if audience == "manager" else self.rep_prompts

    def to_dict(self, audience: Audience | None = None) -> dict[str, Any]:
        """The review as JSON data; ``audience`` keeps only that audience's prompts
        (default: both, the manager's first)."""
        chosen = (
            (*self.prompts, *self.rep_prompts) if audience is None else self.prompts_for(audience)
        )
        return {
            "deal_id": self.deal_id,
            "deal_name": self.deal_name,
            "owner_id": self.owner_id,
            "amount": self.amount,
            "currency": self.currency,
            "close_date": _iso(self.close_date),
            "forecast_category": self.forecast_category,
            "stage": {"key": self.stage_key, "label": self.stage_label, "phase": self.phase},
            "is_open": self.is_open,
            "is_won": self.is_won,
            "as_of": _iso(self.as_of),
            "playbook": {"name": self.playbook, "version": self.playbook_version},
            "health": self.health.to_dict(),
            "signals": [signal.to_dict() for signal in self.signals],
            "prompts": [prompt.to_dict() for prompt in chosen],
            "methodology": [item.to_dict() for item in self.methodology],
            "summary": self.summary,
        }
