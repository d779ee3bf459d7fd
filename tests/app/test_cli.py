"""`dealcoach review` and `dealcoach agenda` on CRM exports: formats and bad input."""

from __future__ import annotations

import html
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from app.coaching.vocabulary import SIGNAL_CODES

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
AS_OF = "2026-11-20T09:00:00Z"
SF = ["--provider", "salesforce", "--file", str(SAMPLES / "salesforce_opportunities.json")]
SF_STAGES = ["--stages", str(SAMPLES / "salesforce_stages.json")]
HS = ["--provider", "hubspot", "--file", str(SAMPLES / "hubspot_deals.json")]
HS_STAGES = ["--stages", str(SAMPLES / "hubspot_pipelines.json")]

VOCABULARY = set(SIGNAL_CODES)


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
        assert "dealcoach:" not in note.split("</p>", 1)[0]  # no verdict on top
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
    items = agenda["items"]
    groups = [
        0
        if item["in_period"] and (item["past_due"] or item["forecast_mismatch"])
        else 1
        if item["in_period"]
        else 2
        for item in items
    ]
    assert groups == sorted(groups) and groups[0] == 0
    for group in set(groups):
        exposures = [item["exposure"] for item, g in zip(items, groups, strict=True) if g == group]
        assert exposures == sorted(exposures, reverse=True)
    for item in items:
        assert {"close_date", "forecast_category", "top_question", "owner_id"} <= set(item)
        assert item["top_question"]["text"] and item["top_question"]["why"]
    assert all(item["health"]["band"] != "healthy" or item["signals"] for item in agenda["items"])
    code, text, _ = run("agenda", *SF, *SF_STAGES, "--as-of", AS_OF)
    assert code == 0 and text.startswith("Pipeline review for all owners")


def test_the_agenda_groups_by_owner_and_filters_one_owner() -> None:
    code, out, _ = run("agenda", *SF, *SF_STAGES, "--as-of", AS_OF, "--format", "json")
    assert code == 0
    everyone = json.loads(out)
    owners = [group["owner_id"] for group in everyone["owners"]]
    assert len(owners) >= 2
    code, text, _ = run("agenda", *SF, *SF_STAGES, "--as-of", AS_OF)
    headings = [line for line in text.splitlines() if line.startswith("Owner ")]
    assert [line.split(":")[0] for line in headings] == [f"Owner {owner}" for owner in owners]

    code, out, _ = run(
        "agenda", *SF, *SF_STAGES, "--as-of", AS_OF, "--owner", owners[0], "--format", "json"
    )
    assert code == 0
    one = json.loads(out)
    assert {item["owner_id"] for item in one["items"]} == {owners[0]}
    assert len(one["items"]) == everyone["owners"][0]["exceptions"]


def test_the_agenda_as_html_is_sanitised_and_grouped_by_owner() -> None:
    code, out, _ = run("agenda", *HS, *HS_STAGES, "--as-of", AS_OF, "--format", "html")
    assert code == 0
    assert out.startswith("<p><strong>Pipeline review for all owners")
    assert "<script" not in out and "<li>" in out and "Why: " in out
    assert out.count("<ol>") == out.count("<strong>Owner ") + out.count("<strong>No owner")


@pytest.mark.parametrize("output_format", ["text", "json", "html"])
def test_given_the_rep_audience_then_every_format_shows_the_rep_prompts(
    output_format: str,
) -> None:
    manager = review_json(*SF, *SF_STAGES)
    code, out, err = run(
        "review", *SF, *SF_STAGES, "--as-of", AS_OF, "--format", output_format, "--audience", "rep"
    )
    assert code == 0, err
    rep_texts = [
        p["text"]
        for r in review_json(*SF, *SF_STAGES, "--audience", "rep")["reviews"]  # type: ignore[index]
        for p in r["prompts"]
    ]
    manager_texts = {p["text"] for r in manager["reviews"] for p in r["prompts"]}  # type: ignore[attr-defined]
    only_manager = [t for t in manager_texts if t not in set(rep_texts)]
    assert rep_texts and only_manager
    if output_format == "json":
        data = json.loads(out)
        assert data["audience"] == "rep"
        assert {p["audience"] for r in data["reviews"] for p in r["prompts"]} == {"rep"}
        return
    shown = out if output_format == "text" else html.unescape(out)
    assert "Self-review questions" in shown and "Questions for the deal review" not in shown
    assert all(" ".join(text.split()) in shown for text in rep_texts)
    assert not any(" ".join(text.split()) in shown for text in only_manager)


