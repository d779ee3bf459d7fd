"""Running work against a connection's CRM: credentials, refresh, parking.

:func:`with_provider` opens a transaction, builds the provider for an active
connection and runs the work. An expired token is refreshed **once per
connection** however many jobs hit it at the same moment
(:func:`refresh_once`: a lease row shared by every process, taken in a committed
transaction before the HTTP call, and a re-read sees a refresh someone else just did), then the
work is retried once. A refusal that a refresh cannot fix sets the connection
to ``needs_reauth`` and parks its jobs (:class:`Parked`) instead of retrying hot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.connections.models import Connection, ConnectionStatus
from app.connections.service import (
    SECRETS_UNREADABLE,
    context_for,
    set_status,
    store_credentials,
)
from app.db import session_scope
from app.leases import release_lease, take_lease
from app.runtime import Runtime
from app.security.crypto import SecretDecryptError
from integrations.base import AuthError, CrmProvider, RetriableError
from integrations.registry import provider_for

logger = logging.getLogger(__name__)
T = TypeVar("T")
#: A token refresh is this process's for this long (the token endpoint's timeout and more).
REFRESH_LEASE = timedelta(seconds=60)
#: How long a caller waits for another's refresh before it is told to retry.
REFRESH_WAIT_SECONDS = 20.0
REFRESH_POLL_SECONDS = 0.2


class Parked(Exception):
    """The connection is not active (paused, needs re-authorisation, gone): work waits."""


class _RefreshNeeded(Exception):
    def __init__(self, stale: bytes | None) -> None:
        super().__init__("access token expired")
        self.stale = stale


def lock_connection_row(session: Session, connection_id: str) -> Connection | None:
    """Lock the connection's row until this transaction ends, then read it fresh.

    A no-op UPDATE is the portable lock: PostgreSQL holds a row lock, SQLite
    the database write lock (other writers wait on the busy timeout). A crash
    releases it with the transaction, so it can never be left behind.
    """
    session.execute(
        update(Connection)
        .where(Connection.id == connection_id)
        .values(updated_at=Connection.updated_at)
        .execution_options(synchronize_session=False)
    )
    connection = session.get(Connection, connection_id, populate_existing=True)
    return connection


def refresh_once(runtime: Runtime, connection_id: str, stale: bytes | None) -> None:
    """Refresh the connection's credentials unless someone already replaced ``stale``.

    Concurrent callers (threads or processes) meet on a lease row
    (``refresh:<connection id>``, :func:`app.leases.take_lease`), taken in a short
    committed transaction; the holder calls the token endpoint with no transaction
    open and stores the result in a second one. The others poll until the
    credentials change or the lease is free. A slow token endpoint therefore
    holds no database lock: webhooks and the admin API go on meanwhile. A holder
    that dies leaves a lease that its expiry (or the owner's missing heartbeat)
    frees.

    Raises:
        Parked: the refresh token was refused; the connection now needs re-authorisation.
        RetriableError: another process held the refresh for too long, or the CRM's
            token endpoint asked to retry.
    """
    name = f"refresh:{connection_id}"
    deadline = time.monotonic() + REFRESH_WAIT_SECONDS
    while True:
        with session_scope(runtime.sessions) as session:
            taken = take_lease(session, name, REFRESH_LEASE)
            connection = session.get(Connection, connection_id, populate_existing=True)
            if connection is None:
                raise Parked(f"connection {connection_id} is gone")
            if connection.credentials_encrypted != stale:
                if taken:
                    release_lease(session, name, taken)
                return  # refreshed by someone else meanwhile
            context = context_for(runtime.box, connection) if taken else None
        if taken is not None and context is not None:
            break
        if time.monotonic() >= deadline:
            raise RetriableError("another process is refreshing the credentials", retry_after=5)
        time.sleep(REFRESH_POLL_SECONDS)
    refused: str | None = None
    try:
        provider = provider_for(context, runtime.settings)
        try:
            credentials = provider.refresh_credentials()
        except AuthError as exc:
            refused = str(exc)
        with session_scope(runtime.sessions) as session:
            connection = session.get(Connection, connection_id, populate_existing=True)
            if connection is None:
                raise Parked(f"connection {connection_id} is gone")
            if refused is not None:
                set_status(session, connection, ConnectionStatus.NEEDS_REAUTH, refused)
            else:
                store_credentials(session, runtime.box, connection, credentials)
                logger.info("connection %s: credentials refreshed", connection_id)
            release_lease(session, name, taken)
    except BaseException:
        try:
            with session_scope(runtime.sessions) as session:
                release_lease(session, name, taken)
        except Exception:  # the lease's expiry frees it
            logger.debug("refresh lease of %s not released", connection_id, exc_info=True)
        raise
    if refused is not None:
        logger.warning("connection %s needs re-authorisation: %s", connection_id, refused)
        raise Parked(refused)


class _Unreadable(Exception):
    """The connection's stored secrets do not decrypt with the configured keys."""


def with_provider(
    runtime: Runtime,
    connection_id: str,
    work: Callable[[Session, Connection, CrmProvider], T],
) -> T:
    """Run ``work`` in one transaction with the connection's provider.

    Raises:
        Parked: the connection is not active (or just stopped being).
        RetriableError, NotFoundError, InvalidRequestError: from the provider;
            the transaction was rolled back.
    """
    for attempt in range(2):
        try:
            with session_scope(runtime.sessions) as session:
                connection = session.get(Connection, connection_id)
                if connection is None:
                    raise Parked(f"connection {connection_id} is gone")
                if connection.status != ConnectionStatus.ACTIVE:
                    raise Parked(f"connection {connection_id} is {connection.status}")
                stale = connection.credentials_encrypted
                try:
                    context = context_for(runtime.box, connection)
                except SecretDecryptError:
                    raise _Unreadable from None
                provider = provider_for(context, runtime.settings)
                try:
                    return work(session, connection, provider)
                except AuthError as exc:
                    if exc.refreshable and attempt == 0:
                        raise _RefreshNeeded(stale) from None
                    raise
        except _Unreadable:
            # Only this connection stops (needs_reauth, with the reason); others go on.
            park(runtime, connection_id, SECRETS_UNREADABLE)
            raise Parked(f"connection {connection_id}: {SECRETS_UNREADABLE}") from None
        except _RefreshNeeded as needed:
            refresh_once(runtime, connection_id, needed.stale)
        except AuthError as exc:
            if exc.refreshable:
                # The session expired again right after a successful refresh (an org
                # that logged every session out twice in a row): the refresh token
                # still works, so this is worth another try later, not an admin's time.
                raise RetriableError(f"credentials expired again after a refresh: {exc}") from None
            park(runtime, connection_id, str(exc))  # the CRM's answer: in last_error and the log
            raise Parked(
                f"connection {connection_id} needs re-authorisation: the CRM refused its "
                "credentials (PUT .../credentials or the OAuth flow)"
            ) from None
    raise Parked(f"connection {connection_id}: credentials refused after a refresh")


def park(runtime: Runtime, connection_id: str, error: str) -> None:
    """Set ``needs_reauth`` with the error; the connection's jobs wait for an admin."""
    with session_scope(runtime.sessions) as session:
        connection = session.get(Connection, connection_id)
        if connection is not None:
            set_status(session, connection, ConnectionStatus.NEEDS_REAUTH, error)
    logger.warning("connection %s needs re-authorisation: %s", connection_id, error)
