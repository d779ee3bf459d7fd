"""The neutral deal snapshot as JSON (for the snapshot store and the API), and back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, TypeVar

from app.coaching.snapshot import Change, Contact, DealSnapshot, Stage

T = TypeVar("T")


def stage_to_json(stage: Stage) -> dict[str, Any]:
    return {
        "key": stage.key,
        "label": stage.label,
        "order": stage.order,
        "probability": stage.probability,
        "is_closed": stage.is_closed,
        "is_won": stage.is_won,
    }


def stage_from_json(data: Mapping[str, Any]) -> Stage:
    return Stage(
        key=str(data["key"]),
        label=str(data["label"]),
        order=data.get("order"),
        probability=float(data["probability"]),
        is_closed=bool(data.get("is_closed", False)),
        is_won=bool(data.get("is_won", False)),
    )


def _iso(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _d(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


def _changes_to_json(
    changes: tuple[Change[T], ...], encode: Callable[[T], Any]
) -> list[dict[str, Any]]:
    return [
        {
            "at": change.at.isoformat(),
            "old": None if change.old is None else encode(change.old),
            "new": None if change.new is None else encode(change.new),
        }
        for change in changes
    ]


def _changes_from_json(
    rows: list[dict[str, Any]], decode: Callable[[Any], T]
) -> tuple[Change[T], ...]:
    return tuple(
        Change(
            at=datetime.fromisoformat(row["at"]),
            old=None if row["old"] is None else decode(row["old"]),
            new=None if row["new"] is None else decode(row["new"]),
        )
        for row in rows
    )


def snapshot_to_json(deal: DealSnapshot) -> dict[str, Any]:
    """A JSON-safe dict that :func:`snapshot_from_json` turns back into an equal snapshot."""
    return {
        "id": deal.id,
        "name": deal.name,
        "stage": stage_to_json(deal.stage),
        "created_at": deal.created_at.isoformat(),
        "amount": deal.amount,
        "currency": deal.currency,
        "close_date": _iso(deal.close_date),
        "owner_id": deal.owner_id,
        "owner_name": deal.owner_name,
        "next_step": deal.next_step,
        "description": deal.description,
        "last_activity_at": _iso(deal.last_activity_at),
        "has_future_activity": deal.has_future_activity,
        "next_activity_at": _iso(deal.next_activity_at),
        "forecast_category": deal.forecast_category,
        "contacts": [
            {"id": c.id, "roles": list(c.roles), "is_primary": c.is_primary, "name": c.name}
            for c in deal.contacts
        ],
        "contact_count": deal.contact_count,
        "contacts_known": deal.contacts_known,
        "stage_entered_at": _iso(deal.stage_entered_at),
        "stage_history": _changes_to_json(deal.stage_history, stage_to_json),
        "close_date_history": _changes_to_json(deal.close_date_history, date.isoformat),
        "amount_history": _changes_to_json(deal.amount_history, float),
        "owner_history": _changes_to_json(deal.owner_history, str),
        "fields": dict(deal.fields),
        "pipeline": deal.pipeline,
        "modified_at": _iso(deal.modified_at),
        "stage_entered_field": deal.stage_entered_field,
        "stage_history_from": _iso(deal.stage_history_from),
        "recorded_fields": (None if deal.recorded_fields is None else sorted(deal.recorded_fields)),
        "deal_type": deal.deal_type,
    }


def snapshot_from_json(data: Mapping[str, Any]) -> DealSnapshot:
    """Rebuild a snapshot stored by :func:`snapshot_to_json`."""
    return DealSnapshot(
        id=data["id"],
        name=data["name"],
        stage=stage_from_json(data["stage"]),
        created_at=datetime.fromisoformat(data["created_at"]),
        amount=data.get("amount"),
        currency=data.get("currency"),
        close_date=_d(data.get("close_date")),
        owner_id=data.get("owner_id"),
        owner_name=data.get("owner_name"),
        next_step=data.get("next_step"),
        description=data.get("description"),
        last_activity_at=_dt(data.get("last_activity_at")),
        has_future_activity=bool(data.get("has_future_activity", False)),
        next_activity_at=_dt(data.get("next_activity_at")),
        forecast_category=data.get("forecast_category"),
        contacts=tuple(
            Contact(
                id=c["id"],
                roles=tuple(c.get("roles", ())),
                is_primary=bool(c.get("is_primary", False)),
                name=c.get("name"),
            )
            for c in data.get("contacts", ())
        ),
        contact_count=data.get("contact_count"),
        contacts_known=bool(data.get("contacts_known", True)),
        stage_entered_at=_dt(data.get("stage_entered_at")),
        stage_history=_changes_from_json(data.get("stage_history", []), stage_from_json),
        close_date_history=_changes_from_json(
            data.get("close_date_history", []), date.fromisoformat
        ),
        amount_history=_changes_from_json(data.get("amount_history", []), float),
        owner_history=_changes_from_json(data.get("owner_history", []), str),
        fields=dict(data.get("fields", {})),
        pipeline=data.get("pipeline"),
        modified_at=_dt(data.get("modified_at")),
        stage_entered_field=data.get("stage_entered_field"),
        stage_history_from=_dt(data.get("stage_history_from")),
        # Stored before these existed: unknown, so every field counts as recorded.
        recorded_fields=(
            None if data.get("recorded_fields") is None else frozenset(data["recorded_fields"])
        ),
        deal_type=data.get("deal_type"),
    )
