"""An org's data: records, DML with Salesforce's side effects, and SOQL evaluation.

Side effects kept as Salesforce keeps them:

* Opportunity create/update: ``IsClosed``/``IsWon`` from the stage; a stage change
  resets ``Probability`` and ``ForecastCategoryName`` to the stage's defaults unless
  the same update sets them, and sets ``LastStageChangeDate`` (when the org has it);
  ``PushCount`` (when present) counts close dates moved into a later month;
  ``ExpectedRevenue`` = Amount x Probability. Every update (even one that changes
  nothing) bumps ``LastModifiedDate``/``SystemModstamp`` and sets
  ``LastModifiedById`` to the writer.
* ``OpportunityHistory``: a full row (StageName, Amount, CloseDate, Probability,
  ForecastCategory, ExpectedRevenue, PrevAmount, PrevCloseDate) at creation and at
  every change of stage, amount, close date, probability or forecast category.
* ``OpportunityFieldHistory`` (``Histories``) for the tracked fields only: a
  ``created`` row at creation, one row per changed field (``OldValue``/``NewValue``;
  long text areas are tracked without values), an owner change as two ``Owner``
  rows (user names, then user ids). Rows are written only from ``history_since``
  (when field history tracking was switched on), if set.
* Tasks on an opportunity drive its ``LastActivityDate`` (latest due date, else
  completion date, of a completed task), ``HasOpenActivity`` and ``HasOverdueTask``;
  a change of those bumps the opportunity's ``SystemModstamp`` (not its
  ``LastModifiedDate``): an emulator choice, so a sync sees the effect of its own
  Task writes.
* Deleting a record marks it ``IsDeleted`` (visible to ``queryAll`` only) and bumps
  ``SystemModstamp``.

Date-times are whole seconds, as Salesforce stores them.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from . import soql
from .notes import decode_note_content, text_preview
from .schema import (
    DEFAULT_CUSTOM_FIELDS,
    DEFAULT_OPTIONAL_FIELDS,
    DEFAULT_TRACKED_FIELDS,
    ID_TYPES,
    NUMBER_TYPES,
    TEXT_TYPES,
    ChildRelationship,
    CustomField,
    FieldDef,
    SObjectDef,
    build_schema,
)
from .values import (
    ApiError,
    IdFactory,
    format_date,
    format_datetime,
    is_record_id,
    parse_date,
    parse_datetime,
    same_id,
    to18,
)

__all__ = ["DEFAULT_STAGES", "Org", "StageDef"]


@dataclass(frozen=True)
class StageDef:
    api_name: str
    sort_order: int
    probability: int
    is_closed: bool = False
    is_won: bool = False
    forecast: str = "Pipeline"
    active: bool = True


DEFAULT_STAGES: tuple[StageDef, ...] = (
    StageDef("Prospecting", 1, 10),
    StageDef("Qualification", 2, 10),
    StageDef("Needs Analysis", 3, 20),
    StageDef("Value Proposition", 4, 50),
    StageDef("Id. Decision Makers", 5, 60),
    StageDef("Perception Analysis", 6, 70),
    StageDef("Proposal/Price Quote", 7, 75),
    StageDef("Negotiation/Review", 8, 90),
    StageDef("Closed Won", 9, 100, True, True, "Closed"),
    StageDef("Closed Lost", 10, 0, True, False, "Omitted"),
)

#: Opportunity fields whose change writes an OpportunityHistory row.
_HISTORY_TRIGGERS = ("StageName", "Amount", "CloseDate", "Probability", "ForecastCategoryName")
#: ForecastCategoryName -> the ForecastCategory enum of OpportunityHistory.
_FORECAST_ENUM = {
    "Omitted": "Omitted",
    "Pipeline": "Pipeline",
    "Best Case": "BestCase",
    "Commit": "Forecast",
    "Closed": "Closed",
}
_HISTORY_DATA_TYPES = {
    "currency": "Currency",
    "date": "Date",
    "datetime": "DateTime",
    "double": "Double",
    "percent": "Percent",
    "int": "Double",
    "picklist": "DynamicEnum",
    "boolean": "Boolean",
    "textarea": "TextArea",
}
_NO_SUCH_COLUMN = (
    "No such column '{name}' on entity '{entity}'. If you are attempting to use a custom "
    "field, be sure to append the '__c' after the custom field name. Please reference your "
    "WSDL or the describe call for the appropriate names."
)
_BAD_RELATIONSHIP = (
    "Didn't understand relationship '{name}' in field path. If you are attempting to use a "
    "custom relationship, be sure to append the '__r' after the custom relationship name. "
    "Please reference your WSDL or the describe call for the appropriate names."
)
_CDL_RESTRICTION = (
    "Implementation restriction: ContentDocumentLink requires a filter by a single Id on "
    "ContentDocumentId or LinkedEntityId using the equals operator or multiple Id's using "
    "the IN operator."
)
# Reference targets with no table of their own, and the table that holds them.
_TABLE_ALIAS = {"contentdocument": "contentnote"}

Row = dict[str, Any]
Predicate = Callable[[Row], bool]


@dataclass(frozen=True)
class _Hop:
    reference: FieldDef  # the reference field (OwnerId)
    target: SObjectDef | None  # None: polymorphic (What, LinkedEntity): Id, Name only


@dataclass(frozen=True)
class _Resolved:
    hops: tuple[_Hop, ...]
    field: FieldDef


class Org:
    """One org's records and schema. Not thread-safe: the emulator serialises calls."""

    def __init__(
        self,
        org_id: str,
        *,
        name: str = "Dealcoach Emulated Org",
        stages: Sequence[StageDef] = DEFAULT_STAGES,
        optional_fields: Iterable[str] = DEFAULT_OPTIONAL_FIELDS,
        custom_fields: Iterable[CustomField] = DEFAULT_CUSTOM_FIELDS,
        tracked_fields: Iterable[str] = DEFAULT_TRACKED_FIELDS,
        history_since: datetime | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not is_record_id(org_id) or not org_id.startswith("00D"):
            raise ValueError(f"not an org id (00D..., 15 or 18 characters): {org_id!r}")
        self.org_id = to18(org_id)
        self.name = name
        self.stages = tuple(stages)
        self.optional_fields = frozenset(optional_fields)
        self.custom_fields = tuple(custom_fields)
        self.tracked_fields = frozenset(
            "OwnerId" if field == "Owner" else field for field in tracked_fields
        )
        self.history_since = history_since
        self.clock = clock or (lambda: datetime.now(UTC))
        self.schema = build_schema(
            [stage.api_name for stage in self.stages], self.optional_fields, self.custom_fields
        )
        self.ids = IdFactory()
        self.tables: dict[str, dict[str, Row]] = {
            definition.name: {} for definition in self.schema.values()
        }
        self.where: dict[str, str] = {}  # 15-character id -> table name
        self.note_bodies: dict[str, str] = {}
        self.on_stage_change: Callable[[str], None] | None = None
        self._journal: list[tuple[str, str, Row | None, str | None]] | None = None
        self._depth = 0
        # Task ids that may point at a record (WhatId, 15 characters); checked on use.
        self._tasks_by_what: dict[str, set[str]] = {}
        # ContentDocumentLink ids by LinkedEntityId (15 characters); checked on use.
        self._links_by_entity: dict[str, set[str]] = {}
        self._last = datetime(2000, 1, 1, tzinfo=UTC)
        self._stage_by_name = {stage.api_name.lower(): stage for stage in self.stages}
        self._insert_system(
            "Organization",
            {
                "Id": self.org_id,
                "Name": name,
                "IsSandbox": False,
                "OrganizationType": "Enterprise Edition",
                "InstanceName": "EM1",
            },
        )
        epoch = format_datetime(datetime(2020, 1, 1, tzinfo=UTC))
        for stage in self.stages:
            self._insert_system(
                "OpportunityStage",
                {
                    "Id": self.ids.next("01J"),
                    "MasterLabel": stage.api_name,
                    "ApiName": stage.api_name,
                    "IsActive": stage.active,
                    "SortOrder": stage.sort_order,
                    "IsClosed": stage.is_closed,
                    "IsWon": stage.is_won,
                    "ForecastCategory": _FORECAST_ENUM.get(stage.forecast, stage.forecast),
                    "ForecastCategoryName": stage.forecast,
                    "DefaultProbability": stage.probability,
                    "Description": None,
                    "IsDeleted": False,
                    "CreatedDate": epoch,
                    "CreatedById": None,
                    "LastModifiedDate": epoch,
                    "LastModifiedById": None,
                    "SystemModstamp": epoch,
                },
            )

    # ------------------------------------------------------------------ basics

    def now(self) -> datetime:
        """The clock, in whole seconds, never earlier than a time already handed out."""
        moment = self.clock().astimezone(UTC).replace(microsecond=0)
        self._last = max(self._last, moment)
        return self._last

    def sobject(self, name: str) -> SObjectDef | None:
        return self.schema.get(name.lower())

    def lookup(self, record_id: str) -> tuple[str, Row] | None:
        """The table and record of an id (15 or 18 characters), deleted ones included."""
        if not isinstance(record_id, str) or len(record_id) not in (15, 18):
            return None
        table = self.where.get(record_id[:15])
        if table is None:
            return None
        record = self.tables[table].get(to18(record_id[:15]))
        return None if record is None else (table, record)

    def records(self, table: str, include_deleted: bool = False) -> list[Row]:
        rows = self.tables[table].values()
        return [row for row in rows if include_deleted or not row.get("IsDeleted")]

    def stage(self, name: str) -> StageDef | None:
        return self._stage_by_name.get(name.lower())

    def _insert_system(self, table: str, record: Row) -> None:
        self.tables[table][record["Id"]] = record
        self.where[record["Id"][:15]] = table

    # ------------------------------------------------------------------ transactions

    def savepoint(self) -> int:
        """Start (or nest) journaling writes; a point :meth:`rollback` can return to."""
        if self._journal is None:
            self._journal, self._depth = [], 0
        self._depth += 1
        return len(self._journal)

    def release(self) -> None:
        """Keep the writes since the matching :meth:`savepoint`."""
        self._depth -= 1
        if self._depth <= 0:
            self._journal, self._depth = None, 0

    def rollback(self, point: int) -> None:
        """Undo the writes since ``point`` and release that savepoint."""
        journal = self._journal or []
        for table, record_id, previous, note in reversed(journal[point:]):
            if previous is None:
                self.tables[table].pop(record_id, None)
                self.where.pop(record_id[:15], None)
                self.note_bodies.pop(record_id, None)
            else:
                self.tables[table][record_id] = previous
                if note is not None:
                    self.note_bodies[record_id] = note
        del journal[point:]
        self.release()

    def _remember(self, table: str, record_id: str) -> None:
        if self._journal is None:
            return
        current = self.tables[table].get(record_id)
        previous = None if current is None else copy.deepcopy(current)
        self._journal.append((table, record_id, previous, self.note_bodies.get(record_id)))

    # ------------------------------------------------------------------ DML

    def create(
        self,
        table_name: str,
        values: Mapping[str, Any],
        user_id: str,
        at: datetime | None = None,
    ) -> str:
        """Insert a record; its id. :class:`ApiError` as Salesforce answers a refused insert."""
        definition = self._writable_object(table_name, "create")
        table = definition.name
        at = at or self.now()
        stamp = format_datetime(at)
        given = self._coerce_values(definition, values, creating=True)
        record: Row = {name.name: None for name in definition.fields.values()}
        record.update(given)
        record_id = self.ids.next(definition.key_prefix)
        record["Id"] = record_id
        record.update(
            IsDeleted=False,
            SystemModstamp=stamp,
            CreatedDate=stamp,
            CreatedById=user_id,
            LastModifiedDate=stamp,
            LastModifiedById=user_id,
        )
        if "ownerid" in definition.fields and record.get("OwnerId") is None:
            record["OwnerId"] = user_id
        for key in list(record):
            if definition.field(key) is None:
                del record[key]
        body: str | None = None
        if table == "Opportunity":
            self._opportunity_defaults(record, set(given), None, at)
        elif table == "Task":
            record["Status"] = record.get("Status") or "Not Started"
            record["Priority"] = record.get("Priority") or "Normal"
            record["TaskSubtype"] = record.get("TaskSubtype") or "Task"
            record["IsClosed"] = record["Status"] == "Completed"
        elif table == "ContentNote":
            body = decode_note_content(given.get("Content") or "")
            record.update(
                Content=None,
                FileType="SNOTE",
                FileExtension="snote",
                ContentSize=len(body.encode("utf-8")),
                TextPreview=text_preview(body) or None,
                LatestPublishedVersionId=self.ids.next("068"),
                SharingPrivacy=record.get("SharingPrivacy") or "N",
            )
        elif table == "ContentDocumentLink":
            record["ShareType"] = record.get("ShareType") or "V"
            record["Visibility"] = record.get("Visibility") or "AllUsers"
            self._check_new_link(record)
            entity = record.get("LinkedEntityId") or ""
            self._links_by_entity.setdefault(entity[:15], set()).add(record_id)
        elif table == "OpportunityContactRole":
            record["IsPrimary"] = bool(record.get("IsPrimary"))
        elif table == "Contact":
            first, last = record.get("FirstName"), record.get("LastName")
            record["Name"] = " ".join(part for part in (first, last) if part)
        missing = [
            field.name
            for field in definition.fields.values()
            if field.createable and not field.nillable and record.get(field.name) is None
        ]
        if missing:
            raise ApiError(
                400,
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )
        self._remember(table, record_id)
        self._insert_system(table, record)
        if body is not None:
            self.note_bodies[record_id] = body
        if table == "Opportunity":
            self._write_history(record, None, set(), at, user_id)
        elif table == "Task":
            self._index_task(record)
            self._activity_changed(record.get("WhatId"), at)
        return record_id

    def update(
        self,
        table_name: str,
        record_id: str,
        values: Mapping[str, Any],
        user_id: str,
        at: datetime | None = None,
    ) -> None:
        """Update a record (``PATCH``); history and side effects as Salesforce writes them."""
        definition = self._writable_object(table_name, "update")
        table = definition.name
        found = self.lookup(record_id) if is_record_id(record_id) else None
        if found is None or found[0] != table:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        record = found[1]
        if record.get("IsDeleted"):
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
        at = at or self.now()
        given = self._coerce_values(definition, values, creating=False)
        for name, value in given.items():
            field = definition.field(name)
            if field is not None and not field.nillable and value is None:
                raise ApiError(
                    400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{name}]", [name]
                )
        self._remember(table, record["Id"])
        old = dict(record)
        body: str | None = None
        if table == "ContentNote" and "Content" in given:
            body = decode_note_content(given["Content"] or "")
            given["Content"] = None
        record.update(given)
        stamp = format_datetime(at)
        if "LastModifiedDate" in record:
            record.update(LastModifiedDate=stamp, LastModifiedById=user_id)
        record["SystemModstamp"] = stamp
        if table == "Opportunity":
            self._opportunity_defaults(record, set(given), old, at)
            self._write_history(record, old, set(given), at, user_id)
            if (old["StageName"] or "") != (record["StageName"] or "") and self.on_stage_change:
                self.on_stage_change(record["Id"])
        elif table == "Task":
            record["IsClosed"] = record.get("Status") == "Completed"
            self._index_task(record)
            self._activity_changed(record.get("WhatId"), at)
            if old.get("WhatId") and not same_id(old["WhatId"], record.get("WhatId") or ""):
                self._activity_changed(old["WhatId"], at)
        elif table == "ContentNote" and body is not None:
            self.note_bodies[record["Id"]] = body
            record.update(ContentSize=len(body.encode("utf-8")), TextPreview=text_preview(body))
        elif table == "Contact":
            first, last = record.get("FirstName"), record.get("LastName")
            record["Name"] = " ".join(part for part in (first, last) if part)

    def delete(self, table_name: str, record_id: str, at: datetime | None = None) -> None:
        definition = self._writable_object(table_name, "delete")
        found = self.lookup(record_id) if is_record_id(record_id) else None
        if found is None or found[0] != definition.name:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        table, record = found
        if record.get("IsDeleted"):
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
        at = at or self.now()
        self._remember(table, record["Id"])
        record.update(IsDeleted=True, SystemModstamp=format_datetime(at))
        if table == "Task":
            self._activity_changed(record.get("WhatId"), at)
        if table == "ContentNote":
            for link in self.records("ContentDocumentLink"):
                if same_id(link["ContentDocumentId"], record["Id"]):
                    self._remember("ContentDocumentLink", link["Id"])
                    link.update(IsDeleted=True, SystemModstamp=format_datetime(at))

    def _writable_object(self, name: str, action: str) -> SObjectDef:
        definition = self.sobject(name)
        if definition is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        allowed = {
            "create": definition.createable,
            "update": definition.updateable,
            "delete": definition.deletable,
        }[action]
        if not allowed:
            raise ApiError(
                400,
                "INVALID_TYPE_FOR_OPERATION",
                f"entity type {definition.name} does not support {action}",
            )
        return definition

    def _coerce_values(
        self, definition: SObjectDef, values: Mapping[str, Any], *, creating: bool
    ) -> Row:
        out: Row = {}
        refused: list[str] = []
        for key, value in values.items():
            if key == "attributes":
                continue
            field = definition.field(key)
            if field is None:
                raise ApiError(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{key}' on sobject of type {definition.name}",
                )
            if field.name == "Id" and not creating:
                continue  # the id in the URL wins; composite/sobjects checks it matches
            if not (field.createable if creating else field.updateable):
                refused.append(field.name)
                continue
            out[field.name] = self._coerce(definition, field, value)
        if refused:
            raise ApiError(
                400,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(refused)}. Please check the security "
                "settings of this field and verify that it is read/write for your profile or "
                "permission set.",
                refused,
            )
        return out

    def _coerce(self, definition: SObjectDef, field: FieldDef, value: Any) -> Any:
        name = field.name
        if value is None:
            return None
        if isinstance(value, dict | list):
            raise ApiError(
                400,
                "JSON_PARSER_ERROR",
                f"Cannot deserialize instance of {field.type} from START_OBJECT value for "
                f"field {name}",
            )
        kind = field.type

        def bad(expected: str) -> ApiError:
            return ApiError(
                400,
                "JSON_PARSER_ERROR",
                f"Cannot deserialize instance of {expected} from VALUE_STRING value {value} or "
                "request may be missing a required field",
            )

        if kind in TEXT_TYPES:
            text = value if isinstance(value, str) else json_text(value)
            if field.length and len(text) > field.length:
                raise ApiError(
                    400,
                    "STRING_TOO_LONG",
                    f"{field.label or name}: data value too large: {text[:40]}... "
                    f"(max length={field.length})",
                    [name],
                )
            if kind == "picklist" and name == "StageName" and definition.name == "Opportunity":
                stage = self.stage(text)
                if stage is None:
                    raise ApiError(
                        400,
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        f"Stage: bad value for restricted picklist field: {text}",
                        [name],
                    )
                return stage.api_name
            if field.restricted and field.picklist and text not in field.picklist:
                raise ApiError(
                    400,
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{field.label or name}: bad value for restricted picklist field: {text}",
                    [name],
                )
            return text
        if kind in NUMBER_TYPES:
            if isinstance(value, bool):
                raise bad("double")
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    raise bad("double") from None
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise bad("double")
            if kind == "int":
                return int(value)
            return value
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in {"true", "false"}:
                return value.lower() == "true"
            raise bad("boolean")
        if kind == "date":
            if not isinstance(value, str):
                raise bad("date")
            try:
                return format_date(parse_date(value))
            except ValueError:
                raise bad("date") from None
        if kind == "datetime":
            if not isinstance(value, str):
                raise bad("datetime")
            try:
                return format_datetime(parse_datetime(value))
            except ValueError:
                raise bad("datetime") from None
        if kind in ID_TYPES:
            label = field.label or name
            if not isinstance(value, str) or not is_record_id(value):
                raise ApiError(
                    400, "MALFORMED_ID", f"{label}: id value of incorrect type: {value}", [name]
                )
            found = self.lookup(value)
            targets = {_TABLE_ALIAS.get(t.lower(), t.lower()) for t in field.reference_to}
            if found is None or found[0].lower() not in targets:
                raise ApiError(
                    400,
                    "FIELD_INTEGRITY_EXCEPTION",
                    f"field integrity exception: unknown ({label}: id value of incorrect type: "
                    f"{value})",
                    [name],
                )
            if found[1].get("IsDeleted"):
                raise ApiError(400, "ENTITY_IS_DELETED", "entity is deleted", [name])
            return to18(value[:15])
        if kind == "base64":
            return value  # decoded by the caller (ContentNote)
        return value

    def _check_new_link(self, record: Row) -> None:
        entity, document = record["LinkedEntityId"] or "", record["ContentDocumentId"] or ""
        for link_id in self._links_by_entity.get(entity[:15], ()):
            link = self.tables["ContentDocumentLink"].get(link_id)
            if link and not link["IsDeleted"] and same_id(link["ContentDocumentId"], document):
                raise ApiError(
                    400,
                    "DUPLICATE_VALUE",
                    f"Document with ID: {document} is already linked with the entity with ID: "
                    f"{entity}",
                    ["LinkedEntityId"],
                )

    # ------------------------------------------------------------------ opportunities

    def _opportunity_defaults(
        self, record: Row, explicit: set[str], old: Row | None, at: datetime
    ) -> None:
        stage = self.stage(record["StageName"] or "")
        stage_changed = old is None or old["StageName"] != record["StageName"]
        if stage is not None:
            if stage_changed and "Probability" not in explicit:
                record["Probability"] = stage.probability
            if stage_changed and "ForecastCategoryName" not in explicit:
                record["ForecastCategoryName"] = stage.forecast
            record["IsClosed"] = stage.is_closed
            record["IsWon"] = stage.is_won
        amount, probability = record.get("Amount"), record.get("Probability")
        record["ExpectedRevenue"] = (
            None if amount is None or probability is None else amount * probability / 100
        )
        if old is None:
            record["HasOpenActivity"] = bool(record.get("HasOpenActivity"))
            record["HasOverdueTask"] = bool(record.get("HasOverdueTask"))
            if "CurrencyIsoCode" in self.optional_fields:
                record["CurrencyIsoCode"] = record.get("CurrencyIsoCode") or "USD"
            if "PushCount" in self.optional_fields:
                record["PushCount"] = 0
            return
        if "LastStageChangeDate" in self.optional_fields and stage_changed:
            record["LastStageChangeDate"] = format_datetime(at)
        if "PushCount" in self.optional_fields and old["CloseDate"] and record["CloseDate"]:
            before, after = parse_date(old["CloseDate"]), parse_date(record["CloseDate"])
            if (after.year, after.month) > (before.year, before.month):
                record["PushCount"] = (record.get("PushCount") or 0) + 1

    def _tracking(self, at: datetime) -> bool:
        return self.history_since is None or at >= self.history_since

    def _write_history(
        self, record: Row, old: Row | None, explicit: set[str], at: datetime, user_id: str
    ) -> None:
        stamp = format_datetime(at)
        opp_id = record["Id"]
        changed = old is None or any(old.get(f) != record.get(f) for f in _HISTORY_TRIGGERS)
        if changed:
            row_id = self.ids.next("008")
            self._remember("OpportunityHistory", row_id)
            self._insert_system(
                "OpportunityHistory",
                {
                    "Id": row_id,
                    "OpportunityId": opp_id,
                    "StageName": record["StageName"],
                    "Amount": record["Amount"],
                    "ExpectedRevenue": record["ExpectedRevenue"],
                    "CloseDate": record["CloseDate"],
                    "Probability": record["Probability"],
                    "ForecastCategory": _FORECAST_ENUM.get(
                        record.get("ForecastCategoryName") or "", record.get("ForecastCategoryName")
                    ),
                    "PrevAmount": None if old is None else old["Amount"],
                    "PrevCloseDate": None if old is None else old["CloseDate"],
                    "CreatedById": user_id,
                    "CreatedDate": stamp,
                    "SystemModstamp": stamp,
                    "IsDeleted": False,
                },
            )
        if not self.tracked_fields or not self._tracking(at):
            return
        if old is None:
            self._field_history(opp_id, "created", None, None, None, stamp, user_id)
            return
        opportunity = self.schema["opportunity"]
        for name in sorted(self.tracked_fields):
            field = opportunity.field(name)
            if field is None or old.get(field.name) == record.get(field.name):
                continue
            before, after = old.get(field.name), record.get(field.name)
            if field.name == "OwnerId":
                names = [self._user_name(value) for value in (before, after)]
                self._field_history(opp_id, "Owner", "Text", names[0], names[1], stamp, user_id)
                self._field_history(opp_id, "Owner", "EntityId", before, after, stamp, user_id)
                continue
            long_text = field.type == "textarea" and field.length > 255
            data_type = _HISTORY_DATA_TYPES.get(field.type, "Text")
            if long_text:
                before = after = None
            self._field_history(opp_id, field.name, data_type, before, after, stamp, user_id)

    def _field_history(
        self,
        opp_id: str,
        field: str,
        data_type: str | None,
        old: Any,
        new: Any,
        stamp: str,
        user_id: str,
    ) -> None:
        row_id = self.ids.next("017")
        self._remember("OpportunityFieldHistory", row_id)
        self._insert_system(
            "OpportunityFieldHistory",
            {
                "Id": row_id,
                "OpportunityId": opp_id,
                "Field": field,
                "DataType": data_type,
                "OldValue": old,
                "NewValue": new,
                "CreatedById": user_id,
                "CreatedDate": stamp,
                "IsDeleted": False,
            },
        )

    def _user_name(self, user_id: Any) -> str | None:
        found = self.lookup(user_id) if isinstance(user_id, str) else None
        return None if found is None else found[1].get("Name")

    def _index_task(self, task: Row) -> None:
        what = task.get("WhatId")
        if isinstance(what, str):
            self._tasks_by_what.setdefault(what[:15], set()).add(task["Id"])

    def _activity_changed(self, what_id: Any, at: datetime) -> None:
        """Recompute an opportunity's activity fields from its tasks."""
        if not isinstance(what_id, str):
            return
        found = self.lookup(what_id)
        if found is None or found[0] != "Opportunity":
            return
        opp = found[1]
        tasks = []
        for task_id in self._tasks_by_what.get(what_id[:15], ()):
            task = self.tables["Task"].get(task_id)
            if task and not task["IsDeleted"] and same_id(task["WhatId"] or "", what_id):
                tasks.append(task)
        today = self.clock().astimezone(UTC).date()
        done: list[date] = []
        for task in tasks:
            if task["IsClosed"]:
                when = task["ActivityDate"] or task["LastModifiedDate"]
                done.append(parse_date(when))
        open_tasks = [task for task in tasks if not task["IsClosed"]]
        values = {
            "LastActivityDate": format_date(max(done)) if done else None,
            "HasOpenActivity": bool(open_tasks),
            "HasOverdueTask": any(
                task["ActivityDate"] and parse_date(task["ActivityDate"]) < today
                for task in open_tasks
            ),
        }
        if any(opp.get(key) != value for key, value in values.items()):
            self._remember("Opportunity", opp["Id"])
            opp.update(values)
            opp["SystemModstamp"] = max(opp["SystemModstamp"], format_datetime(at))

    # ------------------------------------------------------------------ reading

    def render_record(
        self, table: str, record: Row, version: str, fields: Sequence[str] | None = None
    ) -> Row:
        """A record as ``GET sobjects/{type}/{id}`` returns it (all fields, or ``fields``)."""
        definition = self.schema[table.lower()]
        out: Row = {"attributes": _attributes(definition.name, record["Id"], version)}
        names = (
            [f.name for f in definition.fields.values()]
            if fields is None
            else [self._field_or_error(definition, name).name for name in fields]
        )
        for name in names:
            out[name] = self._value(definition.name, record, name, version)
        return out

    def note_body(self, note_id: str) -> str | None:
        return self.note_bodies.get(to18(note_id[:15])) if is_record_id(note_id) else None

    def _field_or_error(self, definition: SObjectDef, name: str) -> FieldDef:
        field = definition.field(name)
        if field is None:
            raise ApiError(
                400, "INVALID_FIELD", _NO_SUCH_COLUMN.format(name=name, entity=definition.name)
            )
        return field

    def _value(self, table: str, record: Row, name: str, version: str) -> Any:
        if table == "ContentNote" and name == "Content":
            return f"/services/data/v{version}/sobjects/ContentNote/{record['Id']}/Content"
        return record.get(name)

    def describe(self, name: str, version: str) -> dict[str, Any]:
        definition = self.sobject(name)
        if definition is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return definition.describe(version)

    # ------------------------------------------------------------------ SOQL

    def query(
        self,
        query: soql.Query,
        *,
        include_deleted: bool,
        version: str,
        child_cursor: Callable[[list[Row]], str] | None = None,
        child_page_size: int | None = None,
    ) -> tuple[list[Row], int]:
        """Run a parsed query: the rendered records (all pages) and ``totalSize``."""
        definition = self.sobject(query.sobject)
        if definition is None:
            raise soql.query_error(
                query.text,
                query.sobject_pos,
                "INVALID_TYPE",
                f"sObject type '{query.sobject}' is not supported. If you are attempting to use "
                "a custom object, be sure to append the '__c' after the entity name. Please "
                "reference your WSDL or the describe call for the appropriate names.",
            )
        plan = _Plan(self, query, definition, query.text)
        if definition.name == "ContentDocumentLink" and not _filters_link(query.where):
            raise ApiError(400, "MALFORMED_QUERY", _CDL_RESTRICTION)
        rows = [
            row
            for row in self.records(definition.name, include_deleted)
            if plan.predicate is None or plan.predicate(row)
        ]
        rows = plan.sort(rows)
        if query.offset:
            rows = rows[query.offset :]
        if query.limit is not None:
            rows = rows[: query.limit]
        if query.is_count:
            return [], len(rows)
        children = {
            sub.query.sobject.lower(): self._children_index(child, include_deleted)
            for sub, child in plan.subplans
        }
        rendered = [
            plan.render(row, version, include_deleted, children, child_cursor, child_page_size)
            for row in rows
        ]
        return rendered, len(rendered)

    def _children_index(self, plan: _Plan, include_deleted: bool) -> dict[str, list[Row]]:
        relationship = plan.relationship
        assert relationship is not None
        index: dict[str, list[Row]] = {}
        for row in self.records(plan.definition.name, include_deleted):
            parent = row.get(relationship.field)
            if isinstance(parent, str):
                index.setdefault(parent[:15], []).append(row)
        return index

    def resolve(self, definition: SObjectDef, path: soql.FieldPath, text: str) -> _Resolved:
        hops: list[_Hop] = []
        current: SObjectDef | None = definition
        for index, part in enumerate(path.parts):
            last = index == len(path.parts) - 1
            if current is None:  # polymorphic: Id, Name, Type
                if last and part.lower() in {"id", "name", "type"}:
                    return _Resolved(tuple(hops), FieldDef(part.capitalize(), "string"))
                raise soql.query_error(
                    text,
                    path.pos,
                    "INVALID_FIELD",
                    _NO_SUCH_COLUMN.format(name=part, entity="Name"),
                )
            if last:
                field = current.field(part)
                if field is None:
                    raise soql.query_error(
                        text,
                        path.pos,
                        "INVALID_FIELD",
                        _NO_SUCH_COLUMN.format(name=part, entity=current.name),
                    )
                return _Resolved(tuple(hops), field)
            reference = current.relationship(part)
            if reference is None:
                raise soql.query_error(
                    text, path.pos, "INVALID_FIELD", _BAD_RELATIONSHIP.format(name=part)
                )
            if len(reference.reference_to) == 1:
                target_name = reference.reference_to[0].lower()
                current = self.schema.get(_TABLE_ALIAS.get(target_name, target_name))
            else:
                current = None
            hops.append(_Hop(reference, current))
        raise AssertionError("unreachable")

    def follow(self, record: Row, resolved: _Resolved) -> Row | None:
        """The record at the end of the relationship hops (None when a reference is null)."""
        current: Row | None = record
        for hop in resolved.hops:
            if current is None:
                return None
            target = current.get(hop.reference.name)
            found = self.lookup(target) if isinstance(target, str) else None
            current = None if found is None else found[1]
        return current

    # ------------------------------------------------------------------ persistence

    def dump(self) -> dict[str, Any]:
        return {
            "org_id": self.org_id,
            "name": self.name,
            "stages": [asdict(stage) for stage in self.stages],
            "optional_fields": sorted(self.optional_fields),
            "custom_fields": [asdict(custom) for custom in self.custom_fields],
            "tracked_fields": sorted(self.tracked_fields),
            "history_since": (
                None if self.history_since is None else format_datetime(self.history_since)
            ),
            "ids": self.ids.counters,
            "tables": self.tables,
            "note_bodies": self.note_bodies,
            "last": format_datetime(self._last),
        }

    @classmethod
    def load(cls, data: Mapping[str, Any], clock: Callable[[], datetime] | None = None) -> Org:
        since = data.get("history_since")
        org = cls(
            data["org_id"],
            name=data["name"],
            stages=[StageDef(**stage) for stage in data["stages"]],
            optional_fields=data["optional_fields"],
            custom_fields=[CustomField(**custom) for custom in data["custom_fields"]],
            tracked_fields=data["tracked_fields"],
            history_since=None if since is None else parse_datetime(since),
            clock=clock,
        )
        org.ids = IdFactory(data["ids"])
        org.tables = {name: dict(rows) for name, rows in data["tables"].items()}
        org.where = {
            record_id[:15]: table for table, rows in org.tables.items() for record_id in rows
        }
        org.note_bodies = dict(data["note_bodies"])
        for task in org.tables["Task"].values():
            org._index_task(task)
        for link in org.tables["ContentDocumentLink"].values():
            org._links_by_entity.setdefault(link["LinkedEntityId"][:15], set()).add(link["Id"])
        org._last = parse_datetime(data["last"])
        return org


