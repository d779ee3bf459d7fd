"""The task queue: one Huey instance, task declaration, after-commit enqueue, the consumers.

Backends (``DEALCOACH_QUEUE_URL``, see :func:`make_huey`): a SQLite file
``queue.db`` in the data directory (default, WAL), Redis (``redis://``) or
PostgreSQL (``postgresql://``). Results are off: a task is a doorbell, the
database is the record of the work (ARCHITECTURE.md, "Durability and scale").

Why tasks are declared on this module rather than on a Huey instance
------------------------------------------------------------------------
Huey binds a task to one instance when its decorator runs, so the usual pattern
builds the instance at import time from the environment. That would freeze the
backend before ``create_app(settings)`` or ``dealcoach worker`` has read the
settings, and a test run could never use two backends. Instead feature modules
declare tasks here (``from app.jobs import task, periodic_task``); each
declaration is kept in a small registry and bound to whichever Huey instance is
*current*: the one built from ``get_settings()`` on first use
(:func:`get_huey`), or the one :func:`configure_queue` installed (the app's
lifespan, the worker, tests). A declaration made after the instance exists is
bound to it at once. Calling a declared task enqueues it on the current
instance; that is the only indirection.

Tests: ``configure_queue(settings)`` for a real backend, or
``configure_queue(settings, immediate=True)`` to run tasks synchronously in
the calling thread (Huey's immediate mode, in-memory storage).

Consumers: :func:`start_embedded_consumer` runs worker threads and the
scheduler inside the current process (the API process, the embedded default),
without touching signal handlers (Huey's ``Consumer.start()`` installs them, and
the host server owns them). :func:`run_worker` is ``dealcoach worker``: Huey's
``Consumer.run()`` in the foreground, SIGTERM = graceful stop (finish running
tasks, up to :data:`SHUTDOWN_TIMEOUT` seconds), SIGINT = stop now, SIGHUP =
restart.

Periodic tasks are enqueued by every running consumer's scheduler; with several
``dealcoach worker`` processes a periodic task is enqueued once per process per
tick, so periodic tasks must be idempotent (they are doorbells for work found in
the database), or all workers but one run with ``--no-periodic``.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import importlib.util
import logging
import pkgutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, ParamSpec

from huey import PostgresHuey, PriorityRedisHuey, SqliteHuey
from huey import crontab as huey_crontab
from huey.api import Huey
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, SessionTransaction

from app.config import Settings, configure_logging, get_settings

__all__ = [
    "QUEUE_NAME",
    "SHUTDOWN_TIMEOUT",
    "EmbeddedConsumer",
    "QueueTask",
    "QueueUnavailable",
    "configure_queue",
    "crontab",
    "enqueue_after_commit",
    "ensure_queue",
    "get_huey",
    "load_task_modules",
    "make_huey",
    "periodic_task",
    "reset_queue",
    "run_worker",
    "start_embedded_consumer",
    "task",
]

logger = logging.getLogger(__name__)

P = ParamSpec("P")

#: The queue's name: the key prefix on Redis, the ``queue`` column on SQLite/PostgreSQL.
QUEUE_NAME = "dealcoach"
#: Seconds a graceful stop waits for running tasks before giving up on them.
SHUTDOWN_TIMEOUT = 25.0
#: Longest pause between two polls of an idle SQLite queue (Redis and PostgreSQL block
#: on the server instead of polling).
SQLITE_MAX_POLL_SECONDS = 1.0
#: How often the embedded consumer replaces worker threads that died.
HEALTH_CHECK_SECONDS = 10.0


# --- building an instance ------------------------------------------------------------------


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise ValueError(f"the SQLite queue needs a file path, got {url!r}")
    return Path(database).expanduser().resolve()


def _libpq_dsn(url: str) -> str:
    """A URL psycopg.connect takes: the SQLAlchemy ``+psycopg`` driver suffix removed."""
    scheme, sep, rest = url.partition("://")
    return scheme.split("+", 1)[0] + sep + rest


def make_huey(settings: Settings, *, name: str = QUEUE_NAME, immediate: bool = False) -> Huey:
    """A new Huey instance on the backend of ``settings.resolved_queue_url``.

    - ``sqlite:///path``: ``SqliteHuey`` on that file (WAL; the folder is created).
    - ``redis://`` / ``rediss://``: ``PriorityRedisHuey`` (a ``RedisHuey`` whose queue is
      a sorted set, so task priorities work on every backend; needs Redis 5+).
    - ``postgresql://`` (or ``postgresql+psycopg://``): ``PostgresHuey`` (psycopg 3; it
      creates its ``huey_*`` tables if missing).

    UTC timestamps, results off. With ``immediate=True`` tasks run synchronously in
    the caller and the storage is in memory (tests).
    """
    url = settings.resolved_queue_url
    common: dict[str, Any] = {"results": False, "utc": True, "immediate": immediate}
    instance: Huey
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        instance = SqliteHuey(
            name,
            filename=str(path),
            journal_mode="wal",
            timeout=max(settings.sqlite_busy_timeout_ms / 1000, 1.0),
            **common,
        )
    elif url.startswith(("redis://", "rediss://")):
        instance = PriorityRedisHuey(name, url=url, **common)
    elif url.startswith("postgresql"):
        instance = PostgresHuey(name, dsn=_libpq_dsn(url), **common)
    else:  # Settings validates the scheme; this guards direct callers.
        raise ValueError(f"unsupported queue URL scheme: {url.split(':', 1)[0]!r}")
    return instance


def _is_sqlite(huey: Huey) -> bool:
    return isinstance(huey, SqliteHuey)


# --- the current instance and the task declarations ----------------------------------------


@dataclass
class _Current:
    huey: Huey | None = None
    url: str | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)


_current = _Current()
_declarations: dict[str, QueueTask[Any]] = {}


def _bind_all(huey: Huey) -> None:
    for declared in list(_declarations.values()):
        declared._bind(huey)


def configure_queue(settings: Settings, *, name: str = QUEUE_NAME, immediate: bool = False) -> Huey:
    """Make a new instance for ``settings`` the current one and bind every declared task."""
    huey = make_huey(settings, name=name, immediate=immediate)
    with _current.lock:
        old = _current.huey
        _current.huey, _current.url = huey, settings.resolved_queue_url
        _bind_all(huey)
    if old is not None and old is not huey:
        _close(old)
    return huey


def ensure_queue(settings: Settings) -> Huey:
    """The current instance if it serves ``settings``' queue URL, else a new one for it."""
    with _current.lock:
        if _current.huey is not None and _current.url == settings.resolved_queue_url:
            return _current.huey
        return configure_queue(settings)


