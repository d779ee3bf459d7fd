"""The real service (app + embedded worker) with a Salesforce connection on the emulator.

``service`` is ``tests/pipeline/conftest.py``'s service (SQLite and PostgreSQL through
``db_settings``, the SQLite task queue, worker threads in the test process) whose
settings trust the emulator's CA (``crm_ca_bundle``) and name the emulator as the
Salesforce OAuth app and login server, so a connection's adapter is the real
:class:`~integrations.salesforce.adapter.SalesforceProvider` on simple-salesforce,
talking TLS to the emulator. ``connect(service, emulator, **settings)`` creates the
connection through the API with OAuth tokens the emulator issued.

Tests drive the work themselves (``org.sync()``, ``org.send()``, or ``service.wait_for``
on what the embedded worker does) and inspect the org through the emulator's Python
API (as a user or an admin in the UI would), never through the adapter.

:class:`ServiceEmulator` adds what the emulator cannot do by itself: a per-record
``UNABLE_TO_LOCK_ROW`` on a note's link (Salesforce answers it when another
transaction holds the opportunity), a hook called before every request, and a log of
the ``composite`` requests it answered.
"""

from __future__ import annotations

import json
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
from tests.contract.suite import CrmNote
from tests.pipeline.conftest import Service, running_service, service_settings
from tests.salesforce_adapter.conftest import EmulatorHandle, RetryAfterEmulator

SECRET = "sf-service-whsec-0123456789abcdef"
M = TypeVar("M")


class ServiceEmulator(RetryAfterEmulator):
    """The emulator, a ``Retry-After`` on demand (:class:`RetryAfterEmulator`), and:

    - :meth:`lock_links`: the next ``times`` ``ContentDocumentLink`` creates for an
      opportunity inside a ``composite`` call answer ``UNABLE_TO_LOCK_ROW`` (the
      ``ContentNote`` before it is created, as in Salesforce);
    - ``before_request(method, path)``: called before every request is answered;
    - ``composites``: the ``compositeRequest`` lists of the ``composite`` calls answered.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._faults_lock = threading.Lock()
        self._locked_links: dict[str, int] = {}
        self.before_request: Callable[[str, str], None] | None = None
        self.composites: list[list[dict[str, Any]]] = []

    def lock_links(self, opportunity_id: str, times: int = 1) -> None:
        with self._faults_lock:
            self._locked_links[opportunity_id[:15]] = times

    def locked_links_left(self) -> int:
        with self._faults_lock:
            return sum(self._locked_links.values())

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Any:
        path = urlsplit(target).path
        hook = self.before_request
        if hook is not None:
            hook(method, path)
        if (
            method != "POST"
            or not path.startswith("/services/data/")
            or path.split("/")[-1:] != ["composite"]
        ):
            return super().handle(method, target, headers, body)
        try:
            payload = json.loads(body)
            subrequests = list(payload["compositeRequest"])
        except (ValueError, KeyError, TypeError):
            return super().handle(method, target, headers, body)
        with self._faults_lock:
            self.composites.append(subrequests)
            refused: dict[int, dict[str, Any]] = {}
            for index, item in enumerate(subrequests):
                if not isinstance(item, dict) or not isinstance(item.get("body"), dict):
                    continue
                if not str(item.get("url", "")).endswith("/sobjects/ContentDocumentLink"):
                    continue
                entity = str(item["body"].get("LinkedEntityId", ""))[:15]
                if self._locked_links.get(entity, 0) > 0:
                    self._locked_links[entity] -= 1
                    refused[index] = item
        if not refused:
            return super().handle(method, target, headers, body)
        kept = [item for index, item in enumerate(subrequests) if index not in refused]
        forwarded = json.dumps({**payload, "compositeRequest": kept}).encode()
        response = super().handle(method, target, headers, forwarded)
        if response.status != 200:  # refused as a whole (401, 403...): the locks stay
            with self._faults_lock:
                for item in refused.values():
                    entity = str(item["body"]["LinkedEntityId"])[:15]
                    self._locked_links[entity] = self._locked_links.get(entity, 0) + 1
            return response
        answers = list(json.loads(response.body)["compositeResponse"])
        for index in sorted(refused):
            entity = refused[index]["body"]["LinkedEntityId"]
            answers.insert(
                index,
                {
                    "body": [
                        {
                            "errorCode": "UNABLE_TO_LOCK_ROW",
                            "message": "unable to obtain exclusive access to this record or "
                            f"1 records: {entity}",
                        }
                    ],
                    "httpHeaders": {},
                    "httpStatusCode": 400,
                    "referenceId": refused[index]["referenceId"],
                },
            )
        response.body = json.dumps({"compositeResponse": answers}).encode()
        return response


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    """Keyword arguments of the test's :class:`ServiceEmulator` (a module may override)."""
    return {}


