"""HubSpot CRM v3/v4 exports -> the neutral :class:`DealSnapshot`.

Pure functions: no I/O, no clock. A deal is the CRM object shape
``{"id", "properties", "propertiesWithHistory"?, "associations"?, "createdAt"?}``
as the v3 objects, search and batch-read endpoints return it. Every property
value is a string or null; dates are ISO 8601 (a date-time or a date) or
epoch milliseconds (``"1747774172000"``).

History comes from ``propertiesWithHistory`` (newest first on the wire) for
``dealstage``, ``closedate``, ``amount`` and ``hubspot_owner_id``. Contacts come
from ``associations.contacts.results`` in either the v3 shape
(``[{"id", "type"}]``) or the v4 shape (``[{"toObjectId", "associationTypes":
[{"category", "typeId", "label"}]}]``); association labels become roles.
Properties that are not HubSpot's own go into :attr:`DealSnapshot.fields` so a
playbook can map custom properties such as ``dealcoach_metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from app.coaching.snapshot import Contact, DealSnapshot, Stage, StageCatalogue
from integrations.base import MappingError
from integrations.mapping_common import consecutive_changes as _consecutive_changes
from integrations.mapping_common import kind as _kind
from integrations.mapping_common import number as _number
from integrations.mapping_common import same as _same
from integrations.mapping_common import same_stage as _same_stage
from integrations.mapping_common import shown as _shown
from integrations.mapping_common import text as _text

__all__ = [
    "DEFAULT_PIPELINE",
    "deal_results",
    "map_deal",
    "parse_pipelines",
]

T = TypeVar("T")

#: HubSpot's default deal pipeline (id ``default``) as a new portal has it.
DEFAULT_PIPELINE = StageCatalogue(
    stages=(
        Stage("appointmentscheduled", "Appointment Scheduled", 0, 0.2),
        Stage("qualifiedtobuy", "Qualified To Buy", 1, 0.4),
        Stage("presentationscheduled", "Presentation Scheduled", 2, 0.6),
        Stage("decisionmakerboughtin", "Decision Maker Bought-In", 3, 0.8),
        Stage("contractsent", "Contract Sent", 4, 0.9),
        Stage("closedwon", "Closed Won", 5, 1.0, is_closed=True, is_won=True),
        Stage("closedlost", "Closed Lost", 6, 0.0, is_closed=True),
    ),
    pipeline="default",
)

# Deal properties the snapshot maps, and HubSpot's own properties: none of these
# go into ``fields``. Everything else (custom properties) does.
_MAPPED_PROPERTIES = frozenset(
    {
        "amount",
        "closedate",
        "createdate",
        "deal_currency_code",
        "dealname",
        "dealstage",
        "description",
        "hs_is_closed",
        "hs_is_closed_won",
        "hs_next_step",
        "hubspot_owner_id",
        "notes_last_contacted",
        "notes_last_updated",
        "notes_next_activity_date",
        "num_associated_contacts",
        "pipeline",
    }
)
_STANDARD_PROPERTIES = _MAPPED_PROPERTIES | {
    "amount_in_home_currency",
    "closed_lost_reason",
    "closed_won_reason",
    "days_to_close",
    "dealtype",
}
_STANDARD_PREFIXES = ("hs_", "hubspot_", "notes_", "num_", "engagements_")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- payloads


def deal_results(payload: object) -> list[dict[str, Any]]:
    """The deals of a ``{"results": [...]}`` response, after checking its shape."""
    return _results(payload, "deals response")


def parse_pipelines(payload: object) -> dict[str, StageCatalogue]:
    """Stage catalogues by pipeline id from a ``GET /crm/v3/pipelines/deals`` response.

    ``metadata`` values are strings on the wire (``"0.2"``, ``"false"``); a stage
    is won when it is closed with probability 1.0. Stages are ordered by
    ``displayOrder`` (response order when missing).
    """
    catalogues: dict[str, StageCatalogue] = {}
    for index, pipeline in enumerate(_results(payload, "pipelines response")):
        pipeline_id = _text(pipeline.get("id"), f"pipelines response: results[{index}].id", None)
        if pipeline_id is None:
            raise MappingError(None, f"pipelines response: results[{index}] has no id")
        if pipeline_id in catalogues:
            raise MappingError(None, f"pipelines response: duplicate pipeline {pipeline_id!r}")
        raw_stages = pipeline.get("stages")
        if not isinstance(raw_stages, list):
            raise MappingError(
                None, f"pipeline {pipeline_id!r}: 'stages' must be a list, got {_kind(raw_stages)}"
            )
        entries: list[tuple[int, Stage]] = []
        seen: set[str] = set()
        for position, raw in enumerate(raw_stages):
            where = f"pipeline {pipeline_id!r} stage {position}"
            if not isinstance(raw, Mapping):
                raise MappingError(None, f"{where}: expected an object, got {_kind(raw)}")
            stage_id = _text(raw.get("id"), f"{where} id", None)
            if stage_id is None:
                raise MappingError(None, f"{where}: missing id")
            if stage_id in seen:
                raise MappingError(None, f"{where}: duplicate stage {stage_id!r}")
            seen.add(stage_id)
            where = f"pipeline {pipeline_id!r} stage {stage_id!r}"
            display_order = _number(raw.get("displayOrder"), f"{where} displayOrder", None)
            order = position if display_order is None else int(display_order)
            metadata = raw.get("metadata")
            if metadata is None:
                metadata = {}
            if not isinstance(metadata, Mapping):
                raise MappingError(None, f"{where}: metadata must be an object")
            probability = _number(
                metadata.get("probability"), f"{where} metadata.probability", None
            )
            probability = 0.0 if probability is None else probability
            if not 0.0 <= probability <= 1.0:
                raise MappingError(
                    None, f"{where} metadata.probability: {probability} is not within 0.0-1.0"
                )
            is_closed = bool(_boolean(metadata.get("isClosed"), f"{where} metadata.isClosed", None))
            stage = Stage(
                key=stage_id,
                label=_text(raw.get("label"), f"{where} label", None) or stage_id,
                order=order,
                probability=probability,
                is_closed=is_closed,
                is_won=is_closed and probability == 1.0,
            )
            entries.append((order, stage))
        entries.sort(key=lambda entry: entry[0])
        catalogues[pipeline_id] = StageCatalogue(
            stages=tuple(stage for _, stage in entries), pipeline=pipeline_id
        )
    return catalogues


# --------------------------------------------------------------------------- deal


def map_deal(
    obj: Mapping[str, Any],
    pipelines: Mapping[str, StageCatalogue],
    recorded: Iterable[str] | None = None,
) -> DealSnapshot:
    """Map one HubSpot deal object to a :class:`DealSnapshot`.

    ``recorded`` names the deal properties the portal has (``GET
    /crm/v3/properties/deals``); without it, the properties the object carries
    are what the portal records (for an export, a missing key is not recorded).

    The ``pipeline`` property picks the catalogue (``"default"`` when absent).
    Raises :class:`MappingError` for a missing or malformed ``id`` (a string or
    an integer of digits), a missing ``dealstage`` or creation date, an unknown
    pipeline or stage, a malformed date or number, a name or id that is not text,
    or a malformed ``propertiesWithHistory`` / ``associations`` block.
    """
    if not isinstance(obj, Mapping):
        raise MappingError(None, f"expected a deal object, got {_kind(obj)}")
    rid = _record_id(obj.get("id"))
    props = obj.get("properties")
    if props is None:
        props = {}
    if not isinstance(props, Mapping):
        raise MappingError(rid, f"properties must be an object, got {_kind(props)}")

    pipeline_id = _text(props.get("pipeline"), "pipeline", rid) or "default"
    catalogue = pipelines.get(pipeline_id)
    if catalogue is None:
        raise MappingError(rid, f"unknown pipeline {pipeline_id!r}")
    stage_id = _text(props.get("dealstage"), "dealstage", rid)
    if stage_id is None:
        raise MappingError(rid, "missing dealstage")
    stage = catalogue.get(stage_id)
    if stage is None:
        raise MappingError(rid, f"unknown dealstage {stage_id!r} in pipeline {pipeline_id!r}")
    is_closed = _boolean(props.get("hs_is_closed"), "hs_is_closed", rid)
    is_won = _boolean(props.get("hs_is_closed_won"), "hs_is_closed_won", rid)
    if is_closed is not None and is_closed != stage.is_closed:
        stage = replace(stage, is_closed=is_closed)
    if is_won is not None and is_won != stage.is_won:
        stage = replace(stage, is_won=is_won)

    created_at = _datetime(props.get("createdate"), "createdate", rid) or _datetime(
        obj.get("createdAt"), "createdAt", rid
    )
    if created_at is None:
        raise MappingError(rid, "missing createdate")

    last_activity_at = _datetime(
        props.get("notes_last_contacted"), "notes_last_contacted", rid
    ) or _datetime(props.get("notes_last_updated"), "notes_last_updated", rid)
    stage_entered_at: datetime | None = None
    stage_entered_field: str | None = None
    for name in _stage_entry_properties(stage_id):
        stage_entered_at = _datetime(props.get(name), name, rid)
        if stage_entered_at is not None:
            stage_entered_field = name
            break

    history = _history_block(obj, rid)
    stage_points = [
        (at, None if value is None else _history_stage(pipelines, catalogue, value))
        for at, value in _history_points(history, "dealstage", rid, _text_value)
    ]
    close_points = _history_points(history, "closedate", rid, _date)
    amount_points = _history_points(history, "amount", rid, _number)
    owner_points = _history_points(history, "hubspot_owner_id", rid, _text_value)

    contact_count = _count(props.get("num_associated_contacts"), "num_associated_contacts", rid)
    return DealSnapshot(
        id=rid,
        name=_text(props.get("dealname"), "dealname", rid) or rid,
        stage=stage,
        created_at=created_at,
        amount=_number(props.get("amount"), "amount", rid),
        currency=_text(props.get("deal_currency_code"), "deal_currency_code", rid),
        close_date=_date(props.get("closedate"), "closedate", rid),
        owner_id=_text(props.get("hubspot_owner_id"), "hubspot_owner_id", rid),
        next_step=_text(props.get("hs_next_step"), "hs_next_step", rid),
        description=_text(props.get("description"), "description", rid),
        last_activity_at=last_activity_at,
        next_activity_at=_datetime(
            props.get("notes_next_activity_date"), "notes_next_activity_date", rid
        ),
        contacts=_contacts(obj, rid),
        contact_count=contact_count,
        contacts_known=contact_count is not None or _has_contact_associations(obj),
        stage_entered_at=stage_entered_at,
        stage_history=tuple(_consecutive_changes(stage_points, _same_stage)),
        close_date_history=tuple(_consecutive_changes(close_points, _same)),
        amount_history=tuple(_consecutive_changes(amount_points, _same)),
        owner_history=tuple(_consecutive_changes(owner_points, _same)),
        fields=_custom_properties(props),
        pipeline=pipeline_id,
        stage_entered_field=stage_entered_field,
        stage_history_from=stage_points[0][0] if stage_points else None,
        # What the portal records: the properties the export or fetch carries.
        recorded_fields=frozenset(props) | frozenset(recorded or ()),
        deal_type=_text(props.get("dealtype"), "dealtype", rid),
    )


def _stage_entry_properties(stage_id: str) -> tuple[str, ...]:
    """HubSpot's own stage-entry properties for the current stage, best first."""
    return (
        "hs_v2_date_entered_current_stage",
        f"hs_v2_date_entered_{stage_id}",
        f"hs_date_entered_{stage_id}",
    )


