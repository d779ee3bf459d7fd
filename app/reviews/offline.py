"""Offline review of CRM exports: the service behind ``dealcoach review`` and ``agenda``.

Reads a CRM-native export (a Salesforce query response or a HubSpot deal
list) as a stream, record by record (ijson, with its C backend yajl2_c), maps
each record with the same pure mapping functions the connectors use, and
reviews it: memory stays flat whatever the file's size. A record that cannot
be mapped (or reviewed) is reported and skipped; the others are still reviewed.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

import ijson
import orjson

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


try:  # the C backend (yajl2_c, in ijson's wheels) parses several times faster
    _ijson: Any = ijson.get_backend("yajl2_c")
except ImportError:  # a build without it: the pure-Python backend, same results
    _ijson = ijson
#: The ijson backend in use ("yajl2_c" unless the C extension is missing).
IJSON_BACKEND: str = _ijson.backend

#: The records' path in each export (``ijson`` prefix) and the key named in errors.
_RECORDS: dict[Provider, tuple[str, str]] = {
    "salesforce": ("records.item", "records"),
    "hubspot": ("results.item", "results"),
}
#: An export that yields no record is checked for its shape from a copy of its first
#: bytes kept while streaming; a larger one gets a shorter message.
_SHAPE_CHECK_BYTES = 2**20
_READ_CHUNK = 256 * 1024


class _CountingReader:
    """A binary stream that counts the bytes read (for the progress bar) and keeps a
    copy of the first :data:`_SHAPE_CHECK_BYTES` (for the shape check)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.bytes_read = 0
        self.head: bytearray | None = bytearray()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.bytes_read += len(data)
        if self.head is not None:
            if len(self.head) + len(data) <= _SHAPE_CHECK_BYTES:
                self.head += data
            else:
                self.head = None
        return data


def _json_error(name: str, exc: BaseException) -> ExportError:
    lines = str(exc).strip().splitlines()
    detail = " ".join(lines[0].split())[:200] if lines else type(exc).__name__
    return ExportError(f"{name}: not valid JSON: {detail}")


class ExportStream:
    """The deals of an export, read record by record: memory stays flat however large
    the file. Iterating yields a :class:`DealReview` or a :class:`RecordError` per
    record, in file order, and raises :class:`ExportError` when the export as a
    whole cannot be read (possibly after some records: the caller decides what to do
    with those). ``bytes_read`` and ``total_bytes`` (None for a pipe) give progress.
    """

    def __init__(
        self,
        provider: Provider,
        source: Path | BinaryIO,
        stages: Mapping[str, StageCatalogue],
        playbook: CompiledPlaybook | None = None,
        as_of: datetime | None = None,
        name: str | None = None,
    ) -> None:
        self.provider = provider
        self.source = source
        self.playbook = playbook
        self.as_of = as_of
        self.stages = stages
        self.name = name or (str(source) if isinstance(source, Path) else "<stdin>")
        self.total_bytes: int | None = None
        self._reader: _CountingReader | None = None

    @property
    def bytes_read(self) -> int:
        return self._reader.bytes_read if self._reader is not None else 0

    def records(self) -> Iterator[object]:
        """The raw records (parsed by ijson's C backend when it is installed)."""
        if isinstance(self.source, Path):
            try:
                handle: BinaryIO = self.source.open("rb")
                self.total_bytes = os.fstat(handle.fileno()).st_size
            except OSError as exc:
                raise ExportError(f"{self.name}: cannot read: {exc.strerror or exc}") from None
        else:
            handle = self.source
        reader = self._reader = _CountingReader(handle)
        prefix, key = _RECORDS[self.provider]
        seen = 0
        try:
            for record in _ijson.items(reader, prefix, use_float=True, buf_size=_READ_CHUNK):
                seen += 1
                yield record
        except ijson.JSONError as exc:
            raise _json_error(self.name, exc) from None
        except (ValueError, RecursionError, OverflowError) as exc:
            raise _json_error(self.name, exc) from None
        except OSError as exc:
            raise ExportError(f"{self.name}: cannot read: {exc.strerror or exc}") from None
        finally:
            if isinstance(self.source, Path):
                handle.close()
        if not seen:
            self._check_shape(reader.head, key)

    def _check_shape(self, head: bytearray | None, key: str) -> None:
        """No record came out: say why, as the whole-file parser would (``{"records":
        []}`` is a valid, empty export)."""
        if head is None:
            raise ExportError(f"{self.name}: no {key!r} list of records in this export")
        try:
            payload = json.loads(bytes(head))
        except (ValueError, RecursionError) as exc:
            raise _json_error(self.name, exc) from None
        try:
            if self.provider == "salesforce":
                salesforce.query_records(payload)
            else:
                hubspot.deal_results(payload)
        except MappingError as exc:
            raise ExportError(f"{self.name}: {exc}") from None

    def deals(self) -> Iterator[DealSnapshot | RecordError]:
        """Each record mapped to a snapshot, or the error that keeps it out."""
        for index, record in enumerate(self.records()):
            yield map_record(self.provider, record, index, self.stages, self.name)

    def __iter__(self) -> Iterator[DealReview | RecordError]:
        if self.playbook is None or self.as_of is None:
            raise TypeError("reviewing needs a playbook and as_of")
        for index, record in enumerate(self.records()):
            yield review_record(
                self.provider, record, index, self.stages, self.playbook, self.as_of, self.name
            )