def json_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _attributes(table: str, record_id: str, version: str) -> dict[str, str]:
    return {"type": table, "url": f"/services/data/v{version}/sobjects/{table}/{record_id}"}


def _filters_link(condition: soql.Condition | None) -> bool:
    """Whether a ContentDocumentLink query filters on LinkedEntityId/ContentDocumentId (= or IN)."""
    if condition is None:
        return False
    if isinstance(condition, soql.Comparison):
        return condition.path.text.lower() in {"linkedentityid", "contentdocumentid"} and (
            condition.op in {"=", "in"}
        )
    if isinstance(condition, soql.Logical):
        if condition.op == "and":
            return any(_filters_link(item) for item in condition.items)
        return all(_filters_link(item) for item in condition.items)
    return False


# ---------------------------------------------------------------------- query plans


def _normal(field: FieldDef, raw: Any) -> Any:
    """A stored value in comparable form (None stays None)."""
    if raw is None:
        return None
    kind = field.type
    if kind in ID_TYPES:
        return str(raw)[:15]
    if kind in TEXT_TYPES:
        return str(raw).lower()
    if kind in NUMBER_TYPES:
        return float(raw)
    if kind == "date":
        return parse_date(str(raw))
    if kind == "datetime":
        return parse_datetime(str(raw))
    if kind == "boolean":
        return bool(raw)
    return raw


