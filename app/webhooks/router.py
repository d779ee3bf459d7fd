"""Webhook endpoints (the CRMs call these) and the admin view of the inbox.

A provider endpoint verifies the request, stores each event once, answers
at once with what the CRM expects, and enqueues a review only for new
events, after the commit. It never calls the CRM itself. Every endpoint is
:func:`receive` with the provider's parser (Salesforce has two formats:
Outbound Messages, authenticated by a secret token in the URL, and signed JSON).
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from app.api.deps import AdminKey, ReadKey, RuntimeDep, SessionDep, decode_cursor, encode_cursor
from app.api.problems import PROBLEM_RESPONSES, Problem
from app.connections.models import Connection, Provider
from app.connections.service import (
    SECRETS_UNREADABLE,
    context_for,
    previous_token_hash_of,
    previous_webhook_secret_of,
    token_hash,
    webhook_secret_of,
)
from app.db import is_lock_error, utcnow
from app.failpoints import failpoint
from app.runtime import Runtime
from app.security.crypto import SecretDecryptError
from app.webhooks.models import DeliveryStatus, WebhookDelivery
from app.webhooks.service import body_preview, enqueue_reviews_after_commit, replay
from app.webhooks.writer import store_delivery
from integrations.base import InboundRequest, WebhookParser, WebhookRejected
from integrations.registry import webhook_parser_for

logger = logging.getLogger(__name__)
MAX_BODY_BYTES = 1024 * 1024

receiver = APIRouter(prefix="/webhooks", tags=["webhooks"], responses=PROBLEM_RESPONSES)
router = APIRouter(
    prefix="/api/v1/webhook-deliveries", tags=["webhooks"], responses=PROBLEM_RESPONSES
)


#: Tries of a delivery's one write when the database's writer stays busy, before a 503.
STORE_TRIES = 3


async def _inbound(request: Request, runtime: Runtime, path: str | None = None) -> InboundRequest:
    """The request with its body, read up to :data:`MAX_BODY_BYTES` (413 beyond)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise Problem(413, "the webhook body is too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise Problem(413, "the webhook body is too large")
    return InboundRequest(
        method=request.method,
        url=f"{runtime.settings.public_url}{path or request.url.path}",
        headers=dict(request.headers),
        body=bytes(body),
        received_at=utcnow(),
    )


@receiver.post("/fake/{connection_id}", summary="Webhook of the fake CRM (tests, demo)")
async def fake_webhook(connection_id: str, request: Request, runtime: RuntimeDep) -> Response:
    inbound = await _inbound(request, runtime)
    parser = webhook_parser_for(Provider.FAKE.value)
    # The database work is blocking: keep it off the event loop.
    return await run_in_threadpool(receive, runtime, Provider.FAKE, connection_id, inbound, parser)


@receiver.post(
    "/salesforce/{connection_id}/outbound/{token}",
    summary="Salesforce Outbound Message (SOAP); the URL's secret token authenticates it",
)
async def salesforce_outbound_message(
    connection_id: str, token: str, request: Request, runtime: RuntimeDep
) -> Response:
    # The token is a credential: keep it out of the request as the parser sees it.
    inbound = await _inbound(request, runtime, f"/webhooks/salesforce/{connection_id}/outbound")
    parser = webhook_parser_for(Provider.SALESFORCE.value)
    return await run_in_threadpool(
        receive, runtime, Provider.SALESFORCE, connection_id, inbound, parser, token
    )


@receiver.post(
    "/salesforce/{connection_id}/events",
    summary="Salesforce stage changes as signed JSON (Flow HTTP Callout or Apex)",
)
async def salesforce_signed_json(
    connection_id: str, request: Request, runtime: RuntimeDep
) -> Response:
    inbound = await _inbound(request, runtime)
    parser = webhook_parser_for(Provider.SALESFORCE.value, "signed_json")
    return await run_in_threadpool(
        receive, runtime, Provider.SALESFORCE, connection_id, inbound, parser
    )


def _url_token_ok(connection: Connection, url_token: str | None) -> bool:
    """The URL's token is the connection's, or the one it replaced within the grace
    period (both compared in constant time, both always compared)."""
    if url_token is None:
        return True  # the endpoint is not authenticated by its URL
    given = token_hash(url_token).encode()
    matches = False
    for expected in (connection.webhook_token_hash, previous_token_hash_of(connection)):
        if expected and hmac.compare_digest(given, expected.encode()):
            matches = True
    return matches


def receive(
    runtime: Runtime,
    provider: Provider,
    connection_id: str,
    inbound: InboundRequest,
    parser: WebhookParser,
    url_token: str | None = None,
) -> Response:
    """Verify, store each new event once, enqueue its deal's review after the commit.

    ``url_token`` is the secret path segment of an endpoint authenticated by its
    URL (Salesforce Outbound Messages); a wrong one gets the same 404 as an
    unknown connection. The reply is the parser's (``WebhookParse.reply_body``).
    """
    for attempt in range(1, STORE_TRIES + 1):
        try:
            return _receive_once(runtime, provider, connection_id, inbound, parser, url_token)
        except Exception as exc:
            if not is_lock_error(exc):
                raise
            logger.warning(
                "webhook for %s: the database stayed busy (try %d of %d)",
                connection_id,
                attempt,
                STORE_TRIES,
            )
    # Nothing was stored: the CRM retries the delivery (Salesforce for 24 h).
    raise Problem(503, "the service is busy; retry the delivery", headers={"Retry-After": "5"})


def _receive_once(
    runtime: Runtime,
    provider: Provider,
    connection_id: str,
    inbound: InboundRequest,
    parser: WebhookParser,
    url_token: str | None,
) -> Response:
    with runtime.sessions() as session:
        connection = session.get(Connection, connection_id)
        if (
            connection is None
            or connection.provider != provider
            or not _url_token_ok(connection, url_token)
        ):
            raise Problem(404, "no such webhook endpoint")
        try:
            context = context_for(runtime.box, connection)
            secret = webhook_secret_of(runtime.box, connection)
        except SecretDecryptError:
            # This connection only: its secrets are unreadable; the others are unaffected.
            logger.warning("webhook for %s refused: %s", connection_id, SECRETS_UNREADABLE)
            raise Problem(503, SECRETS_UNREADABLE) from None
        try:
            try:
                parsed = parser(inbound, context, secret)
            except WebhookRejected as exc:
                # Signed before the secret was rotated: the old one, within its grace.
                previous = previous_webhook_secret_of(runtime.box, connection)
                if exc.status != 401 or previous is None:
                    raise
                parsed = parser(inbound, context, previous)
        except WebhookRejected as exc:
            logger.info("webhook for %s rejected: %s", connection_id, exc)
            raise Problem(exc.status, str(exc)) from None
    # One write: every event and the doorbells, committed (with other requests' deliveries
    # on SQLite) before the answer; the review jobs leave after the commit.
    store_delivery(runtime.sessions, connection, parsed.events, inbound.headers, inbound.body)
    failpoint("after_inbox_insert")
    return Response(
        content=parsed.reply_body or b'{"status":"ok"}',
        media_type=parsed.reply_content_type,
        status_code=200,
    )


def delivery_out(row: WebhookDelivery, with_body: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "connection_id": row.connection_id,
        "provider": str(row.provider),
        "identity": row.identity,
        "received_at": row.received_at.isoformat(),
        "status": str(row.status),
        "attempts": row.attempts,
        "processed_at": row.processed_at.isoformat() if row.processed_at else None,
        "error": row.error,
        "deal_ids": list(row.deal_external_ids or []),
    }
    if with_body:
        out["headers"] = row.headers
        out["body"] = body_preview(row)
    return out


@router.get("")
def list_deliveries(
    session: SessionDep,
    key: ReadKey,
    connection_id: str | None = None,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    query = select(WebhookDelivery).order_by(WebhookDelivery.id)
    query = key.visible(query, WebhookDelivery.connection_id, connection_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if cursor is not None:
        query = query.where(WebhookDelivery.id > decode_cursor(cursor))
    rows = session.scalars(query.limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [delivery_out(r) for r in rows],
        "next_cursor": encode_cursor(rows[-1].id) if more else None,
    }


def _delivery(session: SessionDep, key: ReadKey, delivery_id: str) -> WebhookDelivery:
    return key.get(session, WebhookDelivery, delivery_id, "delivery")


@router.get("/{delivery_id}")
def get_delivery(delivery_id: str, session: SessionDep, key: ReadKey) -> dict[str, Any]:
    return delivery_out(_delivery(session, key, delivery_id), with_body=True)


@router.post("/{delivery_id}/replay", status_code=202)
def replay_delivery(
    delivery_id: str, session: SessionDep, runtime: RuntimeDep, key: AdminKey
) -> dict[str, Any]:
    """Process the delivery again: its deals are reviewed (a note is written only if
    the review differs from the last one written)."""
    row = _delivery(session, key, delivery_id)
    if row.connection_id is None:
        raise Problem(409, "the delivery's connection was deleted")
    replay(session, row)
    out = delivery_out(row)
    deal_ids = [deal_id for deal_id in row.deal_external_ids or [] if deal_id]
    enqueue_reviews_after_commit(session, row.connection_id, deal_ids, delay=0)
    session.commit()
    return out
