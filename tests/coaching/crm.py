"""Deals as the CRMs export them, for scenario tests that go through the real mappings.

``salesforce(...)`` builds one Opportunity record of a standard org (no MEDDPICC
custom fields) with its ``OpportunityHistories`` and ``OpportunityContactRoles``
subqueries; ``hubspot(...)`` builds one deal object of a standard portal with
``propertiesWithHistory`` and v4 contact associations. Both return the
:class:`DealSnapshot` the mapping makes of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.coaching.snapshot import DealSnapshot
from integrations.hubspot.mapping import DEFAULT_PIPELINE, map_deal
from integrations.salesforce.mapping import DEFAULT_STAGES, map_opportunity

SF_PROBABILITY = {stage.key: round(stage.probability * 100) for stage in DEFAULT_STAGES.stages}


def _sf_time(text: str) -> str:
    """ "2026-11-14 09:30" -> "2026-11-14T09:30:00.000+0000" (Salesforce's form)."""
    return text.replace(" ", "T") + ":00.000+0000"


def salesforce(
    *,
    name: str,
    stage: str,
    amount: float | None,
    close: str,
    created: str,
    history: Sequence[tuple[str, str, float | None, str]],
    contacts: Sequence[tuple[str, str | None]] = (),
    next_step: str | None = None,
    last_activity: str | None = None,
    open_activity: bool = False,
    forecast: str = "Pipeline",
    extra: dict[str, Any] | None = None,
) -> DealSnapshot:
    """An Opportunity; ``history`` rows are (when, stage, amount, close date), oldest first,
    as OpportunityHistory holds them (the first row need not be the creation)."""
    rows = [
        {
            "StageName": row_stage,
            "Amount": row_amount,
            "CloseDate": row_close,
            "Probability": SF_PROBABILITY.get(row_stage, 0),
            "CreatedDate": _sf_time(when),
        }
        for when, row_stage, row_amount, row_close in history
    ]
    roles = [
        {
            "ContactId": f"003Hn00000Pc{index:03d}AAE",
            "Role": role,
            "IsPrimary": index == 0,
            "Contact": {"Name": contact},
        }
        for index, (contact, role) in enumerate(contacts)
    ]
    record: dict[str, Any] = {
        "attributes": {"type": "Opportunity"},
        "Id": "006Hn00000Sc001AAQ",
        "Name": name,
        "StageName": stage,
        "Amount": amount,
        "CloseDate": close,
        "Probability": SF_PROBABILITY.get(stage, 0),
        "ForecastCategoryName": forecast,
        "NextStep": next_step,
        "Description": None,
        "LastActivityDate": last_activity,
        "HasOpenActivity": open_activity,
        "IsClosed": False,
        "IsWon": False,
        "OwnerId": "005Hn00000Kq7aXIAR",
        "CreatedDate": _sf_time(created),
        "OpportunityHistories": {"totalSize": len(rows), "done": True, "records": rows},
        "OpportunityContactRoles": (
            {"totalSize": len(roles), "done": True, "records": roles} if roles else None
        ),
    }
    record.update(extra or {})
    return map_opportunity(record, DEFAULT_STAGES)


def _hs_time(text: str) -> str:
    return text.replace(" ", "T") + ":00.000Z"


def hubspot(
    *,
    name: str,
    stage: str,
    amount: float | None,
    close: str,
    created: str,
    stages: Sequence[tuple[str, str]],
    amounts: Sequence[tuple[str, float]] = (),
    contacts: Sequence[str | None] = (),
    next_step: str | None = None,
    last_activity: str | None = None,
    next_activity: str | None = None,
    properties: dict[str, Any] | None = None,
) -> DealSnapshot:
    """A HubSpot deal; ``stages`` and ``amounts`` are its property history (when, value),
    oldest first; ``contacts`` the association label of each contact (None: no label)."""

    def history(entries: Sequence[tuple[str, object]]) -> list[dict[str, Any]]:
        return [
            {"value": str(value), "timestamp": _hs_time(when), "sourceType": "CRM_UI"}
            for when, value in reversed(entries)
        ]

    results = []
    for index, label in enumerate(contacts):
        types: list[dict[str, Any]] = [{"category": "HUBSPOT_DEFINED", "typeId": 3, "label": None}]
        if label is not None:
            types.append({"category": "USER_DEFINED", "typeId": 31, "label": label})
        results.append({"toObjectId": 90000 + index, "associationTypes": types})
    props: dict[str, Any] = {
        "dealname": name,
        "dealstage": stage,
        "pipeline": "default",
        "amount": None if amount is None else str(amount),
        "closedate": close + "T00:00:00Z",
        "createdate": _hs_time(created),
        "hs_next_step": next_step,
        "description": None,
        "hubspot_owner_id": "41529873",
        "notes_last_contacted": _hs_time(last_activity) if last_activity else None,
        "notes_next_activity_date": _hs_time(next_activity) if next_activity else None,
        "num_associated_contacts": str(len(contacts)),
    }
    props.update(properties or {})
    deal = {
        "id": "18765432199",
        "properties": props,
        "propertiesWithHistory": {
            "dealstage": history(stages),
            "amount": history([(when, int(value)) for when, value in amounts]),
        },
        "associations": {"contacts": {"results": results}},
    }
    return map_deal(deal, {"default": DEFAULT_PIPELINE})
