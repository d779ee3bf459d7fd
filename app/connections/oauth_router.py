"""Connecting a CRM with OAuth: one admin API route and two browser pages.

- ``POST /api/v1/connections/{id}/oauth/start`` (admin key): a single-use link,
  valid 10 minutes, for the admin to open in the browser they sign in with.
- ``GET /oauth/begin/{ticket}``: spends the link, puts a random nonce in an
  HttpOnly cookie of that browser and redirects (302) to the CRM's consent page
  with a signed ``state`` and a PKCE challenge.
- ``GET /oauth/callback/{provider}``: the CRM sends the browser back here; the
  state, the cookie and the attempt are checked (``oauth_service``), the code
  is exchanged, the tokens are stored encrypted, and a small page says what
  happened. These pages never show a token, and are left out of the OpenAPI
  document (they answer HTML to a browser, not JSON to a client).

The token endpoint calls go through ``app.state.oauth_http_client`` when set
(tests put an ``httpx.Client`` on a ``MockTransport`` there), else a new client
per request; :func:`oauth_http_client` is also a dependency to override.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Final

import httpx
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel

from app.api.deps import AdminKey, RuntimeDep, SessionDep
from app.api.problems import PROBLEM_RESPONSES, Problem
from app.config import Settings
from app.connections.oauth import (
    HTTP_TIMEOUT,
    OAUTH_PROVIDERS,
    OAuthNotConfigured,
    label,
    redirect_uri,
)
from app.connections.oauth_service import (
    OAuthFlowError,
    begin_attempt,
    claim_callback,
    complete,
    start_attempt,
)
from app.connections.router import get_connection
from app.db import utcnow

logger = logging.getLogger(__name__)

router = APIRouter()

#: The flow cookie: ``__Host-`` (Secure, path /, no Domain) when the public URL is https.
COOKIE_NAME: Final = "__Host-dealcoach_oauth"
#: Its name over plain http (sandbox, local demo), where Secure cookies would not come back.
INSECURE_COOKIE_NAME: Final = "dealcoach_oauth"
_MAX_CODE_LENGTH: Final = 4096
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}


class OAuthStartOut(BaseModel):
    """Open ``begin_url`` in the browser you sign in to the CRM with, before ``expires_at``."""

    begin_url: str
    expires_at: datetime
    redirect_uri: str


def oauth_http_client(request: Request) -> Iterator[httpx.Client]:
    """The HTTP client for the CRMs' token endpoints (injectable through the app's state)."""
    injected = getattr(request.app.state, "oauth_http_client", None)
    if isinstance(injected, httpx.Client):
        yield injected
        return
    with httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=False) as client:
        yield client


OAuthHttpClient = Annotated[httpx.Client, Depends(oauth_http_client)]


def cookie_secure(settings: Settings) -> bool:
    return settings.public_url.startswith("https://")


def cookie_name(settings: Settings) -> str:
    return COOKIE_NAME if cookie_secure(settings) else INSECURE_COOKIE_NAME


@router.post(
    "/api/v1/connections/{connection_id}/oauth/start",
    tags=["connections"],
    responses=PROBLEM_RESPONSES,
    response_model=OAuthStartOut,
)
def oauth_start(
    connection_id: str, session: SessionDep, runtime: RuntimeDep, key: AdminKey
) -> OAuthStartOut:
    """Start connecting a Salesforce or HubSpot connection with OAuth.

    Answers a single-use ``begin_url`` (valid 10 minutes) to open in the browser the
    admin signs in to the CRM with; the CRM then sends that browser back to
    ``redirect_uri`` (register it in the connected app / public app). 409 when the
    CRM's client id and secret are not configured, or for a ``fake`` connection.
    """
    connection = get_connection(session, key, connection_id)
    try:
        attempt = start_attempt(session, runtime.box, connection, runtime.settings, key.key_id)
    except OAuthNotConfigured as exc:
        raise Problem(409, str(exc)) from None
    session.commit()
    settings = runtime.settings
    return OAuthStartOut(
        begin_url=f"{settings.public_url}/oauth/begin/{attempt.ticket}",
        expires_at=attempt.expires_at,
        redirect_uri=redirect_uri(connection.provider, settings),
    )


@router.get("/oauth/begin/{ticket}", include_in_schema=False)
def oauth_begin(ticket: str, session: SessionDep, runtime: RuntimeDep) -> Response:
    settings = runtime.settings
    try:
        begun = begin_attempt(session, runtime.box, settings, ticket)
    except OAuthFlowError as exc:
        session.commit()
        return _page("Not connected", exc.message, exc.status)
    session.commit()
    response = RedirectResponse(begun.authorize_url, status_code=302)
    for name, value in _PAGE_HEADERS.items():
        response.headers[name] = value
    max_age = max(1, int((begun.expires_at - utcnow()).total_seconds()))
    response.set_cookie(
        cookie_name(settings),
        begun.nonce,
        max_age=max_age,
        path="/",
        secure=cookie_secure(settings),
        httponly=True,
        samesite="lax",
    )
    return response


@router.get("/oauth/callback/{provider}", include_in_schema=False)
def oauth_callback(
    provider: str,
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    client: OAuthHttpClient,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> Response:
    settings = runtime.settings
    kind = next((p for p in OAUTH_PROVIDERS if p.value == provider), None)
    if kind is None:
        return _page("Not found", "There is no such sign-in callback.", 404)
    name = label(kind)
    cookie = request.cookies.get(cookie_name(settings))

    if error is not None:
        shown = error if _ERROR_CODE.match(error) else "error"
        spent = False
        try:  # an answer for a genuine attempt of this browser spends the attempt
            claim_callback(session, runtime.box, settings, kind, state, cookie)
            session.commit()
            spent = True
        except OAuthFlowError:
            session.rollback()
        logger.info("oauth callback from %s: the CRM answered error %s", name, shown)
        return _page(
            "Not connected",
            f"{name} did not authorise dealcoach ({shown}). Nothing was changed; "
            "start the connection again from dealcoach to retry.",
            400,
            clear_cookie=settings if spent else None,
        )
    if not code or len(code) > _MAX_CODE_LENGTH or not code.isascii():
        logger.info("oauth callback from %s refused: no usable code", name)
        return _page("Not connected", f"{name} sent no authorisation code. Nothing was changed.")

    try:
        claimed = claim_callback(session, runtime.box, settings, kind, state, cookie)
    except OAuthFlowError as exc:
        session.rollback()
        return _page("Not connected", exc.message, exc.status)
    session.commit()  # the attempt is spent before the CRM is called: a replay loses
    try:
        connection = complete(session, runtime.box, settings, claimed, code, client)
    except OAuthFlowError as exc:
        session.rollback()
        return _page("Not connected", exc.message, exc.status, clear_cookie=settings)
    session.commit()
    return _page(
        "Connected",
        f"dealcoach is connected to {name} for {connection.name}. You can close this page.",
        200,
        clear_cookie=settings,
    )


def _page(
    title: str, message: str, status: int = 400, *, clear_cookie: Settings | None = None
) -> HTMLResponse:
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="robots" content="noindex">'
        f"<title>dealcoach: {html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;"
        "padding:0 1rem;line-height:1.5}</style></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>"
    )
    response = HTMLResponse(body, status_code=status, headers=dict(_PAGE_HEADERS))
    if clear_cookie is not None:
        response.delete_cookie(
            cookie_name(clear_cookie),
            path="/",
            secure=cookie_secure(clear_cookie),
            httponly=True,
            samesite="lax",
        )
    return response


__all__ = ["COOKIE_NAME", "INSECURE_COOKIE_NAME", "OAuthStartOut", "oauth_http_client", "router"]
