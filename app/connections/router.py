"""Admin API: connections."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel
from sqlalchemy import select

from app.admin.models import ApiKeyScope
from app.api.deps import AdminKey, Principal, ReadKey, RuntimeDep, SessionDep, page_of
from app.api.problems import PROBLEM_RESPONSES, Problem, crm_problem
from app.connections.credential_shapes import CredentialsShapeError, check_credentials
from app.connections.models import Connection, ConnectionStatus
from app.connections.runner import Parked, with_provider
from app.connections.schemas import (
    ConnectionCreate,
    ConnectionOut,
    ConnectionUpdate,
    CredentialsUpdate,
)
from app.connections.service import (
    ConnectionConflict,
    create_connection,
    set_status,
    to_out,
    update_connection,
    update_credentials,
)
from app.jobs import enqueue_after_commit
from app.security.urls import InstanceUrlError
from app.sync.models import SyncJob, SyncJobState
from app.sync.router import SyncJobOut, sync_job_out
from app.sync.tasks import sync_connection_task
from app.webhooks.service import wake_connection
from app.writeback.service import retire_account
from app.writeback.tasks import send_writebacks
from integrations.base import ProviderError

router = APIRouter(prefix="/api/v1/connections", tags=["connections"], responses=PROBLEM_RESPONSES)


def get_connection(session: SessionDep, principal: Principal, connection_id: str) -> Connection:
    connection = session.get(Connection, connection_id)
    if connection is None or not principal.can_see(connection.id):
        raise Problem(404, "no such connection")
    return connection


def _wake_waiting_work(session: SessionDep, connection: Connection) -> None:
    """An active connection again: its waiting events and notes go now, after the commit."""
    if connection.status != ConnectionStatus.ACTIVE:
        return
    wake_connection(session, connection.id)
    enqueue_after_commit(session, send_writebacks, connection.id)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ConnectionOut)
def create(
    body: ConnectionCreate, session: SessionDep, runtime: RuntimeDep, key: AdminKey
) -> ConnectionOut:
    """Create a connection. Credentials and the webhook secret are stored encrypted and
    never returned; ``webhook_urls`` in the answer are the URLs to configure in the CRM."""
    if key.connection_ids is not None:
        raise Problem(403, "a key limited to some connections cannot create connections")
    try:
        check_credentials(body.provider, body.credentials)
        connection = create_connection(session, runtime.box, body, runtime.settings)
    except CredentialsShapeError as exc:
        raise Problem(
            422, str(exc), errors=[{"field": "credentials", "message": str(exc)}]
        ) from None
    except InstanceUrlError as exc:
        raise Problem(
            422, f"instance_url: {exc}", errors=[{"field": "instance_url", "message": str(exc)}]
        ) from None
    except ConnectionConflict as exc:
        raise Problem(409, str(exc)) from None
    except ValueError as exc:
        raise Problem(422, str(exc)) from None
    session.commit()
    return to_out(runtime.box, connection, runtime.settings)


class ConnectionPage(BaseModel):
    """One page of connections: ``{"items": [...], "next_cursor": ...}`` as every list."""

    items: list[ConnectionOut]
    next_cursor: str | None


@router.get("", response_model=ConnectionPage)
def list_connections(
    session: SessionDep,
    runtime: RuntimeDep,
    key: ReadKey,
    status_filter: Annotated[ConnectionStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The connections this key may see, in id order (``limit``, ``cursor``)."""
    query = key.visible(select(Connection), Connection.id, None)
    if status_filter is not None:
        query = query.where(Connection.status == status_filter)
    reveal = key.scope == ApiKeyScope.ADMIN
    return page_of(
        session,
        query,
        Connection.id,
        limit,
        cursor,
        lambda c: to_out(runtime.box, c, runtime.settings, reveal_tokens=reveal).model_dump(
            mode="json"
        ),
    )


@router.get("/{connection_id}", response_model=ConnectionOut)
def get(
    connection_id: str, session: SessionDep, runtime: RuntimeDep, key: ReadKey
) -> ConnectionOut:
    """One connection. ``webhook_urls`` show the Outbound Message URL's token to admin
    keys only (masked for ``read`` keys: the token authenticates webhooks)."""
    connection = get_connection(session, key, connection_id)
    reveal = key.scope == ApiKeyScope.ADMIN
    return to_out(runtime.box, connection, runtime.settings, reveal_tokens=reveal)


