"""OAuth 2.0 (authorization code) with Salesforce and HubSpot: endpoints, tokens, ``state``.

- :func:`provider_config` and :func:`authorize_url`: where the admin approves
  the app, with the scopes the service needs and a PKCE (S256) challenge.
- :func:`exchange_code` and :func:`refresh_token`: calls to the CRM's token
  endpoint through an injected ``httpx.Client`` (tests pass one on an
  ``httpx.MockTransport``). Both answer the credentials to store, in the
  shape the adapters read (``{"auth": "oauth", "access_token",
  "refresh_token", ...}``). HTTP failures become the error taxonomy of
  :mod:`integrations.base`: :class:`AuthError` (never refreshable) for
  400/401/403 such as ``invalid_grant``, :class:`RetriableError` (with the
  CRM's ``Retry-After``) for 429, 5xx, timeouts and unreachable endpoints.
- :func:`account_id`: the Salesforce org id or HubSpot portal id the tokens
  belong to, and :func:`same_account` to compare it with a connection's.
- :func:`sign_state` / :func:`verify_state`: the ``state`` parameter, an
  HMAC (SHA-256) binding the attempt id and the hash of the browser's cookie
  nonce, under a key derived (HKDF, fixed label) from the secret keys.

No exception message or log line here carries a token, a code, a client
secret or a key: messages name the CRM, the call, the HTTP status and the
OAuth error code only.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import hmac
import logging
import math
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.config import Settings
from app.connections.models import Provider
from app.security.crypto import (
    DEV_KEY_FILE_NAME,
    KEYS_ENV_VAR,
    SecretBox,
    SecretKeyInvalid,
    SecretKeysMissing,
)
from app.security.urls import InstanceUrlError, validate_instance_url
from integrations.base import (
    AuthError,
    InvalidRequestError,
    ProviderError,
    RateLimitedError,
    RetriableError,
)

logger = logging.getLogger(__name__)

#: The providers that connect with OAuth (``fake`` takes its credentials directly).
OAUTH_PROVIDERS: Final = (Provider.SALESFORCE, Provider.HUBSPOT)

SALESFORCE_SCOPES: Final = ("api", "refresh_token")
HUBSPOT_SCOPES: Final = (
    "crm.objects.deals.read",
    "crm.objects.deals.write",
    "crm.objects.contacts.read",
    "oauth",
)
#: Per request to a token endpoint (the injected client's own timeout applies otherwise).
HTTP_TIMEOUT: Final = httpx.Timeout(15.0, connect=5.0)
_LABELS: Final = {Provider.SALESFORCE: "Salesforce", Provider.HUBSPOT: "HubSpot"}
_MAX_RETRY_AFTER: Final = 86_400.0
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class OAuthNotConfigured(Exception):
    """The app's client id/secret for this CRM are not set (the message names the settings)."""


class InstanceUrlRefused(InvalidRequestError):
    """The CRM answered an instance URL outside its domains; nothing was stored."""

    def __init__(self, provider: Provider, reason: str) -> None:
        super().__init__(f"{_LABELS.get(provider, provider.value)} returned a refused instance URL")
        self.reason = reason


def label(provider: Provider | str) -> str:
    """The CRM's display name."""
    return _LABELS.get(Provider(provider), str(provider))


# ---------------------------------------------------------------- providers


@dataclass(frozen=True, slots=True)
class OAuthProvider:
    """One CRM's OAuth endpoints and the app's registration there.

    ``client_secret`` is excluded from ``repr`` so the object can be logged.
    """

    provider: Provider
    authorize_url: str
    token_url: str
    scopes: tuple[str, ...]
    client_id: str
    client_secret: str = ""
    pkce: bool = True

    def __repr__(self) -> str:
        return f"OAuthProvider({self.provider.value}, token_url={self.token_url!r})"


