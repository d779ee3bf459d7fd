"""Salesforce as a :class:`~integrations.base.CrmProvider`, on simple-salesforce's REST client.

Connection
    ``context.credentials`` is one of: OAuth web-flow tokens ``{"access_token",
    "refresh_token"?, "instance_url"?}`` (``auth`` absent or ``"oauth"``); JWT
    bearer ``{"auth": "jwt", "username", "consumer_key", "private_key",
    "login_url"?}``; client credentials ``{"auth": "client_credentials",
    "consumer_key", "consumer_secret"}`` (the token comes from the org's My
    Domain, the connection's ``instance_url``); or, in sandbox mode only,
    ``{"auth": "password", "username", "password", "security_token"?,
    "consumer_key", "consumer_secret"}``. JWT and client-credential tokens are
    issued on first use and kept in the credentials :meth:`refresh_credentials`
    returns. Every URL a token is sent to is checked with
    :func:`app.security.urls.validate_instance_url`.

    HTTP goes through a ``requests.Session`` the service owns: a pooled
    :class:`~requests.adapters.HTTPAdapter` with no urllib3 retries (the service
    retries), a 5 s connect / 30 s read timeout on every request, and TLS
    verification against ``context.settings["ca_bundle"]`` when given, else the
    service's ``crm_ca_bundle`` setting (an emulator's certificate in tests and
    the demo), else the system CAs. The adapter forces
    ``verify`` itself, so ``REQUESTS_CA_BUNDLE`` cannot override it. The REST
    API version is pinned (:data:`API_VERSION`).

Reads (calls per operation)
    ``describe`` of Opportunity once per instance, to select only fields the org
    has (optional standard fields such as ``LastStageChangeDate``,
    ``CurrencyIsoCode``, ``PushCount``, and the custom ``*__c`` fields the
    playbooks name, ``context.settings["custom_fields"]`` and the summary fields
    below); the ``OpportunityStage`` query once per instance. A sync is one SOQL
    query with the ``OpportunityHistories``, ``OpportunityContactRoles`` and
    ``Histories`` subqueries, paged by ``nextRecordsUrl`` (one call per
    Salesforce page), plus one ``queryAll`` for deletes on incremental syncs:
    ``pages + 3`` calls on a fresh instance (``pages + 2`` for a first sync,
    which has nothing to delete).

Incremental sync and the watermark
    ``WHERE SystemModstamp > (watermark - overlap) ORDER BY SystemModstamp, Id``
    (overlap :data:`SYNC_OVERLAP`, setting ``sync_overlap_seconds``), because a
    transaction may commit after a later one with an earlier ``SystemModstamp``.
    The watermark is the last record's ``SystemModstamp`` (ISO 8601, UTC),
    optionally followed by ``|`` and the versions already returned inside the
    overlap window (``<ms before the stamp>:<hash>,<hash>;...``, a hash of the
    record id and content, at most :data:`MAX_SEEN`): those are not returned
    again, so a re-run from the last watermark returns nothing while a record
    changed within the same second (Salesforce stamps whole seconds) still is.
    A plain timestamp is accepted too (everything inside the overlap comes back).
    Pages are Salesforce's pages, cut to ``settings["page_size"]`` when smaller
    (``Sforce-Query-Options: batchSize`` asks Salesforce for 200-2000). A record
    the mapper refuses is logged and skipped; it never fails its page.

    Large first loads: a first sync whose REST answer reports more than
    ``settings["bulk_threshold"]`` opportunities (``bulk.BULK_THRESHOLD`` by
    default) leaves REST after that first page and reads everything with Bulk API
    2.0 query jobs (:mod:`integrations.salesforce.bulk`): four jobs (opportunities,
    their stage history, contact roles and field history, joined here), polled until
    complete, their CSV results read 50,000 records a call, handed over in pages of
    ``page_size`` (2,000 by default), each with a checkpoint naming the jobs and the
    results locator. A refused or failed job falls back to REST paging.

Writes
    A note is a ``ContentNote`` (``Title`` = the note title + `` [<marker>]``,
    ``Content`` = base64 of the HTML with newlines as ``<br>``) linked to the
    opportunity by a ``ContentDocumentLink`` (``ShareType`` ``V``,
    ``Visibility`` ``AllUsers``); a ``kind="task"`` note is a completed ``Task``
    (``WhatId``, ``Subject`` with the marker, ``Description``, ``ActivityDate``
    today). A small batch (2 x notes + tasks <= 25 records, e.g. up to 12 notes)
    is ONE ``composite`` call: each ContentNote and its link (``@{ref.id}``) as
    independent subrequests (``allOrNone: false``). A larger one goes through
    ``composite/sobjects`` (``allOrNone: false``, at most 200 records a call,
    mixed types): new records first, then the links of notes created by earlier
    calls, so ``N`` notes take ``max(2, ceil(2N / 200))`` calls, i.e.
    ``ceil(N / 100)`` from 100 notes on (1 call more per 200 tasks). Results are
    checked record by record: a note whose ``ContentNote`` or link failed gets an
    error result (retriable or not by the ``statusCode``), and a ``ContentNote``
    left without its link is deleted (``composite`` DELETE subrequests: one extra
    call, only then). A failure of a whole call is raised; notes written by
    earlier calls of the batch are found again by :meth:`find_note`.

    :meth:`find_note` queries ``ContentNote`` by ``Title LIKE '%<marker>%'``
    then confirms the ``ContentDocumentLink`` to the deal (then the ``Task``
    equivalent): 2-3 queries. Markers are checked against :data:`MARKER`
    before they reach SOQL.

    :meth:`update_summaries` PATCHes the summary fields the org has, 200
    opportunities per ``composite/sobjects`` call (``allOrNone: false``, results
    checked per record)
    (:data:`SUMMARY_FIELDS`: ``dealcoach_health`` -> ``Dealcoach_Health__c``
    and so on; any other ``dealcoach_<name>`` -> ``Dealcoach_<Name>__c``; a key
    already ending in ``__c`` is used as is). Fields the org lacks (or that are
    not updateable) are skipped silently; string values are cut to the field's
    length. Updating bumps ``SystemModstamp``: the next sync returns the deal with
    these fields in ``fields``.

Errors
    401 (``INVALID_SESSION_ID``) -> :class:`AuthError`, refreshable when a
    refresh token or re-issuable credentials exist; 403 ``REQUEST_LIMIT_EXCEEDED``
    -> :class:`RateLimitedError` with ``Retry-After`` when the response has one,
    else :data:`RATE_LIMIT_RETRY_AFTER` (Salesforce sends none: the daily
    allowance is a rolling 24 h window, the concurrent-request limit clears in
    seconds); 403 for a record or a feature (``INSUFFICIENT_ACCESS_OR_READONLY``,
    ``FUNCTIONALITY_NOT_ENABLED``, ...) -> :class:`InvalidRequestError`; any
    other 403 (``API_DISABLED_FOR_ORG``, ``INSUFFICIENT_ACCESS``, ...) ->
    :class:`AuthError`, not refreshable (an admin must act); 400 and 300 ->
    :class:`InvalidRequestError`; 404 -> :class:`NotFoundError`; 5xx, 429,
    timeouts and connection errors -> :class:`RetriableError`. Messages carry the
    call, the status, Salesforce's ``errorCode`` and a shortened message, never a
    token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import re
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
import jwt
import requests
from cryptography.exceptions import UnsupportedAlgorithm
from requests.adapters import HTTPAdapter
from simple_salesforce.api import Salesforce
from simple_salesforce.bulk2 import Operation, _Bulk2Client
from simple_salesforce.exceptions import SalesforceError
from simple_salesforce.format import format_soql

from app.coaching.snapshot import DealSnapshot, StageCatalogue
from app.config import Settings, get_settings
from app.connections import oauth
from app.connections.models import Provider
from app.metrics import record_crm_call, record_crm_rate_limit
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
    NotReadyError,
    ProviderError,
    RateLimitedError,
    RetriableError,
    SummaryResult,
    SummaryUpdate,
)
from integrations.salesforce import bulk
from integrations.salesforce.bulk import BulkCheckpoint, BulkUnavailable
from integrations.salesforce.mapping import map_opportunity, parse_stage_catalogue, query_records

__all__ = [
    "API_VERSION",
    "CONNECT_TIMEOUT",
    "MARKER",
    "MAX_SEEN",
    "OPPORTUNITY_ID",
    "RATE_LIMIT_RETRY_AFTER",
    "READ_TIMEOUT",
    "SUMMARY_FIELDS",
    "SYNC_OVERLAP",
    "SalesforceProvider",
    "summary_field_name",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: The REST API version every call uses.
API_VERSION: Final = "59.0"
CONNECT_TIMEOUT: Final = 5.0
READ_TIMEOUT: Final = 30.0
#: How far before the watermark an incremental sync looks again.
SYNC_OVERLAP: Final = timedelta(minutes=5)
#: Seconds to wait after ``REQUEST_LIMIT_EXCEEDED`` when the response has no ``Retry-After``.
RATE_LIMIT_RETRY_AFTER: Final = 60.0
#: Records per ``composite/sobjects`` call (Salesforce's limit).
COLLECTION_LIMIT: Final = 200
#: Subrequests per ``composite`` call (Salesforce's limit).
COMPOSITE_LIMIT: Final = 25
#: Record versions a watermark remembers inside its overlap window.
MAX_SEEN: Final = 2000
#: Opportunity ids: key prefix 006, 15 or 18 letters and digits.
OPPORTUNITY_ID: Final = re.compile(r"006[0-9A-Za-z]{12}(?:[0-9A-Za-z]{3})?")
#: Markers that may enter SOQL (``app.coaching.render`` makes ``dc1-`` + 32 hex digits).
#: No quote, backslash, ``%`` or ``_``: nothing SOQL or LIKE would read specially.
MARKER: Final = re.compile(r"dc1-[0-9A-Za-z-]{1,64}")
#: The service's summary keys and the Opportunity custom fields they are written to.
SUMMARY_FIELDS: Final[Mapping[str, str]] = {
    "dealcoach_health": "Dealcoach_Health__c",
    "dealcoach_band": "Dealcoach_Band__c",
    "dealcoach_summary": "Dealcoach_Summary__c",
    "dealcoach_prompts": "Dealcoach_Prompts__c",
    "dealcoach_marker": "Dealcoach_Marker__c",
}

_CUSTOM_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,80}__c")
_ANY_ID = re.compile(r"[0-9A-Za-z]{15}(?:[0-9A-Za-z]{3})?")
_SEEN_HASH = re.compile(r"[0-9a-f]{10}")
_ERROR_CODE = re.compile(r"[A-Z0-9_]{1,80}")
_MAX_TITLE = 255
_MAX_DESCRIPTION = 32_000
_ISSUE_TIMEOUT = httpx.Timeout(15.0, connect=CONNECT_TIMEOUT)

# Always selected: the mapper needs them, and every org has them.
_CORE_FIELDS: Final = ("Id", "Name", "StageName", "CreatedDate", "SystemModstamp")
# Selected when describe lists them (standard, optional, or permission-dependent).
_DESCRIBED_FIELDS: Final = (
    "Amount",
    "CloseDate",
    "Probability",
    "ForecastCategoryName",
    "NextStep",
    "Description",
    "LastActivityDate",
    "HasOpenActivity",
    "HasOverdueTask",
    "IsClosed",
    "IsWon",
    "OwnerId",
    "AccountId",
    "LastModifiedDate",
    "LastStageChangeDate",
    "CurrencyIsoCode",
    "PushCount",
    "Type",
)
_SUBQUERIES: Final[Mapping[str, str]] = {
    "OpportunityHistories": (
        "SELECT StageName, Amount, CloseDate, Probability, CreatedDate "
        "FROM OpportunityHistories ORDER BY CreatedDate ASC"
    ),
    "OpportunityContactRoles": (
        "SELECT ContactId, Role, IsPrimary, Contact.Name FROM OpportunityContactRoles"
    ),
    "Histories": (
        "SELECT Field, OldValue, NewValue, CreatedDate FROM Histories "
        "WHERE Field IN ('Amount', 'CloseDate', 'Owner', 'OwnerId', 'StageName') "
        "ORDER BY CreatedDate ASC"
    ),
}
# describe types of the child columns the bulk load reads (REST returns them typed).
_CHILD_TYPES: Final[Mapping[str, str]] = {
    "amount": "currency",
    "probability": "percent",
    "isprimary": "boolean",
}
_STAGE_SOQL: Final = (
    "SELECT ApiName, MasterLabel, SortOrder, IsActive, IsClosed, IsWon, DefaultProbability "
    "FROM OpportunityStage"
)

AuthKind = Literal["oauth", "jwt", "client_credentials", "password"]
_REISSUABLE: Final = frozenset({"jwt", "client_credentials", "password"})

# statusCode / errorCode families (REST errors and per-record DML results).
_RETRIABLE_CODES: Final = frozenset(
    {
        "UNABLE_TO_LOCK_ROW",
        "SERVER_UNAVAILABLE",
        "UNKNOWN_EXCEPTION",
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "PROCESSING_HALTED",
        "REQUEST_RUNNING_TOO_LONG",
        "QUERY_TIMEOUT",
        # A query cursor idle for 15 minutes (or one of more than 10 per user) is gone:
        # the sync starts again from the last stored watermark.
        "INVALID_QUERY_LOCATOR",
    }
)
_RATE_CODES: Final = frozenset({"REQUEST_LIMIT_EXCEEDED", "TOO_MANY_REQUESTS"})
_GONE_CODES: Final = frozenset(
    {"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY", "NOT_FOUND", "INVALID_ID_FIELD"}
)
# A 403 about one record or one feature: re-authorising would not help.
_RECORD_403_CODES: Final = frozenset(
    {
        "INSUFFICIENT_ACCESS_OR_READONLY",
        "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY",
        "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
        "FUNCTIONALITY_NOT_ENABLED",
        "FIELD_INTEGRITY_EXCEPTION",
    }
)


# ---------------------------------------------------------------- small helpers


def summary_field_name(key: str) -> str | None:
    """The Opportunity field a summary key is written to, or None for a key not ours.

    ``dealcoach_health`` -> ``Dealcoach_Health__c`` (see :data:`SUMMARY_FIELDS`),
    ``dealcoach_next_meeting`` -> ``Dealcoach_Next_Meeting__c``; a custom field
    name (``*__c``) is kept as is.
    """
    if key in SUMMARY_FIELDS:
        return SUMMARY_FIELDS[key]
    if _CUSTOM_FIELD.fullmatch(key):
        return key
    if re.fullmatch(r"dealcoach_[a-z0-9]+(?:_[a-z0-9]+)*", key) and len(key) <= 60:
        return "_".join(part.capitalize() for part in key.split("_")) + "__c"
    return None


def _check_opportunity_id(deal_id: object) -> str:
    if not isinstance(deal_id, str) or not OPPORTUNITY_ID.fullmatch(deal_id):
        raise InvalidRequestError(
            "malformed Salesforce opportunity id (expected 15 or 18 letters and digits "
            "starting with 006)"
        )
    return deal_id


def _check_marker(marker: object) -> str:
    if not isinstance(marker, str) or not MARKER.fullmatch(marker):
        raise InvalidRequestError("malformed note marker (expected dc1- and letters or digits)")
    return marker


def _soql_datetime(moment: datetime) -> str:
    """A SOQL date-time literal (no quotes), whole seconds rounded down, UTC."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_stamp(value: object) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _shorten(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error_code(content: object) -> tuple[str | None, str | None]:
    """``errorCode`` and ``message`` of a REST error body (``[{"message", "errorCode"}]``)."""
    first: object = content[0] if isinstance(content, list) and content else content
    if not isinstance(first, Mapping):
        return None, None
    code = first.get("errorCode") or first.get("statusCode") or first.get("error")
    message = first.get("message") or first.get("error_description")
    code_text = code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else None
    message_text = _shorten(message) if isinstance(message, str) else None
    return code_text, message_text


