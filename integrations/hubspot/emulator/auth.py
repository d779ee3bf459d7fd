"""Who may call: OAuth 2.0 access tokens (30 minutes) and private-app static tokens.

``POST /oauth/v1/token`` (form-encoded) takes ``grant_type=authorization_code``
(``code``, ``redirect_uri``, ``client_id``, ``client_secret``; a code works once)
or ``grant_type=refresh_token`` (``refresh_token``, ``client_id``,
``client_secret``; refresh tokens do not expire) and answers
``{"token_type": "bearer", "refresh_token", "access_token", "expires_in": 1800}``.
Errors are 400 ``{"status": "BAD_AUTH_CODE"|"BAD_REFRESH_TOKEN"|"BAD_CLIENT_ID"|
"BAD_CLIENT_SECRET"|"BAD_REDIRECT_URI"|"BAD_GRANT_TYPE", "message", "correlationId"}``.
A private app's token (``pat-na1-...``) never expires.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .portal import HubSpotError

__all__ = ["Auth", "OAuthError", "Token"]

ACCESS_TOKEN_TTL = 1800
DEFAULT_SCOPES = (
    "oauth",
    "crm.objects.deals.read",
    "crm.objects.deals.write",
    "crm.objects.contacts.read",
    "crm.schemas.deals.read",
    "crm.schemas.deals.write",
    "crm.objects.owners.read",
)


class OAuthError(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self, correlation_id: str) -> dict[str, Any]:
        return {"status": self.status, "message": self.message, "correlationId": correlation_id}


@dataclass
class Token:
    token: str
    kind: str  # "oauth" or "private"
    user: str
    user_id: int
    scopes: tuple[str, ...]
    expires_at: datetime | None = None
    refresh: str | None = None


@dataclass
class _Grant:
    user: str
    user_id: int
    redirect_uri: str
    scopes: tuple[str, ...]


@dataclass
class Auth:
    """The portal's OAuth app and the tokens issued for it."""

    client_id: str
    client_secret: str
    clock: Callable[[], datetime]
    user: str
    user_id: int
    ttl: int = ACCESS_TOKEN_TTL
    tokens: dict[str, Token] = field(default_factory=dict)
    refresh_tokens: dict[str, _Grant] = field(default_factory=dict)
    codes: dict[str, _Grant] = field(default_factory=dict)

    def add_private_token(self, token: str | None = None) -> str:
        value = (
            token or f"pat-na1-{secrets.token_hex(4)}-{secrets.token_hex(2)}-{secrets.token_hex(6)}"
        )
        self.tokens[value] = Token(value, "private", self.user, self.user_id, DEFAULT_SCOPES)
        return value

    def authorization_code(
        self, redirect_uri: str, scopes: tuple[str, ...] = DEFAULT_SCOPES
    ) -> str:
        """A one-time code as HubSpot puts on the redirect after the consent page."""
        code = secrets.token_hex(18)
        self.codes[code] = _Grant(self.user, self.user_id, redirect_uri, scopes)
        return code

    def _issue(self, grant: _Grant, refresh: str) -> Token:
        value = "C" + secrets.token_urlsafe(48)
        token = Token(
            value,
            "oauth",
            grant.user,
            grant.user_id,
            grant.scopes,
            self.clock() + timedelta(seconds=self.ttl),
            refresh,
        )
        self.tokens[value] = token
        return token

    def issue(self) -> tuple[str, str]:
        """(access token, refresh token) without the consent page."""
        grant = _Grant(self.user, self.user_id, "", DEFAULT_SCOPES)
        refresh = f"na1-{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(6)}"
        self.refresh_tokens[refresh] = grant
        return self._issue(grant, refresh).token, refresh

    def token(self, form: Mapping[str, str]) -> dict[str, Any]:
        """Answer ``POST /oauth/v1/token`` (raises :class:`OAuthError`)."""
        grant_type = form.get("grant_type")
        if form.get("client_id") != self.client_id:
            raise OAuthError("BAD_CLIENT_ID", "missing or unknown client id")
        if not secrets.compare_digest(
            form.get("client_secret", "").encode(), self.client_secret.encode()
        ):
            raise OAuthError("BAD_CLIENT_SECRET", "missing or invalid client secret")
        if grant_type == "authorization_code":
            grant = self.codes.pop(form.get("code", ""), None)
            if grant is None:
                raise OAuthError("BAD_AUTH_CODE", "missing or unknown auth code")
            if form.get("redirect_uri") != grant.redirect_uri:
                raise OAuthError(
                    "BAD_REDIRECT_URI", "redirect_uri does not match the authorization"
                )
            refresh = f"na1-{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(6)}"
            self.refresh_tokens[refresh] = grant
        elif grant_type == "refresh_token":
            refresh = form.get("refresh_token", "")
            found = self.refresh_tokens.get(refresh)
            if found is None:
                raise OAuthError("BAD_REFRESH_TOKEN", "missing or invalid refresh token")
            grant = found
        else:
            raise OAuthError("BAD_GRANT_TYPE", f"unsupported grant_type {grant_type!r}")
        token = self._issue(grant, refresh)
        return {
            "token_type": "bearer",
            "refresh_token": refresh,
            "access_token": token.token,
            "expires_in": self.ttl,
        }

    def check(self, header: str | None) -> Token:
        """The token of an ``Authorization: Bearer`` header (raises 401 as HubSpot does)."""
        scheme, _, value = (header or "").partition(" ")
        token = self.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            raise HubSpotError(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 "
                "authentication and you can find more details at "
                "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            )
        now = self.clock()
        if token.expires_at is not None and token.expires_at <= now:
            ago = int((now - token.expires_at).total_seconds())
            unit = "second(s)" if ago < 60 else "minute(s)"
            raise HubSpotError(
                401,
                "EXPIRED_AUTHENTICATION",
                f"The OAuth token used to make this call expired {ago if ago < 60 else ago // 60} "
                f"{unit} ago.",
            )
        return token

    def expire_all(self) -> int:
        """Every OAuth access token expires now (private-app tokens are kept)."""
        now = self.clock() - timedelta(seconds=1)
        count = 0
        for token in self.tokens.values():
            if token.kind == "oauth" and (token.expires_at is None or token.expires_at > now):
                token.expires_at = now
                count += 1
        return count

    def revoke(self, value: str) -> bool:
        """Forget a token (a private app's token rotated, an app uninstalled)."""
        return self.tokens.pop(value, None) is not None

    def info(self, value: str, hub_id: int, hub_domain: str, app_id: int) -> dict[str, Any] | None:
        """``GET /oauth/v1/access-tokens/{token}``."""
        token = self.tokens.get(value)
        if token is None or token.kind != "oauth":
            return None
        left = (
            0
            if token.expires_at is None
            else int((token.expires_at - self.clock()).total_seconds())
        )
        if left <= 0:
            return None
        return {
            "token": token.token,
            "user": token.user,
            "hub_domain": hub_domain,
            "scopes": list(token.scopes),
            "hub_id": hub_id,
            "app_id": app_id,
            "expires_in": left,
            "user_id": token.user_id,
            "token_type": "access",
        }
