"""HubSpot as a :class:`~integrations.base.CrmProvider`, on the hubspot-api-client SDK.

Connection
    ``context.credentials``: a private app's token ``{"access_token": "pat-..."}``
    (``auth`` absent or ``"private_app"``: nothing to refresh), or OAuth tokens
    ``{"auth": "oauth", "access_token", "refresh_token", "expires_at"?}`` (what the
    OAuth connect flow stores; ``expires_at`` comes from ``expires_in``). An OAuth
    token at or past ``expires_at`` (less :data:`EXPIRY_MARGIN`) is not sent: the
    call raises a refreshable :class:`AuthError` and the service refreshes it once
    per connection (:func:`app.connections.runner.refresh_once`).

    The API base is the connection's ``instance_url`` when set (an emulator, a
    regional host), else the service's ``hubspot_oauth_url`` (``https://api.hubapi.com``),
    checked with :func:`app.security.urls.validate_instance_url`. The portal id is the
    connection's ``external_account_id``. Every SDK API object is built once per
    adapter on one ``Configuration`` per SDK package: the token as bearer, no urllib3
    retries (this adapter retries), TLS verified against ``settings["ca_bundle"]`` or
    the service's ``crm_ca_bundle`` (an emulator's certificate) or the system CAs, and a
    5 s connect / 30 s read timeout on every call. Answers are read as JSON straight
    from the response (``_preload_content=False``): the SDK's models would drop
    history timestamps' text and unknown keys. Paths stay inside this module.

Reads (calls per operation)
    Once per adapter: ``GET /crm/v3/properties/deals`` (only properties the portal has
    are requested; the set is :attr:`HubSpotProvider.recorded_properties`) and
    ``GET /crm/v3/pipelines/deals`` (the stage catalogues of every deal pipeline).
    A sync page is one search (``POST /crm/v3/objects/deals/search`` on
    ``hs_lastmodifieddate`` ascending, ids and stamps only, up to 200 a page), then for
    the deals not seen yet: ``ceil(n/100)`` batch reads with ``propertiesWithHistory``
    for ``dealstage``, ``closedate``, ``amount`` and ``hubspot_owner_id``,
    ``ceil(n/100)`` batch association reads (v4, deal -> contacts, labels included)
    and ``ceil(c/100)`` contact batch reads for the names of the ``c`` distinct contacts
    that carry a label (setting ``contact_names``: ``labelled``, ``all`` or ``none``;
    the coaching evidence names role holders: "Economic Buyer (Ada Lovelace)").
    Never one call per deal. :meth:`fetch_deal` is the same for one deal
    (three calls). An incremental sync ends with the archived-deal list
    (``GET /crm/v3/objects/deals?archived=true``, 100 a call) for deletes.

Incremental sync and the watermark
    ``hs_lastmodifieddate >= watermark - overlap`` (overlap :data:`SYNC_OVERLAP`,
    setting ``sync_overlap_seconds``: HubSpot's search index trails writes by seconds).
    After each page the query restarts from the page's newest stamp (keyset paging), so
    neither a deal modified mid-sync (which would shift an offset) nor the search API's
    10,000-result cap can lose a deal; a block of deals sharing one millisecond is paged
    by offset. The watermark is the newest stamp plus the versions already returned near
    it (hashes of id and stamp), so a resumed or repeated sync does not return them
    again; its format is the Salesforce adapter's (``<ISO stamp>|<ms>:<hash>,...``).

Writes
    Notes: ``POST /crm/v3/objects/notes/batch/create``, up to 100 a call, each with
    ``hs_timestamp``, ``hs_note_body`` (the HTML, the title as its first line, at most
    65,536 characters, ending with the marker) and an association to the deal (type
    checked once against ``/crm/v4/associations/notes/deals/labels``, 214 when
    HubSpot's own unlabelled type cannot be read). Each input carries
    ``objectWriteTraceId`` = its marker; a 207's errors are mapped back to their notes
    through it, and created notes to theirs through the marker in their body.
    :meth:`find_note` searches notes associated with the deal whose body holds the
    marker (one search). :meth:`update_summaries` writes the ``dealcoach_*`` deal
    properties the portal has (``dealcoach_summary`` is created on first use when
    missing) with ``POST /crm/v3/objects/deals/batch/update``, 100 a call.

Rate limits
    Every call first takes a slot from the service's shared limiter
    (:mod:`app.ratelimit`, keyed by portal, so every process and thread shares it):
    calls are paced evenly at ``share`` (setting ``rate_limit_share``, 0.9) of the
    portal's 10-second allowance (setting ``rate_limit_per_10s``, 100: a private app
    on a Starter portal; OAuth apps get 110), a few calls per short window
    (:class:`RateBudget`), so no rolling 10 s can exceed it; searches take a
    slot of their own limit instead (one every 1/3 s; HubSpot allows 5 a second and
    sends no 10-second headers on them).
    A 429 waits its ``Retry-After`` in place when that is at most
    :data:`INLINE_WAIT_LIMIT` seconds and the call is retried (at most
    :data:`MAX_ATTEMPTS` attempts, POSTs included: urllib3 does not retry them);
    longer, it becomes :class:`RateLimitedError` with ``retry_after``. 5xx answers,
    timeouts and connection failures are retried the same way for reads; a note create
    is retried only when it cannot have been applied (429, refused connection).

Errors
    401 -> :class:`AuthError` (refreshable for OAuth connections with a refresh token);
    403 -> :class:`AuthError` (not refreshable) for missing scopes or a refused token,
    else :class:`InvalidRequestError`; 404 -> :class:`NotFoundError`; 400, 409 and other
    4xx -> :class:`InvalidRequestError`; 429 -> :class:`RateLimitedError`; 5xx,
    timeouts, connection failures -> :class:`RetriableError`. Messages name the call,
    the status and HubSpot's ``category`` (when it is a plain code), never HubSpot's
    free text (it can quote CRM data) or a token.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import math
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Final

import httpx
import urllib3
from hubspot import HubSpot

from app.coaching.snapshot import DealSnapshot, StageCatalogue
from app.config import Settings, get_settings
from app.connections import oauth
from app.connections.models import Provider
from app.security.urls import InstanceUrlError, validate_instance_url
from integrations.base import (
    ApiUsage,
    AuthError,
    ConnectionContext,
    DealPage,
    InvalidRequestError,
    MappingError,
    NoteRequest,
    NoteResult,
    NotFoundError,
    ProviderError,
    RateLimitedError,
    RetriableError,
    SummaryResult,
    SummaryUpdate,
)
from integrations.hubspot.mapping import deal_results, map_deal, parse_pipelines

__all__ = [
    "BATCH_LIMIT",
    "DEAL_ID",
    "HISTORY_PROPERTIES",
    "MARKER",
    "NOTE_TO_DEAL",
    "SEARCH_LIMIT",
    "HubSpotProvider",
    "RateBudget",
    "note_body",
]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT: Final = 5.0
READ_TIMEOUT: Final = 30.0
#: Results per search page (HubSpot's maximum).
SEARCH_LIMIT: Final = 200
#: Ids per batch read / batch create / batch update / association batch read.
BATCH_LIMIT: Final = 100
#: A search query returns at most this many results (``after`` beyond it is refused).
SEARCH_CAP: Final = 10_000
#: HubSpot's note-to-deal association type, when the labels endpoint says nothing else.
NOTE_TO_DEAL: Final = 214
SYNC_OVERLAP: Final = timedelta(minutes=5)
#: An OAuth access token this close to ``expires_at`` is refreshed before use.
EXPIRY_MARGIN: Final = timedelta(seconds=60)
#: Attempts per call (the first and the retries) for 429s, 5xx and timeouts.
MAX_ATTEMPTS: Final = 4
#: A ``Retry-After`` up to this long is waited in place; longer, it is raised.
INLINE_WAIT_LIMIT: Final = 2.0
#: When a 429 names no ``Retry-After``: the policy's window.
_POLICY_WAIT: Final[Mapping[str, float]] = {
    "SECONDLY": 1.0,
    "TEN_SECONDLY_ROLLING": 10.0,
    "DAILY": 3600.0,
}
#: Record versions a watermark remembers inside its overlap window.
MAX_SEEN: Final = 2000
#: Deal ids: HubSpot object ids are digits.
DEAL_ID: Final = re.compile(r"[0-9]{1,20}")
#: Markers as ``app.coaching.render`` makes them (``dc1-`` + hex digits).
MARKER: Final = re.compile(r"dc1-[0-9A-Za-z-]{1,64}")
#: Properties whose history the snapshot reads.
HISTORY_PROPERTIES: Final = ("dealstage", "closedate", "amount", "hubspot_owner_id")
#: The rolling-summary property created on first use when the portal lacks it.
SUMMARY_PROPERTY: Final = "dealcoach_summary"
#: An association label that marks a contact as the deal's primary (not a role).
PRIMARY_LABEL: Final = "primary"
MAX_NOTE_BODY: Final = 65_536
#: The microsecond of the ``hs_timestamp`` of our own notes (see :func:`own_note_stamp`).
OWN_NOTE_MICROSECOND: Final = 999_000

_CORE_PROPERTIES: Final = (
    "dealname",
    "dealstage",
    "pipeline",
    "createdate",
    "hs_lastmodifieddate",
    "amount",
    "closedate",
    "hubspot_owner_id",
    "deal_currency_code",
    "hs_next_step",
    "description",
    "hs_is_closed",
    "hs_is_closed_won",
    "notes_last_contacted",
    "notes_last_updated",
    "notes_next_activity_date",
    "num_associated_contacts",
    "hs_v2_date_entered_current_stage",
)
_ALWAYS: Final = frozenset({"dealname", "dealstage", "pipeline", "createdate"})
_PROPERTY_NAME = re.compile(r"[a-z][a-z0-9_]{0,99}")
_CATEGORY = re.compile(r"[A-Z][A-Z0-9_]{0,80}")
_SEEN_HASH = re.compile(r"[0-9a-f]{10}")
_ISSUE_TIMEOUT = httpx.Timeout(15.0, connect=CONNECT_TIMEOUT)
_GONE_CATEGORIES: Final = frozenset({"OBJECT_NOT_FOUND", "NOT_FOUND"})
_RETRIABLE_CATEGORIES: Final = frozenset({"RATE_LIMITS", "INTERNAL_ERROR", "SERVICE_UNAVAILABLE"})


# ---------------------------------------------------------------- small helpers


def _check_deal_id(deal_id: object) -> str:
    if not isinstance(deal_id, str) or not DEAL_ID.fullmatch(deal_id):
        raise InvalidRequestError("malformed HubSpot deal id (expected digits)")
    return deal_id


def _check_marker(marker: object) -> str:
    if not isinstance(marker, str) or not MARKER.fullmatch(marker):
        raise InvalidRequestError("malformed note marker (expected dc1- and letters or digits)")
    return marker


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_stamp(value: object) -> datetime | None:
    """A HubSpot date-time (ISO 8601 or epoch milliseconds) in UTC, or None."""
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        return None
    if not text:
        return None
    try:
        if text.isdigit() and len(text) > 8:
            return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
        parsed = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _retry_after_header(value: object) -> float | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, 86_400.0)


def _json_body(raw: object) -> Any:
    if isinstance(raw, bytes | bytearray):
        raw = bytes(raw).decode("utf-8", errors="replace")
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def is_api_exception(exc: BaseException) -> bool:
    """Whether ``exc`` is an SDK ``ApiException`` (each of hubspot-api-client's generated
    packages, ``hubspot.crm.deals``, ``...associations.v4.schema`` and so on, has its own
    class and its own 401/403/404/5xx subclasses)."""
    return any(
        cls.__name__ == "ApiException" and cls.__module__.startswith("hubspot.")
        for cls in type(exc).__mro__
    )


def _category(body: object) -> str | None:
    """HubSpot's error ``category`` (or ``errorType``) when it is a plain code."""
    if not isinstance(body, Mapping):
        return None
    for key in ("category", "errorType", "subCategory"):
        value = body.get(key)
        if isinstance(value, str) and _CATEGORY.fullmatch(value):
            return value
    return None