def provider_config(provider: Provider | str, settings: Settings) -> OAuthProvider:
    """The OAuth configuration of ``provider``; :class:`OAuthNotConfigured` without an app.

    Outside sandbox mode the CRM's URLs must be https (the client secret goes there).
    """
    kind = Provider(provider)
    if kind == Provider.SALESFORCE:
        client_id, client_secret = settings.salesforce_client_id, settings.salesforce_client_secret
        names = "DEALCOACH_SALESFORCE_CLIENT_ID and DEALCOACH_SALESFORCE_CLIENT_SECRET"
        base = settings.salesforce_login_url.rstrip("/")
        authorize, token = f"{base}/services/oauth2/authorize", f"{base}/services/oauth2/token"
        scopes: tuple[str, ...] = SALESFORCE_SCOPES
    elif kind == Provider.HUBSPOT:
        client_id, client_secret = settings.hubspot_client_id, settings.hubspot_client_secret
        names = "DEALCOACH_HUBSPOT_CLIENT_ID and DEALCOACH_HUBSPOT_CLIENT_SECRET"
        authorize = settings.hubspot_authorize_url
        token = f"{settings.hubspot_oauth_url.rstrip('/')}/oauth/v1/token"
        scopes = HUBSPOT_SCOPES
    else:
        raise OAuthNotConfigured(
            f"{kind.value} connections take their credentials directly, not through OAuth"
        )
    if not client_id or not client_secret:
        raise OAuthNotConfigured(
            f"OAuth with {label(kind)} is not configured: set {names} "
            "(the connected app's / public app's client id and secret)"
        )
    if not settings.sandbox:
        for url in (authorize, token):
            if not url.startswith("https://"):
                raise OAuthNotConfigured(
                    f"OAuth with {label(kind)}: {url.split('?')[0]} must be https "
                    "outside sandbox mode"
                )
    return OAuthProvider(kind, authorize, token, scopes, client_id, client_secret)


def redirect_uri(provider: Provider | str, settings: Settings) -> str:
    """The callback URL to register in the CRM's app: ``{public_url}/oauth/callback/{provider}``."""
    return f"{settings.public_url}/oauth/callback/{Provider(provider).value}"


def authorize_url(
    config: OAuthProvider, *, state: str, redirect_uri: str, code_challenge: str | None
) -> str:
    """The CRM page where the admin signs in and approves the app."""
    params = {
        "response_type": "code",
        "client_id": config.client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(config.scopes),
        "state": state,
    }
    if config.pkce and code_challenge:
        params["code_challenge"] = code_challenge
        params["code_challenge_method"] = "S256"
    separator = "&" if urlsplit(config.authorize_url).query else "?"
    return config.authorize_url + separator + urlencode(params, quote_via=quote)


# ---------------------------------------------------------------- PKCE and hashes


def new_code_verifier() -> str:
    """A PKCE code verifier (RFC 7636: 43-128 unreserved characters; 86 here, 512 bits)."""
    return secrets.token_urlsafe(64)


def code_challenge(verifier: str) -> str:
    """The S256 challenge of ``verifier``: base64url(SHA-256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def digest(value: str) -> str:
    """SHA-256 (hex) of a random ticket or nonce: what is stored instead of the value."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- the signed state

_STATE_KDF_INFO: Final = b"dealcoach/oauth-state/v1"
_STATE_VERSION: Final = "v1"
_STATE_MAX_LENGTH: Final = 512
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class StateClaims:
    """What a verified ``state`` says: the attempt, and the hash of the browser's nonce."""

    attempt_id: str
    nonce_hash: str


def state_keys(settings: Settings) -> tuple[bytes, ...]:
    """HMAC keys for ``state``, newest first: HKDF-SHA256 of each secret key with a fixed
    label (so the Fernet keys themselves never sign anything). The newest signs; any
    verifies, so a state survives a key rotation during its ten minutes."""
    return _derive_state_keys(_secret_key_texts(settings))


def _secret_key_texts(settings: Settings) -> tuple[str, ...]:
    if settings.secret_keys and settings.secret_keys.strip(" ,"):
        entries = (entry.strip() for entry in settings.secret_keys.split(","))
        return tuple(entry for entry in entries if entry)
    if not settings.sandbox:
        raise SecretKeysMissing(f"{KEYS_ENV_VAR} is not set: OAuth state needs a secret key")
    SecretBox.from_settings(settings)  # creates the sandbox development key if missing
    path = (settings.data_dir / DEV_KEY_FILE_NAME).resolve()
    return (path.read_text(encoding="ascii", errors="replace").strip(),)


