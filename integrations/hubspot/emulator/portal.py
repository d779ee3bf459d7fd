"""A portal's CRM state: objects with full property history, associations, side effects.

Every property value is kept as its history (oldest first here, newest first on the
wire); the current value is the latest entry. A write records a change only when
the value differs, and bumps the object's ``hs_lastmodifieddate``. Calculated deal
properties are derived when read:

* ``hs_date_entered_<stageId>`` / ``hs_v2_date_entered_<stageId>``: the latest time
  the deal entered that stage (from the ``dealstage`` history);
  ``hs_date_exited_<stageId>``: when it left that stage after that;
  ``hs_v2_date_entered_current_stage``: when it entered its current stage;
* ``hs_is_closed``, ``hs_is_closed_won``, ``hs_deal_stage_probability`` from the stage;
* ``num_associated_contacts`` from the associations; ``hs_object_id``.

Side effects as HubSpot has them: associating a note with a deal updates the deal's
``notes_last_updated`` (the activity's ``hs_timestamp`` when later) and ``num_notes``
(source ``CALCULATED``), which bumps the deal's ``hs_lastmodifieddate``; so does
associating a contact (``num_associated_contacts`` changes). A ``dealstage``
change calls :attr:`Portal.on_change` (webhooks).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .schema import (
    ASSOCIATION_TYPES,
    CONTACT_PROPERTIES,
    NOTE_PROPERTIES,
    AssociationType,
    PipelineDef,
    PropertyDef,
    StageDef,
    deal_properties,
)

__all__ = [
    "OBJECT_TYPES",
    "Change",
    "HubSpotError",
    "Portal",
    "Record",
    "format_datetime",
    "parse_datetime",
]

#: Object types (plural, as in URLs) and their singular names (for messages, v3 names).
OBJECT_TYPES = {"deals": "deal", "contacts": "contact", "notes": "note"}
#: HubSpot's object type ids.
OBJECT_TYPE_IDS = {"deals": "0-3", "contacts": "0-1", "notes": "0-46"}
_FIRST_IDS = {"deals": 18800000001, "contacts": 90100001, "notes": 61000000001}
#: Properties an API client may not set (HubSpot answers 400 READ_ONLY_VALUE).
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NOTE_BODY_MAX = 65536


class HubSpotError(Exception):
    """An error answer in HubSpot's body shape (``status``, ``message``, ``category``...)."""

    def __init__(
        self,
        status: int,
        category: str,
        message: str,
        *,
        errors: Sequence[Mapping[str, Any]] = (),
        context: Mapping[str, Sequence[str]] | None = None,
        sub_category: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.errors = list(errors)
        self.context = dict(context) if context else None
        self.sub_category = sub_category

    def body(self, correlation_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "error",
            "message": self.message,
            "correlationId": correlation_id,
            "category": self.category,
        }
        if self.sub_category:
            body["subCategory"] = self.sub_category
        if self.errors:
            body["errors"] = self.errors
        if self.context:
            body["context"] = {key: list(values) for key, values in self.context.items()}
        return body


def format_datetime(moment: datetime) -> str:
    """``2026-11-20T09:00:00.000Z`` (HubSpot's date-time format, always UTC)."""
    m = moment.astimezone(UTC)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}."
        f"{m.microsecond // 1000:03d}Z"
    )


def parse_datetime(value: str) -> datetime:
    """A date-time from epoch milliseconds, ISO 8601, or a date (midnight UTC)."""
    text = value.strip()
    if re.fullmatch(r"-?\d+", text):
        return _EPOCH + timedelta(milliseconds=int(text))
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@dataclass
class Change:
    """One recorded value of a property (``ValueWithTimestamp`` on the wire)."""

    value: str | None
    at: datetime
    source_type: str  # CRM_UI, INTEGRATION, CALCULATED, API, IMPORT
    source_id: str | None = None
    source_label: str | None = None
    user_id: int | None = None

    def wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "value": "" if self.value is None else self.value,
            "timestamp": format_datetime(self.at),
            "sourceType": self.source_type,
        }
        if self.source_id is not None:
            body["sourceId"] = self.source_id
        if self.source_label is not None:
            body["sourceLabel"] = self.source_label
        if self.user_id is not None:
            body["updatedByUserId"] = self.user_id
        return body

    def dump(self) -> dict[str, Any]:
        return {**self.wire(), "value": self.value}

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> Change:
        return cls(
            data.get("value"),
            parse_datetime(data["timestamp"]),
            data["sourceType"],
            data.get("sourceId"),
            data.get("sourceLabel"),
            data.get("updatedByUserId"),
        )