def _record_id(value: object) -> str:
    """The deal's ``id``: a string or an integer of digits (else :class:`MappingError`)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise MappingError(None, "missing id")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return value
    shown = _shown(value) if isinstance(value, str) else _kind(value)
    raise MappingError(None, f"id: expected a HubSpot id (digits), got {shown}")


def _history_stage(
    pipelines: Mapping[str, StageCatalogue], catalogue: StageCatalogue, stage_id: str
) -> Stage:
    """The stage a history entry names; one the deal's pipeline lacks is kept, unplaced.

    A stage of another pipeline (the deal moved pipelines) keeps its label and
    probability but has no order: orders of different pipelines do not compare.
    """
    stage = catalogue.get(stage_id)
    if stage is not None:
        return stage
    for other in pipelines.values():
        found = other.get(stage_id)
        if found is not None:
            return replace(found, order=None)
    return Stage(key=stage_id, label=stage_id, order=None, probability=0.0)


def _history_block(obj: Mapping[str, Any], rid: str) -> Mapping[str, Any]:
    block = obj.get("propertiesWithHistory")
    if block is None:
        return {}
    if not isinstance(block, Mapping):
        raise MappingError(rid, f"propertiesWithHistory must be an object, got {_kind(block)}")
    return block


def _history_points(
    history: Mapping[str, Any],
    name: str,
    rid: str,
    parse: Callable[[object, str, str | None], T | None],
) -> list[tuple[datetime, T | None]]:
    """A property's recorded values, oldest first (the wire lists newest first)."""
    entries = history.get(name)
    if entries is None:
        return []
    where = f"propertiesWithHistory.{name}"
    if not isinstance(entries, list):
        raise MappingError(rid, f"{where} must be a list, got {_kind(entries)}")
    points: list[tuple[datetime, int, T | None]] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise MappingError(rid, f"{where}[{index}] must be an object, got {_kind(entry)}")
        at = _datetime(entry.get("timestamp"), f"{where}[{index}].timestamp", rid)
        if at is None:
            raise MappingError(rid, f"{where}[{index}].timestamp is missing")
        # Negative index: equal timestamps keep the wire's newest-first meaning.
        points.append((at, -index, parse(entry.get("value"), f"{where}[{index}].value", rid)))
    points.sort(key=lambda point: (point[0], point[1]))
    return [(at, value) for at, _, value in points]


