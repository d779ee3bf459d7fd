"""The CRM search endpoints (``POST /crm/v3/objects/{type}/search``).

Request: ``filterGroups`` (OR of groups, AND of filters within a group; at most 5
groups, 6 filters a group, 18 in all), ``sorts`` (``[{"propertyName",
"direction": "ASCENDING"|"DESCENDING"}]`` or ``["name"]`` / ``["-name"]``),
``properties``, ``query`` (free text), ``limit`` (1-200, default 10) and ``after``
(an offset). Paging past 10,000 results is a 400, as in HubSpot.

Operators: EQ, NEQ, LT, LTE, GT, GTE, BETWEEN (``value``..``highValue``), IN,
NOT_IN (``values``), HAS_PROPERTY, NOT_HAS_PROPERTY, CONTAINS_TOKEN,
NOT_CONTAINS_TOKEN. Values compare by the property's type: numbers numerically,
date-times as instants (epoch milliseconds or ISO 8601), text case-insensitively.
``CONTAINS_TOKEN`` splits the text (HTML tags removed) into tokens at whitespace
and punctuation other than ``-_.:@``; the value's tokens must all be present,
``*`` matches any characters within one token. The pseudo-property
``associations.<type>`` (``associations.deal``) filters by associated object id
(EQ, IN, NEQ, NOT_IN, HAS_PROPERTY).
"""

from __future__ import annotations

import fnmatch
import functools
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .portal import OBJECT_TYPES, HubSpotError, Portal, Record, parse_datetime

__all__ = ["MAX_LIMIT", "MAX_RESULTS", "SearchRequest", "parse_request", "search"]