def test_given_json_output_then_manager_prompts_only_by_default() -> None:
    data = review_json(*SF, *SF_STAGES)
    assert data["audience"] == "manager"
    assert {p["audience"] for r in data["reviews"] for p in r["prompts"]} == {"manager"}  # type: ignore[attr-defined]


def test_given_dash_as_the_file_then_the_export_is_read_from_stdin() -> None:
    from_file = review_json(*SF, *SF_STAGES)
    payload = (SAMPLES / "salesforce_opportunities.json").read_bytes()
    result = CliRunner().invoke(
        main,
        [
            "review",
            "--provider",
            "salesforce",
            "--file",
            "-",
            *SF_STAGES,
            "--as-of",
            AS_OF,
            "--format",
            "json",
        ],
        input=payload,
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == from_file
    assert result.stderr == ""  # no progress bar: stderr is not a terminal


def test_given_an_export_cut_short_then_the_json_written_so_far_is_closed_and_the_error_named(
    tmp_path: Path,
) -> None:
    text = (SAMPLES / "salesforce_opportunities.json").read_text("utf-8")
    cut = tmp_path / "cut.json"
    cut.write_text(text[: len(text) * 2 // 3])

    code, out, err = run(
        "review",
        "--provider",
        "salesforce",
        "--file",
        str(cut),
        "--as-of",
        AS_OF,
        "--format",
        "json",
    )

    assert_one_line_error(code, err, str(cut), "not valid JSON", status=3)
    data = json.loads(out)  # still one JSON document
    assert data["reviews"] and data["errors"][-1]["record"] is None
    assert "not valid JSON" in data["errors"][-1]["message"]


# ---------------------------------------------------------------- bad input


def assert_one_line_error(code: int, err: str, *needles: str, status: int = 2) -> None:
    """One line on stderr naming ``needles``; exit ``status`` (2 usage error, 1 operational
    error, 3 partial failure)."""
    assert code == status
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
    assert_one_line_error(code, err, str(bad), "006Hn00000Lm392AAQ", "Verbal Commit", status=3)
    data = json.loads(out)
    assert [r["deal_id"] for r in data["reviews"]] == ["006Hn00000Lm391AAQ"]
    assert data["errors"][0]["record"] == "006Hn00000Lm392AAQ"


def test_given_a_bad_date_then_that_record_is_reported_and_the_others_reviewed() -> None:
    bad = SAMPLES / "bad" / "hubspot_bad_date.json"
    code, out, err = run("review", "--provider", "hubspot", "--file", str(bad))
    assert_one_line_error(code, err, str(bad), "18765435874", "closedate", status=3)
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


@pytest.mark.parametrize(
    "as_of", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "2026-02-30"]
)
@pytest.mark.parametrize("command", ["review", "agenda"])
def test_given_an_as_of_outside_the_calendar_in_utc_then_one_line_usage_error(
    command: str, as_of: str
) -> None:
    code, out, err = run(command, *SF, "--as-of", as_of)
    assert_one_line_error(code, err, "--as-of", as_of)
    assert out == ""


def test_given_an_as_of_in_the_last_quarter_of_9999_then_the_agenda_still_builds() -> None:
    code, out, err = run("agenda", *SF, *SF_STAGES, "--as-of", "9999-12-15", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["period"] == {"start": "9999-10-01", "end": "9999-12-31"}


def test_the_agenda_parses_as_of_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import app.cli

    calls: list[str | None] = []
    real = app.cli._parse_as_of

    def counting(value: str | None) -> object:
        calls.append(value)
        return real(value)

    monkeypatch.setattr(app.cli, "_parse_as_of", counting)
    code, _, _ = run("agenda", *SF, *SF_STAGES, "--as-of", AS_OF)
    assert code == 0
    assert calls == [AS_OF]


# ---------------------------------------------------------------- closed deals, agenda text


def test_given_closed_deals_when_reviewed_as_text_then_they_are_counted_apart() -> None:
    data = review_json(*SF, *SF_STAGES)
    reviews = data["reviews"]
    assert isinstance(reviews, list)
    closed = sum(not r["is_open"] for r in reviews)
    assert closed == 2
    assert all(r["health"]["score"] == 100 for r in reviews if not r["is_open"])

    code, out, _ = run("review", *SF, *SF_STAGES, "--as-of", AS_OF)

    assert code == 0
    last = out.splitlines()[-1]
    assert last.startswith(f"{len(reviews)} deals reviewed: ")
    assert last.endswith(f" critical, {closed} closed")
    assert "  Closed won" in out.splitlines() and "  Closed lost" in out.splitlines()
    bands = [int(part.split()[0]) for part in last.split(": ", 1)[1].split(", ")]
    assert sum(bands) == len(reviews)


def test_given_the_agenda_as_text_then_bands_read_as_words_not_codes() -> None:
    code, out, _ = run("agenda", *SF, *SF_STAGES, "--as-of", AS_OF)
    assert code == 0
    items = [line for line in out.splitlines() if line[:1].isdigit() and ". " in line]
    assert items
    assert all(line.endswith("/100") for line in items)
    assert any(": At risk " in line or ": Critical " in line for line in items)
    assert not any("at_risk" in line or "critical " in line for line in items)


def test_given_an_owner_without_open_deals_then_the_agenda_says_so() -> None:
    code, out, _ = run("agenda", *SF, *SF_STAGES, "--as-of", AS_OF, "--owner", "005nobody")
    assert code == 0
    assert out.splitlines()[-1] == "No open deals for this owner."
    assert "healthy" not in out


# ---------------------------------------------------------------- injection


@pytest.mark.parametrize(
    "deal_id",
    ["x-->y", "x--!>y", "--><script>alert(1)</script><!--", "a---b", "a----", "x-", "<!-"],
)
def test_given_a_hostile_deal_id_then_the_html_comment_cannot_be_broken_out_of(
    deal_id: str,
) -> None:
    from app.cli import _comment_text

    comment = f"<!-- deal {_comment_text(deal_id)} -->"

    inner = comment[len("<!--") : -len("-->")]
    assert "--" not in inner and "<" not in inner and ">" not in inner


def test_given_a_record_with_a_hostile_id_then_it_is_reported_not_rendered(tmp_path: Path) -> None:
    export = json.loads((SAMPLES / "salesforce_opportunities.json").read_text("utf-8"))
    export["records"][0]["Id"] = "--><script>alert(1)</script>"
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))

    code, out, err = run(
        "review", "--provider", "salesforce", "--file", str(path), "--format", "html"
    )

    assert_one_line_error(
        code, err, "record #1", "Id: not a 15- or 18-character Salesforce id", status=3
    )
    assert "<script" not in out


# ---------------------------------------------------------------- db commands


@pytest.fixture
def db_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    from app.config import get_settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEALCOACH_DATABASE_URL", raising=False)
    monkeypatch.setenv("DEALCOACH_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_given_an_unknown_revision_then_db_upgrade_and_downgrade_fail_in_one_line(
    db_env: pytest.MonkeyPatch,
) -> None:
    code, out, err = run("db", "upgrade", "--revision", "nope")
    assert_one_line_error(code, err, "dealcoach: cannot upgrade the database", "'nope'", status=1)
    assert out == ""
    code, _, err = run("db", "downgrade", "nope", "--yes")
    assert_one_line_error(code, err, "dealcoach: cannot downgrade the database", "'nope'", status=1)


def test_given_an_unreachable_database_then_db_upgrade_fails_in_one_line_without_the_password(
    db_env: pytest.MonkeyPatch,
) -> None:
    db_env.setenv(
        "DEALCOACH_DATABASE_URL", "postgresql://nobody:s3cret@127.0.0.1:1/none?connect_timeout=2"
    )
    code, _, err = run("db", "upgrade")
    assert_one_line_error(code, err, "cannot upgrade the database", "127.0.0.1", status=1)
    assert "s3cret" not in err


def test_given_a_data_dir_that_cannot_be_created_then_db_upgrade_fails_in_one_line(
    db_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    db_env.setenv("DEALCOACH_DATA_DIR", str(blocker / "data"))
    code, _, err = run("db", "upgrade")
    assert_one_line_error(code, err, "cannot upgrade the database", "a-file", status=1)


def test_given_a_sqlite_path_that_is_a_folder_then_db_upgrade_fails_in_one_line(
    db_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "data" / "dealcoach.db").mkdir(parents=True)
    code, _, err = run("db", "upgrade")
    assert_one_line_error(
        code, err, "cannot upgrade the database", "unable to open database file", status=1
    )


def test_given_an_unknown_driver_then_db_upgrade_fails_in_one_line_naming_the_variable(
    db_env: pytest.MonkeyPatch,
) -> None:
    db_env.setenv("DEALCOACH_DATABASE_URL", "postgresql+asyncpg://u@localhost/db")
    code, _, err = run("db", "upgrade")
    assert_one_line_error(code, err, "DEALCOACH_DATABASE_URL", "postgresql+asyncpg")


def test_given_a_driver_error_inside_the_migration_then_db_upgrade_fails_in_one_line(
    db_env: pytest.MonkeyPatch,
) -> None:
    from sqlalchemy.exc import NoSuchModuleError

    import app.db

    def broken(settings: object, revision: str) -> None:
        raise NoSuchModuleError("Can't load plugin: sqlalchemy.dialects:nope")

    db_env.setattr(app.db, "upgrade_database", broken)
    code, _, err = run("db", "upgrade")
    assert_one_line_error(code, err, "cannot upgrade the database", "Can't load plugin", status=1)


def test_given_a_working_database_then_db_upgrade_and_downgrade_still_succeed(
    db_env: pytest.MonkeyPatch,
) -> None:
    code, out, err = run("db", "upgrade")
    assert code == 0, err
    assert out.startswith("database at head: sqlite:///")
    code, out, err = run("db", "downgrade", "base", "--yes")
    assert code == 0, err


def test_given_a_default_playbook_typo_then_review_fails_in_one_line_naming_the_variable(
    db_env: pytest.MonkeyPatch,
) -> None:
    db_env.setenv("DEALCOACH_DEFAULT_PLAYBOOK", "medpicc")
    code, _, err = run("review", *SF, "--as-of", AS_OF)
    assert_one_line_error(code, err, "DEALCOACH_DEFAULT_PLAYBOOK", "medpicc")


# ---------------------------------------------------------------- progress


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_given_stderr_is_a_terminal_then_a_progress_line_is_shown_and_cleared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys
    from types import SimpleNamespace

    from app.cli import _Progress

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    stream = SimpleNamespace(total_bytes=1_000, bytes_read=500)
    progress = _Progress(stream)  # type: ignore[arg-type]

    for _ in range(512):
        progress.tick()
    progress.error("export.json: record #3: bad")
    progress.clear()

    shown = terminal.getvalue()
    assert "\rdealcoach: 256 deals (50%)" in shown
    assert shown.endswith("\r\x1b[Kdealcoach: export.json: record #3: bad\n")


def test_given_stderr_is_not_a_terminal_then_no_progress_is_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys
    from types import SimpleNamespace

    from app.cli import _Progress

    terminal = _Terminal()
    monkeypatch.setattr(terminal, "isatty", lambda: False)
    monkeypatch.setattr(sys, "stderr", terminal)
    progress = _Progress(SimpleNamespace(total_bytes=None, bytes_read=0))  # type: ignore[arg-type]

    for _ in range(2_000):
        progress.tick()
    progress.clear()

    assert terminal.getvalue() == ""


# ---------------------------------------------------------------- worker processes


@pytest.mark.parametrize(
    ("export", "stages", "output_format"),
    [(SF, SF_STAGES, "json"), (HS, HS_STAGES, "html"), (SF, SF_STAGES, "text")],
)
def test_given_jobs_then_the_output_is_the_same_in_the_same_order(
    export: list[str], stages: list[str], output_format: str
) -> None:
    args = ["review", *export, *stages, "--as-of", AS_OF, "--format", output_format]
    one = run(*args)
    two = run(*args, "--jobs", "2")

    assert one[0] == two[0] == 0
    assert two[1] == one[1]


def test_given_jobs_then_bad_records_are_reported_the_same(tmp_path: Path) -> None:
    export = json.loads((SAMPLES / "salesforce_opportunities.json").read_text("utf-8"))
    export["records"] = export["records"] * 40  # several batches of 256 records
    export["records"][300] = {**export["records"][300], "CreatedDate": "not a date"}
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    args = ["review", "--provider", "salesforce", "--file", str(path), "--as-of", AS_OF]

    one = run(*args, "--format", "json")
    two = run(*args, "--format", "json", "--jobs", "3")

    assert one == two
    assert_one_line_error(two[0], two[2], str(path), "CreatedDate", status=3)
    assert len(json.loads(two[1])["reviews"]) == len(export["records"]) - 1


def test_given_jobs_and_an_export_cut_short_then_the_reviews_before_are_kept(
    tmp_path: Path,
) -> None:
    export = json.loads((SAMPLES / "salesforce_opportunities.json").read_text("utf-8"))
    export["records"] = export["records"] * 40
    text = json.dumps(export)
    cut = tmp_path / "cut.json"
    cut.write_text(text[: len(text) // 2])

    code, out, err = run(
        "review",
        "--provider",
        "salesforce",
        "--file",
        str(cut),
        "--as-of",
        AS_OF,
        "--format",
        "json",
        "--jobs",
        "2",
    )

    assert_one_line_error(code, err, str(cut), "not valid JSON", status=3)
    data = json.loads(out)
    assert len(data["reviews"]) > 256
    assert "not valid JSON" in data["errors"][-1]["message"]
