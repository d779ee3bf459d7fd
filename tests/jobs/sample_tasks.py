"""Tasks the queue tests enqueue; imported by the tests and by the worker subprocess."""

from __future__ import annotations

import time
from pathlib import Path

from app.jobs import task


def _write(path: str, text: str) -> None:
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(text)
    partial.replace(target)  # readers never see half a file


@task()
def write_file(path: str, text: str) -> None:
    """Write ``text`` to ``path``."""
    _write(path, text)


@task()
def slow_write(started: str, done: str, seconds: float) -> None:
    """Mark ``started``, work for ``seconds``, then write ``done``."""
    _write(started, "started")
    time.sleep(seconds)
    _write(done, "done")


@task()
def write_arguments(path: str, delay: str, retries: str) -> None:
    """Keyword arguments named like Huey's own options must reach the function."""
    _write(path, f"{delay},{retries}")