@pytest.fixture
def emulator(emulator_options: dict[str, Any]) -> Iterator[ServiceEmulator]:
    with ServiceEmulator(seed=11, **emulator_options) as running:
        assert isinstance(running, ServiceEmulator)
        yield running


def salesforce_settings(
    db_settings: Settings, tmp_path: Path, emulator: ServiceEmulator, **overrides: Any
) -> Settings:
    """The pipeline service's settings, with the emulator as the Salesforce org and app."""
    return service_settings(
        db_settings,
        tmp_path,
        crm_ca_bundle=emulator.cert_path,
        salesforce_client_id=emulator.CLIENT_ID,
        salesforce_client_secret=emulator.CLIENT_SECRET,
        salesforce_login_url=emulator.base_url,
        **overrides,
    )


@pytest.fixture
def service(
    db_settings: Settings,
    tmp_path: Path,
    emulator: ServiceEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Service]:
    """The app with its embedded worker, on SQLite and PostgreSQL, trusting the emulator.

    It depends on ``emulator`` so that the org outlives the worker threads; like every
    :func:`~tests.pipeline.conftest.running_service`, its reconciler starts no sync and
    rings no write-back sender (these tests drive both)."""
    settings = salesforce_settings(db_settings, tmp_path, emulator)
    with running_service(settings, tmp_path, monkeypatch) as svc:
        yield svc


def oauth_tokens(emulator: ServiceEmulator) -> dict[str, str]:
    """Credentials as the OAuth web flow stores them, issued by the emulator."""
    return {
        "auth": "oauth",
        "access_token": emulator.issue_token(),
        "refresh_token": emulator.issue_refresh_token(),
        "instance_url": emulator.base_url,
        "issued_at": str(int(datetime.now(UTC).timestamp() * 1000)),
    }


@dataclass
class SalesforceOrg:
    """One Salesforce connection of the service, and its org in the emulator."""

    service: Service
    emulator: ServiceEmulator
    connection_id: str
    outbound_url: str
    events_url: str

    @property
    def handle(self) -> EmulatorHandle:
        return EmulatorHandle(self.emulator)

    # ---------------------------------------------------------------- driving the work

    def sync(self) -> None:
        """The sync task, in the test's thread (its write-backs go to the embedded worker)."""
        sync_connection_task.call_local(self.connection_id)

    def sync_without_sending(self) -> SyncReport:
        """The same sync, without ringing the write-back sender (the test sends)."""
        report: SyncReport = with_provider(
            self.service.runtime,
            self.connection_id,
            lambda session, connection, provider: sync_connection(
                session, connection, provider, commit=session.commit
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

    def wait_until_sent(self, timeout: float = 30.0) -> list[WriteBack]:
        """Wait until no write-back is pending or failed; the rows."""

        def settled() -> bool:
            return all(
                row.state in (WriteBackState.WRITTEN, WriteBackState.DEAD)
                for row in self.writebacks()
            )

        self.service.wait_for(settled, timeout=timeout)
        return self.writebacks()

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

    def pause_expires(self) -> None:
        """Time passes: the connection's rate-limit pause is over."""
        get_huey().storage.pop_data(_PAUSE_KEY.format(self.connection_id))

    # ---------------------------------------------------------------- the org

    def notes_on(self, deal_id: str) -> list[CrmNote]:
        """Live ContentNotes linked to the opportunity, oldest first."""
        return self.handle.notes_on(deal_id)

    def live_note_count(self) -> int:
        return len(self.emulator.records("ContentNote"))

    def open_opportunity_ids(self) -> list[str]:
        return sorted(
            record["Id"]
            for record in self.emulator.records("Opportunity")
            if not record["IsClosed"]
        )


def connect(service: Service, emulator: ServiceEmulator, **settings: Any) -> SalesforceOrg:
    """Create the Salesforce connection through the API (OAuth tokens from the emulator,
    a webhook secret); keep the reconciler from starting its first sync on its own."""
    response = service.client.post(
        "/api/v1/connections",
        headers=service.auth(),
        json={
            "provider": "salesforce",
            "name": "Emulated Salesforce org",
            "external_account_id": emulator.org.org_id,
            "instance_url": emulator.base_url,
            "credentials": oauth_tokens(emulator),
            "webhook_secret": SECRET,
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
    shown = service.client.get(f"/api/v1/connections/{connection_id}", headers=service.auth())
    assert shown.status_code == 200, shown.text
    urls = shown.json()["webhook_urls"]
    return SalesforceOrg(
        service, emulator, connection_id, urls["outbound_message"], urls["signed_json"]
    )


def marker_of(note: CrmNote) -> str:
    """The marker the adapter puts at the end of a note's title: ``... [dc1-...]``."""
    assert note.title.endswith("]") and "[" in note.title, note.title
    return note.title.rsplit("[", 1)[1][:-1]
