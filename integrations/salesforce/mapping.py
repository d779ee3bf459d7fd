"""Salesforce REST exports -> the neutral :class:`DealSnapshot`.

Pure functions: no I/O, no clock. The input is what a SOQL query over the REST
API returns (``{"totalSize", "done", "records": [...]}``), with child
relationship subqueries nested in the same shape:

* ``OpportunityHistories`` (OpportunityHistory: ``StageName``, ``Amount``,
  ``CloseDate``, ``Probability``, ``CreatedDate``): every row is a full copy of
  those values at that time, so changes come from consecutive rows;
* ``Histories`` (OpportunityFieldHistory: ``Field``, ``OldValue``,
  ``NewValue``, ``CreatedDate``): one row per tracked field change;
* ``OpportunityContactRoles`` (``ContactId``, ``Role``, ``IsPrimary``,
  ``Contact.Name``).

Both history sources are merged: the same field moving to the same new value
within :data:`HISTORY_MATCH_WINDOW` is one change. Any field or subquery may be
absent (an org without field history tracking, a query that did not select
it); what is present must be well formed, else :class:`MappingError` names the
record and the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from app.coaching.snapshot import Change, Contact, DealSnapshot, Stage, StageCatalogue
from integrations.base import MappingError
from integrations.mapping_common import consecutive_changes as _consecutive_changes
from integrations.mapping_common import kind as _kind
from integrations.mapping_common import number as _number
from integrations.mapping_common import same as _same
from integrations.mapping_common import same_stage as _same_stage
from integrations.mapping_common import shown as _shown
from integrations.mapping_common import text as _text

__all__ = [
    "DEFAULT_STAGES",
    "HISTORY_MATCH_WINDOW",
    "map_opportunity",
    "parse_stage_catalogue",
    "query_records",
]

T = TypeVar("T")

#: Salesforce's standard opportunity stages with their default probabilities.
DEFAULT_STAGES = StageCatalogue(
    stages=(
        Stage("Prospecting", "Prospecting", 1, 0.10),
        Stage("Qualification", "Qualification", 2, 0.10),
        Stage("Needs Analysis", "Needs Analysis", 3, 0.20),
        Stage("Value Proposition", "Value Proposition", 4, 0.50),
        Stage("Id. Decision Makers", "Id. Decision Makers", 5, 0.60),
        Stage("Perception Analysis", "Perception Analysis", 6, 0.70),
        Stage("Proposal/Price Quote", "Proposal/Price Quote", 7, 0.75),
        Stage("Negotiation/Review", "Negotiation/Review", 8, 0.90),
        Stage("Closed Won", "Closed Won", 9, 1.0, is_closed=True, is_won=True),
        Stage("Closed Lost", "Closed Lost", 10, 0.0, is_closed=True),
    )
)

#: Two history rows (one per source) for the same field and the same new value
#: at most this far apart record the same change.
HISTORY_MATCH_WINDOW = timedelta(seconds=5)

# A User id (Opportunity owners are always users): 15 or 18 characters.
_USER_ID = re.compile(r"005[0-9A-Za-z]{12}(?:[0-9A-Za-z]{3})?")
# Any record id: 15 (case-sensitive) or 18 (case-safe) alphanumeric characters.
_RECORD_ID = re.compile(r"[0-9A-Za-z]{15}(?:[0-9A-Za-z]{3})?")

# OpportunityFieldHistory.Field values the snapshot uses.
_OWNER_FIELDS = frozenset({"Owner", "OwnerId"})


# --------------------------------------------------------------------------- payloads


def query_records(payload: object) -> list[dict[str, Any]]:
    """The records of a SOQL query response, after checking its shape."""
    return _records(payload, "query response", None)


def parse_stage_catalogue(payload: object) -> StageCatalogue:
    """Build the stage catalogue from an ``OpportunityStage`` query response.

    The key is ``ApiName`` (``MasterLabel`` when the query did not select it),
    which is what ``Opportunity.StageName`` holds. ``DefaultProbability`` (0-100)
    becomes 0.0-1.0. Inactive stages are kept: old deals and history still use
    them. Stages are ordered by ``SortOrder`` (response order when missing).
    """
    rows = _records(payload, "OpportunityStage response", None)
    entries: list[tuple[int, Stage]] = []
    seen: set[str] = set()
    for index, row in enumerate(rows):
        where = f"OpportunityStage record {index}"
        api_name = _text(row.get("ApiName"), f"{where} ApiName", None)
        label = _text(row.get("MasterLabel"), f"{where} MasterLabel", None)
        key = api_name or label
        if key is None:
            raise MappingError(None, f"{where}: missing ApiName and MasterLabel")
        if key in seen:
            raise MappingError(None, f"{where}: duplicate stage {key!r}")
        seen.add(key)
        where = f"OpportunityStage {key!r}"
        sort_order = _number(row.get("SortOrder"), f"{where} SortOrder", None)
        order = index + 1 if sort_order is None else int(sort_order)
        percent = _number(row.get("DefaultProbability"), f"{where} DefaultProbability", None)
        is_closed = bool(_boolean(row.get("IsClosed"), f"{where} IsClosed", None))
        is_won = bool(_boolean(row.get("IsWon"), f"{where} IsWon", None))
        if percent is None:
            percent = 100.0 if is_won else 0.0
        if not 0.0 <= percent <= 100.0:
            raise MappingError(None, f"{where} DefaultProbability: {percent} is not within 0-100")
        stage = Stage(
            key=key,
            label=label or key,
            order=order,
            probability=percent / 100.0,
            is_closed=is_closed or is_won,
            is_won=is_won,
        )
        entries.append((order, stage))
    entries.sort(key=lambda entry: entry[0])
    return StageCatalogue(stages=tuple(stage for _, stage in entries))


# --------------------------------------------------------------------------- opportunity


def map_opportunity(
    record: Mapping[str, Any], stages: StageCatalogue, recorded: Iterable[str] | None = None
) -> DealSnapshot:
    """Map one Opportunity record (with its subqueries) to a :class:`DealSnapshot`.

    ``recorded`` names the Opportunity fields the org has (its describe); without
    it, the fields the record carries are what the org records (a query selects
    only fields that exist; for an export, a missing key is not recorded).

    ``stages`` resolves ``StageName`` (by ``ApiName``, then by label); the
    current stage's probability comes from it, not from the record's
    ``Probability``. Raises :class:`MappingError` for a missing or malformed ``Id``
    (15 or 18 alphanumeric characters: ids reach SOQL, so they are checked strictly),
    a missing ``StageName`` or ``CreatedDate``, an unknown current stage, a malformed
    date or number, a name or id that is not text, or a malformed subquery.
    """
    if not isinstance(record, Mapping):
        raise MappingError(None, f"expected an Opportunity record object, got {_kind(record)}")
    rid = _record_id(record.get("Id"))

    stage_name = _text(record.get("StageName"), "StageName", rid)
    if stage_name is None:
        raise MappingError(rid, "missing StageName")
    stage = _find_stage(stages, stage_name)
    if stage is None:
        raise MappingError(
            rid, f"unknown StageName {stage_name!r} (not in the opportunity stage catalogue)"
        )
    is_closed = _boolean(record.get("IsClosed"), "IsClosed", rid)
    is_won = _boolean(record.get("IsWon"), "IsWon", rid)
    if is_closed is not None and is_closed != stage.is_closed:
        stage = replace(stage, is_closed=is_closed)
    if is_won is not None and is_won != stage.is_won:
        stage = replace(stage, is_won=is_won)

    created_at = _datetime(record.get("CreatedDate"), "CreatedDate", rid)
    if created_at is None:
        raise MappingError(rid, "missing CreatedDate")

    owner = record.get("Owner")
    owner_name = _text(owner.get("Name"), "Owner.Name", rid) if isinstance(owner, Mapping) else None

    stage_changes, amount_changes, close_changes, history_from = _opportunity_history(
        record, stages, rid
    )
    field_stage, field_amount, field_close, owner_changes = _field_history(record, stages, rid)
    if field_stage and (history_from is None or field_stage[0].at < history_from):
        history_from = field_stage[0].at
    stage_entered_at = _datetime(record.get("LastStageChangeDate"), "LastStageChangeDate", rid)

    return DealSnapshot(
        id=rid,
        name=_text(record.get("Name"), "Name", rid) or rid,
        stage=stage,
        created_at=created_at,
        amount=_number(record.get("Amount"), "Amount", rid),
        currency=_text(record.get("CurrencyIsoCode"), "CurrencyIsoCode", rid),
        close_date=_date(record.get("CloseDate"), "CloseDate", rid),
        owner_id=_text(record.get("OwnerId"), "OwnerId", rid),
        owner_name=owner_name,
        next_step=_text(record.get("NextStep"), "NextStep", rid),
        description=_text(record.get("Description"), "Description", rid),
        last_activity_at=_datetime(record.get("LastActivityDate"), "LastActivityDate", rid),
        has_future_activity=bool(_boolean(record.get("HasOpenActivity"), "HasOpenActivity", rid)),
        forecast_category=_text(record.get("ForecastCategoryName"), "ForecastCategoryName", rid),
        contacts=_contacts(record, rid),
        # Salesforce sends null for an empty subquery; a missing key means not selected.
        contacts_known="OpportunityContactRoles" in record,
        stage_entered_at=stage_entered_at,
        stage_entered_field="LastStageChangeDate" if stage_entered_at is not None else None,
        stage_history_from=history_from,
        # What the org records: the fields the query selected (an export's keys).
        recorded_fields=frozenset(key for key in record if key != "attributes")
        | frozenset(recorded or ()),
        deal_type=_text(record.get("Type"), "Type", rid),
        stage_history=tuple(_merge(stage_changes, field_stage, _same_stage)),
        close_date_history=tuple(_merge(close_changes, field_close, _same)),
        amount_history=tuple(_merge(amount_changes, field_amount, _same)),
        owner_history=tuple(owner_changes),
        fields=_custom_fields(record),
        pipeline=stages.pipeline,
        modified_at=_datetime(record.get("SystemModstamp"), "SystemModstamp", rid),
    )


def _record_id(value: object) -> str:
    """The record's ``Id``, checked strictly (else :class:`MappingError` naming ``Id``)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise MappingError(None, "missing Id")
    if not isinstance(value, str):
        raise MappingError(None, f"Id: expected a string, got {_kind(value)}")
    if not _RECORD_ID.fullmatch(value):
        raise MappingError(None, f"Id: not a 15- or 18-character Salesforce id: {_shown(value)}")
    return value


