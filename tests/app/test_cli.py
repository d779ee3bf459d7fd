"""`dealcoach review` and `dealcoach agenda` on CRM exports: formats and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
AS_OF = "2026-11-20T09:00:00Z"
SF = ["--provider", "salesforce", "--file", str(SAMPLES / "salesforce_opportunities.json")]
SF_STAGES = ["--stages", str(SAMPLES / "salesforce_stages.json")]
HS = ["--provider", "hubspot", "--file", str(SAMPLES / "hubspot_deals.json")]
HS_STAGES = ["--stages", str(SAMPLES / "hubspot_pipelines.json")]

VOCABULARY = {
    "close_date_passed",
    "close_date_pushed",
    "stalled_in_stage",
    "no_recent_activity",
    "next_step_missing",
    "single_threaded",
    "no_economic_buyer",
    "amount_decreased",
    "stage_regressed",
    "close_date_unrealistic",
    "forecast_mismatch",
    "owner_changed",
    "deal_aging",
    "methodology_gap",
}


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def review_json(*args: str) -> dict[str, object]:
    code, out, err = run("review", *args, "--as-of", AS_OF, "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize(("export", "stages"), [(SF, SF_STAGES), (HS, HS_STAGES)])
def test_given_a_bundled_sample_when_reviewed_as_json_then_every_deal_has_the_documented_shape(
    export: list[str], stages: list[str]
) -> None:
    data = review_json(*export, *stages)
    reviews = data["reviews"]
    assert isinstance(reviews, list) and len(reviews) >= 12
    assert data["errors"] == []
    for review in reviews:
        assert {"deal_id", "deal_name", "health", "signals", "prompts", "summary"} <= set(review)
        assert set(review["health"]) >= {"score", "band"}
        assert review["health"]["band"] in {"healthy", "at_risk", "critical"}
        for signal in review["signals"]:
            assert signal["code"] in VOCABULARY
            assert signal["severity"] in {"low", "medium", "high"}
            assert signal["evidence"], signal
            if signal["code"] == "methodology_gap":
                assert signal["element"]
        for prompt in review["prompts"]:
            assert {"id", "audience", "text", "why"} <= set(prompt)
            assert prompt["audience"] in {"manager", "rep"}
        managers = [p for p in review["prompts"] if p["audience"] == "manager"]
        assert len(managers) <= 5


def test_given_both_samples_then_together_they_raise_every_signal_in_the_vocabulary() -> None:
    codes: set[str] = set()
    for export, stages in ((SF, SF_STAGES), (HS, HS_STAGES)):
        for review in review_json(*export, *stages)["reviews"]:  # type: ignore[attr-defined]
            codes.update(signal["code"] for signal in review["signals"])
    assert codes == VOCABULARY


def test_given_the_salesforce_sample_when_reviewed_as_text_then_it_reads_as_a_report() -> None:
    code, out, _ = run("review", *SF, *SF_STAGES, "--as-of", AS_OF)
    assert code == 0
    assert "Questions for the deal review:" in out
    assert "why:" in out
    assert "dealcoach-ref: dc1-" in out
    assert "deals reviewed:" in out.splitlines()[-1]


def test_given_the_hubspot_sample_when_rendered_as_html_then_each_note_is_sanitised_html() -> None:
    code, out, _ = run("review", *HS, *HS_STAGES, "--as-of", AS_OF, "--format", "html")
    assert code == 0
    notes = [block for block in out.split("<!-- deal ") if block.strip()]
    assert len(notes) >= 12
    for note in notes:
        assert "<p><strong>dealcoach:" in note
        assert "dealcoach-ref: dc1-" in note
        assert "<script" not in note


def test_given_no_as_of_then_the_review_time_is_now() -> None:
    code, out, _ = run("review", *SF, *SF_STAGES, "--format", "json")
    assert code == 0
    as_of = json.loads(out)["reviews"][0]["as_of"]
    assert not as_of.startswith("2026-11-20T09:00")


def test_given_a_builtin_playbook_name_then_it_is_used() -> None:
    data = review_json(*SF, *SF_STAGES, "--playbook", "bant")
    playbooks = {r["playbook"]["name"] for r in data["reviews"]}  # type: ignore[attr-defined]
    assert playbooks == {"bant"}


def test_given_a_custom_playbook_file_then_its_thresholds_apply(tmp_path: Path) -> None:
    strict = tmp_path / "strict.yaml"
    strict.write_text("name: strict\nextends: meddpicc\nthresholds:\n  no_activity_days: 1\n")
    default = review_json(*SF, *SF_STAGES)
    custom = review_json(*SF, *SF_STAGES, "--playbook", str(strict))

    def silent(data: dict[str, object]) -> int:
        return sum(
            any(s["code"] == "no_recent_activity" for s in r["signals"])
            for r in data["reviews"]  # type: ignore[attr-defined]
        )

    assert silent(custom) > silent(default)


def test_the_agenda_lists_exceptions_with_integrity_figures() -> None:
    code, out, _ = run("agenda", *SF, *SF_STAGES, "--as-of", AS_OF, "--format", "json")
    assert code == 0
    agenda = json.loads(out)
    assert agenda["integrity"]["open_deals"] > 0
    exposures = [item["exposure"] for item in agenda["items"]]
    assert exposures == sorted(exposures, reverse=True)
    assert all(item["health"]["band"] != "healthy" or item["signals"] for item in agenda["items"])
    code, text, _ = run("agenda", *SF, *SF_STAGES, "--as-of", AS_OF)
    assert code == 0 and text.startswith("Pipeline review for all owners")


# ---------------------------------------------------------------- bad input


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_given_a_file_that_is_not_json_then_one_line_error_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "export.json"
    bad.write_text("{not json")
    code, out, err = run("review", "--provider", "salesforce", "--file", str(bad))
    assert_one_line_error(code, err, str(bad), "not valid JSON")
    assert out == ""


@pytest.mark.parametrize(
    ("provider", "payload", "needle"),
    [
        ("salesforce", {"results": []}, "records"),
        ("salesforce", [1, 2], "records"),
        ("hubspot", {"records": []}, "results"),
        ("hubspot", {"results": "nope"}, "results"),
    ],
)
def test_given_a_file_of_the_wrong_shape_then_one_line_error(
    tmp_path: Path, provider: str, payload: object, needle: str
) -> None:
    bad = tmp_path / "export.json"
    bad.write_text(json.dumps(payload))
    code, _, err = run("review", "--provider", provider, "--file", str(bad))
    assert_one_line_error(code, err, str(bad), needle)


def test_given_a_missing_file_then_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    code, _, err = run("review", "--provider", "hubspot", "--file", str(missing))
    assert_one_line_error(code, err, str(missing))


def test_given_an_unknown_stage_then_that_record_is_reported_and_the_others_reviewed() -> None:
    bad = SAMPLES / "bad" / "salesforce_unknown_stage.json"
    code, out, err = run(
        "review", "--provider", "salesforce", "--file", str(bad), "--format", "json"
    )
    assert_one_line_error(code, err, str(bad), "006Hn00000Lm392AAQ", "Verbal Commit")
    data = json.loads(out)
    assert [r["deal_id"] for r in data["reviews"]] == ["006Hn00000Lm391AAQ"]
    assert data["errors"][0]["record"] == "006Hn00000Lm392AAQ"


def test_given_a_bad_date_then_that_record_is_reported_and_the_others_reviewed() -> None:
    bad = SAMPLES / "bad" / "hubspot_bad_date.json"
    code, out, err = run("review", "--provider", "hubspot", "--file", str(bad))
    assert_one_line_error(code, err, str(bad), "18765435874", "closedate")
    assert "Blue Ridge Outfitters" in out


def test_given_a_bad_as_of_then_a_usage_error() -> None:
    code, _, err = run("review", *SF, "--as-of", "next tuesday")
    assert code == 2
    assert "--as-of" in err and "Traceback" not in err


def test_given_an_unknown_playbook_then_one_line_error() -> None:
    code, _, err = run("review", *SF, "--playbook", "no-such-playbook")
    assert_one_line_error(code, err, "no-such-playbook")


def test_given_an_invalid_playbook_then_the_error_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nextends: meddpicc\nthresholds:\n  stalled_dayz: 3\n")
    code, _, err = run("review", *SF, "--playbook", str(bad))
    assert_one_line_error(code, err, "thresholds.stalled_dayz")


def test_given_a_stage_file_of_the_wrong_shape_then_one_line_error(tmp_path: Path) -> None:
    stages = tmp_path / "stages.json"
    stages.write_text(json.dumps({"nope": True}))
    code, _, err = run("review", *SF, "--stages", str(stages))
    assert_one_line_error(code, err, str(stages))


def test_given_invalid_settings_then_one_line_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.config import get_settings

    get_settings.cache_clear()
    monkeypatch.setenv("DEALCOACH_LOG_LEVEL", "LOUD")
    try:
        code, _, err = run("db", "upgrade")
    finally:
        get_settings.cache_clear()
    assert_one_line_error(code, err, "DEALCOACH_LOG_LEVEL")
