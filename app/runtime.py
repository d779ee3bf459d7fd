"""The process's shared resources for tasks: settings, database sessions, the secret box.

Requests get the same objects from the app's state; tasks, which run in
worker threads or ``dealcoach worker`` processes, get them here. Built once
per process (and per settings, for tests that switch databases).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings, get_settings
from app.db import create_engine_for, make_session_factory
from app.security.crypto import SecretBox


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    box: SecretBox


_lock = threading.Lock()
_current: Runtime | None = None


def build_runtime(settings: Settings) -> Runtime:
    engine = create_engine_for(settings)
    return Runtime(
        settings, engine, make_session_factory(engine), SecretBox.from_settings(settings)
    )


def get_runtime() -> Runtime:
    """The process's runtime, built from the environment's settings on first use."""
    global _current
    with _lock:
        if _current is None:
            _current = build_runtime(get_settings())
        return _current


def set_runtime(runtime: Runtime | None) -> None:
    """Install the runtime (the app's lifespan, the worker, tests); None forgets it."""
    global _current
    with _lock:
        previous, _current = _current, runtime
    if previous is not None and previous is not runtime:
        previous.engine.dispose()