@lru_cache(maxsize=8)
def _derive_state_keys(texts: tuple[str, ...]) -> tuple[bytes, ...]:
    keys = []
    for position, text in enumerate(texts, start=1):
        try:
            material = base64.urlsafe_b64decode(text.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise SecretKeyInvalid(
                f"{KEYS_ENV_VAR}: key {position} of {len(texts)} is not a valid Fernet key"
            ) from None
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_STATE_KDF_INFO)
        keys.append(hkdf.derive(material))
    if not keys:
        raise SecretKeysMissing(f"{KEYS_ENV_VAR} holds no key")
    return tuple(keys)


def _state_mac(key: bytes, provider: Provider, payload: str) -> str:
    message = f"{provider.value}|{payload}".encode("ascii")
    mac = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")


def sign_state(settings: Settings, provider: Provider, attempt_id: str, nonce_hash: str) -> str:
    """``v1.<attempt id>.<nonce hash>.<HMAC>``; the MAC also covers the provider, so a
    state made for one CRM's callback is refused at the other's."""
    payload = f"{_STATE_VERSION}.{attempt_id}.{nonce_hash}"
    return f"{payload}.{_state_mac(state_keys(settings)[0], Provider(provider), payload)}"


def verify_state(settings: Settings, provider: Provider, state: str | None) -> StateClaims | None:
    """The claims of a genuine ``state`` for ``provider``, or None (compared in constant time)."""
    if not state or len(state) > _STATE_MAX_LENGTH or not state.isascii():
        return None
    parts = state.split(".")
    if len(parts) != 4 or parts[0] != _STATE_VERSION:
        return None
    _version, attempt_id, nonce_hash, mac = parts
    if not _UUID.match(attempt_id) or not _HEX64.match(nonce_hash):
        return None
    payload = f"{_STATE_VERSION}.{attempt_id}.{nonce_hash}"
    valid = False
    for key in state_keys(settings):
        # Every key is tried (no early exit), so timing does not tell which one matched.
        valid |= hmac.compare_digest(_state_mac(key, Provider(provider), payload), mac)
    return StateClaims(attempt_id, nonce_hash) if valid else None


# ---------------------------------------------------------------- token endpoint calls


def exchange_code(
    provider: Provider | str,
    code: str,
    redirect_uri: str,
    settings: Settings,
    client: httpx.Client,
    *,
    code_verifier: str | None = None,
) -> dict[str, Any]:
    """Exchange an authorization code for tokens; answers the credentials to store.

    Raises :class:`AuthError` (a refused or spent code, a wrong client secret),
    :class:`RetriableError`, :class:`InvalidRequestError` (no refresh token
    granted; :class:`InstanceUrlRefused`), :class:`OAuthNotConfigured`.
    """
    config = provider_config(provider, settings)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": config.client_id,
        "client_secret": config.client_secret,
    }
    if config.pkce and code_verifier:
        form["code_verifier"] = code_verifier
    tokens = _post_token(config, form, "code exchange", client)
    return to_credentials(config, tokens, settings, previous_refresh_token=None)


def refresh_token(
    provider: Provider | str, refresh_token: str, settings: Settings, client: httpx.Client
) -> dict[str, Any]:
    """New credentials from a refresh token (the old refresh token is kept when the CRM
    does not rotate it, as Salesforce by default).

    Raises :class:`AuthError` with ``refreshable=False`` when the CRM refuses the
    refresh token (``invalid_grant``: revoked, expired, or the app's access was
    removed): the connection needs an admin to connect it again.
    :class:`RetriableError` (with ``retry_after``) for 429, 5xx and timeouts.
    """
    config = provider_config(provider, settings)
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": config.client_id,
        "client_secret": config.client_secret,
    }
    tokens = _post_token(config, form, "token refresh", client)
    return to_credentials(config, tokens, settings, previous_refresh_token=refresh_token)


