"""The in-CRM card endpoints (``/cards/v1``) and the admin routes of card keys.

Contract: ``CARD_API.md`` of the design folder, documented in docs/api.md.

- Salesforce (``/cards/v1/salesforce/opportunities/{id}/...``): the header
  ``X-Dealcoach-Card-Key`` carries a card key (``app/cards/keys.py``), which
  names the one connection the request may read; API keys are not accepted.
- HubSpot (``/cards/v1/hubspot/deals/{id}/...``): ``hubspot.fetch`` cannot send
  headers, so the request is authenticated by HubSpot's v3 signature over the
  full URL as received (with the ``portalId``, ``userId`` and ``appId`` query
  parameters HubSpot adds) and the body, checked exactly like the webhooks
  (``app.webhooks.hubspot.verify_hubspot``); ``portalId`` names the connection,
  ``userId`` the user.

A card reads only deals of its own connection: another connection's deal is
not found (404), like a deal that was never reviewed.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.api.deps import AdminKey, ReadKey, RuntimeDep, SessionDep
from app.api.problems import PROBLEM_RESPONSES, Problem
from app.cards.keys import (
    HEADER,
    authenticate_card_key,
    card_key_out,
    create_card_key,
    list_card_keys,
    revoke_card_key,
)
from app.cards.models import CardKey
from app.connections.models import Connection, Provider
from app.deals.service import get_snapshot_row
from app.feedback.service import (
    arrange_prompt_dicts,
    deal_filter,
    record_card_feedback,
    user_verdicts,
)
from app.reviews.models import Review, Verdict
from app.runtime import Runtime
from app.webhooks.hubspot import hubspot_connections, read_body, signed_url, verify_hubspot
from integrations.salesforce.webhooks import is_opportunity_id, is_salesforce_id

router = APIRouter(prefix="/cards/v1", tags=["cards"], responses=PROBLEM_RESPONSES)
admin_router = APIRouter(prefix="/api/v1", tags=["cards"], responses=PROBLEM_RESPONSES)

NO_REVIEW_TYPE: Final = "https://dealcoach.dev/problems/no-review"
#: A feedback body is a few short strings: anything larger is refused (413).
MAX_FEEDBACK_BODY: Final = 16 * 1024
_MAX_TEXT: Final = 2000
_MAX_EVIDENCE_VALUE: Final = 500
_MAX_USER_ID: Final = 64
_USER_PREFIX: Final = "005"


# ---------------------------------------------------------------- who is asking


@dataclass(frozen=True, slots=True)
class CardCaller:
    """The connection a card request may read, and the CRM user behind it."""

    connection_id: str
    user_id: str | None
    card_key_id: str | None = None


_card_key_header = APIKeyHeader(
    name=HEADER,
    auto_error=False,
    scheme_name="CardKey",
    description="A card key from `dealcoach cardkey create` (one connection's cards only).",
)


def salesforce_card(
    session: SessionDep, key: Annotated[str | None, Depends(_card_key_header)]
) -> CardKey:
    """The card key of the request (401 when missing, unknown, revoked, or not a
    Salesforce connection's)."""
    if not key:
        raise Problem(401, f"a card key is required: {HEADER}: <key>")
    found = authenticate_card_key(session, key)
    if found is None:
        raise Problem(401, "the card key is unknown or revoked")
    connection = session.get(Connection, found.connection_id)
    if connection is None or connection.provider != Provider.SALESFORCE:
        raise Problem(401, "this card key is not for a Salesforce connection")
    session.commit()  # last_used_at
    return found


SalesforceCard = Annotated[CardKey, Depends(salesforce_card)]


def _salesforce_user(value: object, field: str) -> str:
    if not is_salesforce_id(value, _USER_PREFIX):
        raise Problem(
            422,
            f"{field}: not a Salesforce user id (005..., 15 or 18 characters)",
            errors=[{"field": field, "message": "not a Salesforce user id"}],
        )
    return value


def _opportunity(opportunity_id: str) -> str:
    if not is_opportunity_id(opportunity_id):
        raise Problem(
            422,
            "opportunity_id: not a Salesforce Opportunity id (006..., 15 or 18 characters)",
            errors=[{"field": "opportunity_id", "message": "not an Opportunity id"}],
        )
    return opportunity_id


def _hubspot_id(value: str | None, field: str) -> str:
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 20:
        raise Problem(
            422,
            f"{field}: a numeric HubSpot id is required",
            errors=[{"field": field, "message": "a numeric HubSpot id is required"}],
        )
    return value


def _hubspot_caller(
    runtime: Runtime,
    session: Session,
    request: Request,
    body: bytes,
    deal_id: str,
    *,
    need_user: bool,
) -> CardCaller:
    """Verify a ``hubspot.fetch`` request; its portal's connection and its user
    (``userId``: required when ``need_user``, else optional)."""
    portal = request.query_params.get("portalId")
    # Only digits reach the database; a request without them is not HubSpot's (401).
    if portal is None or not portal.isascii() or not portal.isdigit() or len(portal) > 20:
        raise Problem(401, "HubSpot signature: the portalId query parameter is missing")
    connections = hubspot_connections(session, [portal])
    verified = verify_hubspot(
        runtime,
        connections,
        method=request.method,
        url=signed_url(request, runtime.settings),
        body=body,
        headers=dict(request.headers),
    )
    if not verified.connections:
        if connections:
            raise Problem(401, "HubSpot signature: not signed with this portal's app secret")
        raise Problem(404, "no connection for this HubSpot account")
    raw_user = request.query_params.get("userId")
    user = _hubspot_id(raw_user, "userId") if raw_user is not None or need_user else None
    _hubspot_id(deal_id, "deal_id")
    return CardCaller(verified.connections[0].id, user)


# ---------------------------------------------------------------- the review view


def _clean(value: object, limit: int = _MAX_TEXT) -> str:
    """CRM text for a card: control characters dropped, length capped."""
    if value is None:
        return ""
    text = str(value)
    text = "".join(
        ch for ch in text if ch in "\n\t" or not unicodedata.category(ch).startswith("C")
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def latest_review(session: Session, connection_id: str, deal_id: str) -> Review:
    """The deal's latest stored review (previews excluded), else the no-review 404."""
    review = session.scalar(
        select(Review)
        .where(
            Review.connection_id == connection_id,
            Review.deal_external_id == deal_id,
            Review.dry_run.is_(False),
        )
        .order_by(Review.created_at.desc(), Review.id.desc())
        .limit(1)
    )
    if review is None:
        raise Problem(
            404,
            "this deal has not been reviewed yet (it is, after its next change or sync)",
            type=NO_REVIEW_TYPE,
            title="No review yet",
        )
    return review


def _prompt_out(prompt: dict[str, Any], verdicts: dict[str, str]) -> dict[str, Any]:
    prompt_id = str(prompt.get("id"))
    return {
        "id": prompt_id,
        "text": _clean(prompt.get("text")),
        "why": _clean(prompt.get("why")),
        "severity": prompt.get("severity"),
        "signal": prompt.get("signal"),
        "feedback": verdicts.get(prompt_id),
    }


def _signal_out(signal: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": signal.get("code"),
        "severity": signal.get("severity"),
        "message": _clean(signal.get("message")),
        "evidence": [
            {
                "field": _clean(item.get("field"), 200),
                "value": None
                if item.get("value") is None
                else _clean(item.get("value"), _MAX_EVIDENCE_VALUE),
                "at": item.get("at"),
            }
            for item in (signal.get("evidence") or [])[:20]
        ],
    }


def review_view(
    runtime: Runtime, session: Session, caller: CardCaller, deal_id: str
) -> dict[str, Any]:
    review = latest_review(session, caller.connection_id, deal_id)
    feedback = deal_filter(session, caller.connection_id, deal_id)
    prompts = arrange_prompt_dicts(review.prompts or [], feedback)
    verdicts = user_verdicts(session, caller.connection_id, deal_id, caller.user_id)
    snapshot = get_snapshot_row(session, caller.connection_id, deal_id)
    data = snapshot.data if snapshot is not None else {}
    raw_stage = data.get("stage")
    stage: dict[str, Any] = raw_stage if isinstance(raw_stage, dict) else {}
    return {
        "deal_id": deal_id,
        "deal_name": _clean(snapshot.name if snapshot is not None else "", 500),
        "stage": _clean(stage.get("label") or (snapshot.stage_key if snapshot else ""), 255),
        "reviewed_at": review.created_at.isoformat().replace("+00:00", "Z"),
        "health": {"score": review.health_score, "band": review.health_band},
        "summary": _clean(review.summary),
        "manager": [_prompt_out(p, verdicts) for p in prompts if p.get("audience") == "manager"],
        "rep": [_prompt_out(p, verdicts) for p in prompts if p.get("audience") == "rep"],
        "signals": [_signal_out(s) for s in (review.signals or [])[:50]],
        "review_url": f"{runtime.settings.public_url}/api/v1/reviews/{review.id}",
    }


# ---------------------------------------------------------------- feedback


def _feedback_body(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise Problem(400, "the body is not JSON") from None
    if not isinstance(payload, dict):
        raise Problem(400, "the body must be a JSON object")
    return payload


def _field_error(field: str, message: str) -> Problem:
    return Problem(422, f"{field}: {message}", errors=[{"field": field, "message": message}])


def record_feedback(
    session: Session, caller: CardCaller, deal_id: str, payload: dict[str, Any]
) -> dict[str, Any]:
    prompt_id = payload.get("prompt_id")
    verdict = payload.get("verdict")
    if not isinstance(prompt_id, str) or not 1 <= len(prompt_id) <= 128:
        raise _field_error("prompt_id", "a prompt id of the deal's latest review is required")
    if verdict not in (Verdict.USEFUL.value, Verdict.NOISE.value):
        raise _field_error("verdict", "must be 'useful' or 'noise'")
    review = latest_review(session, caller.connection_id, deal_id)
    prompt = next((p for p in review.prompts or [] if p.get("id") == prompt_id), None)
    if prompt is None:
        raise _field_error("prompt_id", "not a prompt of the deal's latest review")
    assert caller.user_id is not None
    row = record_card_feedback(
        session,
        connection_id=caller.connection_id,
        deal_id=deal_id,
        review=review,
        prompt=prompt,
        verdict=Verdict(verdict),
        crm_user_id=caller.user_id,
        card_key_id=caller.card_key_id,
    )
    return {
        "prompt_id": prompt_id,
        "verdict": verdict,
        "recorded_at": row.updated_at.isoformat().replace("+00:00", "Z"),
    }


# ---------------------------------------------------------------- Salesforce routes


@router.get("/salesforce/opportunities/{opportunity_id}/review")
def salesforce_review(
    opportunity_id: str,
    session: SessionDep,
    runtime: RuntimeDep,
    card: SalesforceCard,
    user_id: Annotated[str | None, Query(max_length=_MAX_USER_ID)] = None,
) -> dict[str, Any]:
    """The latest review of an opportunity of the card key's connection."""
    deal_id = _opportunity(opportunity_id)
    user = _salesforce_user(user_id, "user_id") if user_id is not None else None
    return review_view(runtime, session, CardCaller(card.connection_id, user, card.id), deal_id)


@router.post(
    "/salesforce/opportunities/{opportunity_id}/feedback", status_code=status.HTTP_201_CREATED
)
async def salesforce_feedback(
    opportunity_id: str, request: Request, runtime: RuntimeDep, card: SalesforceCard
) -> dict[str, Any]:
    """``{"prompt_id", "verdict": "useful" | "noise", "user_id": "005..."}``."""
    deal_id = _opportunity(opportunity_id)
    payload = _feedback_body(await read_body(request, MAX_FEEDBACK_BODY))
    user = _salesforce_user(payload.get("user_id"), "user_id")
    caller = CardCaller(card.connection_id, user, card.id)

    def work() -> dict[str, Any]:
        with runtime.sessions() as session:
            return record_feedback(session, caller, deal_id, payload)

    return await run_in_threadpool(work)


# ---------------------------------------------------------------- HubSpot routes


@router.get("/hubspot/deals/{deal_id}/review")
async def hubspot_review(deal_id: str, request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    """The latest review of a deal of the signed request's portal."""

    body = await read_body(request, MAX_FEEDBACK_BODY)  # empty from hubspot.fetch

    def work() -> dict[str, Any]:
        with runtime.sessions() as session:
            caller = _hubspot_caller(runtime, session, request, body, deal_id, need_user=False)
            return review_view(runtime, session, caller, deal_id)

    return await run_in_threadpool(work)


@router.post("/hubspot/deals/{deal_id}/feedback", status_code=status.HTTP_201_CREATED)
async def hubspot_feedback(deal_id: str, request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    """``{"prompt_id", "verdict"}``; the user is the signed query's ``userId`` (a
    ``user_id`` in the body is ignored)."""
    body = await read_body(request, MAX_FEEDBACK_BODY)

    def work() -> dict[str, Any]:
        with runtime.sessions() as session:
            caller = _hubspot_caller(runtime, session, request, body, deal_id, need_user=True)
            return record_feedback(session, caller, deal_id, _feedback_body(body))

    return await run_in_threadpool(work)


# ---------------------------------------------------------------- admin: card keys


class CardKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("card", min_length=1, max_length=200, description="What the key is for.")


@admin_router.post("/connections/{connection_id}/card-keys", status_code=201)
def create_key(
    connection_id: str, body: CardKeyRequest, session: SessionDep, key: AdminKey
) -> dict[str, Any]:
    """A card key for this connection's cards, shown once (``key``)."""
    connection = key.get(session, Connection, connection_id, "connection")
    try:
        row, plaintext = create_card_key(session, connection, body.name)
    except ValueError as exc:
        raise _field_error("name", str(exc)) from None
    session.commit()
    return {**card_key_out(row), "key": plaintext}


@admin_router.get("/connections/{connection_id}/card-keys")
def list_keys(connection_id: str, session: SessionDep, key: ReadKey) -> dict[str, Any]:
    key.get(session, Connection, connection_id, "connection")
    return {"items": [card_key_out(row) for row in list_card_keys(session, connection_id)]}


@admin_router.post("/connections/{connection_id}/card-keys/{key_id}/revoke")
def revoke_key(
    connection_id: str, key_id: str, session: SessionDep, key: AdminKey
) -> dict[str, Any]:
    key.get(session, Connection, connection_id, "connection")
    row = session.get(CardKey, key_id)
    if row is None or row.connection_id != connection_id:
        raise Problem(404, "no such card key")
    revoke_card_key(session, row)
    session.commit()
    return card_key_out(row)