def _find_stage(stages: StageCatalogue, name: str) -> Stage | None:
    stage = stages.get(name)
    if stage is not None:
        return stage
    for candidate in stages.stages:
        if candidate.label == name:
            return candidate
    return None


def _history_stage(stages: StageCatalogue, name: str, probability: float | None) -> Stage:
    """The stage a history row names; a stage the catalogue lacks is kept, unplaced."""
    stage = _find_stage(stages, name)
    if stage is not None:
        return stage
    fraction = 0.0 if probability is None else min(max(probability / 100.0, 0.0), 1.0)
    return Stage(key=name, label=name, order=None, probability=fraction)


def _opportunity_history(
    record: Mapping[str, Any], stages: StageCatalogue, rid: str
) -> tuple[list[Change[Stage]], list[Change[float]], list[Change[date]], datetime | None]:
    """Changes from ``OpportunityHistories``: consecutive full rows, oldest first; and
    the time of the oldest row with a stage (where the stage history starts)."""
    rows = _subquery(record, "OpportunityHistories", rid)
    dated: list[tuple[datetime, int, dict[str, Any]]] = []
    for index, row in enumerate(rows):
        where = f"OpportunityHistories[{index}]"
        at = _datetime(row.get("CreatedDate"), f"{where}.CreatedDate", rid)
        if at is None:
            raise MappingError(rid, f"{where}.CreatedDate is missing")
        dated.append((at, index, row))
    dated.sort(key=lambda item: (item[0], item[1]))

    stage_points: list[tuple[datetime, Stage | None]] = []
    amount_points: list[tuple[datetime, float | None]] = []
    close_points: list[tuple[datetime, date | None]] = []
    for at, index, row in dated:
        where = f"OpportunityHistories[{index}]"
        # A row that lacks a column (not selected) says nothing about that field.
        if "StageName" in row:
            name = _text(row.get("StageName"), f"{where}.StageName", rid)
            probability = _number(row.get("Probability"), f"{where}.Probability", rid)
            stage_points.append(
                (at, None if name is None else _history_stage(stages, name, probability))
            )
        if "Amount" in row:
            amount_points.append((at, _number(row.get("Amount"), f"{where}.Amount", rid)))
        if "CloseDate" in row:
            close_points.append((at, _date(row.get("CloseDate"), f"{where}.CloseDate", rid)))
    return (
        _consecutive_changes(stage_points, _same_stage),
        _consecutive_changes(amount_points, _same),
        _consecutive_changes(close_points, _same),
        stage_points[0][0] if stage_points else None,
    )