MAX_LIMIT = 200
MAX_RESULTS = 10000
MAX_GROUPS = 5
MAX_FILTERS_PER_GROUP = 6
MAX_FILTERS = 18
_OPERATORS = frozenset(
    {
        "EQ",
        "NEQ",
        "LT",
        "LTE",
        "GT",
        "GTE",
        "BETWEEN",
        "IN",
        "NOT_IN",
        "HAS_PROPERTY",
        "NOT_HAS_PROPERTY",
        "CONTAINS_TOKEN",
        "NOT_CONTAINS_TOKEN",
    }
)
#: Properties every search result carries, requested or not.
ALWAYS = {
    "deals": ("createdate", "hs_lastmodifieddate", "hs_object_id"),
    "contacts": ("createdate", "lastmodifieddate", "hs_object_id"),
    "notes": ("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
}
#: Properties of a result when none are requested.
DEFAULT_PROPERTIES = {
    "deals": (
        "amount",
        "closedate",
        "createdate",
        "dealname",
        "dealstage",
        "hs_lastmodifieddate",
        "hs_object_id",
        "pipeline",
    ),
    "contacts": (
        "createdate",
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
        "lastname",
    ),
    "notes": ("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
}
_QUERY_PROPERTIES = {
    "deals": ("dealname",),
    "contacts": ("firstname", "lastname", "email"),
    "notes": ("hs_note_body",),
}
_ORDERED: dict[str, Callable[[Any, Any], bool]] = {
    "EQ": operator.eq,
    "NEQ": operator.ne,
    "LT": operator.lt,
    "LTE": operator.le,
    "GT": operator.gt,
    "GTE": operator.ge,
}
#: Properties always set and derived from the record itself (watermarks, ids).
_INSTANT_PROPERTIES = frozenset({"hs_lastmodifieddate", "lastmodifieddate", "hs_object_id"})
_TAG = re.compile(r"<[^>]*>")
_SPLIT = re.compile(r"[^\w\-.:@*]+", re.UNICODE)


@dataclass(frozen=True)
class Filter:
    property: str
    operator: str
    value: str | None
    values: tuple[str, ...]
    high_value: str | None


@dataclass(frozen=True)
class SearchRequest:
    groups: tuple[tuple[Filter, ...], ...]
    sorts: tuple[tuple[str, bool], ...]  # (property, descending)
    properties: tuple[str, ...]
    query: str | None
    limit: int
    after: int


def _bad(message: str, sub_category: str | None = None) -> HubSpotError:
    return HubSpotError(400, "VALIDATION_ERROR", message, sub_category=sub_category)


def parse_request(
    portal: Portal, object_type: str, body: Mapping[str, Any], max_results: int = MAX_RESULTS
) -> SearchRequest:
    """Check a search body (raises :class:`HubSpotError` 400 as HubSpot would)."""
    known = portal.properties[object_type]
    raw_groups = body.get("filterGroups") or []
    if not isinstance(raw_groups, list):
        raise _bad("filterGroups must be a list")
    if len(raw_groups) > MAX_GROUPS:
        raise _bad(f"Too many filter groups: {len(raw_groups)} (at most {MAX_GROUPS})")
    groups: list[tuple[Filter, ...]] = []
    total = 0
    for group in raw_groups:
        raw_filters = group.get("filters") if isinstance(group, Mapping) else None
        if not isinstance(raw_filters, list):
            raise _bad("each filter group needs a filters list")
        if len(raw_filters) > MAX_FILTERS_PER_GROUP:
            raise _bad(
                f"Too many filters in a group: {len(raw_filters)} (at most {MAX_FILTERS_PER_GROUP})"
            )
        total += len(raw_filters)
        filters: list[Filter] = []
        for raw in raw_filters:
            if not isinstance(raw, Mapping):
                raise _bad("a filter must be an object")
            name = raw.get("propertyName")
            operator = raw.get("operator", "EQ")
            if not isinstance(name, str) or not name:
                raise _bad("a filter needs a propertyName")
            if operator not in _OPERATORS:
                raise _bad(f"Unknown filter operator {operator!r}")
            if name.startswith("associations."):
                if name[len("associations.") :] not in OBJECT_TYPES.values():
                    raise _bad(f"Unable to find association type {name!r}")
            elif name not in known:
                raise _bad(
                    f"There was a problem with the request: property {name!r} does not exist"
                )
            values = raw.get("values") or []
            if not isinstance(values, list):
                raise _bad("values must be a list")
            value = raw.get("value")
            if operator in {"IN", "NOT_IN"} and not values:
                raise _bad(f"{operator} needs values")
            if (
                operator
                in {
                    "EQ",
                    "NEQ",
                    "LT",
                    "LTE",
                    "GT",
                    "GTE",
                    "BETWEEN",
                    "CONTAINS_TOKEN",
                    "NOT_CONTAINS_TOKEN",
                }
                and value is None
            ):
                raise _bad(f"{operator} needs a value")
            if operator == "BETWEEN" and raw.get("highValue") is None:
                raise _bad("BETWEEN needs a highValue")
            filters.append(
                Filter(
                    name,
                    operator,
                    None if value is None else str(value),
                    tuple(str(v) for v in values),
                    None if raw.get("highValue") is None else str(raw["highValue"]),
                )
            )
        groups.append(tuple(filters))
    if total > MAX_FILTERS:
        raise _bad(f"Too many filters: {total} (at most {MAX_FILTERS})")
    sorts: list[tuple[str, bool]] = []
    for raw in body.get("sorts") or []:
        if isinstance(raw, str):
            name, descending = raw.lstrip("-"), raw.startswith("-")
        elif isinstance(raw, Mapping) and isinstance(raw.get("propertyName"), str):
            name = raw["propertyName"]
            descending = str(raw.get("direction", "ASCENDING")).upper() == "DESCENDING"
        else:
            raise _bad("a sort must be a property name or {propertyName, direction}")
        if name not in known:
            raise _bad(f"There was a problem with the request: property {name!r} does not exist")
        sorts.append((name, descending))
    limit = body.get("limit", 10)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise _bad(f"limit must be between 1 and {MAX_LIMIT}, got {limit!r}")
    after_raw = body.get("after")
    try:
        after = 0 if after_raw in (None, "") else int(str(after_raw))
    except ValueError:
        raise _bad(f"after must be a paging cursor, got {after_raw!r}") from None
    if after < 0:
        raise _bad(f"after must be a paging cursor, got {after_raw!r}")
    if after >= max_results:
        raise _bad(
            f"Search results are limited to {max_results} per query: 'after' {after} is past them. "
            "Narrow the query (for example by hs_lastmodifieddate) and search again.",
            "crm.search.PAGINATION_LIMIT_EXCEEDED",
        )
    properties = body.get("properties") or []
    if not isinstance(properties, list) or not all(isinstance(p, str) for p in properties):
        raise _bad("properties must be a list of names")
    query = body.get("query")
    return SearchRequest(
        tuple(groups),
        tuple(sorts),
        tuple(properties),
        query if isinstance(query, str) and query.strip() else None,
        limit,
        after,
    )


def tokens(text: str) -> list[str]:
    """The lower-case tokens of a text (HTML tags removed)."""
    plain = _TAG.sub(" ", text).lower()
    return [token for token in _SPLIT.split(plain) if token]


def _contains_token(text: str | None, wanted: str) -> bool:
    if text is None:
        return False
    have = tokens(text)
    pieces = tokens(wanted)
    if not pieces:
        return False
    return all(any(fnmatch.fnmatchcase(token, piece) for token in have) for piece in pieces)


@functools.lru_cache(maxsize=65536)
def _typed(kind: str, value: str) -> Any:
    if kind == "number":
        return float(value)
    if kind in {"datetime", "date"}:
        return parse_datetime(value)
    return value.lower()


def _compare(kind: str, have: str, want: str) -> int | None:
    try:
        left, right = _typed(kind, have), _typed(kind, want)
    except ValueError:
        return None
    if left == right:
        return 0
    return -1 if left < right else 1


def _matches(portal: Portal, record: Record, item: Filter) -> bool:
    if item.property.startswith("associations."):
        singular = item.property[len("associations.") :]
        plural = next(p for p, s in OBJECT_TYPES.items() if s == singular)
        linked = set(portal.associated(record.type, record.id, plural))
        wanted = {item.value} if item.value is not None else set(item.values)
        if item.operator in {"EQ", "IN"}:
            return bool(linked & wanted)
        if item.operator in {"NEQ", "NOT_IN"}:
            return not linked & wanted
        if item.operator == "HAS_PROPERTY":
            return bool(linked)
        if item.operator == "NOT_HAS_PROPERTY":
            return not linked
        return False
    kind = portal.properties[record.type][item.property].type
    op = item.operator
    if op in _ORDERED and item.property in _INSTANT_PROPERTIES and item.value is not None:
        try:
            wanted = _typed(kind, item.value)
        except ValueError:
            return False
        have_at = _instant(record, item.property)
        return bool(_ORDERED[op](have_at, wanted))
    have = portal.value(record, item.property)
    if op == "HAS_PROPERTY":
        return have is not None
    if op == "NOT_HAS_PROPERTY":
        return have is None
    if op == "CONTAINS_TOKEN":
        return _contains_token(have, item.value or "")
    if op == "NOT_CONTAINS_TOKEN":
        return not _contains_token(have, item.value or "")
    if op in {"IN", "NOT_IN"}:
        found = have is not None and any(_compare(kind, have, v) == 0 for v in item.values)
        return found if op == "IN" else not found
    if have is None:
        return op == "NEQ"
    order = _compare(kind, have, item.value or "")
    if op == "BETWEEN":
        upper = _compare(kind, have, item.high_value or "")
        return order is not None and upper is not None and order >= 0 and upper <= 0
    if order is None:
        return op == "NEQ"
    return {
        "EQ": order == 0,
        "NEQ": order != 0,
        "LT": order < 0,
        "LTE": order <= 0,
        "GT": order > 0,
        "GTE": order >= 0,
    }[op]


def _instant(record: Record, name: str) -> Any:
    """A fast path for the watermark properties: the id as a number, or the modified instant."""
    return float(record.id) if name == "hs_object_id" else record.updated_at


def _sort_value(portal: Portal, record: Record, name: str) -> tuple[int, Any]:
    if name in _INSTANT_PROPERTIES:
        value = _instant(record, name)
        return (0, value.timestamp() if isinstance(value, datetime) else value)
    kind = portal.properties[record.type][name].type
    value = portal.value(record, name)
    if value is None:
        return (1, 0)
    try:
        typed = _typed(kind, value)
    except ValueError:
        return (1, 0)
    if isinstance(typed, datetime):
        typed = typed.timestamp()
    return (0, typed)


def _key_of(keys: Mapping[str, tuple[int, Any]], record: Record) -> Any:
    return keys[record.id][1]


def search(
    portal: Portal, object_type: str, request: SearchRequest
) -> tuple[int, list[Record], int | None]:
    # HubSpot offers the next page's cursor even when it lies at the cap (the call
    # with it is then refused).
    """(total, the page's records, the next ``after`` or None)."""
    rows = [
        record
        for record in portal.all(object_type)
        if (
            not request.groups
            or any(all(_matches(portal, record, f) for f in group) for group in request.groups)
        )
        and (request.query is None or _query_matches(portal, record, request.query))
    ]
    rows.sort(key=lambda record: int(record.id))
    for name, descending in reversed(request.sorts):
        keys = {r.id: _sort_value(portal, r, name) for r in rows}
        present = [r for r in rows if keys[r.id][0] == 0]
        missing = [r for r in rows if keys[r.id][0] == 1]
        present.sort(key=functools.partial(_key_of, keys), reverse=descending)
        rows = present + missing
    total = len(rows)
    page = rows[request.after : request.after + request.limit]
    end = request.after + len(page)
    return total, page, (end if end < total else None)


def _query_matches(portal: Portal, record: Record, query: str) -> bool:
    return any(
        _contains_token(portal.value(record, name), query)
        or query.lower() in (portal.value(record, name) or "").lower()
        for name in _QUERY_PROPERTIES[record.type]
    )


def result_properties(object_type: str, requested: Sequence[str]) -> list[str]:
    names = list(requested) if requested else list(DEFAULT_PROPERTIES[object_type])
    for name in ALWAYS[object_type]:
        if name not in names:
            names.append(name)
    return names