def _has_contact_associations(obj: Mapping[str, Any]) -> bool:
    """HubSpot leaves ``associations`` out when a deal has none, so only presence tells."""
    associations = obj.get("associations")
    return isinstance(associations, Mapping) and associations.get("contacts") is not None


def _contacts(obj: Mapping[str, Any], rid: str) -> tuple[Contact, ...]:
    """Associated contacts, one per contact id, roles from association labels."""
    associations = obj.get("associations")
    if associations is None:
        return ()
    if not isinstance(associations, Mapping):
        raise MappingError(rid, f"associations must be an object, got {_kind(associations)}")
    block = associations.get("contacts")
    if block is None:
        return ()
    if not isinstance(block, Mapping) or not isinstance(block.get("results"), list):
        raise MappingError(rid, "associations.contacts must be an object with a 'results' list")
    roles: dict[str, list[str]] = {}
    for index, item in enumerate(block["results"]):
        where = f"associations.contacts.results[{index}]"
        if not isinstance(item, Mapping):
            raise MappingError(rid, f"{where} must be an object, got {_kind(item)}")
        labels: list[str] = []
        if "toObjectId" in item:  # v4
            contact_id = _text(item.get("toObjectId"), f"{where}.toObjectId", rid)
            types = item.get("associationTypes") or []
            if not isinstance(types, list):
                raise MappingError(rid, f"{where}.associationTypes must be a list")
            for position, kind in enumerate(types):
                if isinstance(kind, Mapping):
                    label = _text(
                        kind.get("label"), f"{where}.associationTypes[{position}].label", rid
                    )
                    if label is not None:
                        labels.append(label)
        else:  # v3: the type names the association kind ("deal_to_contact"), not a role
            contact_id = _text(item.get("id"), f"{where}.id", rid)
        if contact_id is None:
            raise MappingError(rid, f"{where} has no contact id")
        known = roles.setdefault(contact_id, [])
        known.extend(label for label in labels if label not in known)
    return tuple(Contact(id=cid, roles=tuple(labels)) for cid, labels in roles.items())


