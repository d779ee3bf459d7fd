"""Offline review of CRM exports: the service behind ``dealcoach review`` and ``agenda``.

Reads a CRM-native export (a Salesforce query response or a HubSpot deal
list), maps each record with the same pure mapping functions the connectors
use, and reviews it. A record that cannot be mapped (or reviewed) is reported
and skipped; the others are still reviewed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from app.coaching.engine import review_deal
from app.coaching.playbook import CompiledPlaybook
from app.coaching.results import DealReview
from app.coaching.snapshot import DealSnapshot, StageCatalogue
from integrations.base import MappingError
from integrations.hubspot import mapping as hubspot
from integrations.salesforce import mapping as salesforce

Provider = Literal["salesforce", "hubspot"]
PROVIDERS: tuple[Provider, ...] = ("salesforce", "hubspot")


class ExportError(ValueError):
    """The export as a whole cannot be read (not JSON, wrong shape, bad stage file)."""


@dataclass(frozen=True, slots=True)
class RecordError:
    file: str
    record_id: str | None
    message: str

    def __str__(self) -> str:
        record = f" record {self.record_id}" if self.record_id else ""
        return f"{self.file}:{record}: {self.message}" if record else f"{self.file}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "record": self.record_id, "message": self.message}


@dataclass(frozen=True, slots=True)
class ExportReview:
    reviews: tuple[DealReview, ...]
    errors: tuple[RecordError, ...]


def read_json(path: Path) -> Any:
    """Read a JSON file, or raise :class:`ExportError` naming it."""
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ExportError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ExportError(f"{path}: not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise ExportError(f"{path}: not valid JSON: {exc}") from None
    except RecursionError:
        raise ExportError(f"{path}: not valid JSON: nested too deeply") from None


def load_stages(provider: Provider, path: Path | None) -> Mapping[str, StageCatalogue]:
    """The stage catalogues, by pipeline id (Salesforce has one, keyed ``default``)."""
    try:
        if provider == "salesforce":
            if path is None:
                return {"default": salesforce.DEFAULT_STAGES}
            return {"default": salesforce.parse_stage_catalogue(read_json(path))}
        if path is None:
            return {"default": hubspot.DEFAULT_PIPELINE}
        return hubspot.parse_pipelines(read_json(path))
    except MappingError as exc:
        raise ExportError(f"{path}: {exc}") from None


def map_export(
    provider: Provider, path: Path, stages: Mapping[str, StageCatalogue]
) -> tuple[list[DealSnapshot], list[RecordError]]:
    """Map every record of the export; bad records become :class:`RecordError`s."""
    payload = read_json(path)
    name = str(path)
    deals: list[DealSnapshot] = []
    errors: list[RecordError] = []
    try:
        records = (
            salesforce.query_records(payload)
            if provider == "salesforce"
            else hubspot.deal_results(payload)
        )
    except MappingError as exc:
        raise ExportError(f"{name}: {exc}") from None
    for index, record in enumerate(records):
        try:
            if provider == "salesforce":
                deals.append(salesforce.map_opportunity(record, stages["default"]))
            else:
                deals.append(hubspot.map_deal(record, stages))
        except MappingError as exc:
            record_id = exc.record_id or f"#{index + 1}"
            errors.append(RecordError(name, record_id, _without_record(str(exc), record_id)))
        except (ValueError, TypeError, OverflowError) as exc:
            # A value no mapping rule foresaw: report it, never abort the whole file.
            errors.append(RecordError(name, f"#{index + 1}", _unexpected(exc)))
    return deals, errors


def _unexpected(exc: BaseException) -> str:
    detail = " ".join(str(exc).split())[:200] or type(exc).__name__
    return f"unexpected value: {detail}"


def _without_record(message: str, record_id: str) -> str:
    """MappingError messages may already name the record; say it once."""
    for prefix in (f"record {record_id}: ", f"{record_id}: "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def review_export(
    provider: Provider,
    path: Path,
    playbook: CompiledPlaybook,
    as_of: datetime,
    stages_path: Path | None = None,
) -> ExportReview:
    """Review every deal in a CRM export file.

    Raises:
        ExportError: the file (or the stage file) cannot be read as a whole.
    """
    stages = load_stages(provider, stages_path)
    deals, errors = map_export(provider, path, stages)
    reviews = []
    for deal in deals:
        try:
            reviews.append(review_deal(deal, playbook, as_of))
        except (ValueError, TypeError, OverflowError) as exc:
            # e.g. dates at the very edge of the calendar: one deal, not the whole file.
            errors.append(RecordError(str(path), deal.id, _unexpected(exc)))
    return ExportReview(reviews=tuple(reviews), errors=tuple(errors))