def _record_error(item: Mapping[str, Any], what: str) -> ProviderError:
    """The taxonomy error of a failed ``composite/sobjects`` result entry."""
    errors = item.get("errors")
    code, message = _error_code(errors if isinstance(errors, list) else [])
    text = f"Salesforce {what}: {code or 'failed'}" + (f" ({message})" if message else "")
    if code in _RATE_CODES:
        return RateLimitedError(text, retry_after=RATE_LIMIT_RETRY_AFTER)
    if code in _RETRIABLE_CODES:
        return RetriableError(text)
    if code in _GONE_CODES:
        return NotFoundError(text)
    return InvalidRequestError(text)


def _retry_after_header(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, 86_400.0)


@lru_cache(maxsize=1)
def _playbook_fields() -> frozenset[str]:
    """Custom field names (``*__c``) the built-in playbooks read methodology elements from."""
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
                names.update(f for f in source.field or () if _CUSTOM_FIELD.fullmatch(f))
    return frozenset(names)


# ---------------------------------------------------------------- settings and credentials


def _page_size(settings: Mapping[str, Any]) -> int | None:
    value = settings.get("page_size")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2000:
        raise InvalidRequestError("page_size must be an integer from 1 to 2000")
    return value


def _overlap(settings: Mapping[str, Any]) -> timedelta:
    value = settings.get("sync_overlap_seconds")
    if value is None:
        return SYNC_OVERLAP
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 86_400:
        raise InvalidRequestError("sync_overlap_seconds must be an integer from 0 to 86400")
    return timedelta(seconds=value)