def to_credentials(
    config: OAuthProvider,
    tokens: dict[str, Any],
    settings: Settings,
    *,
    previous_refresh_token: str | None,
) -> dict[str, Any]:
    """The credentials to store from a token response (checked by :func:`_post_token`)."""
    refresh = tokens.get("refresh_token") or previous_refresh_token
    if not isinstance(refresh, str) or not refresh:
        raise InvalidRequestError(
            f"{label(config.provider)} granted no refresh token: allow the "
            f"{'refresh_token' if config.provider == Provider.SALESFORCE else 'oauth'} scope "
            "for the app and connect again"
        )
    credentials: dict[str, Any] = {
        "auth": "oauth",
        "access_token": tokens["access_token"],
        "refresh_token": refresh,
    }
    if config.provider == Provider.SALESFORCE:
        instance_url = tokens.get("instance_url")
        if not isinstance(instance_url, str):
            raise RetriableError("Salesforce's token answer has no instance_url")
        try:
            credentials["instance_url"] = validate_instance_url(
                "salesforce", instance_url, sandbox=settings.sandbox
            )
        except InstanceUrlError as exc:
            raise InstanceUrlRefused(config.provider, exc.reason) from None
        for key, name in (("issued_at", "issued_at"), ("id", "identity_url")):
            value = tokens.get(key)
            if isinstance(value, str) and value:
                credentials[name] = value
    else:
        expires_in = tokens.get("expires_in")
        if isinstance(expires_in, int | float) and math.isfinite(expires_in) and expires_in > 0:
            expires_at = datetime.now(UTC) + timedelta(seconds=float(expires_in))
            credentials["expires_at"] = expires_at.isoformat(timespec="seconds")
    return credentials


def _post_token(
    config: OAuthProvider, form: dict[str, str], what: str, client: httpx.Client
) -> dict[str, Any]:
    name = label(config.provider)
    try:
        response = client.post(
            config.token_url,
            data=form,
            headers={"Accept": "application/json"},
            timeout=HTTP_TIMEOUT,
        )
    except httpx.TimeoutException:
        raise RetriableError(f"{name} {what}: the token endpoint timed out") from None
    except httpx.HTTPError as exc:
        raise RetriableError(
            f"{name} {what}: the token endpoint could not be reached ({type(exc).__name__})"
        ) from None
    if response.status_code != 200:
        raise http_failure(config.provider, what, response)
    tokens = _json_object(response)
    if tokens is None or not isinstance(tokens.get("access_token"), str):
        raise RetriableError(f"{name} {what}: the token endpoint answered no access token")
    if not tokens["access_token"]:
        raise RetriableError(f"{name} {what}: the token endpoint answered an empty access token")
    if config.provider == Provider.SALESFORCE:
        _check_salesforce_signature(tokens, config.client_secret)
    return tokens


def _check_salesforce_signature(tokens: dict[str, Any], client_secret: str) -> None:
    """Salesforce signs ``id + issued_at`` with the client secret (HMAC-SHA256, base64): a
    check that the identity URL (hence the org id) came from Salesforce unaltered."""
    signature, identity, issued_at = (tokens.get(k) for k in ("signature", "id", "issued_at"))
    if signature is None:
        return
    if not all(isinstance(value, str) for value in (signature, identity, issued_at)):
        raise AuthError("Salesforce's token answer has a malformed signature")
    message = f"{identity}{issued_at}".encode()
    expected = base64.b64encode(
        hmac.new(client_secret.encode("utf-8"), message, hashlib.sha256).digest()
    ).decode("ascii")
    if not hmac.compare_digest(expected.encode("ascii"), str(signature).encode("utf-8")):
        raise AuthError("Salesforce's token answer has an invalid signature")


def http_failure(provider: Provider, what: str, response: httpx.Response) -> ProviderError:
    """The taxonomy error for a CRM's non-2xx answer to an OAuth call.

    429 -> :class:`RateLimitedError`, 5xx -> :class:`RetriableError` (both with the
    CRM's ``Retry-After``), 400/401/403 -> :class:`AuthError` (not refreshable:
    ``invalid_grant`` and friends mean the grant is gone), else
    :class:`InvalidRequestError`. The message has the status and the OAuth error
    code (``invalid_grant``), never the body.
    """
    status = response.status_code
    code = _oauth_error_code(response)
    message = f"{label(provider)} {what}: HTTP {status}" + (f" ({code})" if code else "")
    if status == 429:
        return RateLimitedError(message, retry_after=retry_after_seconds(response))
    if status >= 500:
        return RetriableError(message, retry_after=retry_after_seconds(response))
    if status in (400, 401, 403):
        return AuthError(message, refreshable=False)
    return InvalidRequestError(message)


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        value = response.json()
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _oauth_error_code(response: httpx.Response) -> str | None:
    """``error`` (RFC 6749), HubSpot's ``status`` or an ``errorCode``, if it looks like a code."""
    body = _json_object(response)
    if body is None:
        return None
    for key in ("error", "status", "errorCode", "category"):
        value = body.get(key)
        if isinstance(value, str) and _ERROR_CODE.match(value):
            return value
    return None


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta or HTTP date), capped at a day; None if absent."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, min(seconds, _MAX_RETRY_AFTER))