def _custom_properties(props: Mapping[str, Any]) -> dict[str, str]:
    """Properties that are not HubSpot's own, as strings; null and empty are skipped."""
    fields: dict[str, str] = {}
    for name, value in props.items():
        if name in _STANDARD_PROPERTIES or name.startswith(_STANDARD_PREFIXES):
            continue
        text = _scalar_text(value)
        if text is not None:
            fields[name] = text
    return fields


# --------------------------------------------------------------------------- value parsing


def _results(payload: object, what: str) -> list[dict[str, Any]]:
    if not isinstance(payload, Mapping):
        raise MappingError(None, f"{what}: expected an object with 'results', got {_kind(payload)}")
    results = payload.get("results")
    if not isinstance(results, list):
        raise MappingError(None, f"{what}: 'results' must be a list, got {_kind(results)}")
    for index, item in enumerate(results):
        if not isinstance(item, dict):
            raise MappingError(
                None, f"{what}: results[{index}] must be an object, got {_kind(item)}"
            )
    return results


def _text_value(value: object, field: str, rid: str | None) -> str | None:
    return _text(value, field, rid)


def _scalar_text(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        text = str(value)
        return text if text.strip() else None
    return None


def _count(value: object, field: str, rid: str | None) -> int | None:
    number = _number(value, field, rid)
    if number is None:
        return None
    if number < 0 or not number.is_integer():
        raise MappingError(rid, f"{field}: not a count: {value!r}")
    return int(number)


def _boolean(value: object, field: str, rid: str | None) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return None
        if text in {"true", "false"}:
            return text == "true"
    raise MappingError(rid, f"{field}: expected true or false, got {value!r}")


def _epoch_millis(text: str) -> bool:
    digits = text[1:] if text.startswith("-") else text
    return digits.isascii() and digits.isdigit()


def _datetime(value: object, field: str, rid: str | None) -> datetime | None:
    """A date-time in UTC from ISO 8601 (Z, an offset, or a date: midnight UTC)
    or epoch milliseconds. No offset means UTC."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= 10**20:  # epoch milliseconds of any datetime have fewer digits
            raise MappingError(rid, f"{field}: not a date-time: an integer out of range")
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise MappingError(rid, f"{field}: expected a date-time string, got {_kind(value)}")
    if not text:
        return None
    try:
        if _epoch_millis(text) and len(text.lstrip("-")) > 8:
            return _EPOCH + timedelta(milliseconds=int(text))
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        # In UTC it may fall outside the years 1-9999 ("9999-12-31T23:00:00-05:00").
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        shown = _shown(value) if isinstance(value, str) else str(value)
        raise MappingError(rid, f"{field}: not a date-time: {shown}") from None


def _date(value: object, field: str, rid: str | None) -> date | None:
    """A calendar date: a ``YYYY-MM-DD`` date, or the UTC date of a date-time."""
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise MappingError(rid, f"{field}: not a date: {_shown(value)}") from None
    try:
        moment = _datetime(value, field, rid)
    except MappingError:
        shown = _shown(value) if isinstance(value, str) else _kind(value)
        raise MappingError(rid, f"{field}: not a date: {shown}") from None
    return None if moment is None else moment.date()
