"""The fake CRM as a :class:`CrmProvider`, and its webhooks.

:class:`FakeProvider` talks to the :class:`FakeCrm` file named by the
connection's ``instance_url`` (``fake:///absolute/path/to/crm.db``). It behaves
as a real adapter should: ids are validated before any call, every call checks
the credentials (wrong or expired access token: ``AuthError(refreshable=True)``
while the refresh token is valid, else not refreshable), incremental sync pages
on the CRM's modification counter (the watermark is that counter as a string)
and reports deletes, and a written note is found again by searching note bodies
for its marker.

Own writes: ``update_summaries`` is a modification like any other (as
Salesforce's ``SystemModstamp`` and HubSpot's ``hs_lastmodifieddate`` move), so
the next sync returns the deal with the summary fields in ``fields``; the
service recognises its own echo by those field keys (the store also records
``last_writer == "dealcoach"`` for tests, which does not cross the protocol).

Webhooks (:func:`parse_fake_webhook`): a JSON body
``{"events": [{"id", "deal_id", "kind", "occurred_at"}]}`` signed with
``X-Fake-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>``
and ``X-Fake-Timestamp`` (epoch seconds).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit

from app.coaching.snapshot import DealSnapshot, StageCatalogue
from integrations import signing
from integrations.base import (
    ApiUsage,
    AuthError,
    ConnectionContext,
    DealPage,
    InboundRequest,
    InvalidRequestError,
    NoteRequest,
    NoteResult,
    ProviderError,
    RetriableError,
    SummaryResult,
    SummaryUpdate,
    WebhookEvent,
    WebhookParse,
    WebhookRejected,
)
from integrations.fake.store import DEAL_ID_PATTERN, FakeCrm
from integrations.salesforce.mapping import DEFAULT_STAGES

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WEBHOOK_TOLERANCE",
    "FakeProvider",
    "parse_fake_webhook",
    "sign_fake_webhook",
    "store_path",
]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
SIGNATURE_HEADER = "X-Fake-Signature"
TIMESTAMP_HEADER = "X-Fake-Timestamp"
#: A signed request older (or further in the future) than this is refused as a replay.
WEBHOOK_TOLERANCE = timedelta(minutes=5)
#: Bodies larger than this are refused before any parsing.
MAX_WEBHOOK_BODY = 1 << 20


def store_path(instance_url: str | None) -> Path:
    """The fake CRM file of ``fake:///absolute/path``; InvalidRequestError otherwise."""
    if not instance_url:
        raise InvalidRequestError("a fake connection needs instance_url fake:///path/to/crm.db")
    parts = urlsplit(instance_url)
    path = unquote(parts.path)
    if parts.scheme != "fake" or parts.netloc or not path.startswith("/") or parts.query:
        raise InvalidRequestError(
            "a fake connection's instance_url must look like fake:///absolute/path/to/crm.db"
        )
    return Path(path)


def _page_size(settings: Mapping[str, Any]) -> int:
    value = settings.get("page_size", DEFAULT_PAGE_SIZE)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE_SIZE:
        raise InvalidRequestError(f"page_size must be an integer from 1 to {MAX_PAGE_SIZE}")
    return value


def _check_deal_id(deal_id: str) -> None:
    if not isinstance(deal_id, str) or not DEAL_ID_PATTERN.match(deal_id):
        raise InvalidRequestError("malformed fake deal id (expected D followed by 1-12 digits)")


class FakeProvider:
    """A :class:`~integrations.base.CrmProvider` over a :class:`FakeCrm` file.

    After :meth:`refresh_credentials` this instance uses the new access token
    (and the caller stores the returned credentials for the next instance).
    """

    kind: ClassVar[str] = "fake"

    def __init__(self, context: ConnectionContext, *, settings: object = None) -> None:
        # ``settings`` (the service's) are accepted like every adapter's; the fake needs none.
        path = store_path(context.instance_url)
        try:
            self._crm = FakeCrm.open(path)
        except FileNotFoundError:
            raise InvalidRequestError("no fake CRM at the connection's instance_url") from None
        self._context = context
        self._page_size = _page_size(context.settings)
        self._lock = threading.Lock()
        self._credentials: dict[str, Any] = dict(context.credentials)

    @property
    def crm(self) -> FakeCrm:
        """The fake CRM behind this provider (for tests and the demo)."""
        return self._crm

    def _creds(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._credentials)

    def list_stages(self) -> Mapping[str, StageCatalogue]:
        self._crm.authorize_call("stages", self._creds())
        return {"default": DEFAULT_STAGES}

    def iter_changed_deals(self, watermark: str | None) -> Iterator[DealPage]:
        if watermark is None:
            after = 0
        elif watermark.isdigit():
            after = int(watermark)
        else:
            raise InvalidRequestError("malformed fake sync watermark")
        return self._pages(after)

    def _pages(self, after: int) -> Iterator[DealPage]:
        while True:
            rows = self._crm.changes_after(after, self._page_size, self._creds())
            if not rows:
                return
            after = rows[-1].modseq
            yield DealPage(
                deals=tuple(row.deal for row in rows if row.deal is not None),
                watermark=str(after),
                deleted_ids=tuple(row.deal_id for row in rows if row.deal is None),
            )
            if len(rows) < self._page_size:
                return

    def fetch_deal(self, deal_id: str) -> DealSnapshot:
        _check_deal_id(deal_id)
        return self._crm.fetch(deal_id, self._creds())

    def write_notes(self, notes: Sequence[NoteRequest]) -> list[NoteResult]:
        if not notes:
            return []
        return self._crm.write_notes(list(notes), self._creds())

    def find_note(self, deal_id: str, marker: str) -> str | None:
        _check_deal_id(deal_id)
        if not marker.strip():
            raise InvalidRequestError("an empty marker would match every note")
        return self._crm.find_note(deal_id, marker, self._creds())

    def update_summaries(self, updates: Sequence[SummaryUpdate]) -> list[SummaryResult]:
        """One call per deal (the fake has no batch endpoint); failures per deal."""
        results: list[SummaryResult] = []
        for update in updates:
            try:
                _check_deal_id(update.deal_id)
                fields = update.fields
                if any(not key or not isinstance(value, str) for key, value in fields.items()):
                    raise InvalidRequestError("summary fields need names and string values")
                if fields:
                    self._crm.update_fields(update.deal_id, dict(fields), self._creds())
            except (AuthError, RetriableError):
                raise
            except ProviderError as exc:
                results.append(SummaryResult(update.deal_id, error=exc))
                continue
            results.append(SummaryResult(update.deal_id))
        return results

    def api_usage(self) -> ApiUsage | None:
        """The fake's daily allowance (``FakeCrm.set_daily_limit``), counting every call."""
        usage = self._crm.daily_usage()
        return None if usage is None else ApiUsage(used=usage[0], limit=usage[1])

    def refresh_credentials(self) -> Mapping[str, Any]:
        fresh = self._crm.refresh(self._creds())
        with self._lock:
            self._credentials.update(fresh)
        return dict(fresh)