def _version_hash(deal_id: str, stamp_ms: int | str) -> str:
    return hashlib.sha256(f"{deal_id}|{stamp_ms}".encode()).hexdigest()[:10]


@lru_cache(maxsize=1)
def _playbook_properties() -> frozenset[str]:
    """Property names (HubSpot spelling: lower case) the built-in playbooks read."""
    from app.coaching.playbook import BUILT_IN_PLAYBOOKS, load_playbook

    names: set[str] = set()
    for name in BUILT_IN_PLAYBOOKS:
        try:
            playbook = load_playbook(name)
        except Exception:  # a broken playbook must not stop a sync; it is reported elsewhere
            logger.exception("playbook %s could not be read for its field names", name)
            continue
        for element in playbook.elements.values():
            for source in element.sources:
                names.update(f for f in source.field or () if _PROPERTY_NAME.fullmatch(f))
    return frozenset(names)


# ---------------------------------------------------------------- settings


def _int_setting(settings: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = settings.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequestError(f"{key} must be an integer from {low} to {high}")
    return value


def _share_setting(settings: Mapping[str, Any]) -> float:
    value = settings.get("rate_limit_share")
    if value is None:
        return 0.9
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise InvalidRequestError("rate_limit_share must be a number above 0 and at most 1")
    return float(value)


def _custom_properties(settings: Mapping[str, Any]) -> tuple[str, ...]:
    value = settings.get("custom_properties", ())
    if not isinstance(value, list | tuple) or len(value) > 200:
        raise InvalidRequestError("custom_properties must be a list of at most 200 names")
    for name in value:
        if not isinstance(name, str) or not _PROPERTY_NAME.fullmatch(name):
            raise InvalidRequestError("custom_properties: each entry must be a property name")
    return tuple(value)


def _ca_bundle(settings: Mapping[str, Any], service_default: Path | None) -> str | None:
    value = settings.get("ca_bundle")
    if value is None and service_default is not None:
        value = str(service_default)
    if value is None:
        return None
    if not isinstance(value, str) or not Path(value).is_file():
        raise InvalidRequestError("ca_bundle must be the path of an existing PEM file")
    return value


# ---------------------------------------------------------------- rate limiting


@dataclass(slots=True)
class RateBudget:
    """The share of the portal's limits this service uses, and what it has spent.

    Calls are paced ``burst`` per window of ``interval`` seconds: any rolling 10 s then
    spans at most ``10 / interval + 1`` windows, i.e. ``calls_per_10s`` (``share`` of the
    limit) plus one window, and one more window of network jitter still stays under the
    limit (whole-second windows of ``limit/10`` would allow a second's worth extra at
    each edge). A burst of a few calls per window keeps a window from going unused when
    the next call is a few milliseconds late (two worker threads, a slow answer)."""

    limit_per_10s: int = 100
    share: float = 0.9
    calls: int = 0
    http_429: int = 0
    waited: float = 0.0

    @property
    def calls_per_10s(self) -> int:
        """The paced calls a rolling 10 s may hold, at most ``limit - 2`` (jitter room)."""
        return max(1, min(math.floor(self.limit_per_10s * self.share), self.limit_per_10s - 2))

    @property
    def burst(self) -> int:
        """Calls per window: up to 3, while two extra windows still fit under the limit."""
        return max(1, min(3, (self.limit_per_10s - self.calls_per_10s) // 2))

    @property
    def interval(self) -> float:
        return 10.0 * self.burst / self.calls_per_10s


#: Seconds between two searches (HubSpot allows 5 a second per portal).
SEARCH_INTERVAL: Final = 1 / 3


class _Limiter:
    """Takes a slot from the shared limiter (all processes) before each call."""

    def __init__(self, key: str, budget: RateBudget, acquire: Callable[[str, int, float], float]):
        self._key = key
        self._budget = budget
        self._acquire = acquire

    def take(self, search: bool) -> None:
        if search:  # searches have their own limit, outside the 10-second one
            self._wait(f"{self._key}:search", 1, SEARCH_INTERVAL)
        else:
            self._wait(self._key, self._budget.burst, self._budget.interval)

    def _wait(self, key: str, limit: int, per: float) -> None:
        deadline = time.monotonic() + 120.0
        while True:
            delay = self._acquire(key, limit, per)
            if delay <= 0:
                return
            if time.monotonic() + delay > deadline:
                raise RateLimitedError(
                    "HubSpot: the shared rate limiter has no slot for two minutes",
                    retry_after=delay,
                )
            self._budget.waited += delay
            time.sleep(delay)


def _default_acquire(key: str, limit: int, per: float) -> float:
    from app.ratelimit import acquire

    return acquire(key, limit, per)


# ---------------------------------------------------------------- the watermark


@dataclass(slots=True)
class _Cursor:
    """The newest ``hs_lastmodifieddate`` returned, and the versions returned near it."""

    stamp: datetime | None = None
    seen: dict[str, datetime] = field(default_factory=dict)

    @classmethod
    def parse(cls, watermark: str | None) -> _Cursor:
        if watermark is None:
            return cls()
        if not isinstance(watermark, str) or len(watermark) > 100_000:
            raise InvalidRequestError("malformed HubSpot sync watermark")
        head, _, tail = watermark.partition("|")
        stamp = _parse_stamp(head) if head.strip() == head else None
        if stamp is None:
            raise InvalidRequestError("malformed HubSpot sync watermark")
        seen: dict[str, datetime] = {}
        if tail:
            for group in tail.split(";"):
                offset, _, hashes = group.partition(":")
                if not offset.isdigit() or len(offset) > 12 or not hashes:
                    raise InvalidRequestError("malformed HubSpot sync watermark")
                at = stamp - timedelta(milliseconds=int(offset))
                for digest in hashes.split(","):
                    if not _SEEN_HASH.fullmatch(digest):
                        raise InvalidRequestError("malformed HubSpot sync watermark")
                    seen[digest] = at
        return cls(stamp, seen)

    def since(self, overlap: timedelta) -> datetime | None:
        return None if self.stamp is None else self.stamp - overlap

    def add(self, digest: str, stamp: datetime) -> None:
        self.seen[digest] = stamp
        if self.stamp is None or stamp > self.stamp:
            self.stamp = stamp

    def encode(self, overlap: timedelta) -> str | None:
        if self.stamp is None:
            return None
        floor = self.stamp - overlap - timedelta(seconds=1)
        kept = sorted(
            ((at, digest) for digest, at in self.seen.items() if at >= floor), reverse=True
        )[:MAX_SEEN]
        self.seen = {digest: at for at, digest in kept}
        if not kept:
            return _iso(self.stamp)
        groups: dict[int, list[str]] = {}
        for at, digest in kept:
            offset = max(0, round((self.stamp - at).total_seconds() * 1000))
            groups.setdefault(offset, []).append(digest)
        tail = ";".join(
            f"{offset}:{','.join(sorted(digests))}" for offset, digests in sorted(groups.items())
        )
        return f"{_iso(self.stamp)}|{tail}"


# ---------------------------------------------------------------- pure answer readers


def note_body(note: NoteRequest) -> str:
    """``hs_note_body``: the title as a first paragraph, the HTML, and the marker last
    (when the HTML does not carry it already), at most :data:`MAX_NOTE_BODY` characters."""
    title = " ".join(note.title.split())
    head = f"<p><strong>{html.escape(title)}</strong></p>" if title else ""
    tail = "" if note.marker in note.html else f"<p>dealcoach-ref: {note.marker}</p>"
    room = MAX_NOTE_BODY - len(head) - len(tail)
    body = note.html if len(note.html) <= room else note.html[: max(0, room)]
    if note.marker not in body and not tail:
        tail = f"<p>dealcoach-ref: {note.marker}</p>"
        body = body[: max(0, MAX_NOTE_BODY - len(head) - len(tail))]
    return head + body + tail


def item_error(item: Mapping[str, Any], what: str) -> ProviderError:
    """The taxonomy error of one failed item of a 207 (``{"status", "category", ...}``);
    HubSpot's message is left out (it may quote CRM data)."""
    category = _category(item)
    text = f"HubSpot {what}: {category or 'failed'}"
    if category in _GONE_CATEGORIES:
        return NotFoundError(text)
    if category == "RATE_LIMITS":
        return RateLimitedError(text, retry_after=10.0)
    if category in _RETRIABLE_CATEGORIES:
        return RetriableError(text)
    return InvalidRequestError(text)


def error_trace_ids(item: Mapping[str, Any], key: str = "objectWriteTraceId") -> list[str]:
    """The inputs a 207 error names in its ``context`` (``{"objectWriteTraceId": [...]}``
    or ``{"ids": [...]}``)."""
    context = item.get("context")
    if not isinstance(context, Mapping):
        return []
    values = context.get(key)
    if isinstance(values, str):
        return [values]
    if isinstance(values, list):
        return [str(value) for value in values if isinstance(value, str | int)]
    return []


def contacts_from_associations(payload: object) -> dict[str, list[dict[str, Any]]]:
    """Deal id -> its v4 contact associations (``[{"toObjectId", "associationTypes"}]``)
    from a ``/crm/v4/associations/deals/contacts/batch/read`` answer."""
    if not isinstance(payload, Mapping):
        raise MappingError(None, "association answer: expected an object")
    results = payload.get("results")
    if not isinstance(results, list):
        raise MappingError(None, "association answer: 'results' must be a list")
    by_deal: dict[str, list[dict[str, Any]]] = {}
    for item in results:
        if not isinstance(item, Mapping):
            continue
        source = item.get("from")
        deal_id = source.get("id") if isinstance(source, Mapping) else None
        targets = item.get("to")
        if deal_id is None or not isinstance(targets, list):
            continue
        by_deal.setdefault(str(deal_id), []).extend(t for t in targets if isinstance(t, dict))
    return by_deal


def _is_primary_label(kind: object) -> bool:
    if not isinstance(kind, Mapping):
        return False
    label = kind.get("label")
    return isinstance(label, str) and label.strip().lower() == PRIMARY_LABEL


def with_contacts(
    record: dict[str, Any], associations: list[dict[str, Any]] | None
) -> tuple[dict[str, Any], set[str]]:
    """The deal record with its associations in the mapper's v4 shape (a ``Primary``
    label left out of the roles), and the ids of its primary contacts."""
    if associations is None:
        return record, set()
    primary: set[str] = set()
    cleaned: list[dict[str, Any]] = []
    for target in associations:
        types = target.get("associationTypes")
        types = types if isinstance(types, list) else []
        if any(_is_primary_label(kind) for kind in types):
            primary.add(str(target.get("toObjectId")))
        cleaned.append(
            {**target, "associationTypes": [k for k in types if not _is_primary_label(k)]}
        )
    merged = dict(record)
    merged["associations"] = {"contacts": {"results": cleaned}}
    return merged, primary


def contact_name(properties: object) -> str | None:
    if not isinstance(properties, Mapping):
        return None
    parts = [properties.get("firstname"), properties.get("lastname")]
    words = [p.strip() for p in parts if isinstance(p, str) and p.strip()]
    if words:
        return " ".join(words)
    email = properties.get("email")
    return email.strip() if isinstance(email, str) and email.strip() else None


def own_note_stamp(moment: datetime) -> datetime:
    """The ``hs_timestamp`` of a note this service writes: its second, millisecond 999.

    Logging a note moves the deal's ``notes_last_updated`` (its last activity) to the
    note's timestamp. Stamped so, the sync recognises its own notes there
    (:func:`last_activity`) and the deal's snapshot, hence its review, stays the same:
    no second review for the echo of our own note. (A note a rep logs at a millisecond
    999 is taken for ours until the next activity: one in a thousand.)"""
    return moment.astimezone(UTC).replace(microsecond=OWN_NOTE_MICROSECOND)


def _is_own_stamp(moment: datetime | None) -> bool:
    return moment is not None and moment.microsecond == OWN_NOTE_MICROSECOND


def last_activity(record: Mapping[str, Any], mapped: datetime | None) -> datetime | None:
    """The deal's last activity without the service's own notes.

    The mapper takes ``notes_last_contacted`` (calls, emails, meetings: notes never move
    it), else ``notes_last_updated``. When the latter is one of our notes' stamps, the
    newest value in its history that is not is used instead (None if none)."""
    props = record.get("properties")
    props = props if isinstance(props, Mapping) else {}
    if _parse_stamp(props.get("notes_last_contacted")) is not None:
        return mapped
    current = _parse_stamp(props.get("notes_last_updated"))
    if not _is_own_stamp(current):
        return mapped
    history = record.get("propertiesWithHistory")
    entries = history.get("notes_last_updated") if isinstance(history, Mapping) else None
    earlier: list[datetime] = []
    for entry in entries if isinstance(entries, list) else []:
        value = _parse_stamp(entry.get("value")) if isinstance(entry, Mapping) else None
        if value is not None and not _is_own_stamp(value):
            earlier.append(value)
    return max(earlier) if earlier else None


def build_snapshot(
    record: dict[str, Any],
    associations: list[dict[str, Any]],
    names: Mapping[str, str],
    pipelines: Mapping[str, StageCatalogue],
) -> DealSnapshot:
    """One deal's snapshot from its batch-read record, its v4 contact associations and
    the contacts' names (pure; :class:`MappingError` from the mapper)."""
    merged, primary = with_contacts(record, associations)
    snapshot = map_deal(merged, pipelines)
    contacts = tuple(
        replace(c, name=names.get(c.id), is_primary=c.id in primary) for c in snapshot.contacts
    )
    props = record.get("properties")
    props = props if isinstance(props, Mapping) else {}
    stamp = props.get("hs_lastmodifieddate")
    entered = snapshot.stage_entered_at or _parse_stamp(
        props.get("hs_v2_date_entered_current_stage")
    )
    return replace(
        snapshot,
        stage_entered_at=entered,
        contacts=contacts,
        modified_at=_parse_stamp(stamp) or _parse_stamp(record.get("updatedAt")),
        last_activity_at=last_activity(record, snapshot.last_activity_at),
    )


# ---------------------------------------------------------------- the provider


class _Api:
    """The SDK's API objects, built once on one configuration per SDK package."""

    def __init__(self, host: str, token: str, ca_bundle: str | None) -> None:
        self._clients: dict[str, Any] = {}
        config: dict[str, Any] = {"access_token": token, "host": host, "retry": urllib3.Retry(0)}
        config["api_factory"] = self._factory
        if ca_bundle is not None:
            config["ssl_ca_cert"] = ca_bundle
        self.client = HubSpot(**config)

    def _factory(self, package: Any, api_name: str, config: Mapping[str, Any]) -> Any:
        key = f"{package.__name__}.{api_name}"
        api = self._clients.get(key)
        if api is None:
            client = self._clients.get(package.__name__)
            if client is None:
                configuration = package.Configuration()
                for name, value in config.items():
                    if name == "retry":
                        configuration.retries = False
                    else:
                        setattr(configuration, name, value)
                client = package.ApiClient(configuration=configuration)
                client.user_agent = "dealcoach (hubspot-api-client)"
                self._clients[package.__name__] = client
            api = getattr(package, api_name)(api_client=client)
            self._clients[key] = api
        return api


class HubSpotProvider:
    """A :class:`~integrations.base.CrmProvider` on one HubSpot portal (see the module doc).

    ``settings`` (the service's) gives the OAuth app, the sandbox flag and the CA bundle.
    ``acquire`` is the shared limiter (:func:`app.ratelimit.acquire` by default).
    """

    kind: ClassVar[str] = "hubspot"

    def __init__(
        self,
        context: ConnectionContext,
        *,
        settings: Settings | None = None,
        acquire: Callable[[str, int, float], float] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._context = context
        self._app_settings = settings
        self._clock = clock or (lambda: datetime.now(UTC))
        self._credentials: dict[str, Any] = dict(context.credentials)
        self._auth_problem: AuthError | None = None
        auth = self._credentials.get("auth")
        if auth not in (None, "private_app", "oauth"):
            self._auth_problem = AuthError("HubSpot credentials: auth must be private_app or oauth")
        # OAuth: said so, or tokens obtained elsewhere with a refresh token (a private
        # app's token has none).
        refresh = self._credentials.get("refresh_token")
        self._oauth = auth == "oauth" or (
            auth is None and isinstance(refresh, str) and bool(refresh)
        )
        options = context.settings
        self._page_size = _int_setting(options, "page_size", SEARCH_LIMIT, 1, SEARCH_LIMIT)
        self._overlap = timedelta(
            seconds=_int_setting(
                options, "sync_overlap_seconds", int(SYNC_OVERLAP.total_seconds()), 0, 86_400
            )
        )
        self._extra = _custom_properties(options)
        self._summary_property = options.get("summary_property", True) is not False
        mode = options.get("contact_names", "labelled")
        if mode not in ("labelled", "all", "none"):
            raise InvalidRequestError("contact_names must be labelled, all or none")
        self._contact_names_mode: str = mode
        self.budget = RateBudget(
            limit_per_10s=_int_setting(options, "rate_limit_per_10s", 100, 10, 10_000),
            share=_share_setting(options),
        )
        portal = context.external_account_id or context.connection_id
        self._limiter = _Limiter(f"hubspot:{portal}", self.budget, acquire or _default_acquire)
        self._ca_bundle = _ca_bundle(options, self._settings().crm_ca_bundle)
        self._lock = threading.RLock()
        self._api: _Api | None = None
        self._properties: dict[str, Mapping[str, Any]] | None = None
        self._pipelines: dict[str, StageCatalogue] | None = None
        self._note_type: int | None = None
        self._usage: ApiUsage | None = None

    # ------------------------------------------------------------ plumbing

    def _settings(self) -> Settings:
        if self._app_settings is None:
            self._app_settings = get_settings()
        return self._app_settings

    def _host(self) -> str:
        url = self._context.instance_url or self._settings().hubspot_oauth_url
        try:
            return validate_instance_url("hubspot", url, sandbox=self._settings().sandbox)
        except InstanceUrlError as exc:
            raise InvalidRequestError(f"HubSpot API URL refused: {exc.reason}") from None

    def _can_refresh(self) -> bool:
        token = self._credentials.get("refresh_token")
        return self._oauth and isinstance(token, str) and bool(token)

    def _client(self) -> _Api:
        with self._lock:
            if self._auth_problem is not None:
                raise self._auth_problem
            if self._oauth:  # checked before every call: a long sync outlives a token
                expires = _parse_stamp(self._credentials.get("expires_at"))
                if expires is not None and self._clock() >= expires - EXPIRY_MARGIN:
                    raise AuthError("HubSpot access token expired", refreshable=self._can_refresh())
            if self._api is not None:
                return self._api
            token = self._credentials.get("access_token")
            if not isinstance(token, str) or not token:
                raise AuthError(
                    "HubSpot credentials have no access token", refreshable=self._can_refresh()
                )
            self._api = _Api(self._host(), token, self._ca_bundle)
            return self._api

    def _call(
        self,
        what: str,
        work: Callable[[HubSpot], Any],
        *,
        search: bool = False,
        idempotent: bool = True,
    ) -> Any:
        """One API call (with bounded retries), its JSON answer, errors in the taxonomy.

        ``work`` calls one SDK method with ``_preload_content=False``."""
        api = self._client()
        attempt = 0
        while True:
            attempt += 1
            self._limiter.take(search)
            self.budget.calls += 1
            try:
                response = work(api.client)
            except urllib3.exceptions.HTTPError as exc:
                refused = isinstance(exc, urllib3.exceptions.NewConnectionError)
                if (idempotent or refused) and attempt < MAX_ATTEMPTS:
                    time.sleep(min(0.5 * 2 ** (attempt - 1), INLINE_WAIT_LIMIT))
                    continue
                raise RetriableError(f"HubSpot {what}: {type(exc).__name__}") from None
            except Exception as exc:
                if not is_api_exception(exc):
                    raise
                error = self._translate(what, exc)
                # A create answered 5xx may have been applied: the service looks its
                # marker up before writing again. A 429 was refused before any work.
                replayable = idempotent or isinstance(error, RateLimitedError)
                wait = self._retry_wait(error, attempt) if replayable else None
                if wait is None:
                    raise error from None
                time.sleep(wait)
                continue
            self._observe(getattr(response, "headers", None))
            status = getattr(response, "status", 200)
            payload = _json_body(getattr(response, "data", b""))
            if payload is None and status != 204:
                raise RetriableError(f"HubSpot {what}: the answer is not JSON")
            return payload

    def _retry_wait(self, error: ProviderError, attempt: int) -> float | None:
        """How long to wait before retrying after ``error``, or None to raise it."""
        if attempt >= MAX_ATTEMPTS or not isinstance(error, RetriableError):
            return None
        wait = error.retry_after
        if wait is None:
            wait = min(0.5 * 2 ** (attempt - 1), INLINE_WAIT_LIMIT)
        if wait > INLINE_WAIT_LIMIT:
            return None
        self.budget.waited += wait
        return wait

    def _observe(self, headers: object) -> None:
        """Daily-allowance headers (private apps only)."""
        if not isinstance(headers, Mapping) and not hasattr(headers, "get"):
            return
        daily = headers.get("X-HubSpot-RateLimit-Daily")
        remaining = headers.get("X-HubSpot-RateLimit-Daily-Remaining")
        try:
            limit, left = int(daily), int(remaining)
        except (TypeError, ValueError):
            return
        if limit > 0:
            self._usage = ApiUsage(used=max(0, limit - left), limit=limit)

    def _translate(self, what: str, exc: Exception) -> ProviderError:
        status = int(getattr(exc, "status", 0) or 0)
        body = _json_body(getattr(exc, "body", None))
        headers = getattr(exc, "headers", None) or {}
        category = _category(body)
        text = f"HubSpot {what}: HTTP {status}" + (f" {category}" if category else "")
        if status == 0:
            return RetriableError(f"HubSpot {what}: TLS or transport failure")
        if status == 429:
            self.budget.http_429 += 1
            retry_after = _retry_after_header(headers.get("Retry-After"))
            if retry_after is None:
                policy = body.get("policyName") if isinstance(body, Mapping) else None
                retry_after = _POLICY_WAIT.get(str(policy), 10.0)
            return RateLimitedError(text, retry_after=retry_after)
        if status == 401:
            return AuthError(text, refreshable=self._can_refresh())
        if status == 403:
            if category in {"MISSING_SCOPES", "INVALID_AUTHENTICATION", "REVOKED"} or not category:
                return AuthError(text, refreshable=False)
            return InvalidRequestError(text)
        if status == 404:
            return NotFoundError(text)
        if status >= 500:
            return RetriableError(text, retry_after=_retry_after_header(headers.get("Retry-After")))
        return InvalidRequestError(text)

    # ------------------------------------------------------------ catalogue and properties

    def _property_map(self) -> dict[str, Mapping[str, Any]]:
        with self._lock:
            if self._properties is None:
                payload = self._call(
                    "deal properties",
                    lambda c: c.crm.properties.core_api.get_all(
                        "deals", _preload_content=False, _request_timeout=_TIMEOUT
                    ),
                )
                results = payload.get("results") if isinstance(payload, Mapping) else None
                if not isinstance(results, list):
                    raise RetriableError("HubSpot deal properties: unexpected answer")
                self._properties = {
                    str(item["name"]): item
                    for item in results
                    if isinstance(item, Mapping) and isinstance(item.get("name"), str)
                }
            return self._properties

    @property
    def recorded_properties(self) -> frozenset[str]:
        """The deal properties this portal has, of those the snapshot reads (the
        engine's "recorded" notion: a property the portal lacks is not recorded, which
        is not the same as recorded empty)."""
        return frozenset(self._requested_properties())

    def _pipeline_map(self) -> dict[str, StageCatalogue]:
        with self._lock:
            if self._pipelines is None:
                payload = self._call(
                    "deal pipelines",
                    lambda c: c.crm.pipelines.pipelines_api.get_all(
                        "deals", _preload_content=False, _request_timeout=_TIMEOUT
                    ),
                )
                try:
                    self._pipelines = parse_pipelines(payload)
                except MappingError as exc:
                    raise InvalidRequestError(f"HubSpot deal pipelines: {exc}") from None
            return self._pipelines

    def _requested_properties(self) -> list[str]:
        known = self._property_map()
        names: list[str] = [n for n in _CORE_PROPERTIES if n in known or n in _ALWAYS]
        for catalogue in self._pipeline_map().values():
            for stage in catalogue.stages:
                for prefix in ("hs_v2_date_entered_", "hs_date_entered_"):
                    candidate = f"{prefix}{stage.key}"
                    if candidate in known and candidate not in names:
                        names.append(candidate)
        wanted = set(_playbook_properties()) | set(self._extra)
        wanted |= {name for name in known if name.startswith("dealcoach_")}
        names.extend(sorted(name for name in wanted if name in known and name not in names))
        return names

    def _history_properties(self) -> list[str]:
        known = self._property_map()
        return [name for name in (*HISTORY_PROPERTIES, "notes_last_updated") if name in known]

    # ------------------------------------------------------------ reads

    def list_stages(self) -> Mapping[str, StageCatalogue]:
        return dict(self._pipeline_map())

    def iter_changed_deals(self, watermark: str | None) -> Iterator[DealPage]:
        cursor = _Cursor.parse(watermark)
        return self._changed_pages(cursor, incremental=watermark is not None)

    def _search(self, since: datetime | None, after: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
            "properties": ["hs_lastmodifieddate"],
            "limit": self._page_size,
        }
        if since is not None:
            body["filterGroups"] = [
                {
                    "filters": [
                        {
                            "propertyName": "hs_lastmodifieddate",
                            "operator": "GTE",
                            "value": str(_ms(since)),
                        }
                    ]
                }
            ]
        if after:
            body["after"] = str(after)
        payload = self._call(
            "deal search",
            lambda c: c.crm.deals.search_api.do_search(
                body, _preload_content=False, _request_timeout=_TIMEOUT
            ),
            search=True,
        )
        if not isinstance(payload, dict) or not isinstance(payload.get("results"), list):
            raise RetriableError("HubSpot deal search: unexpected answer")
        return payload

    def _changed_pages(self, cursor: _Cursor, *, incremental: bool) -> Iterator[DealPage]:
        """Search pages in, deal pages out: new deals are read in chunks of
        ``min(100, page_size)`` (a search page's leftover waits for the next search page,
        so batch reads stay full), one :class:`DealPage` per chunk. The watermark only
        ever covers deals already handed over."""
        since = cursor.since(self._overlap)
        query_from, offset = since, 0
        returned: set[str] = set()  # versions found by this run (never pruned)
        pending: list[tuple[str, str, datetime]] = []
        chunk = min(BATCH_LIMIT, self._page_size)
        while True:
            payload = self._search(query_from, offset)
            last_stamp: datetime | None = None
            for item in payload["results"]:
                deal_id = item.get("id") if isinstance(item, Mapping) else None
                props = item.get("properties") if isinstance(item, Mapping) else None
                raw = props.get("hs_lastmodifieddate") if isinstance(props, Mapping) else None
                stamp = _parse_stamp(raw) or _parse_stamp(item.get("updatedAt"))
                if not isinstance(deal_id, str | int) or stamp is None:
                    logger.warning(
                        "hubspot connection %s: a search result without id or stamp skipped",
                        self._context.connection_id,
                    )
                    continue
                last_stamp = stamp
                digest = _version_hash(str(deal_id), _ms(stamp))
                if digest in cursor.seen or digest in returned:
                    continue
                returned.add(digest)
                pending.append((str(deal_id), digest, stamp))
            paging = payload.get("paging")
            more = isinstance(paging, Mapping) and isinstance(paging.get("next"), Mapping)
            more = more and last_stamp is not None
            while len(pending) >= chunk or (pending and not more):
                part, pending = pending[:chunk], pending[chunk:]
                deals = self._read_deals([deal_id for deal_id, _, _ in part])
                for _, digest, stamp in part:
                    cursor.add(digest, stamp)
                final = not more and not pending
                deleted = self._deleted(cursor, since) if final and incremental else ()
                snapshots = tuple(deals[deal_id] for deal_id, _, _ in part if deal_id in deals)
                yield DealPage(snapshots, cursor.encode(self._overlap), deleted)
                if final:
                    return
            if not more:
                deleted = self._deleted(cursor, since) if incremental else ()
                yield DealPage((), cursor.encode(self._overlap), deleted)
                return
            assert last_stamp is not None
            if query_from is None or last_stamp > query_from:
                query_from, offset = last_stamp, 0  # keyset: restart from the newest stamp
            else:
                offset += len(payload["results"])  # a block of equal stamps: page through
                if offset + self._page_size > SEARCH_CAP:
                    raise InvalidRequestError(
                        "HubSpot deal search: more than 10,000 deals share one "
                        "hs_lastmodifieddate millisecond; the sync cannot page past them"
                    )

    def _read_deals(self, deal_ids: Sequence[str]) -> dict[str, DealSnapshot]:
        """Snapshots of these deals: batch reads with history, associations, contact
        names; a deal that is gone or that the mapper refuses is logged and left out."""
        records = self._batch_read(deal_ids)
        links = self._associations(list(records))
        names = self._contact_names(
            self._named_contacts([t for targets in links.values() for t in targets])
        )
        snapshots: dict[str, DealSnapshot] = {}
        for deal_id, record in records.items():
            try:
                snapshots[deal_id] = build_snapshot(
                    record, links.get(deal_id, []), names, self._pipeline_map()
                )
            except MappingError as exc:
                logger.warning(
                    "hubspot connection %s: deal skipped: %s", self._context.connection_id, exc
                )
        return snapshots

    def _batch_read(self, deal_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        properties = self._requested_properties()
        history = self._history_properties()
        records: dict[str, dict[str, Any]] = {}
        for start in range(0, len(deal_ids), BATCH_LIMIT):
            chunk = deal_ids[start : start + BATCH_LIMIT]
            body = {
                "inputs": [{"id": deal_id} for deal_id in chunk],
                "properties": properties,
                "propertiesWithHistory": history,
            }

            def read(c: HubSpot, body: dict[str, Any] = body) -> Any:
                return c.crm.deals.batch_api.read(
                    body, archived=False, _preload_content=False, _request_timeout=_TIMEOUT
                )

            payload = self._call("deal batch read", read)
            try:
                results = deal_results(payload)
            except MappingError as exc:
                raise RetriableError(
                    f"HubSpot deal batch read: unexpected answer ({exc})"
                ) from None
            for record in results:
                if record.get("id") is not None:
                    records[str(record["id"])] = record
        return records

    def _associations(self, deal_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        links: dict[str, list[dict[str, Any]]] = {deal_id: [] for deal_id in deal_ids}
        for start in range(0, len(deal_ids), BATCH_LIMIT):
            chunk = deal_ids[start : start + BATCH_LIMIT]
            body = {"inputs": [{"id": deal_id} for deal_id in chunk]}

            def read(c: HubSpot, body: dict[str, Any] = body) -> Any:
                return c.crm.associations.v4.batch_api.get_page(
                    "deals", "contacts", body, _preload_content=False, _request_timeout=_TIMEOUT
                )

            payload = self._call("deal contact associations", read)
            try:
                found = contacts_from_associations(payload)
            except MappingError as exc:
                raise RetriableError(f"HubSpot associations: unexpected answer ({exc})") from None
            for deal_id, targets in found.items():
                if deal_id in links:
                    links[deal_id].extend(targets)
        return links

    def _named_contacts(self, targets: Sequence[Mapping[str, Any]]) -> list[str]:
        """The contacts whose names are read (setting ``contact_names``): ``labelled``
        (default: those with a role or the primary label, whom the coaching evidence
        names), ``all``, or ``none``."""
        if self._contact_names_mode == "none":
            return []
        wanted: set[str] = set()
        for target in targets:
            types = target.get("associationTypes")
            labelled = isinstance(types, list) and any(
                isinstance(kind, Mapping) and kind.get("label") for kind in types
            )
            if labelled or self._contact_names_mode == "all":
                wanted.add(str(target.get("toObjectId")))
        return sorted(wanted)

    def _contact_names(self, contact_ids: Sequence[str]) -> dict[str, str]:
        names: dict[str, str] = {}
        valid = [cid for cid in contact_ids if DEAL_ID.fullmatch(cid)]
        for start in range(0, len(valid), BATCH_LIMIT):
            chunk = valid[start : start + BATCH_LIMIT]
            body = {
                "inputs": [{"id": contact_id} for contact_id in chunk],
                "properties": ["firstname", "lastname", "email"],
            }

            def read(c: HubSpot, body: dict[str, Any] = body) -> Any:
                return c.crm.contacts.batch_api.read(
                    body, archived=False, _preload_content=False, _request_timeout=_TIMEOUT
                )

            payload = self._call("contact batch read", read)
            results = payload.get("results") if isinstance(payload, Mapping) else None
            for item in results if isinstance(results, list) else []:
                if isinstance(item, Mapping) and item.get("id") is not None:
                    name = contact_name(item.get("properties"))
                    if name is not None:
                        names[str(item["id"])] = name
        return names

    def _deleted(self, cursor: _Cursor, since: datetime | None) -> tuple[str, ...]:
        """Deals archived since ``since`` (HubSpot keeps archived deals 90 days)."""
        if since is None:
            return ()
        deleted: list[str] = []
        after: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": BATCH_LIMIT, "archived": True}
            if after:
                kwargs["after"] = after

            def page(c: HubSpot, kwargs: dict[str, Any] = kwargs) -> Any:
                return c.crm.deals.basic_api.get_page(
                    **kwargs, _preload_content=False, _request_timeout=_TIMEOUT
                )

            payload = self._call("archived deal list", page)
            results = payload.get("results") if isinstance(payload, Mapping) else None
            for item in results if isinstance(results, list) else []:
                if not isinstance(item, Mapping):
                    continue
                deal_id = str(item.get("id", ""))
                archived = _parse_stamp(item.get("archivedAt"))
                if not DEAL_ID.fullmatch(deal_id) or archived is None or archived < since:
                    continue
                digest = _version_hash(deal_id, f"deleted{_ms(archived)}")
                if digest in cursor.seen:
                    continue
                cursor.add(digest, archived)
                deleted.append(deal_id)
            paging = payload.get("paging") if isinstance(payload, Mapping) else None
            following = paging.get("next") if isinstance(paging, Mapping) else None
            after = following.get("after") if isinstance(following, Mapping) else None
            if not isinstance(after, str) or not after:
                return tuple(deleted)

    def fetch_deal(self, deal_id: str) -> DealSnapshot:
        _check_deal_id(deal_id)
        records = self._batch_read([deal_id])
        if deal_id not in records:
            raise NotFoundError(f"HubSpot deal {deal_id} not found")
        links = self._associations([deal_id])
        names = self._contact_names(self._named_contacts(links[deal_id]))
        try:
            return build_snapshot(records[deal_id], links[deal_id], names, self._pipeline_map())
        except MappingError as exc:
            raise InvalidRequestError(f"HubSpot deal cannot be read: {exc}") from None

    # ------------------------------------------------------------ writes

    def _note_association_type(self) -> int:
        """HubSpot's own unlabelled note -> deal association type (214 by default)."""
        with self._lock:
            if self._note_type is None:
                try:
                    payload = self._call(
                        "note association labels",
                        lambda c: c.crm.associations.v4.schema.definitions_api.get_all(
                            "notes", "deals", _preload_content=False, _request_timeout=_TIMEOUT
                        ),
                    )
                except (NotFoundError, InvalidRequestError):
                    payload = None
                self._note_type = _pick_note_type(payload)
            return self._note_type

    def write_notes(self, notes: Sequence[NoteRequest]) -> list[NoteResult]:
        results: list[NoteResult | None] = [None] * len(notes)
        valid: list[int] = []
        for index, note in enumerate(notes):
            try:
                _check_deal_id(note.deal_id)
                _check_marker(note.marker)
            except InvalidRequestError as exc:
                results[index] = NoteResult(note.marker, error=exc)
                continue
            valid.append(index)
        if valid:
            type_id = self._note_association_type()
            for start in range(0, len(valid), BATCH_LIMIT):
                self._create_bisecting(notes, valid[start : start + BATCH_LIMIT], type_id, results)
        lost = "HubSpot returned no result for this note"
        return [
            result if result is not None else NoteResult(note.marker, error=RetriableError(lost))
            for note, result in zip(notes, results, strict=True)
        ]

    def _create_bisecting(
        self,
        notes: Sequence[NoteRequest],
        indexes: list[int],
        type_id: int,
        results: list[NoteResult | None],
    ) -> None:
        """A batch create; a batch refused as a whole (a 400: HubSpot may refuse every
        input for one bad association) is split in halves until the bad notes stand
        alone, so one deleted deal costs about ``2 log2(n)`` calls, not its batch."""
        try:
            self._create_notes(notes, indexes, type_id, results)
        except InvalidRequestError as exc:
            if len(indexes) == 1:
                results[indexes[0]] = NoteResult(notes[indexes[0]].marker, error=exc)
                return
            middle = len(indexes) // 2
            self._create_bisecting(notes, indexes[:middle], type_id, results)
            self._create_bisecting(notes, indexes[middle:], type_id, results)

    def _create_notes(
        self,
        notes: Sequence[NoteRequest],
        indexes: list[int],
        type_id: int,
        results: list[NoteResult | None],
    ) -> None:
        now = _iso(own_note_stamp(self._clock()))
        inputs = []
        for index in indexes:
            note = notes[index]
            inputs.append(
                {
                    "properties": {"hs_timestamp": now, "hs_note_body": note_body(note)},
                    "associations": [
                        {
                            "to": {"id": note.deal_id},
                            "types": [
                                {
                                    "associationCategory": "HUBSPOT_DEFINED",
                                    "associationTypeId": type_id,
                                }
                            ],
                        }
                    ],
                    "objectWriteTraceId": note.marker,
                }
            )
        body = {"inputs": inputs}
        payload = self._call(
            "note batch create",
            lambda c: c.crm.objects.notes.batch_api.create(
                body, _preload_content=False, _request_timeout=_TIMEOUT
            ),
            idempotent=False,
        )
        by_marker = {notes[index].marker: index for index in indexes}
        created = payload.get("results") if isinstance(payload, Mapping) else None
        for item in created if isinstance(created, list) else []:
            if not isinstance(item, Mapping) or item.get("id") is None:
                continue
            props = item.get("properties")
            text = props.get("hs_note_body") if isinstance(props, Mapping) else None
            trace = item.get("objectWriteTraceId")
            marker = trace if isinstance(trace, str) and trace in by_marker else None
            if marker is None and isinstance(text, str):
                marker = next((m for m in MARKER.findall(text) if m in by_marker), None)
            if marker is not None and results[by_marker[marker]] is None:
                results[by_marker[marker]] = NoteResult(marker, external_id=str(item["id"]))
        errors = payload.get("errors") if isinstance(payload, Mapping) else None
        for item in errors if isinstance(errors, list) else []:
            if not isinstance(item, Mapping):
                continue
            error = item_error(item, "note create")
            for traced in error_trace_ids(item):
                position = by_marker.get(traced)
                if position is not None and results[position] is None:
                    results[position] = NoteResult(traced, error=error)
        if (
            isinstance(created, list)
            and len(created) == len(indexes)
            and not errors
            and all(results[index] is None for index in indexes)
        ):
            # Every note created, none recognisable: HubSpot answers in input order.
            for index, item in zip(indexes, created, strict=True):
                if isinstance(item, Mapping) and item.get("id") is not None:
                    results[index] = NoteResult(notes[index].marker, external_id=str(item["id"]))

    def find_note(self, deal_id: str, marker: str) -> str | None:
        _check_deal_id(deal_id)
        _check_marker(marker)
        body = {
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": "associations.deal", "operator": "EQ", "value": deal_id},
                        {
                            "propertyName": "hs_note_body",
                            "operator": "CONTAINS_TOKEN",
                            "value": marker,
                        },
                    ]
                }
            ],
            "properties": ["hs_note_body"],
            "limit": SEARCH_LIMIT,
        }
        payload = self._call(
            "note search",
            lambda c: c.crm.objects.notes.search_api.do_search(
                body, _preload_content=False, _request_timeout=_TIMEOUT
            ),
            search=True,
        )
        results = payload.get("results") if isinstance(payload, Mapping) else None
        for item in results if isinstance(results, list) else []:
            if not isinstance(item, Mapping) or item.get("id") is None:
                continue
            props = item.get("properties")
            text = props.get("hs_note_body") if isinstance(props, Mapping) else None
            if isinstance(text, str) and marker in MARKER.findall(text):
                return str(item["id"])
        return None

    def _ensure_summary_property(self) -> None:
        """Create ``dealcoach_summary`` when the portal lacks it (once; best effort)."""
        known = self._property_map()
        if not self._summary_property or SUMMARY_PROPERTY in known:
            return
        definition = {
            "name": SUMMARY_PROPERTY,
            "label": "dealcoach summary",
            "description": "The latest dealcoach review of this deal (written by dealcoach).",
            "groupName": "dealinformation",
            "type": "string",
            "fieldType": "textarea",
        }
        try:
            created = self._call(
                "summary property create",
                lambda c: c.crm.properties.core_api.create(
                    "deals", definition, _preload_content=False, _request_timeout=_TIMEOUT
                ),
                idempotent=False,
            )
        except (AuthError, InvalidRequestError) as exc:
            # A 409 (created meanwhile) or a missing schema scope: write what exists.
            logger.warning(
                "hubspot connection %s: %s not created: %s",
                self._context.connection_id,
                SUMMARY_PROPERTY,
                exc,
            )
            if "409" in str(exc):
                known[SUMMARY_PROPERTY] = definition
            return
        known[SUMMARY_PROPERTY] = created if isinstance(created, Mapping) else definition

    def update_summaries(self, updates: Sequence[SummaryUpdate]) -> list[SummaryResult]:
        results: list[SummaryResult | None] = [None] * len(updates)
        pending: list[tuple[int, dict[str, str]]] = []
        if updates:
            self._ensure_summary_property()
        known = self._property_map() if updates else {}
        for index, update in enumerate(updates):
            try:
                _check_deal_id(update.deal_id)
                if any(not key or not isinstance(v, str) for key, v in update.fields.items()):
                    raise InvalidRequestError("summary fields need names and string values")
            except InvalidRequestError as exc:
                results[index] = SummaryResult(update.deal_id, error=exc)
                continue
            properties = {
                key.lower(): value
                for key, value in update.fields.items()
                if key.lower() in known and not _read_only(known[key.lower()])
            }
            if properties:
                pending.append((index, properties))
            else:
                results[index] = SummaryResult(update.deal_id)  # nothing the portal has
        while pending:
            batch: list[tuple[int, dict[str, str]]] = []
            later: list[tuple[int, dict[str, str]]] = []
            ids: set[str] = set()
            for entry in pending:
                deal_id = updates[entry[0]].deal_id
                if len(batch) < BATCH_LIMIT and deal_id not in ids:
                    batch.append(entry)
                    ids.add(deal_id)
                else:
                    later.append(entry)  # one deal twice: the later update goes next
            self._update_batch(updates, batch, results)
            pending = later
        return [
            result if result is not None else SummaryResult(update.deal_id)
            for update, result in zip(updates, results, strict=True)
        ]

    def _update_batch(
        self,
        updates: Sequence[SummaryUpdate],
        batch: list[tuple[int, dict[str, str]]],
        results: list[SummaryResult | None],
    ) -> None:
        body = {
            "inputs": [
                {"id": updates[index].deal_id, "properties": properties}
                for index, properties in batch
            ]
        }
        payload = self._call(
            "deal summary update",
            lambda c: c.crm.deals.batch_api.update(
                body, _preload_content=False, _request_timeout=_TIMEOUT
            ),
        )
        by_deal = {updates[index].deal_id: index for index, _ in batch}
        errors = payload.get("errors") if isinstance(payload, Mapping) else None
        for item in errors if isinstance(errors, list) else []:
            if not isinstance(item, Mapping):
                continue
            error = item_error(item, "summary update")
            for deal_id in error_trace_ids(item, "ids") + error_trace_ids(item, "id"):
                index = by_deal.get(deal_id)
                if index is not None and results[index] is None:
                    results[index] = SummaryResult(deal_id, error=error)
        done = payload.get("results") if isinstance(payload, Mapping) else None
        for item in done if isinstance(done, list) else []:
            if isinstance(item, Mapping) and str(item.get("id")) in by_deal:
                index = by_deal[str(item["id"])]
                if results[index] is None:
                    results[index] = SummaryResult(updates[index].deal_id)
        missing = RetriableError("HubSpot returned no result for this deal")
        for index, _ in batch:
            if results[index] is None:
                results[index] = SummaryResult(updates[index].deal_id, error=missing)

    # ------------------------------------------------------------ usage and credentials

    def api_usage(self) -> ApiUsage | None:
        """The daily allowance from the last ``X-HubSpot-RateLimit-Daily*`` headers
        (private apps; None under OAuth, which has no daily headers)."""
        return self._usage

    def refresh_credentials(self) -> Mapping[str, Any]:
        if self._auth_problem is not None:
            raise self._auth_problem
        with self._lock:
            current = dict(self._credentials)
        token = current.get("refresh_token")
        if not self._oauth or not isinstance(token, str) or not token:
            raise AuthError(
                "HubSpot private-app token refused: replace it in the connection",
                refreshable=False,
            )
        verify: Any = True
        if self._ca_bundle is not None:
            verify = ssl.create_default_context(cafile=self._ca_bundle)
        try:
            with httpx.Client(verify=verify, timeout=_ISSUE_TIMEOUT) as client:
                fresh = {
                    **current,
                    **oauth.refresh_token(Provider.HUBSPOT, token, self._settings(), client),
                }
        except oauth.OAuthNotConfigured as exc:
            raise AuthError(str(exc), refreshable=False) from None
        with self._lock:
            self._credentials = fresh
            self._api = None  # rebuilt with the new token on the next call
        return dict(fresh)


_TIMEOUT: Final = (CONNECT_TIMEOUT, READ_TIMEOUT)


def _read_only(definition: Mapping[str, Any]) -> bool:
    modification = definition.get("modificationMetadata")
    return isinstance(modification, Mapping) and modification.get("readOnlyValue") is True


def _pick_note_type(payload: object) -> int:
    """The unlabelled HUBSPOT_DEFINED type of a ``.../notes/deals/labels`` answer, else 214."""
    results = payload.get("results") if isinstance(payload, Mapping) else None
    for item in results if isinstance(results, list) else []:
        if (
            isinstance(item, Mapping)
            and item.get("category") == "HUBSPOT_DEFINED"
            and not item.get("label")
            and isinstance(item.get("typeId"), int)
        ):
            return int(item["typeId"])
    return NOTE_TO_DEAL
