"""The real service (app + embedded worker) with a HubSpot connection on the emulator.

``service`` is ``tests/pipeline/conftest.py``'s service (SQLite and PostgreSQL through
``db_settings``, the SQLite task queue, worker threads in the test process) whose
settings name the emulator as the HubSpot OAuth app and API host, so a connection's
adapter is the real :class:`~integrations.hubspot.adapter.HubSpotProvider` on
hubspot-api-client, talking HTTP to the emulator, with the service's shared limiter.
``connect(service, emulator, **settings)`` creates the connection through the API with
OAuth tokens the emulator issued.

Tests drive the work themselves (``portal.sync()``, ``portal.send()``) and inspect the
portal through the emulator's Python API, never through the adapter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select, update

from app.config import Settings
from app.connections.models import Connection
from app.connections.runner import with_provider
from app.connections.service import credentials_of
from app.db import session_scope, utcnow
from app.jobs import get_huey
from app.ratelimit import _PAUSE_KEY
from app.sync.service import SyncReport, sync_connection
from app.sync.tasks import sync_connection_task
from app.writeback.models import WriteBack, WriteBackState, WriteBackTarget
from app.writeback.tasks import send_writebacks
from integrations.hubspot.adapter import MARKER
from tests.contract.suite import CrmNote
from tests.hubspot_adapter.conftest import EmulatorHandle, RetryAfterEmulator
from tests.pipeline.conftest import Service, running_service, service_settings

M = TypeVar("M")


class ServiceEmulator(RetryAfterEmulator):
    """The emulator, a ``Retry-After`` on demand, a hook called before every request,
    and the bodies of the note batch creates it answered."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.before_request: Callable[[str, str], None] | None = None
        self.note_batches: list[bytes] = []
        self._hook_lock = threading.Lock()

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Any:
        path = urlsplit(target).path
        hook = self.before_request
        if hook is not None and not path.startswith("/__emulator/"):
            hook(method, path)
        if method == "POST" and path == "/crm/v3/objects/notes/batch/create":
            with self._hook_lock:
                self.note_batches.append(body)
        return super().handle(method, target, headers, body)


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    """Keyword arguments of the test's :class:`ServiceEmulator` (a module may override)."""
    return {}


@pytest.fixture
def emulator(emulator_options: dict[str, Any]) -> Iterator[ServiceEmulator]:
    with ServiceEmulator(seed=11, **emulator_options) as running:
        assert isinstance(running, ServiceEmulator)
        yield running


def hubspot_settings(
    db_settings: Settings, tmp_path: Path, emulator: ServiceEmulator, **overrides: Any
) -> Settings:
    """The pipeline service's settings, with the emulator as the HubSpot portal and app."""
    return service_settings(
        db_settings,
        tmp_path,
        hubspot_client_id=emulator.CLIENT_ID,
        hubspot_client_secret=emulator.CLIENT_SECRET,
        hubspot_oauth_url=emulator.base_url,
        **overrides,
    )


@pytest.fixture
def service(
    db_settings: Settings,
    tmp_path: Path,
    emulator: ServiceEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Service]:
    """The app with its embedded worker, on SQLite and PostgreSQL, on the emulator (its
    reconciler starts no sync and rings no sender: the tests drive both)."""
    settings = hubspot_settings(db_settings, tmp_path, emulator)
    with running_service(settings, tmp_path, monkeypatch) as svc:
        yield svc


def oauth_tokens(emulator: ServiceEmulator) -> dict[str, str]:
    """Credentials as the OAuth connect flow stores them, issued by the emulator."""
    access, refresh = emulator.issue_tokens()
    return {"auth": "oauth", "access_token": access, "refresh_token": refresh}


