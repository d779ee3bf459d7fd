"""Salesforce value formats: record ids, date-times, dates, and API errors."""

from __future__ import annotations

import re
import string
from datetime import UTC, date, datetime
from typing import Any

__all__ = [
    "ApiError",
    "IdFactory",
    "format_date",
    "format_datetime",
    "is_record_id",
    "parse_date",
    "parse_datetime",
    "same_id",
    "to18",
]

_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase  # base 62
_SUFFIX = string.ascii_uppercase + "012345"
_ID = re.compile(r"[0-9A-Za-z]{15}(?:[0-9A-Za-z]{3})?")


class ApiError(Exception):
    """An error answered as Salesforce does: ``[{"message", "errorCode"}]`` with a status."""

    def __init__(
        self, status: int, code: str, message: str, fields: list[str] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields

    def body(self) -> list[dict[str, Any]]:
        item: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            item["fields"] = self.fields
        return [item]

    def record_error(self) -> dict[str, Any]:
        """The error as a DML result entry (``composite/sobjects``): ``statusCode``."""
        return {"statusCode": self.code, "message": self.message, "fields": self.fields or []}


def to18(id15: str) -> str:
    """The case-safe 18-character form of a 15-character Salesforce id."""
    if len(id15) == 18:
        return id15
    if len(id15) != 15:
        raise ValueError(f"not a 15-character id: {id15!r}")
    suffix = ""
    for chunk in range(3):
        flags = 0
        for position in range(5):
            char = id15[chunk * 5 + position]
            if "A" <= char <= "Z":
                flags |= 1 << position
        suffix += _SUFFIX[flags]
    return id15 + suffix


def is_record_id(value: object) -> bool:
    """A 15- or 18-character id whose 18-character suffix (if any) is right."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        return False
    return len(value) == 15 or to18(value[:15]) == value


def same_id(left: str, right: str) -> bool:
    """Ids compare on their first 15 characters (the 18-character form adds a checksum)."""
    return left[:15] == right[:15]


class IdFactory:
    """Deterministic ids: key prefix + ``Em`` (the emulator's pod) + a base-62 counter."""

    def __init__(self, counters: dict[str, int] | None = None) -> None:
        self.counters: dict[str, int] = dict(counters or {})

    def next(self, prefix: str) -> str:
        count = self.counters.get(prefix, 0) + 1
        self.counters[prefix] = count
        digits = ""
        value = count
        for _ in range(5):
            value, remainder = divmod(value, 62)
            digits = _ALPHABET[remainder] + digits
        if value:
            raise OverflowError(f"id space of prefix {prefix} exhausted")
        return to18(f"{prefix}Em00000{digits}")


def format_datetime(moment: datetime) -> str:
    """``2026-05-20T20:49:32.000+0000``, the REST API's date-time form (whole seconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def format_date(day: date) -> str:
    return day.isoformat()


def parse_datetime(text: str) -> datetime:
    """A stored or API date-time (``...000+0000``, ISO 8601 with Z/offset) in UTC."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_date(text: str) -> date:
    value = text.strip()
    if len(value) == 10:
        return date.fromisoformat(value)
    return parse_datetime(value).date()
