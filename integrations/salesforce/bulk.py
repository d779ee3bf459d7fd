"""Bulk API 2.0 first loads: the checkpoint, CSV results back to REST-shaped records.

A first sync (no watermark) of more opportunities than the connection's
``bulk_threshold`` (:data:`BULK_THRESHOLD` by default) reads them with Bulk API
2.0 query jobs instead of paging REST. Bulk 2.0 has no parent-to-child
subqueries, so the load is four jobs created together (Salesforce runs them in
parallel): ``Opportunity`` (the same fields the REST query selects), and
``OpportunityHistory``, ``OpportunityContactRole`` and
``OpportunityFieldHistory`` (the child rows, joined to their opportunity here),
the children only when the org has the relationship. Results are CSV;
:func:`records_from_csv` turns each row back into the record shape a REST query
returns (typed by ``describe``, ``Owner.Name`` nested), so one mapper serves both.

The checkpoint (the sync watermark while a load runs) names the four jobs, the
results page being read (Salesforce's ``Sforce-Locator``) and how many of its
records were already handed over::

    bulk|<newest SystemModstamp or ->|<job start>|<opp job>,<3 child jobs or ->|<locator or ->|<n>

A restart resumes from it: children are read again (the job results stay for 7
days), opportunities from the locator on. The load ends with a plain
watermark, the earlier of the newest ``SystemModstamp`` it read and the moment
the opportunity job was created (Salesforce's clock): a job reads in chunks,
in parallel, so a record edited while it ran may come in its old state beside
newer ones; the next sync (REST, incremental, with the overlap window) reads
it again.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from integrations.base import InvalidRequestError

__all__ = [
    "BULK_CHUNK",
    "BULK_GIVE_UP",
    "BULK_POLL_DELAYS",
    "BULK_PREFIX",
    "BULK_RESULTS_PAGE",
    "BULK_THRESHOLD",
    "BULK_WAIT_LIMIT",
    "CHILD_QUERIES",
    "HISTORY_FIELDS",
    "BulkCheckpoint",
    "BulkUnavailable",
    "bulk_threshold",
    "group_children",
    "is_job_id",
    "is_locator",
    "records_from_csv",
]

#: First syncs of more opportunities than this use Bulk API 2.0. Below it REST paging
#: is cheaper in calls: ~N/200 against ~13 + N/50,000 (see docs/salesforce.md).
BULK_THRESHOLD: Final = 5000
#: ``maxRecords`` of a results page (one API call each).
BULK_RESULTS_PAGE: Final = 50_000
#: Opportunities per page handed to the sync (each a commit and a checkpoint) when the
#: connection sets no ``page_size``.
BULK_CHUNK: Final = 2000
#: Seconds between polls of running jobs (the last one repeats).
BULK_POLL_DELAYS: Final[tuple[float, ...]] = (0.5, 1.0, 2.0, 5.0, 10.0)
#: Longest wait for the jobs in one sync run; then the sync stops (retriable) and the
#: next run polls the same jobs again (they are in the checkpoint). Below the sync lease.
BULK_WAIT_LIMIT: Final = 300.0
#: Jobs still running this long after they were created are given up (REST instead).
BULK_GIVE_UP: Final = timedelta(hours=6)
BULK_PREFIX: Final = "bulk|"

#: The ``OpportunityFieldHistory.Field`` values the snapshot uses (the mapper ignores the
#: rest): the REST subquery and the Bulk job filter on them (literally, in their SOQL).
HISTORY_FIELDS: Final = frozenset({"Amount", "CloseDate", "Owner", "OwnerId", "StageName"})

#: Child relationship -> the Bulk 2.0 query of its rows (joined on ``OpportunityId``).
CHILD_QUERIES: Final[Mapping[str, str]] = {
    "OpportunityHistories": (
        "SELECT OpportunityId, StageName, Amount, CloseDate, Probability, CreatedDate "
        "FROM OpportunityHistory"
    ),
    "OpportunityContactRoles": (
        "SELECT OpportunityId, ContactId, Role, IsPrimary, Contact.Name FROM OpportunityContactRole"
    ),
    "Histories": (
        "SELECT OpportunityId, Field, OldValue, NewValue, CreatedDate FROM OpportunityFieldHistory "
        "WHERE Field IN ('Amount', 'CloseDate', 'Owner', 'OwnerId', 'StageName')"
    ),
}

_JOB_ID = re.compile(r"750[0-9A-Za-z]{12}(?:[0-9A-Za-z]{3})?")
_LOCATOR = re.compile(r"[0-9A-Za-z+/=_-]{1,200}")
_SKIP = re.compile(r"[0-9]{1,9}")
_NUMBER_TYPES: Final = frozenset({"double", "currency", "percent"})
# Long text areas hold up to 131,072 characters, the csv module's default limit.
csv.field_size_limit(max(csv.field_size_limit(), 16 * 1024 * 1024))


class BulkUnavailable(Exception):
    """Bulk API 2.0 cannot serve this load (refused, or a job failed): page REST instead."""


def bulk_threshold(settings: Mapping[str, Any]) -> int:
    value = settings.get("bulk_threshold")
    if value is None:
        return BULK_THRESHOLD
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**9:
        raise InvalidRequestError("bulk_threshold must be an integer from 0 to 1000000000")
    return value


@dataclass(frozen=True, slots=True)
class BulkCheckpoint:
    """Where a bulk load stands (see the module doc)."""

    jobs: tuple[str, ...]  # the Opportunity job, then one per CHILD_QUERIES entry ("" = none)
    started: datetime  # when Salesforce created the Opportunity job
    stamp: datetime | None = None  # the newest SystemModstamp handed over so far
    locator: str = ""  # "" = the first results page
    skip: int = 0

    def at(self, locator: str, skip: int, stamp: datetime | None) -> BulkCheckpoint:
        return BulkCheckpoint(self.jobs, self.started, stamp, locator, skip)

    def final_watermark(self) -> str:
        """The ordinary watermark that ends the load (see the module doc)."""
        newest = self.stamp if self.stamp is not None else self.started
        return _iso(min(newest, self.started))

    @property
    def opportunity_job(self) -> str:
        return self.jobs[0]

    def child_jobs(self) -> dict[str, str]:
        return {
            relationship: job
            for relationship, job in zip(CHILD_QUERIES, self.jobs[1:], strict=True)
            if job
        }

    def encode(self) -> str:
        stamp = "-" if self.stamp is None else _iso(self.stamp)
        jobs = ",".join(job or "-" for job in self.jobs)
        return f"{BULK_PREFIX}{stamp}|{_iso(self.started)}|{jobs}|{self.locator or '-'}|{self.skip}"

    @classmethod
    def parse(cls, watermark: str) -> BulkCheckpoint:
        parts = watermark.split("|")
        if len(parts) != 6 or f"{parts[0]}|" != BULK_PREFIX:
            raise InvalidRequestError("malformed Salesforce bulk checkpoint")
        _, stamp_text, started_text, jobs_text, locator, skip_text = parts
        stamp = None if stamp_text == "-" else _parse_utc(stamp_text)
        started = _parse_utc(started_text)
        jobs = tuple("" if job == "-" else job for job in jobs_text.split(","))
        if len(jobs) != 1 + len(CHILD_QUERIES) or not jobs[0]:
            raise InvalidRequestError("malformed Salesforce bulk checkpoint")
        if any(job and not _JOB_ID.fullmatch(job) for job in jobs):
            raise InvalidRequestError("malformed Salesforce bulk checkpoint")
        if locator != "-" and not is_locator(locator):
            raise InvalidRequestError("malformed Salesforce bulk checkpoint")
        if not _SKIP.fullmatch(skip_text):
            raise InvalidRequestError("malformed Salesforce bulk checkpoint")
        return cls(jobs, started, stamp, "" if locator == "-" else locator, int(skip_text))


def _parse_utc(text: str) -> datetime:
    """An ISO 8601 date-time that states its offset (``Z`` or ``+00:00``), in UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequestError("malformed Salesforce bulk checkpoint") from None
    if moment.tzinfo is None:
        raise InvalidRequestError("malformed Salesforce bulk checkpoint")
    return moment.astimezone(UTC)


