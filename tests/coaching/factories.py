"""Plain factories for the coaching engine's tests.

``make_deal()`` builds a *quiet* deal: open, in Solution (40%), with every
MEDDPICC element confirmed by a field, an economic buyer and a champion among
its contacts, recent activity and a next step. Reviewed at :data:`AS_OF` it
raises no signal at all, so each test overrides only what its case is about.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

from app.coaching.engine import review_deal
from app.coaching.playbook import CompiledPlaybook, compile_playbook, load_playbook
from app.coaching.results import DealReview, Signal
from app.coaching.snapshot import Change, Contact, DealSnapshot, Stage

AS_OF = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
TODAY = AS_OF.date()

DISCOVERY = Stage("discovery", "Discovery", 1, 0.10)
QUALIFICATION = Stage("qualification", "Qualification", 2, 0.20)
SOLUTION = Stage("solution", "Solution", 3, 0.40)
EVALUATION = Stage("evaluation", "Evaluation", 4, 0.50)
PROPOSAL = Stage("proposal", "Proposal", 5, 0.60)
NEGOTIATION = Stage("negotiation", "Negotiation", 6, 0.80)
COMMIT = Stage("commit", "Commit", 7, 0.90)
CLOSED_WON = Stage("closed_won", "Closed Won", 8, 1.0, is_closed=True, is_won=True)
CLOSED_LOST = Stage("closed_lost", "Closed Lost", 9, 0.0, is_closed=True)
#: A stage seen in history that the pipeline no longer has: the engine cannot place it.
RETIRED = Stage("retired", "Retired stage", None, 0.30)

OPEN_STAGES = (DISCOVERY, QUALIFICATION, SOLUTION, EVALUATION, PROPOSAL, NEGOTIATION, COMMIT)
CLOSED_STAGES = (CLOSED_WON, CLOSED_LOST)

#: A value for every field the MEDDPICC playbook maps an element to.
MEDDPICC_FIELDS: dict[str, str] = {
    "Identify_Pain__c": "Month-end close takes 9 days",
    "Metrics__c": "Close in 4 days",
    "Economic_Buyer__c": "Dana Ruiz, CFO",
    "Decision_Criteria__c": "SOX controls, ERP integration",
    "Champion__c": "Sam Lee, controller",
    "Decision_Process__c": "CFO, then procurement, then legal",
    "Competition__c": "Spreadsheets",
    "Paper_Process__c": "MSA plus security review",
}

ECONOMIC_BUYER = Contact("003EB", ("Economic Buyer",), is_primary=True, name="Dana Ruiz")
CHAMPION = Contact("003CH", ("Champion",), name="Sam Lee")


def days_ago(days: float, *, base: datetime = AS_OF) -> datetime:
    """The moment ``days`` whole days before ``base`` (same time of day)."""
    return base - timedelta(days=days)


def day(offset: int) -> date:
    """The calendar date ``offset`` days after :data:`TODAY` (negative: before)."""
    return TODAY + timedelta(days=offset)


def make_deal(**overrides: Any) -> DealSnapshot:
    """A quiet open deal (no signal at :data:`AS_OF`); keyword arguments override fields."""
    values: dict[str, Any] = {
        "id": "006A",
        "name": "Acme finance platform",
        "stage": SOLUTION,
        "created_at": days_ago(60),
        "amount": 20_000.0,
        "currency": "EUR",
        "close_date": day(45),
        "owner_id": "005A",
        "owner_name": "Alex Rep",
        "next_step": "Workshop with the controller on Friday",
        "description": "Finance team consolidation",
        "last_activity_at": days_ago(2),
        "contacts": (ECONOMIC_BUYER, CHAMPION),
        "stage_history": (Change(days_ago(10), DISCOVERY, SOLUTION),),
        "fields": dict(MEDDPICC_FIELDS),
    }
    values.update(overrides)
    return DealSnapshot(**values)


@cache
def playbook(name: str = "meddpicc") -> CompiledPlaybook:
    """A built-in playbook, compiled once per test session."""
    return compile_playbook(load_playbook(name))


def review(
    deal: DealSnapshot,
    compiled: CompiledPlaybook | None = None,
    as_of: datetime = AS_OF,
) -> DealReview:
    """Review ``deal`` under the default playbook (MEDDPICC) unless told otherwise."""
    return review_deal(deal, compiled or playbook(), as_of)


def codes(result: DealReview) -> set[str]:
    """The signal keys of a review (``methodology_gap:<element>`` for gaps)."""
    return {signal.key for signal in result.signals}


def signal(result: DealReview, key: str) -> Signal:
    """The one signal of ``result`` with this key; fails the test when absent."""
    found = [s for s in result.signals if s.key == key]
    assert len(found) == 1, f"expected one {key!r}, got {sorted(codes(result))}"
    return found[0]


def maybe_signal(result: DealReview, key: str) -> Signal | None:
    found = [s for s in result.signals if s.key == key]
    return found[0] if found else None
