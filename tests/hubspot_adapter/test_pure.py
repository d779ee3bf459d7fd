"""The HubSpot adapter's pure parts on small recorded-shape payloads (no HTTP)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hubspot.crm.deals import ApiException

from app.coaching.snapshot import Stage, StageCatalogue
from integrations.base import (
    AuthError,
    ConnectionContext,
    InvalidRequestError,
    NoteRequest,
    NotFoundError,
    RateLimitedError,
    RetriableError,
)
from integrations.hubspot import adapter as hs
from integrations.hubspot.adapter import HubSpotProvider, RateBudget

PIPELINES = {
    "default": StageCatalogue(
        stages=(
            Stage("appointmentscheduled", "Appointment Scheduled", 0, 0.2),
            Stage("qualifiedtobuy", "Qualified To Buy", 1, 0.4),
            Stage("closedwon", "Closed Won", 2, 1.0, is_closed=True, is_won=True),
        ),
        pipeline="default",
    )
}

# A batch-read record as HubSpot returns it (propertiesWithHistory newest first).
RECORD: dict[str, Any] = {
    "id": "1234",
    "properties": {
        "dealname": "Acme",
        "dealstage": "qualifiedtobuy",
        "pipeline": "default",
        "createdate": "2026-09-01T09:00:00.000Z",
        "hs_lastmodifieddate": "2026-09-20T10:00:00.123Z",
        "amount": "1000",
        "notes_last_updated": "2026-09-19T08:00:00.999Z",
    },
    "propertiesWithHistory": {
        "dealstage": [
            {"value": "qualifiedtobuy", "timestamp": "2026-09-05T09:00:00.000Z"},
            {"value": "appointmentscheduled", "timestamp": "2026-09-01T09:00:00.000Z"},
        ],
        "notes_last_updated": [
            {"value": "2026-09-19T08:00:00.999Z", "timestamp": "2026-09-19T08:00:01.000Z"},
            {"value": "2026-09-10T12:30:00.250Z", "timestamp": "2026-09-10T12:30:01.000Z"},
        ],
    },
    "createdAt": "2026-09-01T09:00:00.000Z",
    "updatedAt": "2026-09-20T10:00:00.123Z",
}

ASSOCIATIONS = {
    "status": "COMPLETE",
    "results": [
        {
            "from": {"id": "1234"},
            "to": [
                {
                    "toObjectId": 501,
                    "associationTypes": [
                        {"category": "HUBSPOT_DEFINED", "typeId": 3, "label": None},
                        {"category": "USER_DEFINED", "typeId": 31, "label": "Economic Buyer"},
                        {"category": "USER_DEFINED", "typeId": 32, "label": "Primary"},
                    ],
                },
                {
                    "toObjectId": 502,
                    "associationTypes": [
                        {"category": "HUBSPOT_DEFINED", "typeId": 3, "label": None}
                    ],
                },
            ],
        }
    ],
}


def test_a_batch_read_record_with_labelled_contacts_becomes_a_snapshot() -> None:
    links = hs.contacts_from_associations(ASSOCIATIONS)
    assert list(links) == ["1234"]
    snapshot = hs.build_snapshot(RECORD, links["1234"], {"501": "Ada Lovelace"}, PIPELINES)
    assert snapshot.id == "1234" and snapshot.stage.key == "qualifiedtobuy"
    assert [(c.old and c.old.key, c.new and c.new.key) for c in snapshot.stage_history] == [
        ("appointmentscheduled", "qualifiedtobuy")
    ]
    by_id = {c.id: c for c in snapshot.contacts}
    assert by_id["501"].roles == ("Economic Buyer",)  # "Primary" is not a role
    assert by_id["501"].is_primary and by_id["501"].name == "Ada Lovelace"
    assert not by_id["502"].is_primary and by_id["502"].name is None
    assert snapshot.modified_at == datetime(2026, 9, 20, 10, 0, 0, 123000, tzinfo=UTC)
    assert snapshot.stage_entered_at is None
    current = json.loads(json.dumps(RECORD))
    current["properties"]["hs_v2_date_entered_current_stage"] = "2026-09-05T09:00:00.000Z"
    entered = hs.build_snapshot(current, [], {}, PIPELINES).stage_entered_at
    assert entered == datetime(2026, 9, 5, 9, 0, tzinfo=UTC)


def test_our_own_note_does_not_move_the_last_activity() -> None:
    snapshot = hs.build_snapshot(RECORD, [], {}, PIPELINES)
    # notes_last_updated is our note (millisecond 999): the rep's earlier note counts.
    assert snapshot.last_activity_at == datetime(2026, 9, 10, 12, 30, 0, 250000, tzinfo=UTC)
    theirs = json.loads(json.dumps(RECORD))
    theirs["properties"]["notes_last_updated"] = "2026-09-19T08:00:00.500Z"
    assert hs.build_snapshot(theirs, [], {}, PIPELINES).last_activity_at == datetime(
        2026, 9, 19, 8, 0, 0, 500000, tzinfo=UTC
    )
    contacted = json.loads(json.dumps(RECORD))
    contacted["properties"]["notes_last_contacted"] = "2026-09-18T08:00:00.000Z"
    assert hs.build_snapshot(contacted, [], {}, PIPELINES).last_activity_at == datetime(
        2026, 9, 18, 8, 0, tzinfo=UTC
    )
    stamp = hs.own_note_stamp(datetime(2026, 9, 19, 8, 0, 0, 12, tzinfo=UTC))
    assert stamp.microsecond == hs.OWN_NOTE_MICROSECOND and stamp.second == 0


def test_note_body_has_the_title_the_html_and_the_marker_within_hubspots_limit() -> None:
    note = NoteRequest("1", "dc1-abc", "Review <of> Acme", "<p>Ask.</p>", "Ask.")
    body = hs.note_body(note)
    assert body.startswith("<p><strong>Review &lt;of&gt; Acme</strong></p><p>Ask.</p>")
    assert "dc1-abc" in body
    huge = NoteRequest("1", "dc1-abc", "T", "<p>" + "x" * 70_000 + "</p>", "x")
    cut = hs.note_body(huge)
    assert len(cut) <= hs.MAX_NOTE_BODY and cut.endswith("dealcoach-ref: dc1-abc</p>")


def test_207_errors_map_to_the_taxonomy_without_hubspots_text() -> None:
    item = {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": "Deal 'Secret Co' not found",
        "context": {"objectWriteTraceId": ["dc1-x"]},
    }
    error = hs.item_error(item, "note create")
    assert isinstance(error, NotFoundError) and "Secret" not in str(error)
    assert hs.error_trace_ids(item) == ["dc1-x"]
    assert isinstance(hs.item_error({"category": "VALIDATION_ERROR"}, "x"), InvalidRequestError)
    assert isinstance(hs.item_error({"category": "RATE_LIMITS"}, "x"), RateLimitedError)
    assert isinstance(hs.item_error({"category": "INTERNAL_ERROR"}, "x"), RetriableError)
    assert hs.error_trace_ids({"context": {"ids": ["7", "8"]}}, "ids") == ["7", "8"]


def test_note_association_type_comes_from_the_labels_answer() -> None:
    answer = {
        "results": [
            {"category": "USER_DEFINED", "typeId": 900, "label": "Coaching"},
            {"category": "HUBSPOT_DEFINED", "typeId": 214, "label": None},
        ]
    }
    assert hs._pick_note_type(answer) == 214
    assert hs._pick_note_type({"results": [{"category": "HUBSPOT_DEFINED", "typeId": 9}]}) == 9
    assert hs._pick_note_type(None) == hs.NOTE_TO_DEAL


def test_the_watermark_round_trips_and_rejects_garbage() -> None:
    cursor = hs._Cursor()
    at = datetime(2026, 9, 1, tzinfo=UTC)
    cursor.add(hs._version_hash("1", 1), at - timedelta(seconds=30))
    cursor.add(hs._version_hash("2", 2), at)
    encoded = cursor.encode(timedelta(minutes=5))
    assert encoded is not None
    again = hs._Cursor.parse(encoded)
    assert again.stamp == at and set(again.seen) == set(cursor.seen)
    for bad in ("yesterday", "2026-09-01T00:00:00Z|x:zz", " 2026-09-01T00:00:00Z"):
        with pytest.raises(InvalidRequestError):
            hs._Cursor.parse(bad)


def test_the_rate_budget_keeps_every_rolling_ten_seconds_under_the_limit() -> None:
    for limit in (100, 110, 150, 190):
        for share in (0.5, 0.9, 1.0):
            budget = RateBudget(limit_per_10s=limit, share=share)
            # A rolling 10 s (plus 50 ms of jitter) spans this many windows of `burst` calls.
            worst = (math.ceil(10.05 / budget.interval) + 1) * budget.burst
            assert worst <= limit, (limit, share)
            assert budget.calls_per_10s <= limit * share
    assert RateBudget(100, 0.9).calls_per_10s == 90


class _Response:
    def __init__(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.reason = "x"
        self.data = json.dumps(body).encode()
        self._headers = headers or {}

    def getheaders(self) -> dict[str, str]:
        return self._headers


def _provider(**credentials: Any) -> HubSpotProvider:
    context = ConnectionContext(
        connection_id="c1",
        provider="hubspot",
        external_account_id="123",
        instance_url=None,
        credentials=credentials or {"access_token": "pat-na1-x"},
    )
    return HubSpotProvider(context, acquire=lambda key, limit, per: 0.0)


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (
            400,
            {"category": "VALIDATION_ERROR", "message": "Property 'Secret' bad"},
            {},
            InvalidRequestError,
        ),
        (404, {"category": "OBJECT_NOT_FOUND"}, {}, NotFoundError),
        (403, {"category": "MISSING_SCOPES"}, {}, AuthError),
        (500, {"category": "INTERNAL_ERROR"}, {}, RetriableError),
        (
            429,
            {"errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"},
            {},
            RateLimitedError,
        ),
    ],
)
def test_http_errors_map_to_the_taxonomy(
    status: int, body: object, headers: dict[str, str], expected: type[Exception]
) -> None:
    error = _provider()._translate(
        "deal search", ApiException(http_resp=_Response(status, body, headers))
    )
    assert type(error) is expected
    assert "Secret" not in str(error) and "pat-" not in str(error)
    if status == 429:
        assert isinstance(error, RateLimitedError) and error.retry_after == 10.0


def test_every_sdk_package_exception_is_recognised() -> None:
    from hubspot.crm.associations.v4.schema.exceptions import ServiceException
    from hubspot.crm.objects.notes.exceptions import NotFoundException

    assert hs.is_api_exception(ServiceException(status=503, reason="x"))
    assert hs.is_api_exception(NotFoundException(status=404, reason="x"))
    assert not hs.is_api_exception(ValueError("x"))


def test_a_429_retry_after_header_and_401_refreshability() -> None:
    provider = _provider()
    limited = provider._translate(
        "x", ApiException(http_resp=_Response(429, {"policyName": "DAILY"}, {"Retry-After": "7"}))
    )
    assert isinstance(limited, RateLimitedError) and limited.retry_after == 7.0
    expired = provider._translate("x", ApiException(http_resp=_Response(401, {})))
    assert isinstance(expired, AuthError) and not expired.refreshable  # a private-app token
    oauth = _provider(auth="oauth", access_token="a", refresh_token="r")
    refused = oauth._translate("x", ApiException(http_resp=_Response(401, {})))
    assert isinstance(refused, AuthError) and refused.refreshable


def test_an_expired_oauth_token_is_not_sent() -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    provider = _provider(auth="oauth", access_token="a", refresh_token="r", expires_at=past)
    with pytest.raises(AuthError) as caught:
        provider.list_stages()
    assert caught.value.refreshable


def test_malformed_ids_and_markers_are_refused_without_a_call() -> None:
    provider = _provider()
    with pytest.raises(InvalidRequestError):
        provider.fetch_deal("12; drop")
    with pytest.raises(InvalidRequestError):
        provider.find_note("12", "dc1-x' OR")
    [result] = provider.write_notes([NoteRequest("abc", "dc1-a", "t", "<p>x</p>", "x")])
    assert isinstance(result.error, InvalidRequestError)