def is_job_id(value: object) -> bool:
    return isinstance(value, str) and _JOB_ID.fullmatch(value) is not None


def is_locator(value: object) -> bool:
    """A results locator as Salesforce sends them (base64-like, short)."""
    return isinstance(value, str) and _LOCATOR.fullmatch(value) is not None


def records_from_csv(
    text: str, field_types: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Bulk CSV rows as REST records: an empty value is null, ``A.B`` columns nest as
    ``{"A": {"B": ...}}``, and a column whose ``describe`` type (``field_types``, by
    lower-case name) is boolean or numeric gets a JSON-typed value, as REST returns it."""
    types = field_types or {}
    records: list[dict[str, Any]] = []
    try:
        rows = list(csv.DictReader(io.StringIO(text)))
    except csv.Error as exc:
        raise BulkUnavailable(f"unreadable bulk results: {exc}") from None
    for row in rows:
        record: dict[str, Any] = {}
        for column, raw in row.items():
            if column is None:
                raise BulkUnavailable("unreadable bulk results: a row has extra columns")
            value = _typed(raw, types.get(column.lower()))
            head, _, rest = column.partition(".")
            if rest:
                parent = record.setdefault(head, {})
                if isinstance(parent, dict):
                    parent[rest] = value
            else:
                record[column] = value
        records.append(record)
    return records


def group_children(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Child rows by their opportunity (15-character id), oldest first when dated, as the
    REST subqueries order them (``ORDER BY CreatedDate ASC``)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        parent = record.pop("OpportunityId", None)
        if isinstance(parent, str) and len(parent) >= 15:
            grouped.setdefault(parent[:15], []).append(record)
    for rows in grouped.values():
        if rows and "CreatedDate" in rows[0]:
            rows.sort(key=lambda row: str(row.get("CreatedDate") or ""))
    return grouped


def _typed(raw: str | None, field_type: str | None) -> Any:
    if raw is None or raw == "":
        return None
    if field_type == "boolean":
        lowered = raw.strip().lower()
        if lowered in {"true", "false"}:
            return lowered == "true"
        return raw
    if field_type in _NUMBER_TYPES:
        try:
            return float(raw)
        except ValueError:
            return raw
    if field_type == "int":
        try:
            return int(raw)
        except ValueError:
            return raw
    if field_type == "datetime" and raw.endswith("Z"):
        return raw[:-1] + "+0000"  # as REST writes date-times: same snapshot either way
    return raw


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
