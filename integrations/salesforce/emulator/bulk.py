"""Bulk API 2.0 query jobs, as the emulator serves them.

Endpoints (under ``/services/data/vNN.0/``), each one API call:

* ``POST jobs/query`` ``{"operation": "query"|"queryAll", "query": SOQL,
  "columnDelimiter"?: "COMMA", "lineEnding"?: "LF"|"CRLF", "contentType"?: "CSV"}``
  -> 200 with the job info (``state: "UploadComplete"``). The query is checked
  and run at once (a snapshot): a malformed query or an unknown field is refused
  here, as Salesforce does; nested (parent-to-child) queries and ``COUNT()`` are
  refused with 400 ``API_ERROR`` because Bulk API 2.0 does not support them.
* ``GET jobs/query/{id}`` -> the job info with ``numberRecordsProcessed``. A job
  answers ``InProgress`` for its first :attr:`BulkJobs.polls_in_progress` polls,
  then ``JobComplete`` (or ``Failed`` with an ``errorMessage`` when
  :attr:`BulkJobs.fail_next` was set when it was created).
* ``GET jobs/query/{id}/results?maxRecords=N&locator=L`` -> ``text/csv``: a header
  row (the query's field paths, ``Owner.Name`` for a parent field), every value
  quoted, an empty value for null, booleans ``true``/``false``, date-times as
  ``2026-05-20T20:49:32.000Z``, lines ending in LF; headers ``Sforce-Locator``
  (the next page's locator, or ``null`` on the last page) and
  ``Sforce-NumberOfRecords``. Before the job is complete: 400 ``API_ERROR``.
* ``PATCH jobs/query/{id}`` ``{"state": "Aborted"}``, ``DELETE jobs/query/{id}``
  (204). An unknown or deleted job: 404 ``NOT_FOUND``.

Results of a job stay readable until it is deleted (:meth:`BulkJobs.forget`
imitates the 7-day clean-up).
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import soql
from .values import ApiError, IdFactory

__all__ = ["DEFAULT_MAX_RECORDS", "BulkJob", "BulkJobs"]

#: Records per results page when ``maxRecords`` is not given.
DEFAULT_MAX_RECORDS = 50_000

Runner = Callable[[soql.Query, bool], list[dict[str, Any]]]


@dataclass
class BulkJob:
    id: str
    operation: str
    sobject: str
    created_by: str
    created_at: str
    api_version: str
    line_ending: str
    header: list[str]
    rows: list[list[str]]
    polls_left: int
    fails: bool
    state: str = "UploadComplete"

    def info(self, *, detailed: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.sobject,
            "createdById": self.created_by,
            "createdDate": self.created_at,
            "systemModstamp": self.created_at,
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version),
            "lineEnding": self.line_ending,
            "columnDelimiter": "COMMA",
        }
        if detailed:
            payload["jobType"] = "V2Query"
            payload["numberRecordsProcessed"] = len(self.rows) if self.state == "JobComplete" else 0
            payload["retries"] = 0
            payload["totalProcessingTime"] = 0
            if self.state == "Failed":
                payload["errorMessage"] = "Query timed out (injected by the emulator)"
        return payload


class BulkJobs:
    """The org's Bulk API 2.0 query jobs. Not thread-safe: the server calls it under its lock."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._ids = IdFactory()
        self.jobs: dict[str, BulkJob] = {}
        #: Polls of a new job that answer ``InProgress`` before ``JobComplete``.
        self.polls_in_progress = 0
        #: The next N jobs created end ``Failed``.
        self.fail_next = 0

    def forget(self) -> int:
        """Delete every job (Salesforce deletes them 7 days after they finish)."""
        count = len(self.jobs)
        self.jobs.clear()
        return count

    # ------------------------------------------------------------------ endpoints

    def create(self, body: bytes, user_id: str, version: str, run: Runner) -> dict[str, Any]:
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body is not JSON") from None
        if not isinstance(payload, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
        operation = payload.get("operation")
        if operation not in {"query", "queryAll"}:
            raise ApiError(400, "API_ERROR", "Invalid operation: expected query or queryAll")
        text = payload.get("query")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "API_ERROR", "A query is required for a query job")
        if payload.get("contentType", "CSV") != "CSV":
            raise ApiError(400, "API_ERROR", "Only the CSV content type is supported")
        if payload.get("columnDelimiter", "COMMA") != "COMMA":
            raise ApiError(400, "API_ERROR", "The emulator supports the COMMA delimiter only")
        line_ending = payload.get("lineEnding", "LF")
        if line_ending not in {"LF", "CRLF"}:
            raise ApiError(400, "API_ERROR", "lineEnding must be LF or CRLF")
        parsed = soql.parse(text)
        if parsed.subqueries:
            raise ApiError(
                400,
                "API_ERROR",
                "Nested queries (parent-to-child relationships) are not supported "
                "by Bulk API 2.0 query jobs",
            )
        if parsed.is_count:
            raise ApiError(400, "API_ERROR", "Aggregate queries are not supported by Bulk API 2.0")
        records = run(parsed, operation == "queryAll")
        paths = [item.text for item in parsed.items if isinstance(item, soql.FieldPath)]
        rows = [[_csv_value(_walk(record, path)) for path in paths] for record in records]
        job = BulkJob(
            id=self._ids.next("750"),
            operation=operation,
            sobject=parsed.sobject,
            created_by=user_id,
            created_at=_stamp(self._clock()),
            api_version=version,
            line_ending=line_ending,
            header=paths,
            rows=rows,
            polls_left=self.polls_in_progress,
            fails=self.fail_next > 0,
        )
        if self.fail_next > 0:
            self.fail_next -= 1
        self.jobs[job.id] = job
        return job.info(detailed=False)

    def get(self, job_id: str) -> dict[str, Any]:
        job = self._job(job_id)
        if job.state in {"UploadComplete", "InProgress"}:
            if job.polls_left > 0:
                job.polls_left -= 1
                job.state = "InProgress"
            else:
                job.state = "Failed" if job.fails else "JobComplete"
        return job.info(detailed=True)

    def results(self, job_id: str, params: Mapping[str, str]) -> tuple[bytes, dict[str, str]]:
        job = self._job(job_id)
        if job.state != "JobComplete":
            raise ApiError(400, "API_ERROR", f"The job {job_id} is not complete: {job.state}")
        max_records = DEFAULT_MAX_RECORDS
        if "maxRecords" in params:
            raw = params["maxRecords"]
            if not raw.isdigit() or int(raw) < 1:
                raise ApiError(400, "API_ERROR", "maxRecords must be a positive integer")
            max_records = int(raw)
        start = _decode_locator(params.get("locator"))
        if start > len(job.rows):
            raise ApiError(400, "API_ERROR", "Invalid locator")
        end = min(start + max_records, len(job.rows))
        out = io.StringIO()
        terminator = "\r\n" if job.line_ending == "CRLF" else "\n"
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator=terminator)
        writer.writerow(job.header)
        writer.writerows(job.rows[start:end])
        headers = {
            "Sforce-Locator": _encode_locator(end) if end < len(job.rows) else "null",
            "Sforce-NumberOfRecords": str(end - start),
        }
        return out.getvalue().encode("utf-8"), headers

    def abort(self, job_id: str, body: bytes) -> dict[str, Any]:
        job = self._job(job_id)
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body is not JSON") from None
        if not isinstance(payload, dict) or payload.get("state") != "Aborted":
            raise ApiError(400, "API_ERROR", "A query job can only be set to Aborted")
        if job.state in {"JobComplete", "Failed", "Aborted"}:
            raise ApiError(400, "API_ERROR", f"The job is already {job.state}")
        job.state = "Aborted"
        return job.info(detailed=False)

    def delete(self, job_id: str) -> None:
        self._job(job_id)
        del self.jobs[job_id]

    def _job(self, job_id: str) -> BulkJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return job


def _walk(record: Mapping[str, Any], path: str) -> Any:
    """A field path's value in a rendered REST record (``Owner.Name``: ``["Owner"]["Name"]``)."""
    current: Any = record
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return None
        lowered = part.lower()
        current = next((v for k, v in current.items() if k.lower() == lowered), None)
    return current


def _csv_value(value: Any) -> str:
    if value is None or isinstance(value, Mapping):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    text = str(value)
    if len(text) == 28 and text.endswith("+0000") and text[10] == "T":
        return text[:-5] + "Z"  # 2026-05-20T20:49:32.000+0000 -> ...000Z
    return text


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def _encode_locator(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def _decode_locator(locator: str | None) -> int:
    if locator is None or locator in {"", "null"}:
        return 0
    try:
        text = base64.b64decode(locator + "=" * (-len(locator) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "API_ERROR", "Invalid locator") from None
    if not text.isdigit():
        raise ApiError(400, "API_ERROR", "Invalid locator")
    return int(text)
