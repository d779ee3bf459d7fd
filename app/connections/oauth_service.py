"""The OAuth connect flow's state on the server: attempts, tickets, nonces, single use.

1. :func:`start_attempt` (admin API): a random ticket (only its SHA-256 is
   stored) and a PKCE verifier (encrypted), valid :data:`ATTEMPT_LIFETIME`.
2. :func:`begin_attempt` (the admin's browser opens ``/oauth/begin/{ticket}``):
   spends the ticket with a conditional UPDATE, records the hash of a new random
   nonce (which goes into that browser's cookie) and answers the CRM's
   authorisation URL, whose ``state`` signs (attempt id, nonce hash).
3. :func:`claim_callback` (the CRM sends the browser back): checks the state's
   signature, that the cookie's nonce is the one in the state and on the
   attempt (the browser that began is the browser that returns: no login CSRF),
   and spends the attempt with a conditional UPDATE, so two callbacks racing
   with the same state cannot both go on. :func:`complete` exchanges the code,
   checks the account, and stores the tokens encrypted.

Services flush; the caller commits (and must commit the claim before the CRM call).
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, NoReturn

import httpx
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.connections.models import Connection, ConnectionStatus, OAuthAttempt, Provider
from app.connections.oauth import (
    OAUTH_PROVIDERS,
    InstanceUrlRefused,
    OAuthNotConfigured,
    account_id,
    authorize_url,
    code_challenge,
    digest,
    exchange_code,
    label,
    new_code_verifier,
    provider_config,
    redirect_uri,
    same_account,
    sign_state,
    verify_state,
)
from app.connections.service import store_credentials
from app.db import new_id, utcnow
from app.security.crypto import SecretBox
from integrations.base import AuthError, ProviderError, RetriableError

logger = logging.getLogger(__name__)

#: How long an attempt (its begin link, then the sign-in at the CRM) stays valid.
ATTEMPT_LIFETIME: Final = timedelta(minutes=10)
#: Spent or expired attempts are deleted this long after they expire.
ATTEMPT_RETENTION: Final = timedelta(days=1)
_TICKET = re.compile(r"^[A-Za-z0-9_\-]{20,100}$")
_NONCE = re.compile(r"^[A-Za-z0-9_\-]{20,100}$")


class OAuthFlowError(Exception):
    """A refused step. ``message`` is safe to show to the admin (no secrets);
    ``status`` is the HTTP status of the page; ``spent`` says the attempt was used up
    (so the browser's cookie can go)."""

    def __init__(self, message: str, status: int = 400, *, spent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.spent = spent


@dataclass(frozen=True, slots=True)
class StartedAttempt:
    attempt_id: str
    ticket: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class BegunAttempt:
    attempt_id: str
    authorize_url: str
    nonce: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ClaimedAttempt:
    attempt_id: str
    connection_id: str
    provider: Provider
    code_verifier: str = ""

    def __repr__(self) -> str:  # the verifier stays out of logs
        return f"ClaimedAttempt({self.attempt_id}, connection={self.connection_id})"


def start_attempt(
    session: Session,
    box: SecretBox,
    connection: Connection,
    settings: Settings,
    key_id: str | None = None,
) -> StartedAttempt:
    """A new attempt for ``connection``. Raises :class:`OAuthNotConfigured` when the CRM's
    app is not configured (or the provider does not use OAuth)."""
    provider = Provider(connection.provider)
    if provider not in OAUTH_PROVIDERS:
        raise OAuthNotConfigured(
            f"{provider.value} connections take their credentials directly, not through OAuth"
        )
    provider_config(provider, settings)
    now = utcnow()
    session.execute(
        delete(OAuthAttempt)
        .where(OAuthAttempt.expires_at < now - ATTEMPT_RETENTION)
        .execution_options(synchronize_session=False)
    )
    ticket = secrets.token_urlsafe(32)
    attempt = OAuthAttempt(
        id=new_id(),
        connection_id=connection.id,
        provider=provider,
        ticket_hash=digest(ticket),
        code_verifier_encrypted=box.encrypt_text(new_code_verifier()),
        created_by_key_id=key_id,
        created_at=now,
        expires_at=now + ATTEMPT_LIFETIME,
    )
    session.add(attempt)
    session.flush()
    logger.info("oauth attempt %s started for connection %s", attempt.id, connection.id)
    return StartedAttempt(attempt.id, ticket, attempt.expires_at)


def begin_attempt(
    session: Session, box: SecretBox, settings: Settings, ticket: str
) -> BegunAttempt:
    """Spend ``ticket`` once; answers where to send the browser and the nonce for its cookie."""
    if not _TICKET.match(ticket):
        raise OAuthFlowError("This sign-in link is not valid. Start the connection again.")
    ticket_hash = digest(ticket)
    nonce = secrets.token_urlsafe(32)
    nonce_hash = digest(nonce)
    now = utcnow()
    result = session.execute(
        update(OAuthAttempt)
        .where(
            OAuthAttempt.ticket_hash == ticket_hash,
            OAuthAttempt.begun_at.is_(None),
            OAuthAttempt.used_at.is_(None),
            OAuthAttempt.expires_at > now,
        )
        .values(begun_at=now, nonce_hash=nonce_hash)
        .execution_options(synchronize_session=False)
    )
    attempt = session.scalar(select(OAuthAttempt).where(OAuthAttempt.ticket_hash == ticket_hash))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        if attempt is None:
            reason, message = "unknown ticket", "This sign-in link is not valid."
        elif attempt.begun_at is not None or attempt.used_at is not None:
            reason, message = "ticket already used", "This sign-in link was already used."
        else:
            reason, message = "ticket expired", "This sign-in link has expired."
        logger.info("oauth begin refused: %s (attempt %s)", reason, attempt.id if attempt else "-")
        raise OAuthFlowError(f"{message} Start the connection again from dealcoach.")
    assert attempt is not None
    provider = Provider(attempt.provider)
    try:
        config = provider_config(provider, settings)
    except OAuthNotConfigured as exc:
        raise OAuthFlowError(str(exc), 409) from None
    state = sign_state(settings, provider, attempt.id, nonce_hash)
    verifier = box.decrypt_text(attempt.code_verifier_encrypted)
    url = authorize_url(
        config,
        state=state,
        redirect_uri=redirect_uri(provider, settings),
        code_challenge=code_challenge(verifier),
    )
    session.flush()
    logger.info("oauth attempt %s begun: browser sent to %s", attempt.id, label(provider))
    return BegunAttempt(attempt.id, url, nonce, attempt.expires_at)


def claim_callback(
    session: Session,
    box: SecretBox,
    settings: Settings,
    provider: Provider,
    state: str | None,
    cookie_nonce: str | None,
) -> ClaimedAttempt:
    """Check the callback belongs to an attempt begun in this browser, and spend it.

    Raises :class:`OAuthFlowError` (and logs the reason, without secrets) otherwise.
    """
    claims = verify_state(settings, provider, state)
    if claims is None:
        _refuse("state missing or its signature is wrong", None)
    if not cookie_nonce or not _NONCE.match(cookie_nonce):
        _refuse(
            "no flow cookie in this browser",
            claims.attempt_id,
            "This browser did not start this connection (its sign-in cookie is missing). "
            "Open the begin link in the browser you sign in with, and allow cookies.",
        )
    nonce_hash = digest(cookie_nonce)
    if not secrets.compare_digest(nonce_hash, claims.nonce_hash):
        _refuse(
            "the cookie's nonce is not the state's",
            claims.attempt_id,
            "This browser did not start this connection. Start it again from dealcoach.",
        )
    attempt = session.get(OAuthAttempt, claims.attempt_id)
    if attempt is None or Provider(attempt.provider) != provider:
        _refuse("unknown attempt", claims.attempt_id)
    if attempt.nonce_hash is None or not secrets.compare_digest(
        attempt.nonce_hash, claims.nonce_hash
    ):
        _refuse("the attempt's nonce is not the state's", attempt.id)
    now = utcnow()
    if attempt.used_at is not None:
        _refuse("attempt already used", attempt.id, "This sign-in was already used.")
    if attempt.expires_at <= now:
        _refuse("attempt expired", attempt.id, "This sign-in has expired.")
    result = session.execute(
        update(OAuthAttempt)
        .where(
            OAuthAttempt.id == attempt.id,
            OAuthAttempt.used_at.is_(None),
            OAuthAttempt.nonce_hash == claims.nonce_hash,
            OAuthAttempt.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        _refuse("attempt already used (race)", attempt.id, "This sign-in was already used.")
    verifier = box.decrypt_text(attempt.code_verifier_encrypted)
    session.flush()
    return ClaimedAttempt(attempt.id, attempt.connection_id, provider, verifier)


def _refuse(reason: str, attempt_id: str | None, message: str | None = None) -> NoReturn:
    logger.warning("oauth callback refused: %s (attempt %s)", reason, attempt_id or "-")
    raise OAuthFlowError(
        (message or "This sign-in answer is not valid.")
        + " Nothing was changed; start the connection again from dealcoach."
    )


def complete(
    session: Session,
    box: SecretBox,
    settings: Settings,
    claimed: ClaimedAttempt,
    code: str,
    client: httpx.Client,
) -> Connection:
    """Exchange ``code``, check the account, store the tokens; flushes (caller commits).

    The claim must be committed before this is called: the CRM call happens here.
    """
    provider = claimed.provider
    name = label(provider)
    try:
        credentials = exchange_code(
            provider,
            code,
            redirect_uri(provider, settings),
            settings,
            client,
            code_verifier=claimed.code_verifier or None,
        )
        actual = account_id(provider, credentials, settings, client)
    except OAuthNotConfigured as exc:
        raise OAuthFlowError(str(exc), 409, spent=True) from None
    except InstanceUrlRefused as exc:
        logger.warning(
            "oauth attempt %s: refused instance URL (%s)", claimed.attempt_id, exc.reason
        )
        raise OAuthFlowError(
            f"{name} answered an instance URL that is refused ({exc.reason}). Nothing was stored.",
            spent=True,
        ) from None
    except RetriableError as exc:
        logger.warning("oauth attempt %s: %s", claimed.attempt_id, exc)
        raise OAuthFlowError(
            f"{name} could not be reached to finish the sign-in ({exc}). Start again later.",
            502,
            spent=True,
        ) from None
    except AuthError as exc:
        logger.warning("oauth attempt %s: %s", claimed.attempt_id, exc)
        raise OAuthFlowError(
            f"{name} refused to finish the sign-in ({exc}). Start the connection again.",
            spent=True,
        ) from None
    except ProviderError as exc:
        logger.warning("oauth attempt %s: %s", claimed.attempt_id, exc)
        raise OAuthFlowError(f"{exc}. Nothing was stored.", spent=True) from None

    connection = session.get(Connection, claimed.connection_id)
    if connection is None:
        raise OAuthFlowError(
            "The connection was deleted meanwhile. Nothing was stored.", 404, spent=True
        )
    if not same_account(provider, connection.external_account_id, actual):
        what = "org" if provider == Provider.SALESFORCE else "portal"
        logger.warning(
            "oauth attempt %s: signed in to %s %s %s, the connection is for %s",
            claimed.attempt_id,
            name,
            what,
            actual,
            connection.external_account_id,
        )
        raise OAuthFlowError(
            f"You signed in to {name} {what} {actual}, but this connection is for {what} "
            f"{connection.external_account_id}. Nothing was stored: sign in to the right "
            f"{what} (log out of {name} first) and start the connection again.",
            spent=True,
        )
    store_credentials(session, box, connection, credentials)
    if credentials.get("instance_url"):
        connection.instance_url = credentials["instance_url"]
    connection.status = ConnectionStatus.ACTIVE
    connection.last_error = None
    session.flush()
    logger.info(
        "oauth attempt %s: connection %s connected to %s", claimed.attempt_id, connection.id, name
    )
    return connection