def _field_history(
    record: Mapping[str, Any], stages: StageCatalogue, rid: str
) -> tuple[list[Change[Stage]], list[Change[float]], list[Change[date]], list[Change[str]]]:
    """Changes from ``Histories`` (OpportunityFieldHistory), oldest first.

    ``created`` rows are not changes. Salesforce records an owner change twice,
    once with user names and once with user ids: only the id rows are kept.
    """
    rows = _subquery(record, "Histories", rid)
    stage_changes: list[Change[Stage]] = []
    amount_changes: list[Change[float]] = []
    close_changes: list[Change[date]] = []
    owner_changes: list[Change[str]] = []
    for index, row in enumerate(rows):
        where = f"Histories[{index}]"
        field = _text(row.get("Field"), f"{where}.Field", rid)
        if field not in {"StageName", "Amount", "CloseDate"} and field not in _OWNER_FIELDS:
            continue  # "created", or a field the snapshot does not track
        at = _datetime(row.get("CreatedDate"), f"{where}.CreatedDate", rid)
        if at is None:
            raise MappingError(rid, f"{where}.CreatedDate is missing")
        old_raw, new_raw = row.get("OldValue"), row.get("NewValue")
        if field == "StageName":
            old_name = _text(old_raw, f"{where}.OldValue", rid)
            new_name = _text(new_raw, f"{where}.NewValue", rid)
            stage_changes.append(
                Change(
                    at=at,
                    old=None if old_name is None else _history_stage(stages, old_name, None),
                    new=None if new_name is None else _history_stage(stages, new_name, None),
                )
            )
        elif field == "Amount":
            amount_changes.append(
                Change(
                    at=at,
                    old=_number(old_raw, f"{where}.OldValue", rid),
                    new=_number(new_raw, f"{where}.NewValue", rid),
                )
            )
        elif field == "CloseDate":
            close_changes.append(
                Change(
                    at=at,
                    old=_date(old_raw, f"{where}.OldValue", rid),
                    new=_date(new_raw, f"{where}.NewValue", rid),
                )
            )
        else:
            old_owner = _text(old_raw, f"{where}.OldValue", rid)
            new_owner = _text(new_raw, f"{where}.NewValue", rid)
            if not all(v is None or _USER_ID.fullmatch(v) for v in (old_owner, new_owner)):
                continue  # the row with user names
            owner_changes.append(Change(at=at, old=old_owner, new=new_owner))

    def real(
        changes: list[Change[T]], same: Callable[[T | None, T | None], bool]
    ) -> list[Change[T]]:
        kept = [change for change in changes if not same(change.old, change.new)]
        return sorted(kept, key=lambda change: change.at)

    return (
        real(stage_changes, _same_stage),
        real(amount_changes, _same),
        real(close_changes, _same),
        real(owner_changes, _same),
    )


