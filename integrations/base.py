"""What every CRM integration shares: the provider protocol, its DTOs and errors.

``CrmProvider`` is the only door to a CRM. The service never sees SDK
objects: adapters speak in the neutral types below and raise only the small
error taxonomy (:class:`RetriableError`, :class:`AuthError`,
:class:`NotFoundError`, :class:`InvalidRequestError`). The pure mapping
functions (``integrations/*/mapping.py``) raise :class:`MappingError`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from app.coaching.snapshot import DealSnapshot, StageCatalogue


class MappingError(ValueError):
    """A CRM record (or a whole export) that cannot be mapped.

    ``record_id`` is the CRM id of the offending record, or ``None`` when the
    error is about the shape of a whole payload or the record has no id.
    ``message`` says what is wrong and names the field, e.g.
    ``"unknown StageName 'Verbal Commit'"``.
    """

    record_id: str | None
    message: str

    def __init__(self, record_id: str | None, message: str) -> None:
        self.record_id = record_id
        self.message = message
        super().__init__(f"record {record_id}: {message}" if record_id else message)

    def __reduce__(self) -> tuple[type[MappingError], tuple[str | None, str]]:
        # Keep the two-argument constructor working through pickling (e.g. in a
        # process pool), which a plain ValueError would not.
        return (type(self), (self.record_id, self.message))


# ---------------------------------------------------------------- error taxonomy


class ProviderError(Exception):
    """Base of the errors an adapter may raise. Messages never contain secrets."""


class RetriableError(ProviderError):
    """A transient failure (rate limit, 5xx, timeout): try again after ``retry_after`` s.

    ``retry_after`` is the CRM's own ``Retry-After`` when it sent one, else None
    (the caller backs off on its own schedule).
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitedError(RetriableError):
    """The CRM refused for a rate limit or concurrency limit."""


class NotReadyError(RetriableError):
    """The CRM is still preparing what was asked (a Bulk API job): ask again later.
    Not a sign of load: the connection is not throttled for it."""


class QuotaExhaustedError(ProviderError):
    """The daily-allowance guard stopped the call before it ate the CRM's quota."""


class AuthError(ProviderError):
    """The CRM refused the credentials.

    ``refreshable`` is True when the access token merely expired and a refresh
    may fix it; otherwise the connection needs an admin to re-authorise it.
    """

    def __init__(self, message: str, refreshable: bool = False) -> None:
        super().__init__(message)
        self.refreshable = refreshable


class NotFoundError(ProviderError):
    """The deal (or record) does not exist, or no longer does."""


class InvalidRequestError(ProviderError):
    """The CRM rejected the request as malformed: retrying will not help."""


# ---------------------------------------------------------------- DTOs


@dataclass(frozen=True, slots=True)
class ConnectionContext:
    """What an adapter needs to talk to one CRM account. ``credentials`` are decrypted;
    never log or return them."""

    connection_id: str
    provider: str
    external_account_id: str
    instance_url: str | None
    credentials: Mapping[str, Any] = field(repr=False)
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DealPage:
    """One page of an incremental sync.

    ``watermark`` is the adapter's opaque checkpoint after this page: store it,
    and a crash resumes from here. ``deleted_ids`` are deals deleted in the CRM.
    """

    deals: tuple[DealSnapshot, ...]
    watermark: str | None
    deleted_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NoteRequest:
    """A coaching note to write on a deal. ``marker`` is unique per intended note."""

    deal_id: str
    marker: str
    title: str
    html: str
    text: str
    kind: Literal["note", "task"] = "note"


@dataclass(frozen=True, slots=True)
class NoteResult:
    """What happened to one :class:`NoteRequest` of a batch (same order as the batch)."""

    marker: str
    external_id: str | None = None
    error: ProviderError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class SummaryUpdate:
    """The rolling-summary fields to write on one deal (the service's own write)."""

    deal_id: str
    fields: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class SummaryResult:
    """What happened to one :class:`SummaryUpdate` of a batch (same order as the batch)."""

    deal_id: str
    error: ProviderError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class ApiUsage:
    """The CRM's daily API allowance as last reported (Salesforce ``Sforce-Limit-Info``)."""

    used: int
    limit: int

    @property
    def share(self) -> float:
        return self.used / self.limit if self.limit > 0 else 1.0


@dataclass(frozen=True, slots=True)
class InboundRequest:
    """A webhook request as received, for verification and parsing."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One event about one deal. ``identity`` is unique per delivery of this event.
    ``detail`` is the event's own part of the request (its JSON object, its
    notification's XML), which the inbox keeps instead of the whole request: a
    delivery of 100 events stores each event once, not the request 100 times."""

    identity: str
    deal_id: str
    kind: Literal["stage_change", "created", "changed", "ignored"]
    occurred_at: datetime | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookParse:
    """The verified events of one request and the exact reply the CRM expects."""

    events: tuple[WebhookEvent, ...]
    reply_body: bytes = b""
    reply_content_type: str = "application/json"


class WebhookRejected(ProviderError):
    """The request is not authentic or not well formed. ``status`` is the HTTP reply."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------- the protocol


@runtime_checkable
class CrmProvider(Protocol):
    """One CRM account, as the service uses it. Every method may raise
    :class:`RetriableError`, :class:`AuthError` or :class:`InvalidRequestError`."""

    kind: ClassVar[str]

    def list_stages(self) -> Mapping[str, StageCatalogue]:
        """The stage catalogues, by pipeline id (Salesforce: one, ``default``)."""
        ...

    def iter_changed_deals(self, watermark: str | None) -> Iterator[DealPage]:
        """Deals changed since ``watermark`` (None: all), page by page, oldest first.

        Each page's ``watermark`` resumes after that page; a small overlap is
        allowed (the service deduplicates by snapshot fingerprint).
        """
        ...

    def fetch_deal(self, deal_id: str) -> DealSnapshot:
        """One deal with its history and contacts.

        Raises:
            NotFoundError: no such deal.
            InvalidRequestError: ``deal_id`` is not a valid id for this CRM.
        """
        ...

    def write_notes(self, notes: Sequence[NoteRequest]) -> list[NoteResult]:
        """Write a batch of notes; one result per note, in order. A failure of
        one note is in its result, not raised; a failure of the whole call is raised."""
        ...

    def find_note(self, deal_id: str, marker: str) -> str | None:
        """The external id of the note on ``deal_id`` carrying ``marker``, if any.

        A note written but not attached to the deal (a CRM whose note and link are
        two records, the link lost with a timed-out batch) is attached now and
        returned: a retry must neither write a second note nor leave an orphan."""
        ...

    def update_summaries(self, updates: Sequence[SummaryUpdate]) -> list[SummaryResult]:
        """Update the rolling-summary fields of a batch of deals (the service's own write);
        one result per update, in order. A field the CRM lacks is skipped, not an error.
        A failure of one deal is in its result (an invalid id or fields too); a failure
        of the whole call is raised."""
        ...

    def api_usage(self) -> ApiUsage | None:
        """The daily allowance as the CRM last reported it; None when it reports none."""
        ...

    def refresh_credentials(self) -> Mapping[str, Any]:
        """Exchange the refresh token for new credentials; the caller stores them.

        Raises:
            AuthError: the refresh token is no longer valid (re-authorise).
        """
        ...


class WebhookParser(Protocol):
    """Verifies and parses one CRM's webhook requests (stateless)."""

    def __call__(
        self, request: InboundRequest, connection: ConnectionContext, secret: str | None
    ) -> WebhookParse:
        """Raises :class:`WebhookRejected` for anything not authentic or malformed."""
        ...