# ---------------------------------------------------------------- whose account


def account_id(
    provider: Provider | str,
    credentials: dict[str, Any],
    settings: Settings,
    client: httpx.Client,
) -> str:
    """The CRM account the tokens belong to: the Salesforce org id (from the identity
    URL ``.../id/<orgId>/<userId>``) or the HubSpot portal id (``hub_id`` of
    ``GET /oauth/v1/access-tokens/{token}``)."""
    kind = Provider(provider)
    if kind == Provider.SALESFORCE:
        return salesforce_org_id(str(credentials.get("identity_url") or ""))
    if kind == Provider.HUBSPOT:
        return _hubspot_portal_id(str(credentials["access_token"]), settings, client)
    raise OAuthNotConfigured(f"{kind.value} connections do not use OAuth")


def salesforce_org_id(identity_url: str) -> str:
    """The org id in a Salesforce identity URL; :class:`AuthError` if there is none."""
    segments = [segment for segment in urlsplit(identity_url).path.split("/") if segment]
    for index, segment in enumerate(segments[:-2]):
        if segment == "id" and re.fullmatch(r"[A-Za-z0-9]{1,64}", segments[index + 1]):
            return segments[index + 1]
    raise AuthError("Salesforce's token answer has no identity URL with an org id")


def _hubspot_portal_id(access_token: str, settings: Settings, client: httpx.Client) -> str:
    url = (
        f"{settings.hubspot_oauth_url.rstrip('/')}/oauth/v1/access-tokens/"
        f"{quote(access_token, safe='')}"
    )
    what = "token information"
    try:
        response = client.get(url, headers={"Accept": "application/json"}, timeout=HTTP_TIMEOUT)
    except httpx.TimeoutException:
        raise RetriableError(f"HubSpot {what}: the request timed out") from None
    except httpx.HTTPError as exc:
        raise RetriableError(f"HubSpot {what}: unreachable ({type(exc).__name__})") from None
    if response.status_code != 200:
        raise http_failure(Provider.HUBSPOT, what, response)
    body = _json_object(response)
    hub_id = body.get("hub_id") if body else None
    if isinstance(hub_id, bool) or not isinstance(hub_id, int | str) or str(hub_id) == "":
        raise RetriableError(f"HubSpot {what}: the answer has no hub_id")
    return str(hub_id)


def same_account(provider: Provider | str, expected: str, actual: str) -> bool:
    """Whether ``actual`` (from the CRM) is the connection's ``expected`` account id.

    Salesforce ids come in a 15-character case-sensitive form and an 18-character
    form (the same 15 plus a checksum): either form matches the other.
    """
    expected, actual = expected.strip(), actual.strip()
    if Provider(provider) == Provider.SALESFORCE and {len(expected), len(actual)} <= {15, 18}:
        return expected[:15] == actual[:15]
    return expected == actual


# ---------------------------------------------------------------- logging hygiene


class _RedactTokenUrls(logging.Filter):
    """httpx logs each request URL at INFO; HubSpot's token-information URL contains the
    access token itself, so that path segment is masked before any handler sees it."""

    _PATTERN = re.compile(r"(/oauth/v1/access-tokens/)[^/?#\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                self._PATTERN.sub(r"\1[redacted]", str(arg))
                if "access-tokens/" in str(arg)
                else arg
                for arg in record.args
            )
        elif isinstance(record.msg, str) and "access-tokens/" in record.msg:
            record.msg = self._PATTERN.sub(r"\1[redacted]", record.msg)
        return True


_REDACTOR: Final = _RedactTokenUrls()
for _name in ("httpx", "httpcore"):
    if _REDACTOR not in logging.getLogger(_name).filters:
        logging.getLogger(_name).addFilter(_REDACTOR)