def _contacts(record: Mapping[str, Any], rid: str) -> tuple[Contact, ...]:
    """Contacts from ``OpportunityContactRoles``, one per contact with all its roles."""
    rows = _subquery(record, "OpportunityContactRoles", rid)
    order: list[str] = []
    roles: dict[str, list[str]] = {}
    primary: dict[str, bool] = {}
    names: dict[str, str | None] = {}
    for index, row in enumerate(rows):
        where = f"OpportunityContactRoles[{index}]"
        contact_id = _text(row.get("ContactId"), f"{where}.ContactId", rid)
        if contact_id is None:
            continue  # a role without a contact says nothing about who is on the deal
        if contact_id not in roles:
            order.append(contact_id)
            roles[contact_id] = []
            primary[contact_id] = False
            names[contact_id] = None
        role = _text(row.get("Role"), f"{where}.Role", rid)
        if role is not None and role not in roles[contact_id]:
            roles[contact_id].append(role)
        is_primary = _boolean(row.get("IsPrimary"), f"{where}.IsPrimary", rid)
        primary[contact_id] = primary[contact_id] or bool(is_primary)
        contact = row.get("Contact")
        if isinstance(contact, Mapping) and names[contact_id] is None:
            names[contact_id] = _text(contact.get("Name"), f"{where}.Contact.Name", rid)
    return tuple(
        Contact(id=cid, roles=tuple(roles[cid]), is_primary=primary[cid], name=names[cid])
        for cid in order
    )


