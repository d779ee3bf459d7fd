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

#: The facts each signal always provides; question templates may use these
#: as ``{name}`` placeholders (and every signal offers ``stage`` and ``deal``).
COMMON_FACTS: frozenset[str] = frozenset({"stage", "deal"})
SIGNAL_FACTS: Mapping[str, frozenset[str]] = {
    "close_date_passed": frozenset({"days", "close_date"}),
    "close_date_pushed": frozenset({"count", "close_date"}),
    "stalled_in_stage": frozenset({"days", "limit"}),
    "no_recent_activity": frozenset({"days"}),
    "next_step_missing": frozenset(),
    "single_threaded": frozenset({"contacts"}),
    "no_economic_buyer": frozenset({"probability"}),
    "amount_decreased": frozenset({"drop_pct"}),
    "stage_regressed": frozenset({"from_stage", "days"}),
    "close_date_unrealistic": frozenset({"days", "probability"}),
    "forecast_mismatch": frozenset({"category", "probability"}),
    "owner_changed": frozenset({"days"}),
    "deal_aging": frozenset({"days"}),
    "methodology_gap": frozenset({"element_label", "status"}),
}
