"""Fixtures for the CRM mapping tests: the sample generator and a signal yardstick."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

from app.coaching.snapshot import DealSnapshot

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
#: The review time the bundled samples are made for.
AS_OF = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def sample_generator() -> ModuleType:
    """``samples/make_samples.py`` as a module (it is a script, not a package)."""
    name = "dealcoach_make_samples"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SAMPLES / "make_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look the module up while building classes
    spec.loader.exec_module(module)
    return module


def _signals_of(deal: DealSnapshot) -> set[str]:
    """The coaching signals (COACHING.md defaults) as a plain reading of the snapshot.

    A yardstick for the samples, independent of the engine: it checks that each
    sample deal carries the data for the signals it is meant to show, and no
    others. ``methodology_gap`` depends on the playbook and is left out.
    """
    if not deal.is_open:
        return set()
    today = AS_OF.date()
    found: set[str] = set()
    if deal.close_date is not None and deal.close_date < today:
        found.add("close_date_passed")
    pushes = [c for c in deal.close_date_history if c.old and c.new and c.new > c.old]
    if len(pushes) >= 2:
        found.add("close_date_pushed")
    # The stage clock: the CRM's entry date, else the latest move into the stage, else
    # the start of the stage history (the creation when it starts there); never a guess.
    entered = deal.stage_entered_at or next(
        (c.at for c in reversed(deal.stage_history) if c.new and c.new.key == deal.stage.key),
        None,
    )
    if entered is None and not deal.stage_history and deal.stage_history_from is not None:
        entered = deal.stage_history_from
    if entered is not None and (today - entered.date()).days > 30:
        found.add("stalled_in_stage")
    last = deal.last_activity_at
    if (last is None and (today - deal.created_at.date()).days > 14) or (
        last is not None and (today - last.date()).days > 14
    ):
        found.add("no_recent_activity")
    future = deal.next_activity_at is not None and deal.next_activity_at > AS_OF
    if not deal.next_step and not deal.has_future_activity and not future:
        found.add("next_step_missing")
    if (deal.amount or 0) >= 50000 and deal.number_of_contacts <= 1:
        found.add("single_threaded")
    roles = {role.lower() for contact in deal.contacts for role in contact.roles}
    if deal.stage.probability >= 0.5 and not roles & {"economic buyer", "decision maker"}:
        found.add("no_economic_buyer")
    amounts = [a for c in deal.amount_history for a in (c.old, c.new) if a is not None]
    if deal.amount is not None and amounts and deal.amount <= 0.8 * max(amounts):
        found.add("amount_decreased")
    for change in deal.stage_history:
        old = change.old.order if change.old else None
        new = change.new.order if change.new else None
        recent = (today - change.at.date()).days <= 30
        if old is not None and new is not None and new < old and recent:
            found.add("stage_regressed")
    closes_soon = deal.close_date is not None and 0 <= (deal.close_date - today).days <= 30
    if closes_soon and deal.stage.probability <= 0.2:
        found.add("close_date_unrealistic")
    if deal.forecast_category in {"Commit", "Closed"} and deal.stage.probability < 0.7:
        found.add("forecast_mismatch")
    if any((today - c.at.date()).days <= 30 for c in deal.owner_history):
        found.add("owner_changed")
    if (today - deal.created_at.date()).days > 180:
        found.add("deal_aging")
    return found


@pytest.fixture(scope="session")
def signals_of() -> Callable[[DealSnapshot], set[str]]:
    return _signals_of