# ---------------------------------------------------------------- webhooks


def sign_fake_webhook(body: bytes, secret: str, timestamp: int) -> dict[str, str]:
    """The headers that make ``body`` an authentic fake-CRM webhook sent at ``timestamp``."""
    return signing.sign(body, secret, timestamp, SIGNATURE_HEADER, TIMESTAMP_HEADER)


def _verify(request: InboundRequest, secret: str | None) -> None:
    signing.verify(request, secret, SIGNATURE_HEADER, TIMESTAMP_HEADER, WEBHOOK_TOLERANCE)


def _occurred_at(value: object) -> datetime:
    if not isinstance(value, str):
        raise WebhookRejected("occurred_at must be an ISO 8601 string", status=400)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise WebhookRejected("occurred_at must be an ISO 8601 string", status=400) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _identity(account: str, event_id: str, deal_id: str, kind: str, occurred: datetime) -> str:
    key = json.dumps([account, event_id, deal_id, kind, occurred.isoformat()])
    return hashlib.sha256(key.encode()).hexdigest()


def parse_fake_webhook(
    request: InboundRequest, connection: ConnectionContext, secret: str | None
) -> WebhookParse:
    """Verify and parse a fake-CRM webhook (see the module docstring for the format).

    Not authentic (no secret, missing/invalid signature, timestamp more than
    five minutes from ``received_at``): :class:`WebhookRejected` 401. Authentic
    but malformed (not JSON, wrong shape, bad deal id or time): 400. Event kinds
    other than ``stage_change``, ``created`` and ``changed`` become ``ignored``.
    ``identity`` is a SHA-256 over (account, event id, deal id, kind, occurred_at).
    """
    if len(request.body) > MAX_WEBHOOK_BODY:
        raise WebhookRejected("webhook body too large", status=413)
    _verify(request, secret)
    try:
        payload = json.loads(request.body)
    except (UnicodeDecodeError, ValueError):
        raise WebhookRejected("webhook body is not JSON", status=400) from None
    raw_events = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(raw_events, list):
        raise WebhookRejected("webhook body needs an 'events' list", status=400)
    events: list[WebhookEvent] = []
    for raw in raw_events:
        if not isinstance(raw, dict):
            raise WebhookRejected("each event must be an object", status=400)
        event_id, deal_id, kind = raw.get("id"), raw.get("deal_id"), raw.get("kind")
        if not isinstance(event_id, str) or not event_id or not isinstance(kind, str):
            raise WebhookRejected("each event needs a string id and kind", status=400)
        if not isinstance(deal_id, str) or not DEAL_ID_PATTERN.match(deal_id):
            raise WebhookRejected("event deal_id is not a fake deal id", status=400)
        occurred = _occurred_at(raw.get("occurred_at"))
        neutral: Literal["stage_change", "created", "changed", "ignored"] = "ignored"
        if kind == "stage_change":
            neutral = "stage_change"
        elif kind == "created":
            neutral = "created"
        elif kind == "changed":
            neutral = "changed"
        events.append(
            WebhookEvent(
                identity=_identity(
                    connection.external_account_id, event_id, deal_id, kind, occurred
                ),
                deal_id=deal_id,
                kind=neutral,
                occurred_at=occurred,
                detail=json.dumps(raw, separators=(",", ":"), sort_keys=True, ensure_ascii=False),
            )
        )
    reply = json.dumps({"received": len(events)}).encode()
    return WebhookParse(events=tuple(events), reply_body=reply)
