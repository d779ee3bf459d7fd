"""Failpoints: named places where the reliability suite makes the process die.

``DEALCOACH_FAILPOINTS`` lists the armed points, comma-separated, each as ``name`` (die
on the first pass) or ``name@N`` (die on the N-th pass). A process passing an armed
point sends itself SIGKILL: no ``finally``, no atexit, no flush, exactly as the
operating system's OOM killer or a pulled plug would stop it. Unset (always, outside
the reliability suite), :func:`failpoint` is a dictionary look-up that finds nothing.

The points, in the order a webhook's work passes them:

- ``after_inbox_insert``: the webhook's events are committed, no review job queued;
- ``after_review``: the review and its write-back rows are committed, nothing sent;
- ``before_crm_call``: a batch of write-backs is claimed, the CRM not yet called;
- ``after_crm_call``: the CRM wrote the batch, its result not yet recorded
  (``after_crm_call@2``: the second batch of a run, the first one recorded).
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["POINTS", "failpoint"]

POINTS = frozenset({"after_inbox_insert", "after_review", "before_crm_call", "after_crm_call"})


def _armed(spec: str) -> dict[str, int]:
    armed: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, nth = item.partition("@")
        if name not in POINTS or (nth and not nth.isdigit()):
            raise ValueError(
                f"DEALCOACH_FAILPOINTS: unknown failpoint {item!r} "
                f"(known: {', '.join(sorted(POINTS))}; name or name@N)"
            )
        armed[name] = int(nth or 1)
    return armed


_ARMED = _armed(os.environ.get("DEALCOACH_FAILPOINTS", ""))
_PASSES: dict[str, int] = {}
_LOCK = threading.Lock()


def failpoint(name: str) -> None:
    """Die here (SIGKILL) when ``name`` is armed and this is its armed pass."""
    if name not in _ARMED:
        return
    with _LOCK:
        _PASSES[name] = _PASSES.get(name, 0) + 1
        if _PASSES[name] != _ARMED[name]:
            return
    os.kill(os.getpid(), signal.SIGKILL)