@router.patch("/{connection_id}", response_model=ConnectionOut)
def update(
    connection_id: str,
    body: ConnectionUpdate,
    session: SessionDep,
    runtime: RuntimeDep,
    key: AdminKey,
) -> ConnectionOut:
    """Change the name, instance URL or settings. Secrets and status are not accepted
    here (422): use ``PUT .../credentials`` and ``POST .../pause`` / ``.../resume``."""
    connection = get_connection(session, key, connection_id)
    try:
        update_connection(session, connection, body, runtime.settings)
    except InstanceUrlError as exc:
        raise Problem(422, f"instance_url: {exc}") from None
    except ValueError as exc:
        raise Problem(422, str(exc)) from None
    session.commit()
    return to_out(runtime.box, connection, runtime.settings)


@router.put("/{connection_id}/credentials", response_model=ConnectionOut)
def replace_credentials(
    connection_id: str,
    body: CredentialsUpdate,
    session: SessionDep,
    runtime: RuntimeDep,
    key: AdminKey,
) -> ConnectionOut:
    """Replace credentials and/or the webhook secret (re-activates a ``needs_reauth``
    connection)."""
    connection = get_connection(session, key, connection_id)
    try:
        check_credentials(connection.provider, body.credentials or {})
    except CredentialsShapeError as exc:
        raise Problem(
            422, str(exc), errors=[{"field": "credentials", "message": str(exc)}]
        ) from None
    update_credentials(session, runtime.box, connection, body)
    _wake_waiting_work(session, connection)
    session.commit()
    return to_out(runtime.box, connection, runtime.settings)


@router.post("/{connection_id}/pause", response_model=ConnectionOut)
def pause_connection(
    connection_id: str, session: SessionDep, runtime: RuntimeDep, key: AdminKey
) -> ConnectionOut:
    connection = get_connection(session, key, connection_id)
    set_status(session, connection, ConnectionStatus.PAUSED)
    session.commit()
    return to_out(runtime.box, connection, runtime.settings)


@router.post("/{connection_id}/resume", response_model=ConnectionOut)
def resume_connection(
    connection_id: str, session: SessionDep, runtime: RuntimeDep, key: AdminKey
) -> ConnectionOut:
    connection = get_connection(session, key, connection_id)
    if connection.status == ConnectionStatus.NEEDS_REAUTH:
        raise Problem(409, "the connection needs new credentials: PUT .../credentials")
    set_status(session, connection, ConnectionStatus.ACTIVE)
    _wake_waiting_work(session, connection)
    session.commit()
    return to_out(runtime.box, connection, runtime.settings)


@router.delete("/{connection_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete(connection_id: str, session: SessionDep, key: AdminKey) -> None:
    """Delete the connection with its snapshots, reviews and write-backs."""
    connection = get_connection(session, key, connection_id)
    retire_account(session, connection)  # a new connection for the account finds its notes
    session.delete(connection)
    session.commit()


@router.post("/{connection_id}/test")
def test_connection(
    connection_id: str, session: SessionDep, runtime: RuntimeDep, key: AdminKey
) -> dict[str, object]:
    """Call the CRM once (its stage list) with the stored credentials."""
    get_connection(session, key, connection_id)
    session.close()
    try:
        catalogues = with_provider(runtime, connection_id, lambda _s, _c, p: p.list_stages())
    except Parked as exc:
        return {"ok": False, "detail": str(exc)}
    except ProviderError as exc:  # the CRM's answer goes to the log, never to the client
        return {"ok": False, "detail": crm_problem(exc, "the stage list").detail}
    return {
        "ok": True,
        "pipelines": len(catalogues),
        "stages": sum(len(c.stages) for c in catalogues.values()),
    }


@router.post(
    "/{connection_id}/sync", status_code=status.HTTP_202_ACCEPTED, response_model=SyncJobOut
)
def trigger_sync(
    connection_id: str, session: SessionDep, key: AdminKey, response: Response
) -> SyncJobOut:
    """Queue an incremental sync now: 202 with the sync job, and ``Location`` of the job
    to poll (``GET /api/v1/sync-jobs/{id}``) until it is ``succeeded``, ``failed`` or
    ``skipped``."""
    connection = get_connection(session, key, connection_id)
    if connection.status != ConnectionStatus.ACTIVE:
        raise Problem(409, f"the connection is {connection.status}")
    job = SyncJob(connection_id=connection.id, state=SyncJobState.QUEUED)
    session.add(job)
    session.flush()
    enqueue_after_commit(session, sync_connection_task, connection.id, job.id)
    session.commit()
    response.headers["Location"] = f"/api/v1/sync-jobs/{job.id}"
    return sync_job_out(job)