def get_huey() -> Huey:
    """The current instance, built from ``get_settings()`` on first use."""
    with _current.lock:
        if _current.huey is None:
            return configure_queue(get_settings())
        return _current.huey


def reset_queue() -> None:
    """Forget the current instance (closing its storage); the next use builds a new one."""
    with _current.lock:
        old, _current.huey, _current.url = _current.huey, None, None
    if old is not None:
        _close(old)


def _close(huey: Huey) -> None:
    try:
        huey.storage.close()
    except Exception:  # closing is best effort
        logger.debug("closing the queue storage failed", exc_info=True)


#: The keyword a task's request id travels under (see :func:`_carrying_request_id`).
REQUEST_ID_KWARG = "_dealcoach_request_id"


def _with_request_id(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The task's keyword arguments plus the current request id, when there is one."""
    from app.logs import request_id_var

    request_id = request_id_var.get()
    return {**kwargs, REQUEST_ID_KWARG: request_id} if request_id else dict(kwargs)


def _carrying_request_id(func: Callable[..., object]) -> Callable[..., object]:
    """``func`` run with the request id it was enqueued under set for its log lines (and
    for the tasks it enqueues): a webhook's id follows its review and its write-back."""
    from app.logs import request_id_var
    from app.metrics import TASKS

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> object:
        request_id = kwargs.pop(REQUEST_ID_KWARG, None)
        token = request_id_var.set(str(request_id)) if request_id else None
        outcome = "error"
        try:
            result = func(*args, **kwargs)
            outcome = "ok"
            return result
        finally:
            TASKS.labels(func.__name__, outcome).inc()
            if token is not None:
                request_id_var.reset(token)

    return run


class QueueTask(Generic[P]):
    """A task declared with :func:`task` or :func:`periodic_task`.

    Calling it enqueues it on the current queue (arguments must pickle); it returns
    nothing, since results are off. ``call_local`` runs the function in the caller.
    """

    def __init__(
        self,
        func: Callable[P, object],
        options: dict[str, Any],
        schedule: Callable[[datetime], bool] | None = None,
    ) -> None:
        self.func = func
        self.options = options
        self.periodic_schedule = schedule
        self.name: str = options.get("name") or func.__name__
        self.identifier = f"{func.__module__}.{self.name}"
        self._wrappers: dict[int, Any] = {}
        functools.update_wrapper(self, func)

    def _bind(self, huey: Huey) -> Any:
        wrapper = self._wrappers.get(id(huey))
        if wrapper is None or wrapper.huey is not huey:
            if self.periodic_schedule is None:
                wrapper = huey.task(**self.options)(_carrying_request_id(self.func))
            else:
                wrapper = huey.periodic_task(self.periodic_schedule, **self.options)(self.func)
            self._wrappers = {id(huey): wrapper}  # only the current instance matters
        return wrapper

    def _wrapper(self) -> Any:
        huey = get_huey()
        with _current.lock:
            return self._bind(huey)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Enqueue a run with these arguments."""
        wrapper = self._wrapper()
        # Built directly rather than through TaskWrapper.s(), which would swallow
        # keyword arguments named like its options (delay, eta, retries, ...).
        wrapper.huey.enqueue(wrapper.task_class(args, _with_request_id(kwargs)))

    def enqueue_in(self, seconds: float, /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Enqueue a run that becomes due in ``seconds`` (the scheduler releases it)."""
        wrapper = self._wrapper()
        wrapper.schedule(args=args, kwargs=_with_request_id(kwargs), delay=seconds)

    def call_local(self, *args: P.args, **kwargs: P.kwargs) -> object:
        """Run the function now, in the caller, without the queue."""
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<QueueTask {self.identifier}>"


def _declare(
    func: Callable[P, object], options: dict[str, Any], schedule: Callable[[datetime], bool] | None
) -> QueueTask[P]:
    declared = QueueTask(func, options, schedule)
    with _current.lock:
        _declarations[declared.identifier] = declared  # a re-import replaces the old one
        if _current.huey is not None:
            registry = _current.huey._registry
            stale = registry._registry.get(declared.identifier)
            if stale is not None:
                registry.unregister(stale)
            declared._bind(_current.huey)
    return declared


def _options(
    retries: int,
    retry_delay: float,
    retry_backoff: float,
    priority: int | None,
    expires: float | None,
    name: str | None,
) -> dict[str, Any]:
    return {
        "retries": retries,
        "retry_delay": retry_delay,
        "retry_backoff": retry_backoff,
        "priority": priority,
        "expires": expires,
        "name": name,
    }


def task(
    *,
    retries: int = 0,
    retry_delay: float = 0,
    retry_backoff: float = 0,
    priority: int | None = None,
    expires: float | None = None,
    name: str | None = None,
) -> Callable[[Callable[P, object]], QueueTask[P]]:
    """Declare a task: ``@task(retries=3, retry_delay=10) def review_deal(deal_id: str): ...``.

    ``retry_backoff`` multiplies the delay after each retry; ``priority`` (higher
    first) works on every backend; ``expires`` (seconds) drops a run not started in
    time; ``name`` overrides the function name (unique per module).
    """
    options = _options(retries, retry_delay, retry_backoff, priority, expires, name)

    def decorator(func: Callable[P, object]) -> QueueTask[P]:
        return _declare(func, options, None)

    return decorator


def periodic_task(
    schedule: Callable[[datetime], bool],
    *,
    retries: int = 0,
    retry_delay: float = 0,
    retry_backoff: float = 0,
    priority: int | None = None,
    expires: float | None = None,
    name: str | None = None,
) -> Callable[[Callable[[], object]], QueueTask[[]]]:
    """Declare a task the consumers enqueue on ``schedule`` (see :func:`crontab`, UTC)."""
    options = _options(retries, retry_delay, retry_backoff, priority, expires, name)

    def decorator(func: Callable[[], object]) -> QueueTask[[]]:
        return _declare(func, options, schedule)

    return decorator


def crontab(
    minute: str = "*",
    hour: str = "*",
    day: str = "*",
    month: str = "*",
    day_of_week: str = "*",
) -> Callable[[datetime], bool]:
    """A cron-style schedule for :func:`periodic_task`, matched against UTC time."""
    validate: Callable[[datetime], bool] = huey_crontab(
        minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week, strict=True
    )
    return validate


def load_task_modules() -> list[str]:
    """Import every ``app.<package>.tasks`` module so its tasks are declared; return the names.

    A consumer must know every task it may be handed; an error in a task module
    is raised, not skipped.
    """
    import app

    loaded = []
    for info in pkgutil.iter_modules(app.__path__, "app."):
        if not info.ispkg:
            continue
        module = f"{info.name}.tasks"
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
            loaded.append(module)
    return loaded


# --- enqueue after commit ------------------------------------------------------------------

_PENDING = "dealcoach.jobs.after_commit"


@dataclass
class _Pending:
    transaction: SessionTransaction | None
    call: Callable[[], object]
    label: str


def _belongs_to(pending: _Pending, ended: SessionTransaction) -> bool:
    """Whether ``pending`` was registered inside ``ended`` (or one of its savepoints)."""
    if pending.transaction is None:
        return ended.parent is None
    current: SessionTransaction | None = pending.transaction
    while current is not None:
        if current is ended:
            return True
        current = current.parent
    return False


def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a SAVEPOINT was released; the work is not durable yet
    pending: list[_Pending] = session.info.pop(_PENDING, [])
    for item in pending:
        try:
            item.call()
        except Exception:
            # The commit stands; the job is a doorbell and the reconciler finds the work.
            logger.exception("enqueue after commit failed: %s", item.label)


def _after_soft_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    pending: list[_Pending] = session.info.get(_PENDING, [])
    if pending:
        session.info[_PENDING] = [p for p in pending if not _belongs_to(p, previous_transaction)]


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        # The outermost transaction ended; after_commit has already run if it committed.
        session.info.pop(_PENDING, None)


def enqueue_after_commit(
    session: Session, fn: Callable[P, object], *args: P.args, **kwargs: P.kwargs
) -> None:
    """Call ``fn(*args, **kwargs)`` (typically a :class:`QueueTask`: enqueue) once
    ``session``'s outermost transaction commits; drop it if that transaction, or the
    SAVEPOINT it was registered in, rolls back or the session closes uncommitted.

    An enqueue that fails after the commit is logged, not raised: the commit has
    happened, and the database row is what the reconciler finds the work by.
    """
    if not event.contains(session, "after_commit", _after_commit):
        event.listen(session, "after_commit", _after_commit)
        event.listen(session, "after_soft_rollback", _after_soft_rollback)
        event.listen(session, "after_transaction_end", _after_transaction_end)
    transaction = session.get_nested_transaction() or session.get_transaction()
    label = getattr(fn, "identifier", None) or getattr(fn, "__qualname__", repr(fn))
    # The job leaves in the context it was asked for (its request id), even when the
    # commit happens on another thread (the inbox's group-commit writer).
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    session.info.setdefault(_PENDING, []).append(_Pending(transaction, call, str(label)))


# --- consumers -----------------------------------------------------------------------------


def _consumer_options(huey: Huey, workers: int, periodic: bool) -> dict[str, Any]:
    options: dict[str, Any] = {
        "workers": workers,
        "worker_type": "thread",
        "periodic": periodic,
        "shutdown_timeout": SHUTDOWN_TIMEOUT,
        "check_worker_health": True,
    }
    if _is_sqlite(huey):
        options["max_delay"] = SQLITE_MAX_POLL_SECONDS
    return options


def _make_embedded_consumer(huey: Huey, options: dict[str, Any]) -> Any:
    from huey.consumer import Consumer

    class _EmbeddedHueyConsumer(Consumer):  # type: ignore[misc]  # huey is untyped
        """Consumer.start() without installing signal handlers: the host process owns them."""

        def _set_signal_handlers(self) -> None:
            pass

    return _EmbeddedHueyConsumer(huey, **options)


class EmbeddedConsumer:
    """Worker threads and the scheduler of an embedded consumer; :meth:`stop` ends them."""

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer
        self._stopping = threading.Event()
        self._health = threading.Thread(
            target=self._check_health, name="dealcoach-queue-health", daemon=True
        )
        self._consumer.start()
        self._health.start()

    @property
    def huey(self) -> Huey:
        huey: Huey = self._consumer.huey
        return huey

    @property
    def threads(self) -> list[threading.Thread]:
        """The scheduler and worker threads."""
        return [self._consumer.scheduler, *(t for _, t in self._consumer.worker_threads)]

    @property
    def running(self) -> bool:
        return not self._stopping.is_set() and any(t.is_alive() for t in self.threads)

    def _check_health(self) -> None:
        while not self._stopping.wait(HEALTH_CHECK_SECONDS):
            try:
                self._consumer.check_worker_health()
            except Exception:
                logger.exception("queue worker health check failed")

    def stop(self, timeout: float = SHUTDOWN_TIMEOUT) -> bool:
        """Stop taking tasks and wait up to ``timeout`` seconds for running ones to finish.

        Returns whether every thread ended (a task still running after the timeout is
        abandoned; its thread is a daemon). Calling it again is harmless.
        """
        self._stopping.set()
        self._health.join()
        self._consumer.shutdown_timeout = timeout
        self._consumer.stop(graceful=True)
        self.huey.notify_interrupted_tasks()
        return not any(t.is_alive() for t in self.threads)


def start_embedded_consumer(
    settings: Settings, *, workers: int | None = None, periodic: bool = True
) -> EmbeddedConsumer:
    """Start a thread consumer (``settings.worker_threads`` workers, periodic tasks on)
    on the queue for ``settings``, inside this process; no signal handlers installed.
    """
    huey = ensure_queue(settings)
    load_task_modules()
    options = _consumer_options(huey, workers or settings.worker_threads, periodic)
    consumer = EmbeddedConsumer(_make_embedded_consumer(huey, options))
    logger.info("embedded queue consumer started: %s worker threads", options["workers"])
    return consumer


def _start_heartbeat(settings: Settings) -> Callable[[], None]:
    """This worker's heartbeat (``app.leases``), if its database is reachable; a worker
    without one still works, its claims just wait for their lease after a crash."""
    try:
        from app.db import create_engine_for, make_session_factory
        from app.leases import start_heartbeat

        return start_heartbeat(make_session_factory(create_engine_for(settings)))
    except Exception as exc:
        logger.warning("worker without a heartbeat: %s", exc)
        return lambda: None


class QueueUnavailable(RuntimeError):
    """The task queue did not answer within the wait (one-line message naming the setting)."""


def wait_for_queue(settings: Settings, timeout: float, *, interval: float = 1.0) -> None:
    """Return once the queue answers; raise :class:`QueueUnavailable` after ``timeout``
    seconds of failed attempts (one debug line per attempt, no traceback)."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            ensure_queue(settings).pending_count()
            return
        except Exception as exc:  # any backend error (redis, psycopg, sqlite3) means "not yet"
            last = " ".join(str(exc).split())[:200] or type(exc).__name__
            logger.debug("queue not answering yet: %s", last)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))
    url = _safe_url(settings.resolved_queue_url)
    raise QueueUnavailable(
        f"the task queue at {url} did not answer within {timeout:g} s ({last}); "
        "check DEALCOACH_QUEUE_URL and that the server is up"
    )


def _safe_url(url: str) -> str:
    """``url`` with any password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # a redis:// URL SQLAlchemy cannot parse: show the scheme only
        return url.split("://", 1)[0] + "://..."


def run_worker(settings: Settings, *, threads: int | None = None, periodic: bool = True) -> None:
    """``dealcoach worker``: run a consumer in the foreground until SIGTERM/SIGINT.

    SIGTERM stops gracefully (running tasks finish, up to :data:`SHUTDOWN_TIMEOUT`
    seconds); SIGINT stops at once; SIGHUP restarts the process.
    """
    configure_logging(settings)
    huey = ensure_queue(settings)
    modules = load_task_modules()
    logger.info("task modules: %s", ", ".join(modules) or "none")
    options = _consumer_options(huey, threads or settings.worker_threads, periodic)
    consumer = huey.create_consumer(graceful_signal="TERM", **options)
    started = time.monotonic()
    stop_heartbeat = _start_heartbeat(settings)
    try:
        consumer.run()
    finally:
        stop_heartbeat()
    logger.info("worker stopped after %.0f s", time.monotonic() - started)