def _custom_fields(settings: Mapping[str, Any]) -> tuple[str, ...]:
    value = settings.get("custom_fields", ())
    if not isinstance(value, list | tuple) or len(value) > 200:
        raise InvalidRequestError("custom_fields must be a list of at most 200 field names")
    for name in value:
        if not isinstance(name, str) or not _CUSTOM_FIELD.fullmatch(name):
            raise InvalidRequestError("custom_fields: each entry must be a custom field (*__c)")
    return tuple(value)


def _ca_bundle(settings: Mapping[str, Any], service_default: Path | None) -> bool | str:
    """What TLS trusts: the connection's ``ca_bundle``, else the service's
    ``crm_ca_bundle``, else the system CAs."""
    value = settings.get("ca_bundle")
    if value is None and service_default is not None:
        value = str(service_default)
    if value is None:
        return True
    if not isinstance(value, str) or not Path(value).is_file():
        raise InvalidRequestError("ca_bundle must be the path of an existing PEM file")
    return value


def _auth_kind(credentials: Mapping[str, Any]) -> AuthKind:
    auth = credentials.get("auth")
    required: tuple[str, ...]
    kind: AuthKind
    if auth is None or auth == "oauth":
        kind, required = "oauth", ()  # no access token: refresh first (see _client)
    elif auth == "jwt":
        kind, required = "jwt", ("username", "consumer_key", "private_key")
    elif auth == "client_credentials":
        kind, required = "client_credentials", ("consumer_key", "consumer_secret")
    elif auth == "password":
        kind, required = "password", ("username", "password", "consumer_key", "consumer_secret")
    else:
        raise AuthError(
            "Salesforce credentials: auth must be oauth, jwt, client_credentials or password"
        )
    missing = [k for k in required if not isinstance(credentials.get(k), str) or not credentials[k]]
    if missing:
        raise AuthError(f"Salesforce {kind} credentials need " + ", ".join(missing))
    return kind


# ---------------------------------------------------------------- HTTP


class _ServiceAdapter(HTTPAdapter):
    """Pooled connections, no urllib3 retries, default timeouts, and a fixed ``verify``."""

    def __init__(self, verify: bool | str) -> None:
        super().__init__(pool_connections=4, pool_maxsize=16, max_retries=0)
        self._verify = verify

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        return super().send(
            request,
            stream=stream,
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT) if timeout is None else timeout,
            verify=self._verify,
            cert=cert,
            proxies=proxies,
        )


def _jwt_audience(login_url: str) -> str:
    """The JWT ``aud`` Salesforce expects: its login server (test for sandboxes), whatever
    host the token is posted to; another host (an emulator, sandbox mode only) is its own."""
    host = (urlsplit(login_url).hostname or "").lower()
    if host == "test.salesforce.com" or host.endswith(".sandbox.my.salesforce.com"):
        return "https://test.salesforce.com"
    if host == "salesforce.com" or host.endswith(".salesforce.com"):
        return "https://login.salesforce.com"
    return login_url


def _tls(verify: bool | str) -> bool | ssl.SSLContext:
    """``verify`` for httpx (token calls): the CA bundle as an SSL context, else the default."""
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify


#: Sent on every API call: Salesforce attributes the calls to this client in its logs.
CALL_OPTIONS = "client=dealcoach"


class _NoRedirectSession(requests.Session):
    """A session that never follows a redirect: a 3xx answer is returned as it is (and
    refused as an error by the client). The instance URL is checked against the
    allowlist once, so a redirect to another host (plain http, a private address)
    must not be followed."""

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        return None


def _http_session(verify: bool | str) -> requests.Session:
    session = _NoRedirectSession()
    session.headers["Sforce-Call-Options"] = CALL_OPTIONS
    adapter = _ServiceAdapter(verify)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.verify = verify
    return session


# ---------------------------------------------------------------- the watermark


def _version_hash(record_id: str, content: object) -> str:
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{record_id[:15]}|{blob}".encode()).hexdigest()[:10]


@dataclass(slots=True)
class _Cursor:
    """Where a sync stands: the last ``SystemModstamp`` and the record versions already
    returned near it (hash -> stamp), which a re-read of the overlap window skips."""

    stamp: datetime | None = None
    seen: dict[str, datetime] = field(default_factory=dict)

    @classmethod
    def parse(cls, watermark: str | None) -> _Cursor:
        if watermark is None:
            return cls()
        if not isinstance(watermark, str) or len(watermark) > 100_000:
            raise InvalidRequestError("malformed Salesforce sync watermark")
        head, _, tail = watermark.partition("|")
        stamp = _parse_stamp(head) if head.strip() == head else None
        if stamp is None:
            raise InvalidRequestError("malformed Salesforce sync watermark")
        seen: dict[str, datetime] = {}
        if tail:
            for group in tail.split(";"):
                offset, _, hashes = group.partition(":")
                if not offset.isdigit() or len(offset) > 12 or not hashes:
                    raise InvalidRequestError("malformed Salesforce sync watermark")
                at = stamp - timedelta(milliseconds=int(offset))
                for digest in hashes.split(","):
                    if not _SEEN_HASH.fullmatch(digest):
                        raise InvalidRequestError("malformed Salesforce sync watermark")
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


# ---------------------------------------------------------------- describe


@dataclass(frozen=True, slots=True)
class _Describe:
    """What ``sobjects/Opportunity/describe`` says the org has."""

    fields: Mapping[str, Mapping[str, Any]]  # lower-cased name -> field description
    children: frozenset[str] | None  # child relationship names; None when not described

    @classmethod
    def parse(cls, payload: object) -> _Describe:
        if not isinstance(payload, Mapping) or not isinstance(payload.get("fields"), list):
            raise RetriableError("Salesforce Opportunity describe: unexpected answer")
        fields: dict[str, Mapping[str, Any]] = {}
        for item in payload["fields"]:
            if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                fields[item["name"].lower()] = item
        raw_children = payload.get("childRelationships")
        children: frozenset[str] | None = None
        if isinstance(raw_children, list):
            children = frozenset(
                item["relationshipName"]
                for item in raw_children
                if isinstance(item, Mapping) and isinstance(item.get("relationshipName"), str)
            )
        return cls(fields, children)

    def name(self, field_name: str) -> str | None:
        """The org's spelling of ``field_name``, or None when the org lacks it."""
        found = self.fields.get(field_name.lower())
        return str(found["name"]) if found is not None else None

    def has_child(self, relationship: str) -> bool:
        return self.children is None or relationship in self.children


# ---------------------------------------------------------------- the provider


@dataclass(slots=True)
class _Write:
    """One record of a ``composite/sobjects`` call and the note it belongs to."""

    index: int
    step: Literal["note", "task", "link"]
    record: dict[str, Any]


