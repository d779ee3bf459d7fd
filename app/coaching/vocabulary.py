"""The fixed vocabulary: signal codes, phases, and the facts each signal provides."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

Phase = Literal["discover", "qualify", "solution", "propose", "negotiate", "commit", "closed"]

#: Open phases in pipeline order; ``closed`` comes after all of them.
PHASES: tuple[Phase, ...] = (
    "discover",
    "qualify",
    "solution",
    "propose",
    "negotiate",
    "commit",
    "closed",
)
PHASE_INDEX: Mapping[str, int] = {phase: index for index, phase in enumerate(PHASES)}

SignalCode = Literal[
    "close_date_passed",
    "close_date_pushed",
    "stalled_in_stage",
    "no_recent_activity",
    "next_step_missing",
    "next_step_vague",
    "single_threaded",
    "no_economic_buyer",
    "amount_decreased",
    "stage_regressed",
    "close_date_unrealistic",
    "forecast_mismatch",
    "owner_changed",
    "deal_aging",
    "methodology_gap",
]

#: Every signal code, in the order of the vocabulary table.
SIGNAL_CODES: tuple[str, ...] = get_args(SignalCode)

#: The facts every question may use (``{name}`` placeholders), whatever its signal:
#: the deal's stage, name, amount ("420,000" or "an unpriced"), close date
#: ("31 January 2027" or "the close date"), days to it (negative once passed),
#: whether it is a renewal, and its next step as quoted (empty when none).
COMMON_FACTS: frozenset[str] = frozenset(
    {
        "stage",
        "deal",
        "amount",
        "close_on",
        "days_to_close",
        "close_ahead",
        "renewal",
        "next_step",
    }
)
#: The facts each signal provides besides the common ones. A question may also
#: use facts a signal gives only sometimes (``when`` names them): missing ones
#: render empty, so such questions are picked with ``when``.
SIGNAL_FACTS: Mapping[str, frozenset[str]] = {
    "close_date_passed": frozenset({"days", "close_date", "push_count", "late", "quiet"}),
    "close_date_pushed": frozenset({"count", "close_date", "moves", "first_close_on"}),
    "stalled_in_stage": frozenset({"days", "limit", "stage_days", "since", "at_least"}),
    "no_recent_activity": frozenset({"days", "last_on", "never"}),
    "next_step_missing": frozenset({"closes_ahead"}),
    "next_step_vague": frozenset({"pricing"}),
    "single_threaded": frozenset({"contacts", "contact", "none"}),
    "no_economic_buyer": frozenset({"probability", "roles_present", "unknown"}),
    "amount_decreased": frozenset(
        {
            "drop_pct",
            "peak",
            "now",
            "fall",
            "cut_on",
            "days_after",
            "after_stage",
            "late",
            "pricing_step",
        }
    ),
    "stage_regressed": frozenset({"from_stage", "days", "moved_on"}),
    "close_date_unrealistic": frozenset({"days", "probability"}),
    "forecast_mismatch": frozenset({"category", "probability", "closes_soon"}),
    "owner_changed": frozenset({"days", "changed_on"}),
    "deal_aging": frozenset({"days", "created_on"}),
    "methodology_gap": frozenset(
        {"element_label", "status", "source", "not_recorded", "roles_present"}
    ),
}