def map_record(
    provider: Provider,
    record: object,
    index: int,
    stages: Mapping[str, StageCatalogue],
    name: str,
) -> DealSnapshot | RecordError:
    """One record (the ``index``-th, from 0) mapped, or the error that keeps it out."""
    try:
        if provider == "salesforce":
            return salesforce.map_opportunity(record, stages["default"])  # type: ignore[arg-type]
        return hubspot.map_deal(record, stages)  # type: ignore[arg-type]
    except MappingError as exc:
        record_id = exc.record_id or f"#{index + 1}"
        return RecordError(name, record_id, _without_record(str(exc), record_id))
    except (ValueError, TypeError, OverflowError) as exc:
        # A value no mapping rule foresaw: report it, never abort the whole file.
        return RecordError(name, f"#{index + 1}", _unexpected(exc))


def review_record(
    provider: Provider,
    record: object,
    index: int,
    stages: Mapping[str, StageCatalogue],
    playbook: CompiledPlaybook,
    as_of: datetime,
    name: str,
) -> DealReview | RecordError:
    """One record mapped and reviewed, or the error that keeps it out."""
    deal = map_record(provider, record, index, stages, name)
    if isinstance(deal, RecordError):
        return deal
    try:
        return review_deal(deal, playbook, as_of)
    except (ValueError, TypeError, OverflowError) as exc:
        # e.g. dates at the very edge of the calendar: one deal, not the whole file.
        return RecordError(name, deal.id, _unexpected(exc))


@dataclass(frozen=True, slots=True)
class RenderedReview:
    """A review as the CLI prints it: the bytes, and its band (``closed`` when closed)."""

    data: bytes
    band: str


def render_review(review: DealReview, output_format: str, audience: str) -> RenderedReview:
    """One review as ``dealcoach review`` prints it: one JSON line (orjson), or the
    note as text or as HTML behind an HTML comment naming the deal."""
    from app.coaching.engine import review_fingerprint
    from app.coaching.render import note_marker, render_note_html, render_note_text

    band = review.health.band if review.is_open else "closed"
    if output_format == "json":
        return RenderedReview(orjson.dumps(review.to_dict(audience)), band)  # type: ignore[arg-type]
    marker = note_marker(None, review.deal_id, review_fingerprint(review))
    if output_format == "html":
        comment = f"<!-- deal {comment_text(review.deal_id)} -->"
        return RenderedReview(
            f"{comment}\n{render_note_html(review, marker, audience)}".encode(), band
        )
    return RenderedReview(render_note_text(review, marker, audience).encode(), band)


def comment_text(value: str) -> str:
    """``value`` made safe inside an HTML comment: escaped, and no ``--`` to end it."""
    return html.escape(value).replace("--", "&#45;&#45;")


def map_export(
    provider: Provider, path: Path, stages: Mapping[str, StageCatalogue]
) -> tuple[list[DealSnapshot], list[RecordError]]:
    """Map every record of the export; bad records become :class:`RecordError`s."""
    deals: list[DealSnapshot] = []
    errors: list[RecordError] = []
    for item in ExportStream(provider, path, stages).deals():
        if isinstance(item, RecordError):
            errors.append(item)
        else:
            deals.append(item)
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
    """Review every deal in a CRM export file, keeping every review (small exports; the
    CLI streams with :class:`ExportStream` instead).

    Raises:
        ExportError: the file (or the stage file) cannot be read as a whole.
    """
    stream = ExportStream(provider, path, load_stages(provider, stages_path), playbook, as_of)
    reviews: list[DealReview] = []
    errors: list[RecordError] = []
    for item in stream:
        if isinstance(item, RecordError):
            errors.append(item)
        else:
            reviews.append(item)
    return ExportReview(reviews=tuple(reviews), errors=tuple(errors))
