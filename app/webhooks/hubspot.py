"""HubSpot's webhook endpoint, and the v3 request check it shares with the app-card routes.

``POST /webhooks/hubspot`` is the one target URL of the HubSpot app (every
connection's ``webhook_urls.hubspot``); HubSpot sends events of every portal
the app is installed in there, and each event is routed by ``portalId`` to the
connection whose ``external_account_id`` is that portal.

Authentication (:func:`verify_hubspot`): the v3 signature
(``integrations.hubspot.signature``) over the method, the full URL as HubSpot
called it (``DEALCOACH_PUBLIC_URL`` + the raw path and query when that setting
is set, else the URL of the request as received), the raw body and the
timestamp, with the app's client secret: the connection's ``webhook_secret``
(and the one it replaced, within its grace period), or, for a connection
without one, ``DEALCOACH_HUBSPOT_CLIENT_SECRET``. Events of a portal are
accepted only when the secret that verified the request is one of that
portal's connection's secrets.

Answers: 200 ``{"received": n}`` for any validly signed batch, also when its
events are ignored (other subscriptions, other object types) or belong to a
portal with no connection (logged, not stored: HubSpot would retry a 4xx for
24 hours, and an app may be installed before its connection is created);
401 when no configured secret verifies the request (or the timestamp is over
5 minutes old or in the future); 400 for a body that is not a JSON array of
events; 413 over 1 MiB. Storing goes through the inbox service
(``app.webhooks.writer.store_delivery``), like every other CRM.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.api.deps import RuntimeDep
from app.api.problems import PROBLEM_RESPONSES, Problem
from app.config import Settings
from app.connections.models import Connection, Provider
from app.connections.service import previous_webhook_secret_of, webhook_secret_of
from app.db import is_lock_error, utcnow
from app.runtime import Runtime
from app.security.crypto import SecretBox, SecretDecryptError
from app.webhooks.router import MAX_BODY_BYTES, STORE_TRIES
from app.webhooks.writer import store_delivery
from integrations.base import WebhookEvent, WebhookRejected
from integrations.hubspot.signature import SignatureError, verify_v3
from integrations.hubspot.webhooks import parse_batch, portal_ids

logger = logging.getLogger(__name__)

receiver = APIRouter(prefix="/webhooks", tags=["webhooks"], responses=PROBLEM_RESPONSES)


# ---------------------------------------------------------------- the request as signed


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, up to ``limit`` bytes (413 beyond, checked before reading it all)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Problem(413, "the request body is too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Problem(413, "the request body is too large")
    return bytes(body)


def signed_url(request: Request, settings: Settings) -> str:
    """The full URL HubSpot signed: ``DEALCOACH_PUBLIC_URL`` (when set) or the request's
    own scheme and host, then the path and query string exactly as received."""
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else request.url.path
    path = path.split("?", 1)[0]
    query = request.scope.get("query_string", b"")
    query_text = query.decode("latin-1") if isinstance(query, bytes) else str(query)
    base = settings.explicit_public_url or f"{request.url.scheme}://{request.url.netloc}"
    return base + path + (f"?{query_text}" if query_text else "")


# ---------------------------------------------------------------- verification


@dataclass(frozen=True, slots=True)
class Verified:
    """Which connections the verified request may speak for."""

    connections: tuple[Connection, ...]


def _safe_secret(read: Any, box: SecretBox, connection: Connection) -> str | None:
    try:
        value: str | None = read(box, connection)
    except SecretDecryptError:
        logger.warning("the webhook secret of connection %s cannot be decrypted", connection.id)
        return None
    return value


def accepted_secrets(box: SecretBox, settings: Settings, connection: Connection) -> list[str]:
    """The secrets a HubSpot request for this connection may be signed with."""
    current = _safe_secret(webhook_secret_of, box, connection)
    secrets = [current] if current else []
    if not current and settings.hubspot_client_secret:
        secrets.append(settings.hubspot_client_secret)
    previous = _safe_secret(previous_webhook_secret_of, box, connection)
    if previous:
        secrets.append(previous)
    return secrets


def hubspot_connections(session: Session, portals: Sequence[str] | None) -> list[Connection]:
    """HubSpot connections of these portals (None: all of them)."""
    query = select(Connection).where(Connection.provider == Provider.HUBSPOT)
    if portals is not None:
        if not portals:
            return []
        query = query.where(Connection.external_account_id.in_(list(portals)))
    return list(session.scalars(query))


def verify_hubspot(
    runtime: Runtime,
    connections: Sequence[Connection],
    *,
    method: str,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
) -> Verified:
    """Check the v3 signature against the secrets of ``connections`` and the deployment's
    client secret; the connections that accept the secret that matched. Raises
    :class:`Problem` 401 (never naming a secret) when none matches."""
    settings, box = runtime.settings, runtime.box
    accepted = {c.id: accepted_secrets(box, settings, c) for c in connections}
    candidates: list[str] = []
    for secrets in accepted.values():
        candidates.extend(s for s in secrets if s not in candidates)
    deployment = settings.hubspot_client_secret
    if deployment and deployment not in candidates:
        candidates.append(deployment)
    try:
        index = verify_v3(
            method=method, uri=url, body=body, headers=headers, secrets=candidates, now=utcnow()
        )
    except SignatureError as exc:
        logger.info("HubSpot request to %s refused: %s", url.split("?", 1)[0], exc)
        raise Problem(401, f"HubSpot signature: {exc}") from None
    matched = candidates[index].encode()
    allowed = tuple(
        c
        for c in connections
        if any(hmac.compare_digest(matched, s.encode()) for s in accepted[c.id])
    )
    return Verified(allowed)


# ---------------------------------------------------------------- the webhook


@receiver.post("/hubspot", summary="HubSpot webhooks (v3 signature); events routed by portalId")
async def hubspot_webhook(request: Request, runtime: RuntimeDep) -> Response:
    body = await read_body(request)
    url = signed_url(request, runtime.settings)
    headers = dict(request.headers)
    return await run_in_threadpool(receive_hubspot, runtime, url, headers, body)


def _store(
    runtime: Runtime,
    connection: Connection,
    events: list[WebhookEvent],
    headers: Mapping[str, str],
    body: bytes,
) -> None:
    """Store one connection's events; a busy database is tried again, then a 503 (HubSpot
    delivers again), never a lost event."""
    for attempt in range(1, STORE_TRIES + 1):
        try:
            store_delivery(runtime.sessions, connection, events, headers, body)
            return
        except Exception as exc:
            if not is_lock_error(exc):
                raise
            logger.warning(
                "HubSpot webhook for %s: the database stayed busy (try %d of %d)",
                connection.id,
                attempt,
                STORE_TRIES,
            )
    raise Problem(503, "the service is busy; retry the delivery", headers={"Retry-After": "5"})


def receive_hubspot(
    runtime: Runtime, url: str, headers: Mapping[str, str], body: bytes
) -> Response:
    """Verify, route by portal, store each new event once, enqueue reviews after commit."""
    portals = portal_ids(body)
    with runtime.sessions() as session:
        # A body that names no portal (not JSON, say) is checked against every HubSpot
        # connection's secret, so that an authentic malformed body gets a clear 400.
        connections = hubspot_connections(session, portals or None)
        verified = verify_hubspot(
            runtime, connections, method="POST", url=url, body=body, headers=headers
        )
        try:
            events = parse_batch(body)
        except WebhookRejected as exc:
            raise Problem(exc.status, str(exc)) from None
        by_portal = {c.external_account_id: c for c in verified.connections}
        unknown = sorted({e.portal_id for e in events if e.portal_id not in by_portal})
        if unknown:
            logger.info(
                "HubSpot webhook: %d event(s) of portal(s) %s without a connection "
                "(or signed with another app's secret) acknowledged and ignored",
                sum(1 for e in events if e.portal_id not in by_portal),
                ", ".join(unknown[:5]),
            )
        deliveries: list[tuple[Connection, list[WebhookEvent]]] = []
        for candidate in verified.connections:
            connection = session.get(Connection, candidate.id)
            if connection is None:
                continue
            mine = [e.event for e in events if e.portal_id == connection.external_account_id]
            if mine:
                deliveries.append((connection, mine))
    # One write per connection: every event and the doorbells, committed (with other
    # requests' deliveries on SQLite) before the answer; the review jobs leave after it.
    for connection, mine in deliveries:
        _store(runtime, connection, mine, headers, body)
    return Response(content=f'{{"received":{len(events)}}}'.encode(), media_type="application/json")
