"""The seed generator and the calculated stage properties, on the portal directly."""

from __future__ import annotations

from datetime import datetime

from integrations.hubspot.emulator import ARCHETYPES, HubSpotEmulator

from .conftest import AS_OF


def _portal_snapshot(emulator: HubSpotEmulator) -> list[dict[str, object]]:
    return [
        {
            "deal": emulator.deal(deal_id),
            "stages": emulator.history(deal_id, "dealstage"),
            "contacts": sorted(
                sorted(types)
                for types in emulator.portal.associated("deals", deal_id, "contacts").values()
            ),
        }
        for deal_id in emulator.deal_ids()
    ]


def test_the_same_seed_and_moment_give_the_same_portal() -> None:
    first, second, other = HubSpotEmulator(seed=5), HubSpotEmulator(seed=5), HubSpotEmulator(seed=6)
    for emulator in (first, second, other):
        emulator.seed(40, as_of=AS_OF)
    assert _portal_snapshot(first) == _portal_snapshot(second)
    assert _portal_snapshot(first) != _portal_snapshot(other)


def test_every_archetype_has_its_shape() -> None:
    emulator = HubSpotEmulator(seed=9)
    ids = emulator.seed(len(ARCHETYPES), as_of=AS_OF)
    by_key = {shape.key: deal_id for shape, deal_id in zip(ARCHETYPES, ids, strict=True)}
    deal = {key: emulator.deal(deal_id) or {} for key, deal_id in by_key.items()}
    assert deal["renewal"]["dealtype"] == "existingbusiness"
    assert deal["renewal"]["pipeline"] == "1467325"
    assert deal["healthy"]["hs_next_step"].startswith("Follow-up call booked")
    assert deal["no_next_step"]["hs_next_step"] is None
    assert deal["won"]["hs_is_closed_won"] == "true"
    assert deal["lost"]["hs_is_closed"] == "true" and deal["lost"]["hs_is_closed_won"] == "false"
    assert deal["mismatch"]["hs_manual_forecast_category"] == "COMMIT"
    owners = emulator.history(by_key["new_owner"], "hubspot_owner_id")
    assert len(owners) == 2 and owners[0]["value"] != owners[1]["value"]
    amounts = [float(e["value"]) for e in emulator.history(by_key["shrinking"], "amount")]
    assert amounts[0] < max(amounts) * 0.8  # newest first: cut by more than 20%
    closes = emulator.history(by_key["pushed"], "closedate")
    assert len(closes) == 4 and [e["value"] for e in closes] == sorted(
        (e["value"] for e in closes), reverse=True
    )
    labels = {
        label
        for types in emulator.portal.associated("deals", by_key["no_buyer"], "contacts").values()
        for type_id in types
        if (kind := emulator.portal.association_type("deals", "contacts", type_id)) is not None
        and (label := kind.label) is not None
    }
    assert labels == {"Technical Buyer", "Evaluator"}  # and one contact without a label
    assert deal["no_buyer"]["num_associated_contacts"] == "3"
    created = datetime.fromisoformat(str(deal["aging"]["createdate"]).replace("Z", "+00:00"))
    assert (AS_OF - created).days > 180


def test_stage_dates_follow_the_latest_entry_after_a_regression() -> None:
    emulator = HubSpotEmulator(seed=9)
    ids = emulator.seed(len(ARCHETYPES), as_of=AS_OF)
    regressed = ids[[shape.key for shape in ARCHETYPES].index("regressed")]
    history = emulator.history(regressed, "dealstage")  # newest first
    assert [e["value"] for e in history[:2]] == ["presentationscheduled", "contractsent"]
    deal = emulator.deal(regressed) or {}
    # presentationscheduled was entered twice: the dates are the latest entry
    assert deal["hs_date_entered_presentationscheduled"] == history[0]["timestamp"]
    assert deal["hs_v2_date_entered_presentationscheduled"] == history[0]["timestamp"]
    assert deal["hs_v2_date_entered_current_stage"] == history[0]["timestamp"]
    assert deal["hs_date_exited_contractsent"] == history[0]["timestamp"]
    assert deal["hs_date_entered_contractsent"] == history[1]["timestamp"]
    assert deal["hs_date_entered_closedwon"] is None
    before = deal["hs_lastmodifieddate"]
    emulator.set_stage(regressed, "contractsent")
    after = emulator.deal(regressed) or {}
    assert after["hs_date_entered_contractsent"] == after["hs_v2_date_entered_current_stage"]
    assert after["hs_date_entered_contractsent"] > history[1]["timestamp"]
    assert after["hs_lastmodifieddate"] > before