class SalesforceProvider:
    """A :class:`~integrations.base.CrmProvider` on one Salesforce org (see the module doc).

    ``settings`` (the service's) gives the OAuth app and the sandbox flag; by default
    :func:`app.config.get_settings`. After :meth:`refresh_credentials` this instance
    uses the new access token (the caller stores the returned credentials).
    """

    kind: ClassVar[str] = "salesforce"

    def __init__(self, context: ConnectionContext, *, settings: Settings | None = None) -> None:
        self._context = context
        self._app_settings = settings
        # Unusable credentials fail the first call (AuthError, not refreshable), so a
        # connection without credentials can still be built, e.g. to be parked.
        self._auth: AuthKind = "oauth"
        self._auth_problem: AuthError | None = None
        try:
            self._auth = _auth_kind(context.credentials)
        except AuthError as exc:
            self._auth_problem = exc
        self._credentials: dict[str, Any] = dict(context.credentials)
        self._page_size = _page_size(context.settings)
        self._bulk_threshold = bulk.bulk_threshold(context.settings)
        self._overlap = _overlap(context.settings)
        self._extra_fields = _custom_fields(context.settings)
        self._verify = _ca_bundle(context.settings, self._settings().crm_ca_bundle)
        self._http = _http_session(self._verify)
        self._http.hooks["response"].append(self._on_response)
        self._local = threading.local()
        self._lock = threading.RLock()
        self._sf: Salesforce | None = None
        self._describe: _Describe | None = None
        self._stages: StageCatalogue | None = None
        self._usage: ApiUsage | None = None

    # ------------------------------------------------------------ plumbing

    def _settings(self) -> Settings:
        if self._app_settings is None:
            self._app_settings = get_settings()
        return self._app_settings

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Every response: remember ``Retry-After`` (this thread) and the API usage."""
        record_crm_call(self._context.connection_id, response.status_code)
        self._local.retry_after = _retry_after_header(response.headers.get("Retry-After"))
        limit_info = response.headers.get("Sforce-Limit-Info")
        if limit_info:
            usage = Salesforce.parse_api_usage(limit_info).get("api-usage")
            if usage is not None:
                self._usage = ApiUsage(used=usage.used, limit=usage.total)

    def _checked_url(self, url: object, what: str) -> str:
        if not isinstance(url, str) or not url:
            raise InvalidRequestError(f"Salesforce connection has no {what}")
        try:
            return validate_instance_url("salesforce", url, sandbox=self._settings().sandbox)
        except InstanceUrlError as exc:
            raise InvalidRequestError(f"Salesforce {what} refused: {exc.reason}") from None

    def _can_refresh(self) -> bool:
        if self._auth_problem is not None:
            return False
        if self._auth in _REISSUABLE:
            return True
        token = self._credentials.get("refresh_token")
        return isinstance(token, str) and bool(token)

    def _client(self) -> Salesforce:
        with self._lock:
            if self._sf is not None:
                return self._sf
            if self._auth_problem is not None:
                raise self._auth_problem
            if not self._credentials.get("access_token") and self._auth in _REISSUABLE:
                self._credentials = self._issue(self._credentials)
            token = self._credentials.get("access_token")
            if not isinstance(token, str) or not token:
                raise AuthError(
                    "Salesforce credentials have no access token",
                    refreshable=self._can_refresh(),
                )
            instance = self._checked_url(
                self._credentials.get("instance_url") or self._context.instance_url,
                "instance URL",
            )
            self._sf = Salesforce(
                session_id=token,
                instance_url=instance,
                session=self._http,
                version=API_VERSION,
                object_pairs_hook=dict,
            )
            return self._sf

    def _call(self, what: str, work: Callable[[Salesforce], T]) -> T:
        """Run one API call, translating every failure into the error taxonomy."""
        sf = self._client()
        self._local.retry_after = None
        try:
            return work(sf)
        except SalesforceError as exc:
            raise self._translate(what, exc) from None
        except requests.Timeout:
            raise RetriableError(f"Salesforce {what}: timed out") from None
        except requests.JSONDecodeError:
            raise RetriableError(f"Salesforce {what}: the answer is not JSON") from None
        except requests.ConnectionError as exc:
            raise RetriableError(
                f"Salesforce {what}: connection failed ({type(exc).__name__})"
            ) from None
        except requests.RequestException as exc:
            raise RetriableError(f"Salesforce {what}: {type(exc).__name__}") from None

    def _translate(self, what: str, exc: SalesforceError) -> ProviderError:
        status = exc.status
        code, message = _error_code(exc.content)
        text = f"Salesforce {what}: HTTP {status}" + (f" {code}" if code else "")
        if message:
            text += f" ({message})"
        retry_after: float | None = getattr(self._local, "retry_after", None)
        if status == 401:
            return AuthError(text, refreshable=self._can_refresh())
        if status == 403:
            if code in _RATE_CODES:
                record_crm_rate_limit(self._context.connection_id)
                return RateLimitedError(text, retry_after=retry_after or RATE_LIMIT_RETRY_AFTER)
            if code in _RECORD_403_CODES:
                return InvalidRequestError(text)
            return AuthError(text, refreshable=False)
        if status == 404:
            return NotFoundError(text)
        if status == 429:
            return RateLimitedError(text, retry_after=retry_after or RATE_LIMIT_RETRY_AFTER)
        if status >= 500:
            return RetriableError(text, retry_after=retry_after)
        if code in _RETRIABLE_CODES:
            return RetriableError(text, retry_after=retry_after)
        return InvalidRequestError(text)

    def _query_pages(
        self, what: str, soql: str, *, deleted: bool = False, batch: bool = False
    ) -> Iterator[tuple[list[dict[str, Any]], bool, int]]:
        """(records, is the last page, ``totalSize``) of a SOQL query, per Salesforce page
        (``nextRecordsUrl``)."""
        headers: dict[str, str] = {}
        if batch and self._page_size is not None:
            headers["Sforce-Query-Options"] = f"batchSize={max(200, self._page_size)}"
        payload = self._call(
            what, lambda sf: sf.query(soql, include_deleted=deleted, **_h(headers))
        )
        while True:
            try:
                records = query_records(payload)
            except MappingError as exc:
                raise RetriableError(f"Salesforce {what}: unexpected answer ({exc})") from None
            next_url = payload.get("nextRecordsUrl")
            last = payload.get("done", True) is True or not isinstance(next_url, str)
            total = payload.get("totalSize")
            yield records, last, total if isinstance(total, int) else len(records)
            if last:
                return
            if not next_url.startswith("/services/data/"):
                raise RetriableError(f"Salesforce {what}: unexpected nextRecordsUrl")

            def more(sf: Salesforce, url: str = next_url) -> Any:
                return sf.query_more(url, identifier_is_url=True, **_h(headers))

            payload = self._call(what, more)

    def _query_all(self, what: str, soql: str) -> list[dict[str, Any]]:
        return [record for page, _, _ in self._query_pages(what, soql) for record in page]

    def _opportunity_describe(self) -> _Describe:
        with self._lock:
            if self._describe is None:
                payload = self._call(
                    "Opportunity describe", lambda sf: sf.restful("sobjects/Opportunity/describe")
                )
                self._describe = _Describe.parse(payload)
            return self._describe

    def _stage_catalogue(self) -> StageCatalogue:
        with self._lock:
            if self._stages is None:
                records = self._query_all("stage query", _STAGE_SOQL)
                try:
                    self._stages = parse_stage_catalogue({"records": records})
                except MappingError as exc:
                    raise InvalidRequestError(f"Salesforce opportunity stages: {exc}") from None
            return self._stages

    def _opportunity_select(self) -> str:
        """The REST query: the fields, and the child subqueries the org has."""
        described = self._opportunity_describe()
        parts = [", ".join(self._opportunity_fields())]
        parts += [f"({sub})" for rel, sub in _SUBQUERIES.items() if described.has_child(rel)]
        return format_soql("SELECT {items:literal} FROM Opportunity", items=", ".join(parts))

    def _opportunity_fields(self) -> list[str]:
        """The Opportunity fields to select: the core ones, and those the org has."""
        described = self._opportunity_describe()
        names: list[str] = list(_CORE_FIELDS)
        for wanted in _DESCRIBED_FIELDS:
            found = described.name(wanted)
            if found is not None:
                names.append(found)
        if described.name("OwnerId") is not None:
            names.append("Owner.Name")
        custom = [*_playbook_fields(), *self._extra_fields, *SUMMARY_FIELDS.values()]
        for wanted in sorted(set(custom)):
            found = described.name(wanted)
            if found is not None and found not in names:
                names.append(found)
        return names

    # ------------------------------------------------------------ reads

    def list_stages(self) -> Mapping[str, StageCatalogue]:
        return {"default": self._stage_catalogue()}

    def iter_changed_deals(self, watermark: str | None) -> Iterator[DealPage]:
        if isinstance(watermark, str) and watermark.startswith(bulk.BULK_PREFIX):
            try:
                return self._bulk_pages(BulkCheckpoint.parse(watermark))
            except InvalidRequestError as exc:
                # Our own checkpoint, unreadable (an older form, a damaged row): a full
                # load again is safe (stored deals come back unchanged), a stuck sync is not.
                logger.warning(
                    "salesforce connection %s: bulk checkpoint unreadable (%s); loading again",
                    self._context.connection_id,
                    exc,
                )
                return self._changed_pages(_Cursor(), incremental=False)
        cursor = _Cursor.parse(watermark)
        return self._changed_pages(cursor, incremental=watermark is not None)

    def _changed_pages(
        self, cursor: _Cursor, *, incremental: bool, allow_bulk: bool = True
    ) -> Iterator[DealPage]:
        stages = self._stage_catalogue()
        since = cursor.since(self._overlap)
        where = ""
        if since is not None:
            where = format_soql(" WHERE SystemModstamp > {:literal}", _soql_datetime(since))
        soql = f"{self._opportunity_select()}{where} ORDER BY SystemModstamp ASC, Id ASC"
        size = self._page_size
        first = True
        for page, last_page, total in self._query_pages("opportunity query", soql, batch=True):
            if first and allow_bulk and not incremental and total > self._bulk_threshold:
                try:
                    checkpoint = self._bulk_start()
                except BulkUnavailable as exc:
                    logger.warning(
                        "salesforce connection %s: Bulk API 2.0 unavailable, paging REST: %s",
                        self._context.connection_id,
                        exc,
                    )
                else:
                    logger.info(
                        "salesforce connection %s: first load of %d opportunities through "
                        "Bulk API 2.0",
                        self._context.connection_id,
                        total,
                    )
                    # The jobs are durable before anyone waits for them.
                    yield DealPage((), checkpoint.encode(), ())
                    yield from self._bulk_pages(checkpoint)
                    return
            first = False
            fresh: list[tuple[dict[str, Any], str, datetime]] = []
            for record in page:
                version = self._version(record)
                if version is not None and version[0] not in cursor.seen:
                    fresh.append((record, *version))
            step = size or max(len(fresh), 1)
            chunks = [fresh[i : i + step] for i in range(0, len(fresh), step)]
            for number, chunk in enumerate(chunks):
                deals: list[DealSnapshot] = []
                for record, digest, stamp in chunk:
                    cursor.add(digest, stamp)
                    self._map_into(deals, record, stages)
                last = last_page and number == len(chunks) - 1
                deleted = self._deleted(cursor, since) if last and incremental else ()
                yield DealPage(tuple(deals), cursor.encode(self._overlap), deleted)
            if last_page and not chunks and incremental:
                deleted = self._deleted(cursor, since)
                if deleted:
                    yield DealPage((), cursor.encode(self._overlap), deleted)

    def _map_into(
        self, deals: list[DealSnapshot], record: dict[str, Any], stages: StageCatalogue
    ) -> None:
        """Append the record's snapshot (child rows Salesforce paged fetched first); a
        record the mapper refuses is logged and skipped."""
        try:
            self._complete_children(record)
            deals.append(map_opportunity(record, stages))
        except MappingError as exc:
            logger.warning(
                "salesforce connection %s: opportunity skipped: %s",
                self._context.connection_id,
                exc,
            )

    def _version(self, record: Mapping[str, Any]) -> tuple[str, datetime] | None:
        """(version hash, SystemModstamp) of a record; None (logged) when it has neither."""
        record_id, stamp = record.get("Id"), _parse_stamp(record.get("SystemModstamp"))
        if not isinstance(record_id, str) or not _ANY_ID.fullmatch(record_id) or stamp is None:
            logger.warning(
                "salesforce connection %s: a record without a valid Id or SystemModstamp "
                "was skipped",
                self._context.connection_id,
            )
            return None
        content = {
            key: _without_cursor(value) for key, value in record.items() if key != "attributes"
        }
        return _version_hash(record_id, content), stamp

    def _complete_children(self, record: dict[str, Any]) -> None:
        """Fetch the rest of a subquery Salesforce paged (``done: false``), in place."""
        for relationship in _SUBQUERIES:
            nested = record.get(relationship)
            if not isinstance(nested, dict) or nested.get("done", True) is True:
                continue
            rows = list(nested.get("records") or [])
            next_url = nested.get("nextRecordsUrl")
            while isinstance(next_url, str) and next_url.startswith("/services/data/"):

                def more(sf: Salesforce, url: str = next_url) -> Any:
                    return sf.query_more(url, identifier_is_url=True)

                page = self._call(f"{relationship} page", more)
                rows.extend(query_records(page))
                next_url = None if page.get("done", True) is True else page.get("nextRecordsUrl")
            record[relationship] = {"totalSize": len(rows), "done": True, "records": rows}

    def _deleted(self, cursor: _Cursor, since: datetime | None) -> tuple[str, ...]:
        if since is None:
            return ()
        soql = format_soql(
            "SELECT Id, SystemModstamp FROM Opportunity WHERE IsDeleted = true AND "
            "SystemModstamp > {:literal} ORDER BY SystemModstamp ASC",
            _soql_datetime(since),
        )
        deleted: list[str] = []
        for page, _, _ in self._query_pages("deleted opportunity query", soql, deleted=True):
            for record in page:
                stamp = _parse_stamp(record.get("SystemModstamp"))
                record_id = record.get("Id")
                if not isinstance(record_id, str) or not OPPORTUNITY_ID.fullmatch(record_id):
                    continue
                if stamp is None:
                    continue
                digest = _version_hash(record_id, "deleted")
                if digest in cursor.seen:
                    continue
                cursor.add(digest, stamp)
                deleted.append(record_id)
        return tuple(deleted)

    # ------------------------------------------------------------ Bulk API 2.0 first loads

    def _bulk_client(self, sf: Salesforce) -> _Bulk2Client:
        """simple-salesforce's Bulk API 2.0 client on our session. Its job-level calls are
        used (create, get, one results page by locator) rather than ``sf.bulk2.X.query``,
        which hides the job id and the locator a checkpoint needs."""
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {sf.session_id}",
        }
        return _Bulk2Client("Opportunity", sf.bulk2_url, headers, sf.session)

    def _bulk_start(self) -> BulkCheckpoint:
        """Create the load's jobs (see :mod:`integrations.salesforce.bulk`).

        Raises:
            BulkUnavailable: Salesforce refused a job (Bulk API not enabled, a field or
                object it will not bulk-query, ...).
        """
        described = self._opportunity_describe()
        queries = [
            format_soql("SELECT {:literal} FROM Opportunity", ", ".join(self._opportunity_fields()))
        ]
        queries += [
            soql if described.has_child(relationship) else ""
            for relationship, soql in bulk.CHILD_QUERIES.items()
        ]
        jobs: list[str] = []
        started: datetime | None = None
        for soql in queries:
            if not soql:
                jobs.append("")
                continue

            def create(sf: Salesforce, soql: str = soql) -> Any:
                return self._bulk_client(sf).create_job(Operation.query, query=soql)

            try:
                info = self._call("bulk query job", create)
            except InvalidRequestError as exc:
                raise BulkUnavailable(str(exc)) from None
            job_id = info.get("id") if isinstance(info, Mapping) else None
            if not bulk.is_job_id(job_id):
                raise RetriableError("Salesforce bulk query job: unexpected answer")
            jobs.append(str(job_id))
            if started is None:  # the Opportunity job: its snapshot time, Salesforce's clock
                started = _parse_stamp(info.get("createdDate")) or datetime.now(UTC)
        assert started is not None  # the Opportunity job always exists
        return BulkCheckpoint(tuple(jobs), started)

    def _bulk_wait(self, checkpoint: BulkCheckpoint) -> Iterator[DealPage]:
        """Poll the load's jobs until all are complete; while they run, yield the same
        checkpoint between polls (the sync commits it: its lease stays alive and no
        transaction sits open).

        Raises:
            BulkUnavailable: a job failed or was aborted.
            NotReadyError: still running after :data:`~bulk.BULK_WAIT_LIMIT` seconds
                (the next sync polls the same jobs: they are in the checkpoint).
        """
        pending = [job for job in checkpoint.jobs if job]
        deadline = time.monotonic() + bulk.BULK_WAIT_LIMIT
        polls = 0
        while True:
            running: list[str] = []
            for job in pending:

                def get(sf: Salesforce, job: str = job) -> Any:
                    return self._bulk_client(sf).get_job(job, True)

                info = self._call("bulk query job status", get)
                state = info.get("state") if isinstance(info, Mapping) else None
                if state == "JobComplete":
                    continue
                if state in {"Failed", "Aborted"}:
                    reason = _shorten(str(info.get("errorMessage") or state))
                    raise BulkUnavailable(f"bulk query job {job} {state}: {reason}")
                running.append(job)
            pending = running
            if not pending:
                return
            if datetime.now(UTC) - checkpoint.started > bulk.BULK_GIVE_UP:
                raise BulkUnavailable(
                    f"bulk query jobs still running {bulk.BULK_GIVE_UP} after they were created"
                )
            if time.monotonic() >= deadline:
                raise NotReadyError(
                    f"Salesforce bulk query jobs still running after {bulk.BULK_WAIT_LIMIT:g} s",
                    retry_after=60.0,
                )
            yield DealPage((), checkpoint.encode(), ())
            delays = bulk.BULK_POLL_DELAYS
            time.sleep(delays[min(polls, len(delays) - 1)])
            polls += 1

    def _bulk_results(self, job: str, locator: str) -> tuple[str, str]:
        """One results page of a job: (CSV text, the next page's locator or "").

        Raises:
            BulkUnavailable: an answer that is not a results page (no record count, not
                UTF-8, a locator that is not one).
        """

        def page(sf: Salesforce) -> Any:
            try:
                return self._bulk_client(sf).get_query_results(job, locator, bulk.BULK_RESULTS_PAGE)
            except (KeyError, ValueError) as exc:  # no Sforce-NumberOfRecords; not UTF-8
                raise BulkUnavailable(f"unreadable bulk results ({type(exc).__name__})") from None

        answer = self._call("bulk query results", page)
        text, following = answer.get("records"), answer.get("locator") or ""
        if not isinstance(text, str) or not isinstance(following, str):
            raise BulkUnavailable("unreadable bulk results")
        if following and not bulk.is_locator(following):
            raise BulkUnavailable("bulk results: malformed Sforce-Locator")
        return text, following

    def _bulk_pages(self, checkpoint: BulkCheckpoint) -> Iterator[DealPage]:
        """The load's opportunities from ``checkpoint`` on, a checkpoint after every page.
        A failed job, an unreadable or refused answer (a 400), jobs Salesforce has deleted
        (7 days later), or jobs still running :data:`~bulk.BULK_GIVE_UP` after they were
        created end the load: it starts again on REST (deals already stored come back unchanged,
        so they are not reviewed twice)."""
        try:
            yield from self._bulk_load(checkpoint)
        except (BulkUnavailable, NotFoundError, InvalidRequestError) as exc:
            logger.warning(
                "salesforce connection %s: bulk load abandoned, paging REST: %s",
                self._context.connection_id,
                exc,
            )
            yield from self._changed_pages(_Cursor(), incremental=False, allow_bulk=False)

    def _bulk_load(self, checkpoint: BulkCheckpoint) -> Iterator[DealPage]:
        stages = self._stage_catalogue()
        yield from self._bulk_wait(checkpoint)
        children: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for relationship, job in checkpoint.child_jobs().items():
            rows: list[dict[str, Any]] = []
            locator = ""
            while True:
                text, locator = self._bulk_results(job, locator)
                rows.extend(bulk.records_from_csv(text, _CHILD_TYPES))
                if not locator:
                    break
                yield DealPage((), checkpoint.encode(), ())  # keeps the sync's lease
            children[relationship] = bulk.group_children(rows)
        types = {
            name: str(info.get("type"))
            for name, info in self._opportunity_describe().fields.items()
        }
        step = self._page_size or bulk.BULK_CHUNK
        stamp, locator, skip = checkpoint.stamp, checkpoint.locator, checkpoint.skip
        while True:
            text, following = self._bulk_results(checkpoint.opportunity_job, locator)
            records = bulk.records_from_csv(text, types)
            if skip > len(records):
                raise BulkUnavailable("the checkpoint is past its results page")
            for start in range(skip, max(len(records), skip + 1), step):
                deals: list[DealSnapshot] = []
                for record in records[start : start + step]:
                    modified = _parse_stamp(record.get("SystemModstamp"))
                    if modified is not None and (stamp is None or modified > stamp):
                        stamp = modified
                    rid = str(record.get("Id") or "")[:15]
                    for relationship, grouped in children.items():
                        kids = grouped.get(rid, [])
                        record[relationship] = {
                            "totalSize": len(kids),
                            "done": True,
                            "records": kids,
                        }
                    self._map_into(deals, record, stages)
                end = min(start + step, len(records))
                if end < len(records):
                    mark = checkpoint.at(locator, end, stamp).encode()
                elif following:
                    mark = checkpoint.at(following, 0, stamp).encode()
                else:
                    mark = checkpoint.at("", 0, stamp).final_watermark()
                yield DealPage(tuple(deals), mark, ())
            if not following:
                return
            locator, skip = following, 0

    def fetch_deal(self, deal_id: str) -> DealSnapshot:
        _check_opportunity_id(deal_id)
        stages = self._stage_catalogue()
        soql = format_soql("{:literal} WHERE Id = {}", self._opportunity_select(), deal_id)
        records = self._query_all("opportunity fetch", soql)
        if not records:
            raise NotFoundError(f"Salesforce opportunity {deal_id} not found")
        try:
            self._complete_children(records[0])
            return map_opportunity(records[0], stages)
        except MappingError as exc:
            raise InvalidRequestError(f"Salesforce opportunity cannot be read: {exc}") from None

    # ------------------------------------------------------------ writes

    def write_notes(self, notes: Sequence[NoteRequest]) -> list[NoteResult]:
        results: list[NoteResult | None] = [None] * len(notes)
        creates: list[_Write] = []
        today = datetime.now(UTC).date()
        for index, note in enumerate(notes):
            try:
                _check_opportunity_id(note.deal_id)
                _check_marker(note.marker)
            except InvalidRequestError as exc:
                results[index] = NoteResult(note.marker, error=exc)
                continue
            if note.kind == "task":
                creates.append(_Write(index, "task", _task_record(note, today)))
            else:
                creates.append(_Write(index, "note", _content_note_record(note)))
        records = len(creates) + sum(1 for write in creates if write.step == "note")
        if not creates:
            orphans: list[str] = []
        elif records <= COMPOSITE_LIMIT:
            orphans = self._write_composite(creates, notes, results)
        else:
            orphans = self._write_collections(creates, notes, results)
        if orphans:
            self._delete_orphans(orphans)
        lost = "Salesforce returned no result for this note"
        return [
            result if result is not None else NoteResult(note.marker, error=RetriableError(lost))
            for note, result in zip(notes, results, strict=True)
        ]

    def _write_composite(
        self, creates: list[_Write], notes: Sequence[NoteRequest], results: list[NoteResult | None]
    ) -> list[str]:
        """A small batch in one ``composite`` call: each note's ContentNote, then its link
        (``@{nN.id}``), as independent subrequests (``allOrNone: false``). The unlinked
        ContentNotes' ids are returned."""
        subrequests: list[dict[str, Any]] = []
        steps: dict[str, tuple[_Write, Literal["note", "task", "link"]]] = {}
        base = f"/services/data/v{API_VERSION}/sobjects"
        for number, write in enumerate(creates):
            record = {k: v for k, v in write.record.items() if k != "attributes"}
            sobject = write.record["attributes"]["type"]
            ref = f"n{number}"
            subrequests.append(
                {"method": "POST", "url": f"{base}/{sobject}", "referenceId": ref, "body": record}
            )
            steps[ref] = (write, write.step)
            if write.step == "note":
                link = _link_record(f"@{{{ref}.id}}", notes[write.index].deal_id)
                link.pop("attributes")
                link_ref = f"l{number}"
                subrequests.append(
                    {
                        "method": "POST",
                        "url": f"{base}/ContentDocumentLink",
                        "referenceId": link_ref,
                        "body": link,
                    }
                )
                steps[link_ref] = (write, "link")
        body = {"allOrNone": False, "compositeRequest": subrequests}
        answer = self._call(
            "composite", lambda sf: sf.restful("composite", method="POST", json=body)
        )
        items = answer.get("compositeResponse") if isinstance(answer, Mapping) else None
        if not isinstance(items, list) or len(items) != len(subrequests):
            raise RetriableError("Salesforce composite: unexpected answer")
        created: dict[int, str] = {}
        orphans: list[str] = []
        for item in items:
            if not isinstance(item, Mapping) or item.get("referenceId") not in steps:
                raise RetriableError("Salesforce composite: unexpected answer")
            write, step = steps[item["referenceId"]]
            marker = notes[write.index].marker
            payload = item.get("body")
            status = item.get("httpStatusCode")
            new_id = payload.get("id") if isinstance(payload, Mapping) else None
            ok = isinstance(status, int) and 200 <= status < 300 and isinstance(new_id, str)
            if step == "link" and write.index not in created:
                continue  # its ContentNote failed: that error is the note's result
            if not ok:
                errors = payload if isinstance(payload, list) else []
                what = {"note": "ContentNote", "task": "Task", "link": "note link"}[step]
                error = _record_error({"errors": errors}, f"{what} create")
                results[write.index] = NoteResult(marker, error=error)
                if step == "link":
                    orphans.append(created[write.index])
            elif step == "note":
                created[write.index] = str(new_id)
            elif step == "task":
                results[write.index] = NoteResult(marker, external_id=str(new_id))
            else:
                results[write.index] = NoteResult(marker, external_id=created[write.index])
        return orphans

    def _write_collections(
        self, creates: list[_Write], notes: Sequence[NoteRequest], results: list[NoteResult | None]
    ) -> list[str]:
        """A larger batch through ``composite/sobjects`` calls of up to 200 records: new
        records first, then the links of ContentNotes created by earlier calls."""
        pending: deque[_Write] = deque(creates)
        links: deque[_Write] = deque()
        orphans: list[str] = []
        while pending or links:
            batch: list[_Write] = []
            while pending and len(batch) < COLLECTION_LIMIT:
                batch.append(pending.popleft())
            while links and len(batch) < COLLECTION_LIMIT:
                batch.append(links.popleft())
            batch.sort(key=lambda write: ("note", "task", "link").index(write.step))
            answer = self._collection(batch)
            for write, item in zip(batch, answer, strict=True):
                note = notes[write.index]
                new_id = item.get("id")
                if item.get("success") is not True or not isinstance(new_id, str):
                    what = {"note": "ContentNote", "task": "Task", "link": "note link"}[write.step]
                    error = _record_error(item, f"{what} create")
                    results[write.index] = NoteResult(note.marker, error=error)
                    if write.step == "link":
                        orphans.append(str(write.record["ContentDocumentId"]))
                elif write.step == "note":
                    links.append(_Write(write.index, "link", _link_record(new_id, note.deal_id)))
                elif write.step == "task":
                    results[write.index] = NoteResult(note.marker, external_id=new_id)
                else:
                    note_id = str(write.record["ContentDocumentId"])
                    results[write.index] = NoteResult(note.marker, external_id=note_id)
        return orphans

    def _collection(self, batch: list[_Write]) -> list[Mapping[str, Any]]:
        body = {"allOrNone": False, "records": [write.record for write in batch]}
        answer = self._call(
            "composite/sobjects",
            lambda sf: sf.restful("composite/sobjects", method="POST", json=body),
        )
        if not isinstance(answer, list) or len(answer) != len(batch):
            raise RetriableError("Salesforce composite/sobjects: unexpected answer")
        return [item if isinstance(item, Mapping) else {} for item in answer]

    def _delete_orphans(self, note_ids: list[str]) -> None:
        """Delete ContentNotes whose link failed, 25 per ``composite`` call (best effort:
        they are visible only to the integration user; :meth:`find_note` links one it finds)."""
        base = f"/services/data/v{API_VERSION}/sobjects/ContentNote"
        valid = [note_id for note_id in note_ids if _ANY_ID.fullmatch(note_id)]
        for start in range(0, len(valid), COMPOSITE_LIMIT):
            chunk = valid[start : start + COMPOSITE_LIMIT]
            body = {
                "allOrNone": False,
                "compositeRequest": [
                    {"method": "DELETE", "url": f"{base}/{note_id}", "referenceId": f"d{number}"}
                    for number, note_id in enumerate(chunk)
                ],
            }

            def delete(sf: Salesforce, body: dict[str, Any] = body) -> Any:
                return sf.restful("composite", method="POST", json=body)

            try:
                self._call("unlinked note delete", delete)
            except ProviderError as exc:
                logger.warning(
                    "salesforce connection %s: %d unlinked note(s) left: %s",
                    self._context.connection_id,
                    len(chunk),
                    exc,
                )

    def find_note(self, deal_id: str, marker: str) -> str | None:
        _check_opportunity_id(deal_id)
        _check_marker(marker)
        suffix = f"[{marker}]"
        notes = self._query_all(
            "note search",
            format_soql("SELECT Id, Title FROM ContentNote WHERE Title LIKE '%{:like}%'", marker),
        )
        candidates = [
            str(row["Id"])
            for row in notes
            if isinstance(row.get("Id"), str)
            and _ANY_ID.fullmatch(row["Id"])
            and str(row.get("Title", "")).endswith(suffix)
        ]
        if candidates:
            links = self._query_all(
                "note link search",
                format_soql(
                    "SELECT ContentDocumentId, LinkedEntityId FROM ContentDocumentLink "
                    "WHERE ContentDocumentId IN {}",
                    candidates,
                ),
            )
            linked_to: dict[str, set[str]] = {}
            for row in links:
                document = str(row.get("ContentDocumentId", ""))[:15]
                linked_to.setdefault(document, set()).add(str(row.get("LinkedEntityId", ""))[:15])
            for candidate in candidates:
                if deal_id[:15] in linked_to.get(candidate[:15], set()):
                    return candidate
            # Linked to no record (only to its owner): a note whose link was lost.
            unlinked = [
                candidate
                for candidate in candidates
                if not any(
                    not entity.startswith(_USER_PREFIX)
                    for entity in linked_to.get(candidate[:15], set())
                )
            ]
            if unlinked:
                return self._link_found(deal_id, unlinked)
        tasks = self._query_all(
            "task search",
            format_soql(
                "SELECT Id, Subject FROM Task WHERE WhatId = {} AND Subject LIKE '%{:like}%'",
                deal_id,
                marker,
            ),
        )
        for row in tasks:
            if str(row.get("Subject", "")).endswith(suffix) and isinstance(row.get("Id"), str):
                return str(row["Id"])
        return None

    def _link_found(self, deal_id: str, note_ids: list[str]) -> str:
        """Notes with the marker but no link to the deal: a batch whose answer was lost
        (a timeout after Salesforce created the note, before or without its link). The
        first is linked now, rather than a second note written; any others are deleted,
        so the retry leaves neither an orphan nor a duplicate."""
        keep, extra = note_ids[0], note_ids[1:]
        link = _link_record(keep, deal_id)
        link.pop("attributes")
        self._call(
            "note link",
            lambda sf: sf.restful("sobjects/ContentDocumentLink", method="POST", json=link),
        )
        if extra:
            self._delete_orphans(extra)
        return keep

    def update_summaries(self, updates: Sequence[SummaryUpdate]) -> list[SummaryResult]:
        results: list[SummaryResult | None] = [None] * len(updates)
        pending: list[tuple[int, dict[str, Any]]] = []
        for index, update in enumerate(updates):
            try:
                data = self._summary_record(update)
            except InvalidRequestError as exc:
                results[index] = SummaryResult(update.deal_id, error=exc)
                continue
            if data is None:
                results[index] = SummaryResult(update.deal_id)  # nothing the org has
            else:
                pending.append((index, data))
        for start in range(0, len(pending), COLLECTION_LIMIT):
            batch = pending[start : start + COLLECTION_LIMIT]
            body = {"allOrNone": False, "records": [record for _, record in batch]}

            def patch(sf: Salesforce, body: dict[str, Any] = body) -> Any:
                return sf.restful("composite/sobjects", method="PATCH", json=body)

            answer = self._call("opportunity summary update", patch)
            if not isinstance(answer, list) or len(answer) != len(batch):
                raise RetriableError("Salesforce composite/sobjects: unexpected answer")
            for (index, _), item in zip(batch, answer, strict=True):
                deal_id = updates[index].deal_id
                if isinstance(item, Mapping) and item.get("success") is True:
                    results[index] = SummaryResult(deal_id)
                else:
                    entry = item if isinstance(item, Mapping) else {}
                    results[index] = SummaryResult(
                        deal_id, error=_record_error(entry, "summary update")
                    )
        return [
            result if result is not None else SummaryResult(update.deal_id)
            for update, result in zip(updates, results, strict=True)
        ]

    def _summary_record(self, update: SummaryUpdate) -> dict[str, Any] | None:
        """The ``composite/sobjects`` record of one update: the fields the org has (and
        may update), converted to their types; None when it has none of them."""
        _check_opportunity_id(update.deal_id)
        fields = update.fields
        if any(not key or not isinstance(value, str) for key, value in fields.items()):
            raise InvalidRequestError("summary fields need names and string values")
        if not fields:
            return None
        described = self._opportunity_describe()
        data: dict[str, Any] = {}
        for key, value in fields.items():
            target = summary_field_name(key)
            found = described.name(target) if target is not None else None
            if found is None:
                continue  # the org lacks this field: skipped by design
            info = described.fields[found.lower()]
            if info.get("updateable") is False:
                continue
            converted = _field_value(info, value)
            if converted is None:
                logger.warning(
                    "salesforce connection %s: summary field %s skipped: %r is not a %s",
                    self._context.connection_id,
                    found,
                    value[:40],
                    info.get("type"),
                )
                continue
            data[found] = converted
        if not data:
            return None
        return {"attributes": {"type": "Opportunity"}, "Id": update.deal_id, **data}

    # ------------------------------------------------------------ usage and credentials

    def api_usage(self) -> ApiUsage | None:
        """The daily allowance from the last ``Sforce-Limit-Info`` header seen (None before
        any call)."""
        if self._usage is not None:
            return self._usage
        sf = self._sf
        usage = sf.api_usage.get("api-usage") if sf is not None else None
        return None if usage is None else ApiUsage(used=usage.used, limit=usage.total)

    def refresh_credentials(self) -> Mapping[str, Any]:
        if self._auth_problem is not None:
            raise self._auth_problem
        with self._lock:
            current = dict(self._credentials)
        if self._auth == "oauth":
            fresh = {**current, **self._refresh_oauth(current)}
        else:
            fresh = self._issue(current)
        with self._lock:
            self._credentials = fresh
            self._sf = None  # rebuilt with the new token on the next call
        return dict(fresh)

    def _refresh_oauth(self, current: Mapping[str, Any]) -> dict[str, Any]:
        token = current.get("refresh_token")
        if not isinstance(token, str) or not token:
            raise AuthError(
                "Salesforce connection has no refresh token: connect it again", refreshable=False
            )
        settings = self._settings()
        login_url = current.get("login_url")
        if login_url is not None:
            checked = self._checked_url(login_url, "login URL")
            settings = settings.model_copy(update={"salesforce_login_url": checked})
        try:
            with httpx.Client(verify=_tls(self._verify), timeout=_ISSUE_TIMEOUT) as client:
                return oauth.refresh_token(Provider.SALESFORCE, token, settings, client)
        except oauth.OAuthNotConfigured as exc:
            raise AuthError(str(exc), refreshable=False) from None

    def _issue(self, current: Mapping[str, Any]) -> dict[str, Any]:
        """A new access token for JWT bearer, client credentials or password credentials."""
        settings = self._settings()
        login_url = self._checked_url(
            current.get("login_url") or settings.salesforce_login_url, "login URL"
        )
        form: dict[str, str]
        headers: dict[str, str] = {"Accept": "application/json"}
        if self._auth == "jwt":
            claims = {
                "iss": current["consumer_key"],
                "sub": current["username"],
                "aud": current.get("audience") or _jwt_audience(login_url),
                "exp": int(time.time()) + 180,
            }
            try:
                assertion = jwt.encode(claims, str(current["private_key"]), algorithm="RS256")
            except (ValueError, TypeError, UnsupportedAlgorithm, jwt.PyJWTError):
                raise AuthError(
                    "Salesforce JWT credentials: the private key is not a usable RSA key"
                ) from None
            url = f"{login_url}/services/oauth2/token"
            form = {
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": assertion,
            }
        elif self._auth == "client_credentials":
            domain = self._checked_url(
                current.get("instance_url") or self._context.instance_url, "My Domain URL"
            )
            url = f"{domain}/services/oauth2/token"
            form = {"grant_type": "client_credentials"}
            pair = f"{current['consumer_key']}:{current['consumer_secret']}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        else:
            if not settings.sandbox:
                raise AuthError("Salesforce password credentials are for sandbox mode only")
            url = f"{login_url}/services/oauth2/token"
            form = {
                "grant_type": "password",
                "client_id": str(current["consumer_key"]),
                "client_secret": str(current["consumer_secret"]),
                "username": str(current["username"]),
                "password": str(current["password"]) + str(current.get("security_token") or ""),
            }
        what = f"{self._auth.replace('_', ' ')} token request"
        try:
            with httpx.Client(verify=_tls(self._verify), timeout=_ISSUE_TIMEOUT) as client:
                response = client.post(url, data=form, headers=headers)
        except httpx.TimeoutException:
            raise RetriableError(f"Salesforce {what}: the token endpoint timed out") from None
        except httpx.HTTPError as exc:
            raise RetriableError(
                f"Salesforce {what}: the token endpoint could not be reached ({type(exc).__name__})"
            ) from None
        if response.status_code != 200:
            raise oauth.http_failure(Provider.SALESFORCE, what, response)
        try:
            tokens = response.json()
        except ValueError:
            tokens = None
        access = tokens.get("access_token") if isinstance(tokens, dict) else None
        if not isinstance(access, str) or not access:
            raise RetriableError(f"Salesforce {what}: the answer has no access token")
        assert isinstance(tokens, dict)
        fresh = {key: value for key, value in current.items()}
        fresh["access_token"] = access
        instance = tokens.get("instance_url")
        if isinstance(instance, str) and instance:
            fresh["instance_url"] = self._checked_url(instance, "instance URL")
        issued = tokens.get("issued_at")
        if isinstance(issued, str):
            fresh["issued_at"] = issued
        return fresh


# ---------------------------------------------------------------- records


def _without_cursor(value: Any) -> Any:
    """A subquery result without its paging cursor (which changes from query to query)."""
    if isinstance(value, dict) and "records" in value:
        return {key: item for key, item in value.items() if key != "nextRecordsUrl"}
    return value


def _field_value(info: Mapping[str, Any], value: str) -> Any:
    """``value`` in the JSON type of the field ``info`` describes (None: it cannot be)."""
    kind = info.get("type")
    if kind in {"double", "currency", "percent", "int"}:
        try:
            number = float(value)
        except ValueError:
            return None
        if not math.isfinite(number):
            return None
        return int(number) if kind == "int" or number.is_integer() else number
    if kind == "boolean":
        lowered = value.strip().lower()
        return {"true": True, "false": False}.get(lowered)
    if value == "":
        return None if kind in {"date", "datetime"} else value
    length = info.get("length")
    if kind not in {"date", "datetime"} and isinstance(length, int) and length > 0:
        return value[:length]
    return value


def _h(headers: Mapping[str, str]) -> dict[str, Any]:
    """Keyword arguments carrying extra request headers (none: no keyword at all)."""
    return {"headers": dict(headers)} if headers else {}


def _titled(title: str, marker: str) -> str:
    tail = f" [{marker}]"
    head = " ".join(title.split()) or "dealcoach"
    return head[: _MAX_TITLE - len(tail)] + tail


def _content_note_record(note: NoteRequest) -> dict[str, Any]:
    html = note.html.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")
    return {
        "attributes": {"type": "ContentNote"},
        "Title": _titled(note.title, note.marker),
        "Content": base64.b64encode(html.encode("utf-8")).decode("ascii"),
    }


#: Key prefix of User ids: every ContentNote is linked to its owner.
_USER_PREFIX = "005"


def _link_record(note_id: str, deal_id: str) -> dict[str, Any]:
    return {
        "attributes": {"type": "ContentDocumentLink"},
        "ContentDocumentId": note_id,
        "LinkedEntityId": deal_id,
        "ShareType": "V",
        "Visibility": "AllUsers",
    }


def _task_record(note: NoteRequest, today: date) -> dict[str, Any]:
    return {
        "attributes": {"type": "Task"},
        "WhatId": note.deal_id,
        "Subject": _titled(note.title, note.marker),
        "Description": note.text[:_MAX_DESCRIPTION],
        "Status": "Completed",
        "ActivityDate": today.isoformat(),
    }