@dataclass
class HubSpotPortal:
    """One HubSpot connection of the service, and its portal in the emulator."""

    service: Service
    emulator: ServiceEmulator
    connection_id: str

    @property
    def handle(self) -> EmulatorHandle:
        return EmulatorHandle(self.emulator)

    # ---------------------------------------------------------------- driving the work

    def sync(self) -> None:
        """The sync task, in the test's thread (its write-backs go to the embedded worker)."""
        sync_connection_task.call_local(self.connection_id)

    def sync_without_sending(self, commit: Callable[[], None] | None = None) -> SyncReport:
        """The same sync, without ringing the write-back sender (the test sends).
        ``commit`` replaces the page commit (a crash can be staged there)."""
        report: SyncReport = with_provider(
            self.service.runtime,
            self.connection_id,
            lambda session, connection, provider: sync_connection(
                session, connection, provider, commit=commit or session.commit
            ),
        )
        return report

    def send(self) -> None:
        """The write-back task, in the test's thread."""
        send_writebacks.call_local(self.connection_id)

    def make_due_now(self, *where: Any) -> None:
        """Time passes: the write-backs' backoff or claim lease has run out."""
        with session_scope(self.service.runtime.sessions) as session:
            session.execute(
                update(WriteBack)
                .where(WriteBack.connection_id == self.connection_id, *where)
                .values(next_attempt_at=utcnow())
            )

    def wait_until_sent(self, timeout: float = 60.0) -> list[WriteBack]:
        """Wait until no write-back is pending or failed; the rows."""

        def settled() -> bool:
            return all(
                row.state in (WriteBackState.WRITTEN, WriteBackState.DEAD)
                for row in self.writebacks()
            )

        self.service.wait_for(settled, timeout=timeout)
        return self.writebacks()

    def pause_expires(self) -> None:
        """Time passes: the connection's rate-limit pause is over."""
        get_huey().storage.pop_data(_PAUSE_KEY.format(self.connection_id))

    # ---------------------------------------------------------------- the service's records

    def rows(self, model: type[M], *where: Any) -> list[M]:
        with session_scope(self.service.runtime.sessions) as session:
            found = list(session.scalars(select(model).where(*where)))
            for row in found:
                session.expunge(row)
            return found

    def writebacks(self, target: WriteBackTarget | None = None) -> list[WriteBack]:
        where = [WriteBack.connection_id == self.connection_id]
        if target is not None:
            where.append(WriteBack.target == target)
        return self.rows(WriteBack, *where)

    def connection(self) -> Connection:
        [connection] = self.rows(Connection, Connection.id == self.connection_id)
        return connection

    def stored_credentials(self) -> dict[str, Any]:
        return credentials_of(self.service.runtime.box, self.connection())

    # ---------------------------------------------------------------- the portal

    def notes_on(self, deal_id: str) -> list[CrmNote]:
        return self.handle.notes_on(deal_id)

    def note_count(self) -> int:
        return len(self.emulator.notes())

    def open_deal_ids(self) -> list[str]:
        return sorted(
            deal_id
            for deal_id in self.emulator.deal_ids()
            if (self.emulator.deal(deal_id) or {}).get("hs_is_closed") != "true"
        )


def connect(service: Service, emulator: ServiceEmulator, **settings: Any) -> HubSpotPortal:
    """Create the HubSpot connection through the API (OAuth tokens from the emulator);
    keep the reconciler from starting its first sync on its own."""
    response = service.client.post(
        "/api/v1/connections",
        headers=service.auth(),
        json={
            "provider": "hubspot",
            "name": "Emulated HubSpot portal",
            "external_account_id": str(emulator.portal_id),
            "instance_url": emulator.base_url,
            "credentials": oauth_tokens(emulator),
            "settings": settings,
        },
    )
    assert response.status_code == 201, response.text
    connection_id = str(response.json()["id"])
    with session_scope(service.runtime.sessions) as session:
        session.execute(
            update(Connection)
            .where(Connection.id == connection_id)
            .values(last_synced_at=datetime.now(UTC))
        )
    return HubSpotPortal(service, emulator, connection_id)


def marker_of(note: CrmNote) -> str:
    """The marker in a note's body (the adapter puts it there)."""
    found = MARKER.findall(note.body)
    assert found, note.body[:200]
    return str(found[-1])
