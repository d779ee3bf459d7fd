"""The offline review's safety nets: one bad record never aborts the file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.coaching.playbook import compile_playbook, load_playbook
from app.reviews import offline
from app.reviews.offline import ExportError, map_export, read_json, review_export

from .test_cli import AS_OF, SAMPLES

SF_FILE = SAMPLES / "salesforce_opportunities.json"
MEDDPICC = compile_playbook(load_playbook("meddpicc"))
SECOND = json.loads(SF_FILE.read_text("utf-8"))["records"][1]["Id"]


def _failing_on_second(error: Exception) -> Callable[..., Any]:
    real = offline.salesforce.map_opportunity

    def mapper(record: Any, stages: Any) -> Any:
        if record["Id"] == SECOND:
            raise error
        return real(record, stages)

    return mapper


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad\nvalue"),
        TypeError("'<' not supported"),
        OverflowError("date value out of range"),
    ],
    ids=["ValueError", "TypeError", "OverflowError"],
)
def test_given_a_record_whose_mapping_fails_unexpectedly_then_it_is_reported_and_the_rest_mapped(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    monkeypatch.setattr(offline.salesforce, "map_opportunity", _failing_on_second(error))
    stages = offline.load_stages("salesforce", None)

    deals, errors = map_export("salesforce", SF_FILE, stages)

    total = len(json.loads(SF_FILE.read_text("utf-8"))["records"])
    assert len(deals) == total - 1 and SECOND not in {deal.id for deal in deals}
    assert [(e.record_id, e.message.split(":")[0]) for e in errors] == [("#2", "unexpected value")]
    assert "\n" not in errors[0].message


def test_given_a_deal_whose_review_fails_unexpectedly_then_it_is_reported_and_the_rest_reviewed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = offline.review_deal

    def review(deal: Any, playbook: Any, as_of: Any) -> Any:
        if deal.id == SECOND:
            raise OverflowError("date value out of range")
        return real(deal, playbook, as_of)

    monkeypatch.setattr(offline, "review_deal", review)
    from app.cli import _parse_as_of

    result = review_export("salesforce", SF_FILE, MEDDPICC, _parse_as_of(AS_OF))

    assert SECOND not in {r.deal_id for r in result.reviews}
    assert len(result.reviews) >= 12
    assert [(e.record_id, e.message) for e in result.errors] == [
        (SECOND, "unexpected value: date value out of range")
    ]


@pytest.mark.parametrize(
    ("text", "needle"),
    [("[" + "1" * 5000 + "]", "Exceeds the limit"), ("[" * 200_000, "nested too deeply")],
    ids=["integer-of-5000-digits", "nested-too-deeply"],
)
def test_given_json_python_cannot_read_then_an_export_error_not_a_traceback(
    tmp_path: Path, text: str, needle: str
) -> None:
    path = tmp_path / "export.json"
    path.write_text(text)

    with pytest.raises(ExportError, match=needle):
        read_json(path)