def _type_error(text: str, literal: soql.Literal, field: FieldDef, expected: str) -> ApiError:
    quoted = (
        "should be enclosed in quotes"
        if expected == "string"
        else ("should not be enclosed in quotes")
    )
    return soql.query_error(
        text,
        literal.pos,
        "INVALID_FIELD",
        f"value of filter criterion for field '{field.name}' must be of type {expected} and "
        f"{quoted}",
    )


def _date_range(name: str, amount: int, today: date) -> tuple[date, date]:
    if name == "today":
        return today, today + timedelta(days=1)
    if name == "yesterday":
        return today - timedelta(days=1), today
    if name == "tomorrow":
        return today + timedelta(days=1), today + timedelta(days=2)
    if name == "last_n_days":
        return today - timedelta(days=amount), today + timedelta(days=1)
    return today, today + timedelta(days=amount + 1)  # next_n_days


def _like(pattern: str) -> re.Pattern[str]:
    out = ""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern) and pattern[index + 1] in "%_":
            out += re.escape(pattern[index + 1])
            index += 2
            continue
        out += ".*" if char == "%" else "." if char == "_" else re.escape(char)
        index += 1
    return re.compile(out, re.IGNORECASE | re.DOTALL)


class _Plan:
    """A validated query: predicate, sort keys and renderer for one object."""

    def __init__(
        self,
        org: Org,
        query: soql.Query,
        definition: SObjectDef,
        text: str,
        relationship: ChildRelationship | None = None,
    ) -> None:
        self.org = org
        self.query = query
        self.definition = definition
        self.text = text
        self.relationship = relationship
        self.selected: list[tuple[soql.FieldPath, _Resolved]] = []
        self.subplans: list[tuple[soql.SubQuery, _Plan]] = []
        for item in query.items:
            if isinstance(item, soql.FieldPath):
                self.selected.append((item, org.resolve(definition, item, text)))
            elif isinstance(item, soql.SubQuery):
                name = item.query.sobject
                child_rel = definition.children.get(name.lower())
                if child_rel is None:
                    raise soql.query_error(
                        text,
                        item.query.sobject_pos,
                        "INVALID_TYPE",
                        f"Didn't understand relationship '{name}' in FROM part of query call. "
                        "If you are attempting to use a custom relationship, be sure to append "
                        "the '__r' after the custom relationship name. Please reference your "
                        "WSDL or the describe call for the appropriate names.",
                    )
                child = org.schema[child_rel.child.lower()]
                self.subplans.append((item, _Plan(org, item.query, child, text, child_rel)))
        self.predicate = None if query.where is None else self.compile(query.where)
        self.order: list[tuple[_Resolved, soql.OrderItem]] = []
        for order in query.order:
            resolved = org.resolve(definition, order.path, text)
            if not resolved.field.sortable:
                raise soql.query_error(
                    text,
                    order.path.pos,
                    "INVALID_FIELD",
                    f"field '{resolved.field.name}' can not be sorted in a query call",
                )
            self.order.append((resolved, order))

    # -- filtering
    def compile(self, condition: soql.Condition) -> Predicate:
        if isinstance(condition, soql.Logical):
            parts = [self.compile(item) for item in condition.items]
            if condition.op == "and":
                return lambda row: all(part(row) for part in parts)
            return lambda row: any(part(row) for part in parts)
        if isinstance(condition, soql.Negation):
            inner = self.compile(condition.item)
            return lambda row: not inner(row)
        return self.comparison(condition)

    def comparison(self, comparison: soql.Comparison) -> Predicate:
        resolved = self.org.resolve(self.definition, comparison.path, self.text)
        field = resolved.field
        if not field.filterable:
            raise soql.query_error(
                self.text,
                comparison.path.pos,
                "INVALID_FIELD",
                f"field '{field.name}' can not be filtered in query call",
            )
        op = comparison.op
        org = self.org

        def value_of(row: Row) -> Any:
            target = org.follow(row, resolved) if resolved.hops else row
            return None if target is None else _normal(field, target.get(field.name))

        if op in {"in", "notin"}:
            assert isinstance(comparison.value, tuple)
            values = [self.literal(field, literal, op) for literal in comparison.value]
            wanted = {value for value in values if not isinstance(value, tuple)}
            if op == "in":
                return lambda row: value_of(row) in wanted
            return lambda row: value_of(row) not in wanted
        literal = comparison.value
        assert isinstance(literal, soql.Literal)
        if op == "like":
            if field.type not in TEXT_TYPES | ID_TYPES or literal.kind != "string":
                raise soql.query_error(
                    self.text,
                    comparison.path.pos,
                    "INVALID_QUERY_FILTER_OPERATOR",
                    f"invalid operator on {field.type} field",
                )
            pattern = _like(str(literal.value))
            return lambda row: (lambda v: v is not None and bool(pattern.fullmatch(str(v))))(
                value_of(row)
            )
        wanted_value = self.literal(field, literal, op)
        if isinstance(wanted_value, tuple):  # a date literal: a range [start, end)
            start, end = wanted_value

            def in_range(row: Row) -> bool:
                value = value_of(row)
                if value is None:
                    return op == "!="
                inside = bool(start <= value < end)
                outcome = {
                    "=": inside,
                    "!=": not inside,
                    "<": value < start,
                    "<=": value < end,
                    ">": value >= end,
                    ">=": value >= start,
                }[op]
                return bool(outcome)

            return in_range
        if field.type in TEXT_TYPES and op in {"<", "<=", ">", ">="} and literal.kind == "null":
            return lambda row: False

        def compare(row: Row) -> bool:
            value = value_of(row)
            if op == "=":
                return bool(value == wanted_value)
            if op == "!=":
                return bool(value != wanted_value)
            if value is None or wanted_value is None:
                return False
            if op == "<":
                return bool(value < wanted_value)
            if op == "<=":
                return bool(value <= wanted_value)
            if op == ">":
                return bool(value > wanted_value)
            return bool(value >= wanted_value)

        return compare

    def literal(self, field: FieldDef, literal: soql.Literal, op: str) -> Any:
        """A literal as a comparable value for ``field`` (a (start, end) range for TODAY etc.)."""
        kind = field.type
        if literal.kind == "null":
            return None
        if kind in ID_TYPES:
            if literal.kind != "string":
                raise _type_error(self.text, literal, field, "string")
            value = str(literal.value)
            if op != "like" and not is_record_id(value):
                raise soql.query_error(
                    self.text,
                    literal.pos,
                    "INVALID_QUERY_FILTER_OPERATOR",
                    f"invalid ID field: {value}",
                )
            return value[:15]
        if kind in TEXT_TYPES or kind == "anyType":
            if literal.kind != "string":
                raise _type_error(self.text, literal, field, "string")
            return str(literal.value).lower()
        if kind in NUMBER_TYPES:
            if literal.kind != "number":
                raise _type_error(self.text, literal, field, "double" if kind != "int" else "int")
            return float(literal.value)
        if kind == "boolean":
            if literal.kind != "boolean":
                raise _type_error(self.text, literal, field, "boolean")
            return bool(literal.value)
        if kind in {"date", "datetime"}:
            today = self.org.clock().astimezone(UTC).date()
            if literal.kind == "date_literal":
                name, amount = literal.value
                start, end = _date_range(name, amount, today)
                if kind == "date":
                    return start, end
                return (
                    datetime.combine(start, datetime.min.time(), UTC),
                    datetime.combine(end, datetime.min.time(), UTC),
                )
            if kind == "date":
                if literal.kind != "date":
                    raise _type_error(self.text, literal, field, "date")
                return parse_date(str(literal.value))
            if literal.kind != "datetime":
                raise _type_error(self.text, literal, field, "dateTime")
            return parse_datetime(str(literal.value))
        raise soql.query_error(
            self.text,
            literal.pos,
            "INVALID_FIELD",
            f"field '{field.name}' can not be filtered in query call",
        )

    # -- ordering
    def sort(self, rows: list[Row]) -> list[Row]:
        if not self.order:
            return rows
        ordered = list(rows)
        org = self.org
        for resolved, item in reversed(self.order):

            def key(row: Row, resolved: _Resolved = resolved) -> Any:
                target = org.follow(row, resolved) if resolved.hops else row
                if target is None:
                    return None
                return _normal(resolved.field, target.get(resolved.field.name))

            present = [row for row in ordered if key(row) is not None]
            absent = [row for row in ordered if key(row) is None]
            present.sort(key=key, reverse=item.descending)
            ordered = present + absent if item.nulls_last else absent + present
        return ordered

    # -- rendering
    def render(
        self,
        row: Row,
        version: str,
        include_deleted: bool,
        children: Mapping[str, Mapping[str, list[Row]]],
        child_cursor: Callable[[list[Row]], str] | None,
        child_page_size: int | None,
    ) -> Row:
        org = self.org
        table = self.definition.name
        out: Row = {"attributes": _attributes(table, row["Id"], version)}
        for _, resolved in self.selected:
            if not resolved.hops:
                out[resolved.field.name] = org._value(table, row, resolved.field.name, version)
                continue
            holder: Row | None = out
            current: Row | None = row
            current_table = table
            for hop in resolved.hops:
                name = hop.reference.relationship_name or hop.reference.name
                assert holder is not None and current is not None
                target_id = current.get(hop.reference.name)
                found = org.lookup(target_id) if isinstance(target_id, str) else None
                if found is None:
                    holder[name] = None
                    holder = current = None
                    break
                current_table, current = found
                existing = holder.get(name)
                if not isinstance(existing, dict):
                    shown = "ContentDocument" if current_table == "ContentNote" else current_table
                    existing = {"attributes": _attributes(shown, current["Id"], version)}
                    holder[name] = existing
                holder = existing
            if holder is not None and current is not None:
                leaf = resolved.field.name
                if resolved.hops[-1].target is None and leaf == "Type":
                    holder[leaf] = current_table
                else:
                    holder[leaf] = org._value(current_table, current, leaf, version)
        for sub, plan in self.subplans:
            relationship = plan.relationship
            assert relationship is not None
            rows = list(children[sub.query.sobject.lower()].get(row["Id"][:15], []))
            if plan.predicate is not None:
                rows = [child for child in rows if plan.predicate(child)]
            rows = plan.sort(rows)
            if sub.query.offset:
                rows = rows[sub.query.offset :]
            if sub.query.limit is not None:
                rows = rows[: sub.query.limit]
            if not rows:
                out[relationship.name] = None
                continue
            rendered = [
                plan.render(child, version, include_deleted, {}, None, None) for child in rows
            ]
            nested: Row = {"totalSize": len(rendered), "done": True, "records": rendered}
            if child_page_size and child_cursor and len(rendered) > child_page_size:
                nested["done"] = False
                nested["nextRecordsUrl"] = child_cursor(rendered)
                nested["records"] = rendered[:child_page_size]
            out[relationship.name] = nested
        return out
