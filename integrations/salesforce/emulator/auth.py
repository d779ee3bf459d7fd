"""Sessions and the login endpoints: ``/services/oauth2/token`` and the SOAP ``login``.

Grants: ``password`` (dev only: connected app + username + password[+token]),
``refresh_token``, ``authorization_code`` (codes come from
:meth:`Auth.authorization_code`; there is no ``/authorize`` page),
``urn:ietf:params:oauth:grant-type:jwt-bearer`` (an RS256 JWT whose ``iss`` is a
connected app's client id, verified against the public keys registered for it;
``sub`` a username; ``aud`` login/test.salesforce.com, a My Domain or the
emulator's URL; ``exp`` in the future) and ``client_credentials`` (HTTP Basic or
form client id/secret; the app's run-as user). Answers are Salesforce's:
``{access_token, instance_url, id, token_type, issued_at, signature[, refresh_token,
scope]}``, where ``signature`` is base64(HMAC-SHA256(client secret, id + issued_at));
errors are 400 ``{"error", "error_description"}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = ["Auth", "ConnectedApp", "OAuthError", "Session", "UserLogin"]

_PARTNER = "urn:partner.soap.sforce.com"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


@dataclass
class UserLogin:
    user_id: str
    username: str
    password: str | None = None
    security_token: str = ""


@dataclass
class ConnectedApp:
    client_id: str
    client_secret: str
    public_keys: list[str] = field(default_factory=list)  # PEM, for the JWT bearer flow
    run_as: str | None = None  # client credentials flow: the execution user's id


@dataclass
class Session:
    token: str
    user_id: str
    client_id: str | None
    issued_at: datetime
    last_used: datetime


class Auth:
    """Users' credentials, connected apps and live sessions of one org."""

    def __init__(self, org_id: str, clock: Callable[[], datetime]) -> None:
        self.org_id = org_id
        self.clock = clock
        self.users: dict[str, UserLogin] = {}  # by lower-case username
        self.apps: dict[str, ConnectedApp] = {}
        self.sessions: dict[str, Session] = {}
        self.refresh_tokens: dict[str, tuple[str, str]] = {}  # token -> (user id, client id)
        self.codes: dict[str, tuple[str, str, str | None, str | None]] = {}
        self.session_ttl: float | None = None  # seconds of inactivity; None: no timeout

    # ---------------------------------------------------------------- registry

    def add_user(
        self, user_id: str, username: str, password: str | None, security_token: str = ""
    ) -> None:
        self.users[username.lower()] = UserLogin(user_id, username, password, security_token)

    def add_app(self, app: ConnectedApp) -> None:
        self.apps[app.client_id] = app

    def user_by_name(self, username: str) -> UserLogin | None:
        return self.users.get(username.lower())

    # ---------------------------------------------------------------- sessions

    def issue(self, user_id: str, client_id: str | None = None) -> Session:
        now = self.clock()
        token = f"{self.org_id[:15]}!{secrets.token_urlsafe(48)}"
        session = Session(token, user_id, client_id, now, now)
        self.sessions[token] = session
        return session

    def check(self, token: str) -> Session | None:
        session = self.sessions.get(token)
        if session is None:
            return None
        now = self.clock()
        if self.session_ttl is not None and (
            (now - session.last_used).total_seconds() > self.session_ttl
        ):
            del self.sessions[token]
            return None
        session.last_used = now
        return session

    def expire_all(self) -> int:
        """Invalidate every access token (refresh tokens stay valid). How many were live."""
        count = len(self.sessions)
        self.sessions.clear()
        return count

    def refresh_token(self, user_id: str, client_id: str) -> str:
        token = f"5Aep{secrets.token_urlsafe(60)}"
        self.refresh_tokens[token] = (user_id, client_id)
        return token

    def authorization_code(
        self,
        user_id: str,
        client_id: str,
        redirect_uri: str | None = None,
        code_challenge: str | None = None,
    ) -> str:
        code = f"aPrx{secrets.token_urlsafe(40)}"
        self.codes[code] = (user_id, client_id, redirect_uri, code_challenge)
        return code

    # ---------------------------------------------------------------- OAuth token endpoint

    def token(
        self, form: Mapping[str, str], authorization: str | None, base_url: str
    ) -> dict[str, Any]:
        """Answer a token request (the form fields); :class:`OAuthError` if refused."""
        grant = form.get("grant_type", "")
        if grant == "password":
            app = self._client(form, authorization, require_secret=True)
            user = self._password_user(form.get("username", ""), form.get("password", ""))
            if user is None:
                raise OAuthError("invalid_grant", "authentication failure")
            return self._answer(user.user_id, app, base_url, refresh=False)
        if grant == "refresh_token":
            app = self._client(form, authorization, require_secret=False)
            entry = self.refresh_tokens.get(form.get("refresh_token", ""))
            if entry is None or entry[1] != app.client_id:
                raise OAuthError("invalid_grant", "expired access/refresh token")
            return self._answer(entry[0], app, base_url, refresh=False)
        if grant == "authorization_code":
            app = self._client(form, authorization, require_secret=False)
            code = self.codes.pop(form.get("code", ""), None)
            if code is None or code[1] != app.client_id:
                raise OAuthError("invalid_grant", "invalid authorization code")
            user_id, _, redirect, challenge = code
            if redirect is not None and form.get("redirect_uri") != redirect:
                raise OAuthError("redirect_uri_mismatch", "redirect_uri must match configuration")
            if challenge is not None:
                verifier = form.get("code_verifier", "").encode()
                computed = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest())
                if computed.rstrip(b"=").decode() != challenge:
                    raise OAuthError("invalid_grant", "invalid code verifier")
            elif not form.get("client_secret") and not authorization:
                raise OAuthError("invalid_client", "invalid client credentials")
            return self._answer(user_id, app, base_url, refresh=True)
        if grant == JWT_GRANT:
            user_id, app = self._jwt(form.get("assertion", ""), base_url)
            return self._answer(user_id, app, base_url, refresh=False)
        if grant == "client_credentials":
            app = self._client(form, authorization, require_secret=True)
            if app.run_as is None:
                raise OAuthError("invalid_grant", "no client credentials user enabled")
            return self._answer(app.run_as, app, base_url, refresh=False)
        raise OAuthError("unsupported_grant_type", "grant type not supported")

    def _client(
        self, form: Mapping[str, str], authorization: str | None, *, require_secret: bool
    ) -> ConnectedApp:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip()).decode("utf-8")
            except (binascii.Error, UnicodeError):
                raise OAuthError("invalid_client", "invalid client credentials") from None
            client_id, _, secret = decoded.partition(":")
        app = self.apps.get(client_id or "")
        if app is None:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if (require_secret or secret) and not hmac.compare_digest(
            (secret or "").encode(), app.client_secret.encode()
        ):
            raise OAuthError("invalid_client", "invalid client credentials")
        return app

    def _password_user(self, username: str, password: str) -> UserLogin | None:
        user = self.user_by_name(username)
        if user is None or user.password is None:
            return None
        accepted = {user.password, user.password + user.security_token}
        if not user.security_token:
            accepted = {user.password}
        return user if password in accepted else None

    def _answer(
        self, user_id: str, app: ConnectedApp, base_url: str, *, refresh: bool
    ) -> dict[str, Any]:
        session = self.issue(user_id, app.client_id)
        identity = f"{base_url}/id/{self.org_id}/{user_id}"
        issued_at = str(int(session.issued_at.timestamp() * 1000))
        signature = base64.b64encode(
            hmac.new(
                app.client_secret.encode(), f"{identity}{issued_at}".encode(), hashlib.sha256
            ).digest()
        ).decode()
        answer: dict[str, Any] = {
            "access_token": session.token,
            "instance_url": base_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": signature,
            "scope": "api refresh_token" if refresh else "api",
        }
        if refresh:
            answer["refresh_token"] = self.refresh_token(user_id, app.client_id)
        return answer

    def _jwt(self, assertion: str, base_url: str) -> tuple[str, ConnectedApp]:
        parts = assertion.split(".")
        if len(parts) != 3:
            raise OAuthError("invalid_grant", "invalid assertion")
        try:
            header = json.loads(_b64url(parts[0]))
            claims = json.loads(_b64url(parts[1]))
            signature = _b64url(parts[2])
        except (ValueError, binascii.Error):
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise OAuthError("invalid_grant", "invalid assertion")
        if header.get("alg") != "RS256":
            raise OAuthError("invalid_grant", "invalid assertion")
        app = self.apps.get(str(claims.get("iss", "")))
        if app is None:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        signed = f"{parts[0]}.{parts[1]}".encode()
        if not any(_rs256_ok(pem, signed, signature) for pem in app.public_keys):
            raise OAuthError("invalid_grant", "invalid assertion")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if not any(_audience_ok(str(value), base_url) for value in audiences):
            raise OAuthError("invalid_grant", "audience is invalid")
        try:
            expires = float(claims.get("exp", ""))  # simple-salesforce sends a string
        except (TypeError, ValueError):
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if expires <= self.clock().astimezone(UTC).timestamp():
            raise OAuthError("invalid_grant", "expired authorization code")
        user = self.user_by_name(str(claims.get("sub", "")))
        if user is None:
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")
        return user.user_id, app

    # ---------------------------------------------------------------- SOAP login

    def soap_login(self, body: bytes, base_url: str, version: str) -> tuple[int, str]:
        """The partner API ``login`` call (simple-salesforce's username+password+token path)."""
        try:
            root = SafeET.fromstring(body)
        except Exception:
            return 500, _soap_fault("INVALID_LOGIN", "malformed login request")
        username = root.find(f".//{{{_PARTNER}}}username")
        password = root.find(f".//{{{_PARTNER}}}password")
        user = None
        if username is not None and password is not None:
            user = self._password_user(username.text or "", password.text or "")
        if user is None:
            return 500, _soap_fault(
                "INVALID_LOGIN", "Invalid username, password, security token; or user locked out."
            )
        session = self.issue(user.user_id)
        server = f"{base_url}/services/Soap/u/{version}/{self.org_id}"
        return 200, (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            f'xmlns="{_PARTNER}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            "<soapenv:Body><loginResponse><result>"
            f"<metadataServerUrl>{base_url}/services/Soap/m/{version}/{self.org_id}"
            "</metadataServerUrl><passwordExpired>false</passwordExpired>"
            f"<sandbox>false</sandbox><serverUrl>{server}</serverUrl>"
            f"<sessionId>{escape(session.token)}</sessionId><userId>{user.user_id}</userId>"
            f"<userInfo><organizationId>{self.org_id}</organizationId>"
            f"<userName>{escape(user.username)}</userName></userInfo>"
            "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
        )

    # ---------------------------------------------------------------- persistence

    def dump(self) -> dict[str, Any]:
        return {
            "users": [vars(user) for user in self.users.values()],
            "apps": [vars(app) for app in self.apps.values()],
            "sessions": [
                {
                    "token": s.token,
                    "user_id": s.user_id,
                    "client_id": s.client_id,
                    "issued_at": s.issued_at.isoformat(),
                    "last_used": s.last_used.isoformat(),
                }
                for s in self.sessions.values()
            ],
            "refresh_tokens": {token: list(entry) for token, entry in self.refresh_tokens.items()},
        }

    def load(self, data: Mapping[str, Any]) -> None:
        for user in data.get("users", []):
            self.users[user["username"].lower()] = UserLogin(**user)
        for app in data.get("apps", []):
            self.apps[app["client_id"]] = ConnectedApp(**app)
        for item in data.get("sessions", []):
            self.sessions[item["token"]] = Session(
                item["token"],
                item["user_id"],
                item["client_id"],
                datetime.fromisoformat(item["issued_at"]),
                datetime.fromisoformat(item["last_used"]),
            )
        for token, entry in data.get("refresh_tokens", {}).items():
            self.refresh_tokens[token] = (entry[0], entry[1])


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _rs256_ok(pem: str, signed: bytes, signature: bytes) -> bool:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError:
        return False
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _audience_ok(audience: str, base_url: str) -> bool:
    audience = audience.rstrip("/")
    if audience in {"https://login.salesforce.com", "https://test.salesforce.com", base_url}:
        return True
    return audience.startswith("https://") and audience.endswith(".salesforce.com")


def _soap_fault(code: str, message: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault>'
        f"<faultcode>sf:{code}</faultcode><faultstring>{code}: {escape(message)}</faultstring>"
        f'<detail><sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>{code}'
        f"</sf:exceptionCode><sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
        "</sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