@dataclass(frozen=True)
class Source:
    """Who makes a change: a user in the UI, an app through the API, HubSpot itself."""

    type: str
    id: str | None = None
    label: str | None = None
    user_id: int | None = None

    def change(self, value: str | None, at: datetime) -> Change:
        return Change(value, at, self.type, self.id, self.label, self.user_id)


CALCULATED = Source("CALCULATED")


@dataclass
class Record:
    """One CRM object: deal, contact or note."""

    type: str
    id: str
    created_at: datetime
    updated_at: datetime
    history: dict[str, list[Change]] = field(default_factory=dict)
    archived: bool = False

    def get(self, name: str) -> str | None:
        changes = self.history.get(name)
        return changes[-1].value if changes else None

    def dump(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "id": self.id,
            "created_at": format_datetime(self.created_at),
            "updated_at": format_datetime(self.updated_at),
            "history": {k: [c.dump() for c in v] for k, v in self.history.items()},
            "archived": self.archived,
        }

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> Record:
        return cls(
            data["type"],
            data["id"],
            parse_datetime(data["created_at"]),
            parse_datetime(data["updated_at"]),
            {k: [Change.load(c) for c in v] for k, v in data["history"].items()},
            bool(data.get("archived")),
        )


class Portal:
    """The objects, associations and schema of one HubSpot account."""

    def __init__(
        self,
        portal_id: int,
        *,
        pipelines: Sequence[PipelineDef],
        custom_properties: Iterable[PropertyDef],
        clock: Callable[[], datetime],
    ) -> None:
        self.portal_id = portal_id
        self.pipelines = tuple(pipelines)
        self.custom_properties = list(custom_properties)
        self.clock = clock
        self.records: dict[str, dict[str, Record]] = {name: {} for name in OBJECT_TYPES}
        # (from type, from id, to type) -> {to id: {type ids}}
        self.links: dict[tuple[str, str, str], dict[str, set[int]]] = {}
        self.next_ids = dict(_FIRST_IDS)
        self.owners: list[dict[str, Any]] = []
        self.on_change: Callable[[Record, str, Change], None] | None = None
        #: Deal-contact labels an admin added (``add_contact_label``), both directions.
        self.extra_association_types: list[AssociationType] = []
        self._last_tick: datetime | None = None
        self.refresh_schema()

    def refresh_schema(self) -> None:
        self.properties: dict[str, dict[str, PropertyDef]] = {
            "deals": deal_properties(self.pipelines, self.custom_properties),
            "contacts": dict(CONTACT_PROPERTIES),
            "notes": dict(NOTE_PROPERTIES),
        }

    # ------------------------------------------------------------------ helpers

    def now(self) -> datetime:
        """The clock, strictly increasing by at least a millisecond per call."""
        moment = self.clock().astimezone(UTC)
        moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        if self._last_tick is not None and moment <= self._last_tick:
            moment = self._last_tick + timedelta(milliseconds=1)
        self._last_tick = moment
        return moment

    def pipeline(self, pipeline_id: str) -> PipelineDef | None:
        return next((p for p in self.pipelines if p.id == pipeline_id), None)

    def stage_of(self, record: Record) -> tuple[PipelineDef, StageDef] | None:
        pipeline = self.pipeline(record.get("pipeline") or "default")
        stage_id = record.get("dealstage")
        if pipeline is None or stage_id is None:
            return None
        stage = pipeline.stage(stage_id)
        return None if stage is None else (pipeline, stage)

    def find_stage(self, stage_id: str) -> tuple[PipelineDef, StageDef] | None:
        for pipeline in self.pipelines:
            stage = pipeline.stage(stage_id)
            if stage is not None:
                return pipeline, stage
        return None

    def get(self, object_type: str, object_id: str) -> Record | None:
        record = self.records[object_type].get(str(object_id))
        return None if record is None or record.archived else record

    def require(self, object_type: str, object_id: str) -> Record:
        record = self.get(object_type, object_id)
        if record is None:
            raise HubSpotError(404, "OBJECT_NOT_FOUND", "resource not found")
        return record

    def all(self, object_type: str) -> list[Record]:
        return [r for r in self.records[object_type].values() if not r.archived]

    # ------------------------------------------------------------------ writes

    def _normalise(self, object_type: str, name: str, value: object) -> str | None:
        """Check one input value against its property's type; the stored text."""
        prop = self.properties[object_type].get(name)
        if prop is None:
            raise HubSpotError(
                400,
                "VALIDATION_ERROR",
                f'Property values were not valid: [{{"isValid":false,"message":"Property '
                f'\\"{name}\\" does not exist","error":"PROPERTY_DOESNT_EXIST","name":"{name}"}}]',
                errors=[
                    {
                        "message": f'Property "{name}" does not exist',
                        "code": "PROPERTY_DOESNT_EXIST",
                        "context": {"propertyName": [name]},
                    }
                ],
            )
        if prop.read_only or name in {"createdate", "hs_createdate"}:
            raise _invalid(
                name, f"{name} is a read only property; its value cannot be set.", "READ_ONLY_VALUE"
            )
        if value is None:
            return None
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = repr(value) if isinstance(value, float) else str(value)
        elif isinstance(value, str):
            text = value
        else:
            raise _invalid(name, f"{value!r} is not a valid value for {name}", "INVALID_TYPE")
        if text == "":
            return None
        if prop.type == "number":
            try:
                float(text)
            except ValueError:
                raise _invalid(name, f"{text!r} is not a valid number", "INVALID_INTEGER") from None
        elif prop.type in {"datetime", "date"}:
            try:
                moment = parse_datetime(text)
            except ValueError:
                raise _invalid(name, f"{text!r} is not a valid date-time", "INVALID_DATE") from None
            if name == "closedate" or prop.type == "date":
                moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
            text = format_datetime(moment)
        elif prop.type == "bool":
            if text.lower() not in {"true", "false"}:
                raise _invalid(name, f"{text!r} is not a valid boolean", "INVALID_BOOLEAN")
            text = text.lower()
        elif prop.type == "enumeration" and prop.options and text not in dict(prop.options):
            raise _invalid(name, f"{text} was not one of the allowed options", "INVALID_OPTION")
        if (
            name == "hubspot_owner_id"
            and self.owners
            and text not in {str(owner["id"]) for owner in self.owners}
        ):
            raise _invalid(name, f"{text} is not a valid owner id", "INVALID_OWNER_ID")
        if name == "hs_note_body" and len(text) > _NOTE_BODY_MAX:
            raise _invalid(
                name, f"{name} is longer than {_NOTE_BODY_MAX} characters", "INVALID_LENGTH"
            )
        return text

    def check(
        self, object_type: str, values: Mapping[str, object], existing: Record | None
    ) -> dict[str, str | None]:
        """Validate ``values`` (raises :class:`HubSpotError`); the stored texts."""
        clean = {name: self._normalise(object_type, name, value) for name, value in values.items()}
        if object_type == "deals":
            pipeline_id = (
                clean.get("pipeline")
                or (existing.get("pipeline") if existing else None)
                or "default"
            )
            pipeline = self.pipeline(pipeline_id)
            if pipeline is None:
                raise _invalid(
                    "pipeline",
                    f"{pipeline_id} was not one of the allowed options",
                    "INVALID_OPTION",
                )
            stage_id = (
                clean.get("dealstage")
                if "dealstage" in clean
                else (existing.get("dealstage") if existing else None)
            )
            if stage_id is None and existing is None:
                stage_id = pipeline.stages[0].id
                clean["dealstage"] = stage_id
            if stage_id is not None and pipeline.stage(stage_id) is None:
                raise _invalid(
                    "dealstage",
                    f"{stage_id} was not one of the allowed options for pipeline {pipeline_id}",
                    "INVALID_OPTION",
                )
            if existing is None:
                clean["pipeline"] = pipeline_id
        if object_type == "notes" and existing is None and not clean.get("hs_timestamp"):
            raise _invalid("hs_timestamp", "hs_timestamp is required", "REQUIRED_FIELD")
        return clean

    def create(
        self,
        object_type: str,
        values: Mapping[str, object],
        source: Source,
        *,
        at: datetime | None = None,
        checked: bool = False,
    ) -> Record:
        clean = _texts(values) if checked else self.check(object_type, values, None)
        moment = at or self.now()
        object_id = str(self.next_ids[object_type])
        self.next_ids[object_type] += 1
        record = Record(object_type, object_id, moment, moment)
        created_name = "hs_createdate" if object_type == "notes" else "createdate"
        record.history[created_name] = [source.change(format_datetime(moment), moment)]
        for name, value in clean.items():
            if value is not None:
                record.history[name] = [source.change(value, moment)]
        self.records[object_type][object_id] = record
        if object_type == "deals" and record.get("dealstage") is not None and self.on_change:
            self.on_change(record, "dealstage", record.history["dealstage"][-1])
        return record

    def update(
        self,
        record: Record,
        values: Mapping[str, object],
        source: Source,
        *,
        at: datetime | None = None,
        checked: bool = False,
    ) -> list[str]:
        """Set ``values``; the names whose value changed."""
        clean = _texts(values) if checked else self.check(record.type, values, record)
        moment = at or self.now()
        changed: list[str] = []
        for name, value in clean.items():
            if record.get(name) == value:
                continue
            change = source.change(value, moment)
            record.history.setdefault(name, []).append(change)
            changed.append(name)
        if changed:
            record.updated_at = max(record.updated_at, moment)
            if record.type == "deals" and "dealstage" in changed and self.on_change:
                self.on_change(record, "dealstage", record.history["dealstage"][-1])
        return changed

    # ------------------------------------------------------------------ associations

    def association_types(self, from_type: str, to_type: str) -> list[AssociationType]:
        return [
            t
            for t in (*ASSOCIATION_TYPES, *self.extra_association_types)
            if t.from_type == from_type and t.to_type == to_type
        ]

    def add_contact_label(self, label: str) -> int:
        """A new user-defined deal-to-contact label (as an admin creates one); its
        deal-to-contact type id (an existing label's when it exists)."""
        for kind in self.association_types("deals", "contacts"):
            if kind.label == label:
                return kind.type_id
        taken = {t.type_id for t in (*ASSOCIATION_TYPES, *self.extra_association_types)}
        type_id = max(taken) + 1
        while type_id in taken or type_id + 1 in taken:
            type_id += 2
        self.extra_association_types += [
            AssociationType("deals", "contacts", type_id, "USER_DEFINED", label),
            AssociationType("contacts", "deals", type_id + 1, "USER_DEFINED", label),
        ]
        return type_id

    def association_type(
        self, from_type: str, to_type: str, type_id: int
    ) -> AssociationType | None:
        return next(
            (t for t in self.association_types(from_type, to_type) if t.type_id == type_id), None
        )

    def _inverse(self, kind: AssociationType) -> AssociationType:
        return next(
            t
            for t in self.association_types(kind.to_type, kind.from_type)
            if t.category == kind.category and t.label == kind.label
        )

    def associate(
        self,
        from_type: str,
        from_id: str,
        to_type: str,
        to_id: str,
        type_ids: Iterable[int],
        *,
        at: datetime | None = None,
    ) -> None:
        """Link two objects with the given association types (and their inverses).

        Raises :class:`HubSpotError` for an unknown object or association type.
        """
        source = self.require(from_type, from_id)
        target = self.get(to_type, to_id)
        if target is None:
            raise HubSpotError(
                400,
                "VALIDATION_ERROR",
                f"No {OBJECT_TYPES[to_type]} with id {to_id} exists",
                context={"toObjectId": [str(to_id)]},
            )
        kinds: list[AssociationType] = []
        for type_id in type_ids:
            kind = self.association_type(from_type, to_type, int(type_id))
            if kind is None:
                raise HubSpotError(
                    400,
                    "VALIDATION_ERROR",
                    f"{type_id} is not a valid association type between "
                    f"{OBJECT_TYPES[from_type]} and {OBJECT_TYPES[to_type]}",
                )
            kinds.append(kind)
        for kind in kinds:
            if kind.category == "USER_DEFINED":  # a label always comes with the default type
                kinds.append(
                    next(t for t in self.association_types(from_type, to_type) if t.label is None)
                )
                break
        for kind in kinds:
            inverse = self._inverse(kind)
            self.links.setdefault((from_type, source.id, to_type), {}).setdefault(
                target.id, set()
            ).add(kind.type_id)
            self.links.setdefault((to_type, target.id, from_type), {}).setdefault(
                source.id, set()
            ).add(inverse.type_id)
        for record, other in ((source, target), (target, source)):
            self._after_association(record, other, at)

    def associated(self, from_type: str, from_id: str, to_type: str) -> dict[str, set[int]]:
        return {
            to_id: set(types)
            for to_id, types in self.links.get((from_type, str(from_id), to_type), {}).items()
            if self.get(to_type, to_id) is not None
        }

    def _after_association(self, record: Record, other: Record, at: datetime | None) -> None:
        """HubSpot's roll-ups on a deal when a note or a contact is associated."""
        if record.type != "deals":
            return
        if other.type == "notes":
            notes = len(self.associated("deals", record.id, "notes"))
            values: dict[str, str | None] = {"num_notes": str(notes)}
            stamp = other.get("hs_timestamp")
            last = record.get("notes_last_updated")
            if stamp and (last is None or parse_datetime(stamp) > parse_datetime(last)):
                values["notes_last_updated"] = stamp
            self.update(record, values, CALCULATED, at=at, checked=True)
        elif other.type == "contacts":
            record.updated_at = max(record.updated_at, at or self.now())

    # ------------------------------------------------------------------ reads

    def value(self, record: Record, name: str) -> str | None:
        """A property's current value, calculated ones included."""
        if name == "hs_object_id":
            return record.id
        if name in {"hs_lastmodifieddate", "lastmodifieddate"}:
            return format_datetime(record.updated_at)
        if record.type != "deals":
            return record.get(name)
        if name == "num_associated_contacts":
            return str(len(self.associated("deals", record.id, "contacts")))
        found = self.stage_of(record)
        if name in {"hs_is_closed", "hs_is_closed_won", "hs_deal_stage_probability"}:
            if found is None:
                return None
            stage = found[1]
            if name == "hs_is_closed":
                return "true" if stage.is_closed else "false"
            if name == "hs_is_closed_won":
                return "true" if stage.is_won else "false"
            return repr(stage.probability)
        if name == "hs_v2_date_entered_current_stage":
            entered = self._entered(record, record.get("dealstage"))
            return None if entered is None else format_datetime(entered)
        for prefix in ("hs_v2_date_entered_", "hs_date_entered_"):
            if name.startswith(prefix) and name in self.properties["deals"]:
                entered = self._entered(record, name[len(prefix) :])
                return None if entered is None else format_datetime(entered)
        if name.startswith("hs_date_exited_") and name in self.properties["deals"]:
            exited = self._exited(record, name[len("hs_date_exited_") :])
            return None if exited is None else format_datetime(exited)
        return record.get(name)

    def _entered(self, record: Record, stage_id: str | None) -> datetime | None:
        if stage_id is None:
            return None
        entered = None
        previous = None
        for change in record.history.get("dealstage", []):
            if change.value == stage_id and previous != stage_id:
                entered = change.at
            previous = change.value
        return entered

    def _exited(self, record: Record, stage_id: str) -> datetime | None:
        changes = record.history.get("dealstage", [])
        exited = None
        for before, after in itertools.pairwise(changes):
            if before.value == stage_id and after.value != stage_id:
                exited = after.at
        return exited

    def values(self, record: Record, names: Iterable[str]) -> dict[str, str | None]:
        """The requested properties that exist (unknown names are skipped, as HubSpot does)."""
        known = self.properties[record.type]
        return {name: self.value(record, name) for name in names if name in known}

    def history(self, record: Record, names: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """``propertiesWithHistory``: each existing property's values, newest first."""
        known = self.properties[record.type]
        result: dict[str, list[dict[str, Any]]] = {}
        for name in names:
            if name not in known:
                continue
            changes = record.history.get(name)
            if changes is None:
                value = self.value(record, name)
                changes = [] if value is None else [CALCULATED.change(value, record.updated_at)]
            result[name] = [change.wire() for change in reversed(changes)]
        return result

    # ------------------------------------------------------------------ state

    def dump(self) -> dict[str, Any]:
        return {
            "portal_id": self.portal_id,
            "records": {t: [r.dump() for r in rows.values()] for t, rows in self.records.items()},
            "links": [
                [*key, to_id, sorted(types)]
                for key, rows in self.links.items()
                for to_id, types in rows.items()
            ],
            "next_ids": self.next_ids,
            "owners": self.owners,
            "custom_properties": [
                {
                    "name": p.name,
                    "label": p.label,
                    "type": p.type,
                    "field_type": p.field_type,
                    "group_name": p.group_name,
                }
                for p in self.custom_properties
            ],
            "contact_labels": [
                t.label for t in self.extra_association_types if t.from_type == "deals"
            ],
        }

    def load(self, data: Mapping[str, Any]) -> None:
        self.records = {
            t: {r["id"]: Record.load(r) for r in rows} for t, rows in data["records"].items()
        }
        self.links = {}
        for from_type, from_id, to_type, to_id, types in data["links"]:
            self.links.setdefault((from_type, from_id, to_type), {})[to_id] = set(types)
        self.next_ids = dict(data["next_ids"])
        self.owners = list(data["owners"])
        self.custom_properties = [
            PropertyDef(
                p["name"],
                p["label"],
                p["type"],
                p["field_type"],
                p["group_name"],
                hubspot_defined=False,
            )
            for p in data["custom_properties"]
        ]
        self.extra_association_types = []
        for label in data.get("contact_labels", []):
            self.add_contact_label(str(label))
        self.refresh_schema()


def _texts(values: Mapping[str, object]) -> dict[str, str | None]:
    return {name: None if value is None else str(value) for name, value in values.items()}


def _invalid(name: str, message: str, code: str) -> HubSpotError:
    return HubSpotError(
        400,
        "VALIDATION_ERROR",
        f"Property values were not valid: {message}",
        errors=[{"message": message, "code": code, "context": {"propertyName": [name]}}],
    )
