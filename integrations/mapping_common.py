"""Helpers that the CRM mappers (``integrations/*/mapping.py``) share as they are.

Pure functions: no I/O, no clock. Only helpers whose behaviour is the same for
every CRM live here; a parser that treats a value differently per CRM (a blank
boolean, a date format, an id) stays in that CRM's mapper.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from itertools import pairwise
from typing import TypeVar

from app.coaching.snapshot import Change, Stage
from integrations.base import MappingError

__all__ = [
    "consecutive_changes",
    "kind",
    "number",
    "same",
    "same_stage",
    "shown",
    "text",
]

T = TypeVar("T")


# --------------------------------------------------------------------------- history helpers


def same(old: object, new: object) -> bool:
    """Whether two history values are the same (plain equality)."""
    return old == new


def same_stage(old: Stage | None, new: Stage | None) -> bool:
    """Whether two history stages are the same stage (by key)."""
    if old is None or new is None:
        return old is new
    return old.key == new.key


def consecutive_changes(
    points: Sequence[tuple[datetime, T | None]], is_same: Callable[[T | None, T | None], bool]
) -> list[Change[T]]:
    """Real changes between consecutive values (oldest first); the first value is no change."""
    return [
        Change(at=at, old=old, new=new)
        for (_, old), (at, new) in pairwise(points)
        if not is_same(old, new)
    ]


# --------------------------------------------------------------------------- value parsing


def kind(value: object) -> str:
    """A value's type for an error message (``null`` for None)."""
    return "null" if value is None else type(value).__name__


def shown(value: str) -> str:
    """A value quoted for an error message, shortened."""
    return repr(value if len(value) <= 40 else value[:40] + "...")


def text(value: object, field: str, rid: str | None) -> str | None:
    """A string value (a number is taken as its text), or None when absent or blank.

    An object, a list or a boolean is not text: :class:`MappingError` naming ``field``.
    """
    if value is None:
        return None
    if isinstance(value, str):
        string = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        string = str(value)
    else:
        raise MappingError(rid, f"{field}: expected text, got {kind(value)}")
    return string if string.strip() else None


def number(value: object, field: str, rid: str | None) -> float | None:
    """A finite number (a numeric string is parsed), or None when absent or blank.

    A boolean, a non-numeric string, an object or a non-finite value is not a
    number: :class:`MappingError` naming ``field``.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise MappingError(rid, f"{field}: expected a number, got {value!r}")
    if isinstance(value, int | float):
        try:
            parsed = float(value)
        except OverflowError:  # an integer beyond float range, e.g. 10**400
            raise MappingError(rid, f"{field}: number out of range") from None
    elif isinstance(value, str):
        if not value.strip():
            return None
        try:
            parsed = float(value)
        except ValueError:
            raise MappingError(rid, f"{field}: not a number: {shown(value)}") from None
    else:
        raise MappingError(rid, f"{field}: expected a number, got {kind(value)}")
    if not math.isfinite(parsed):
        raise MappingError(rid, f"{field}: not a finite number: {value!r}")
    return parsed
