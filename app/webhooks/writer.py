"""Group commit for the inbox on SQLite: one writer thread stores the deliveries of many requests.

On SQLite every commit is a sync of the write-ahead log to disk (``synchronous =
FULL``: an acknowledged event survives a power cut), and a disk sync costs
milliseconds. Request threads therefore do not commit their own deliveries: they
hand them to the process's :class:`InboxWriter`, whose one thread takes every
delivery waiting (up to :data:`MAX_BATCH`), stores them all with
:func:`~app.webhooks.service.store_events` in one transaction, commits once, and
then answers each request. 40 concurrent senders cost one disk sync per batch, not
40; a request is acknowledged only after its events are committed.

A batch that fails as a whole (a bug in one delivery) is stored again one delivery
per transaction, so one bad delivery cannot refuse the others. A lock timeout is
raised to the request, which retries (``app/webhooks/router.py``).

PostgreSQL takes concurrent writers well and does not need this: there, requests
store their own deliveries.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from app.connections.models import Connection
from app.db import session_scope
from app.logs import request_id_var
from app.webhooks.service import StoredEvents, store_events
from integrations.base import WebhookEvent

logger = logging.getLogger(__name__)

#: Deliveries stored in one transaction at most.
MAX_BATCH = 200
#: Seconds a request waits for its delivery to be committed.
STORE_TIMEOUT = 60.0


@dataclass
class _Delivery:
    connection: Connection
    events: Sequence[WebhookEvent]
    headers: dict[str, str]
    body: bytes
    done: Future[StoredEvents] = field(default_factory=Future)
    #: The request's id: its review jobs carry it (stored on the writer's thread).
    request_id: str | None = field(default_factory=request_id_var.get)


class InboxWriter:
    """The one thread that stores webhook deliveries for one database (group commit)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._queue: queue.SimpleQueue[_Delivery] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="dealcoach-inbox", daemon=True)
        self._thread.start()

    def store(
        self,
        connection: Connection,
        events: Sequence[WebhookEvent],
        headers: dict[str, str],
        body: bytes,
    ) -> StoredEvents:
        """Store a delivery (see :func:`store_events`); returns once it is committed."""
        delivery = _Delivery(connection, events, headers, body)
        self._queue.put(delivery)
        return delivery.done.result(timeout=STORE_TIMEOUT)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._store(batch)
            except Exception:  # never let the writer die
                logger.exception("the inbox writer failed on a batch")
                for delivery in batch:
                    if not delivery.done.done():
                        delivery.done.set_exception(RuntimeError("the inbox writer failed"))

    def _store(self, batch: list[_Delivery]) -> None:
        try:
            with session_scope(self._sessions) as session:
                results = [self._one(session, delivery) for delivery in batch]
        except Exception as exc:
            if len(batch) == 1:
                batch[0].done.set_exception(exc)
                return
            for delivery in batch:  # one by one: a bad delivery fails alone
                try:
                    with session_scope(self._sessions) as session:
                        result = self._one(session, delivery)
                except Exception as single:
                    delivery.done.set_exception(single)
                else:
                    delivery.done.set_result(result)
            return
        for delivery, result in zip(batch, results, strict=True):
            delivery.done.set_result(result)

    @staticmethod
    def _one(session: Session, delivery: _Delivery) -> StoredEvents:
        token = request_id_var.set(delivery.request_id)
        try:
            return store_events(
                session, delivery.connection, delivery.events, delivery.headers, delivery.body
            )
        finally:
            request_id_var.reset(token)


_writers: dict[int, InboxWriter] = {}
_writers_lock = threading.Lock()


def writer_for(sessions: sessionmaker[Session]) -> InboxWriter:
    """The process's writer for this session factory (started on first use)."""
    with _writers_lock:
        writer = _writers.get(id(sessions))
        if writer is None or writer._sessions is not sessions:
            writer = _writers[id(sessions)] = InboxWriter(sessions)
        return writer


def store_delivery(
    sessions: sessionmaker[Session],
    connection: Connection,
    events: Sequence[WebhookEvent],
    headers: Mapping[str, str],
    body: bytes,
) -> StoredEvents:
    """Store a delivery and commit: through the group-commit writer on SQLite, in its own
    transaction elsewhere. The review jobs leave after the commit."""
    bind = sessions.kw.get("bind")
    if bind is not None and bind.dialect.name == "sqlite":
        return writer_for(sessions).store(connection, events, dict(headers), body)
    with session_scope(sessions) as session:
        return store_events(session, connection, events, headers, body)