def _custom_fields(record: Mapping[str, Any]) -> dict[str, str]:
    """Custom fields (``*__c``) with a scalar, non-empty value, as strings."""
    fields: dict[str, str] = {}
    for key, value in record.items():
        if not key.endswith("__c"):
            continue
        text = _scalar_text(value)
        if text is not None:
            fields[key] = text
    return fields


# --------------------------------------------------------------------------- history helpers


def _merge(
    primary: list[Change[T]],
    secondary: list[Change[T]],
    same: Callable[[T | None, T | None], bool],
) -> list[Change[T]]:
    """Both sources' changes, oldest first, a change in both counted once."""
    merged = list(primary)
    for change in secondary:
        duplicate = any(
            same(change.new, known.new) and abs(change.at - known.at) <= HISTORY_MATCH_WINDOW
            for known in primary
        )
        if not duplicate:
            merged.append(change)
    merged.sort(key=lambda change: change.at)
    return merged


# --------------------------------------------------------------------------- value parsing


def _records(payload: object, what: str, rid: str | None) -> list[dict[str, Any]]:
    if not isinstance(payload, Mapping):
        raise MappingError(rid, f"{what}: expected an object with 'records', got {_kind(payload)}")
    records = payload.get("records")
    if not isinstance(records, list):
        raise MappingError(rid, f"{what}: 'records' must be a list, got {_kind(records)}")
    for index, item in enumerate(records):
        if not isinstance(item, dict):
            raise MappingError(
                rid, f"{what}: records[{index}] must be an object, got {_kind(item)}"
            )
    return records


def _subquery(record: Mapping[str, Any], name: str, rid: str) -> list[dict[str, Any]]:
    """A child relationship's records; a missing or null subquery has none."""
    value = record.get(name)
    if value is None:
        return []
    return _records(value, name, rid)


def _scalar_text(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value if value.strip() else None
    return None  # null, or a relationship object / list: not a custom field value


def _boolean(value: object, field: str, rid: str | None) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    raise MappingError(rid, f"{field}: expected true or false, got {value!r}")


def _datetime(value: object, field: str, rid: str | None) -> datetime | None:
    """A date-time in UTC; accepts ``...000+0000``, ISO 8601 with Z or an offset,
    and a plain date (midnight UTC, e.g. ``LastActivityDate``). No offset means UTC."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise MappingError(rid, f"{field}: expected a date-time string, got {_kind(value)}")
    try:
        parsed = datetime.fromisoformat(value.strip())
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        # In UTC it may fall outside the years 1-9999 ("9999-12-31T23:00:00-05:00").
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise MappingError(rid, f"{field}: not a date-time: {_shown(value)}") from None


def _date(value: object, field: str, rid: str | None) -> date | None:
    """A calendar date, ``YYYY-MM-DD`` (a date-time is taken as its UTC date)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise MappingError(rid, f"{field}: expected a date string, got {_kind(value)}")
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise MappingError(rid, f"{field}: not a date: {_shown(value)}") from None
    return moment.date()
