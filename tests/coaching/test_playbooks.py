"""Playbooks: the built-ins, custom YAML that extends them, and the errors for bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.coaching.playbook import (
    BUILT_IN_PLAYBOOKS,
    PlaybookError,
    compile_playbook,
    load_playbook,
    load_playbook_text,
)
from app.coaching.snapshot import Change

from .factories import (
    DISCOVERY,
    NEGOTIATION,
    PROPOSAL,
    SOLUTION,
    days_ago,
    make_deal,
    review,
    signal,
)

_EXPECTED_ELEMENTS = {
    "meddpicc": {
        "metrics",
        "economic_buyer",
        "decision_criteria",
        "decision_process",
        "paper_process",
        "identify_pain",
        "champion",
        "competition",
    },
    "bant": {"budget", "authority", "need", "timeline"},
    "spiced": {"situation", "pain", "impact", "critical_event", "decision"},
    "core": set(),
}


@pytest.mark.parametrize("name", BUILT_IN_PLAYBOOKS)
def test_given_built_in_name_when_loaded_then_it_validates_and_compiles(name: str) -> None:
    loaded = load_playbook(name)
    compiled = compile_playbook(loaded)

    assert loaded.name == name
    assert set(loaded.elements) == _EXPECTED_ELEMENTS[name]
    assert loaded.thresholds.no_activity_days == 14
    assert (loaded.prompts.max_per_deal, loaded.prompts.show_first) == (5, 3)
    assert {q.element for q in loaded.questions if q.element} == _EXPECTED_ELEMENTS[name]
    assert compiled.name == name


def test_given_no_name_when_loaded_then_meddpicc_is_the_default() -> None:
    assert load_playbook().name == "meddpicc"


def test_given_built_in_name_in_capitals_when_loaded_then_it_is_found() -> None:
    assert load_playbook("BANT").name == "bant"


# --------------------------------------------------------------- custom playbooks


_CUSTOM = """\
name: acme
extends: meddpicc
version: 3
thresholds:
  stalled_days: 20
questions:
  - id: element.metrics
    element: metrics
    manager: Which number will their CFO quote when this goes live?
    rep: Which number will their CFO quote when this goes live?
  - id: acme.stalled_late
    signal: stalled_in_stage
    phases: [negotiate, commit]
    manager: "{days} days in {stage}: what is procurement waiting for?"
    rep: "{days} days in {stage}: what is procurement waiting for?"
"""


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, "utf-8")
    return path


def test_given_custom_file_extending_meddpicc_when_loaded_then_overrides_merge(
    tmp_path: Path,
) -> None:
    base = load_playbook("meddpicc")

    custom = load_playbook(str(_write(tmp_path, "acme.yaml", _CUSTOM)))

    assert (custom.name, custom.version) == ("acme", 3)
    assert custom.thresholds.stalled_days == 20
    assert custom.thresholds.no_activity_days == 14  # untouched thresholds keep their default
    assert set(custom.elements) == set(base.elements)
    assert len(custom.questions) == len(base.questions) + 1
    metrics = next(q for q in custom.questions if q.id == "element.metrics")
    assert metrics.manager.startswith("Which number will their CFO quote")


def test_given_custom_threshold_and_question_when_reviewed_then_both_take_effect(
    tmp_path: Path,
) -> None:
    custom = compile_playbook(load_playbook(str(_write(tmp_path, "acme.yaml", _CUSTOM))))
    deal = make_deal(
        stage=NEGOTIATION, stage_history=(Change(days_ago(25), PROPOSAL, NEGOTIATION),)
    )

    default_review = review(deal)
    custom_review = review(deal, custom)

    assert "stalled_in_stage" not in {s.code for s in default_review.signals}
    assert signal(custom_review, "stalled_in_stage").facts["limit"] == 20
    (prompt,) = custom_review.prompts
    assert prompt.question_id == "acme.stalled_late"
    assert prompt.text == "25 days in Negotiation: what is procurement waiting for?"


def test_given_phase_specific_question_when_outside_its_phases_then_the_general_one_is_asked(
    tmp_path: Path,
) -> None:
    custom = compile_playbook(load_playbook(str(_write(tmp_path, "acme.yaml", _CUSTOM))))
    deal = make_deal(stage_history=(Change(days_ago(25), DISCOVERY, SOLUTION),))

    (prompt,) = review(deal, custom).prompts

    assert prompt.question_id == "stalled_in_stage.next_move"


def test_given_extends_chain_through_a_relative_path_when_loaded_then_it_resolves_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "shared", "base.yaml", "name: base\nextends: meddpicc\nversion: 2\n"
           "thresholds:\n  no_activity_days: 7\n  deal_age_days: 90\n")  # fmt: skip
    team = _write(
        tmp_path / "teams",
        "emea.yaml",
        "name: emea\nextends: ../shared/base.yaml\nthresholds:\n  deal_age_days: 120\n",
    )
    monkeypatch.chdir(tmp_path / "shared")  # the path is relative to the file, not the cwd

    loaded = load_playbook(str(team))

    assert loaded.name == "emea"
    assert loaded.version == 2
    assert (loaded.thresholds.no_activity_days, loaded.thresholds.deal_age_days) == (7, 120)
    assert "paper_process" in loaded.elements


def test_given_relative_path_when_loaded_then_it_resolves_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, "mine.yaml", "name: mine\nextends: bant\n")
    monkeypatch.chdir(tmp_path)

    assert set(load_playbook("mine.yaml").elements) == _EXPECTED_ELEMENTS["bant"]


def test_given_element_set_to_null_when_loaded_then_it_and_its_question_are_removed() -> None:
    loaded = load_playbook_text(
        "name: lean\nextends: meddpicc\nelements:\n  paper_process: null\n  competition: null\n"
    )

    assert set(loaded.elements) == _EXPECTED_ELEMENTS["meddpicc"] - {"paper_process", "competition"}
    assert not {q.element for q in loaded.questions} & {"paper_process", "competition"}
    result = review(make_deal(stage=NEGOTIATION, fields={}), compile_playbook(loaded))
    assert "methodology_gap:paper_process" not in {s.key for s in result.signals}
    assert "paper_process" not in {j.element for j in result.methodology}


def test_given_element_set_to_null_in_a_file_when_loaded_then_it_is_removed(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, "lean.yaml", "name: lean\nextends: spiced\nelements:\n  impact: null\n")

    assert "impact" not in load_playbook(str(path)).elements


def test_given_new_element_with_question_when_loaded_then_it_is_judged(tmp_path: Path) -> None:
    text = """\
name: plus
extends: meddpicc
elements:
  security:
    label: Security review
    from_phase: propose
    sources:
      - field: [Security__c]
questions:
  - id: element.security
    element: security
    manager: Who signs off security, and have they seen our answers?
    rep: Who signs off security on their side?
"""
    compiled = compile_playbook(load_playbook(str(_write(tmp_path, "plus.yaml", text))))

    result = review(make_deal(stage=PROPOSAL, stage_history=()), compiled)

    assert signal(result, "methodology_gap:security").status == "absent"


# --------------------------------------------------------------- invalid playbooks


@pytest.mark.parametrize(
    ("text", "names"),
    [
        pytest.param(
            "name: x\nextends: meddpicc\nthresholds:\n  stalled_dayz: 10\n",
            ["thresholds.stalled_dayz", "Extra inputs are not permitted"],
            id="unknown-threshold",
        ),
        pytest.param(
            "name: x\nextends: meddpicc\ncolour: blue\n", ["colour"], id="unknown-top-level-key"
        ),
        pytest.param(
            "name: x\nextends: meddpicc\nthresholds:\n  no_activity_days: soon\n",
            ["thresholds.no_activity_days", "integer"],
            id="wrong-type",
        ),
        pytest.param(
            "name: x\nextends: meddpicc\nthresholds:\n  no_activity_days: 0\n",
            ["thresholds.no_activity_days"],
            id="out-of-range",
        ),
        pytest.param(
            "name: x\nextends: meddpicc\nprompts:\n  max_per_deal: many\n",
            ["prompts.max_per_deal"],
            id="wrong-type-prompts",
        ),
        pytest.param(
            "name: x\nextends: meddpicc\nquestions:\n  - id: q.x\n    signal: deal_aging\n"
            "    manager: '{nope} days?'\n    rep: 'Why?'\n",
            ["questions.", "(q.x)", "unknown placeholder {nope}"],
            id="unknown-placeholder",
        ),
        pytest.param(
            "name: x\nextends: meddpicc\nquestions:\n  - id: q.x\n    element: budget\n"
            "    manager: Budget?\n    rep: Budget?\n",
            ["(q.x)", "element 'budget' is not in elements"],
            id="question-for-unknown-element",
        ),
        pytest.param(
            "name: x\nextends: meddpicc\nquestions:\n  - id: q.x\n    signal: no_such_signal\n"
            "    manager: A?\n    rep: B?\n",
            ["signal"],
            id="question-for-unknown-signal",
        ),
        pytest.param(
            "name: x\nquestions:\n  - id: q.x\n    signal: deal_aging\n"
            "    manager: A?\n    rep: B?\n",
            ["no question for signal 'close_date_passed'"],
            id="missing-question-for-a-signal",
        ),
        pytest.param(
            "name: x\nextends: meddpicc\nelements:\n  budget:\n    label: Budget\n"
            "    from_phase: qualify\n    sources:\n      - field: [Budget__c]\n",
            ["no question for element 'budget'"],
            id="missing-question-for-an-element",
        ),
        pytest.param(
            "name: x\nextends: meddpicc\nprompts:\n  max_per_deal: 2\n  show_first: 3\n",
            ["prompts.show_first", "prompts.max_per_deal"],
            id="show-first-above-cap",
        ),
        pytest.param(
            "name: x\nextends: meddpicc\nhealth:\n  healthy_min: 40\n  at_risk_min: 40\n",
            ["health.at_risk_min"],
            id="bands-out-of-order",
        ),
        pytest.param(
            "name: x\nextends: meddpicc\nthresholds:\n  push_count: 3\n  push_count_high: 2\n",
            ["thresholds", "push_count_high"],
            id="high-below-base",
        ),
        pytest.param(
            "name: x\nextends: meddpicc\nelements:\n  metrics:\n    sources:\n"
            "      - field: [A]\n        keywords: [b]\n",
            ["elements.metrics.sources.0", "exactly one of"],
            id="source-with-two-kinds",
        ),
        pytest.param(
            "name: x\nextends: meddpicc\nstage_phases:\n  discovery: later\n",
            ["stage_phases.discovery"],
            id="unknown-phase",
        ),
        pytest.param(
            "name: x\nextends: meddpicc\ndisabled_signals: [no_such_signal]\n",
            ["disabled_signals.0"],
            id="unknown-disabled-signal",
        ),
        pytest.param("name: [x\n", ["not valid YAML"], id="bad-yaml"),
        pytest.param("- name: x\n", ["expected a mapping at the top level"], id="top-level-list"),
        pytest.param("just text\n", ["expected a mapping at the top level"], id="top-level-str"),
        pytest.param("", ["expected a mapping at the top level"], id="empty"),
        pytest.param(
            "name: x\nextends: ./other.yaml\n",
            ["extends: must name a built-in"],
            id="text-extends-file",
        ),
    ],
)
def test_given_invalid_playbook_text_when_loaded_then_error_names_the_offending_key(
    text: str, names: list[str]
) -> None:
    with pytest.raises(PlaybookError) as caught:
        load_playbook_text(text, "custom.yaml")

    message = str(caught.value)
    assert message.startswith("playbook custom.yaml: ")
    for name in names:
        assert name in message


def test_given_invalid_file_when_loaded_then_error_names_the_file_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.yaml", "name: bad\nextends: meddpicc\nthresholds:\n  x: 1\n")

    with pytest.raises(PlaybookError, match=r"bad\.yaml: thresholds\.x: "):
        load_playbook(str(path))


def test_given_bad_yaml_in_a_base_file_when_loaded_then_error_names_the_base(
    tmp_path: Path,
) -> None:
    _write(tmp_path, "base.yaml", "name: [broken\n")
    child = _write(tmp_path, "child.yaml", "name: child\nextends: base.yaml\n")

    with pytest.raises(PlaybookError, match=r"base\.yaml: not valid YAML"):
        load_playbook(str(child))


def test_given_extends_cycle_when_loaded_then_it_is_rejected(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", "name: a\nextends: b.yaml\n")
    _write(tmp_path, "b.yaml", "name: b\nextends: a.yaml\n")

    with pytest.raises(PlaybookError, match="extends itself"):
        load_playbook(str(tmp_path / "a.yaml"))


def test_given_playbook_extending_itself_when_loaded_then_it_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "self.yaml", "name: me\nextends: self.yaml\n")

    with pytest.raises(PlaybookError, match="extends itself"):
        load_playbook(str(path))


def test_given_missing_file_when_loaded_then_error_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"

    with pytest.raises(PlaybookError, match=r"nope\.yaml: no such file or built-in"):
        load_playbook(str(missing))


def test_given_missing_base_when_loaded_then_error_names_the_base(tmp_path: Path) -> None:
    child = _write(tmp_path, "child.yaml", "name: child\nextends: gone.yaml\n")

    with pytest.raises(PlaybookError, match=r"gone\.yaml: no such file"):
        load_playbook(str(child))


def test_given_extends_that_is_not_a_string_when_loaded_then_it_is_rejected(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, "odd.yaml", "name: odd\nextends: [meddpicc]\n")

    with pytest.raises(PlaybookError, match="extends: expected a playbook name or path"):
        load_playbook(str(path))


def test_given_an_open_stage_mapped_to_closed_then_the_playbook_is_rejected() -> None:
    with pytest.raises(PlaybookError, match=r"stage_phases\.Verbal"):
        load_playbook_text(
            "name: x\nextends: meddpicc\nstage_phases:\n  Verbal: closed\n", "x.yaml"
        )


# --------------------------------------------------------------- placeholders, keywords, types


def _question(manager: str) -> str:
    return (
        "name: x\nextends: meddpicc\nquestions:\n  - id: deal_aging.why_now\n"
        f"    signal: deal_aging\n    manager: '{manager}'\n    rep: 'Why?'\n"
    )


@pytest.mark.parametrize(
    "placeholder", ["{stage:d}", "{stage!r}", "{stage:>9999}", "{days:{days}}", "{days!s:>3}"]
)
def test_given_a_placeholder_with_a_format_spec_or_conversion_then_rejected_naming_the_question(
    placeholder: str,
) -> None:
    with pytest.raises(PlaybookError) as caught:
        load_playbook_text(_question(f"{placeholder} days?"), "custom.yaml")

    message = str(caught.value)
    assert "(deal_aging.why_now)" in message
    assert "use a plain {name}" in message


def test_given_plain_placeholders_and_escaped_braces_then_the_question_is_accepted() -> None:
    loaded = load_playbook_text(_question("{days} days in {stage} {{sic}}?"), "custom.yaml")

    assert any(q.manager.startswith("{days} days") for q in loaded.questions)


@pytest.mark.parametrize("keyword", ['""', '"   "', '"\\t"'], ids=["empty", "spaces", "tab"])
def test_given_an_empty_or_blank_keyword_then_the_playbook_is_rejected(keyword: str) -> None:
    text = (
        "name: x\nextends: meddpicc\nelements:\n  metrics:\n    sources:\n"
        f"      - keywords: [roi, {keyword}]\n"
    )
    with pytest.raises(PlaybookError) as caught:
        load_playbook_text(text, "custom.yaml")

    message = str(caught.value)
    assert "elements.metrics.sources.0" in message and "keywords.1" in message


@pytest.mark.parametrize(
    ("thresholds", "names"),
    [
        pytest.param(
            "amount_decrease_ratio: 0.4\n  amount_decrease_high_ratio: 0.3",
            ["amount_decrease_high_ratio must be at least amount_decrease_ratio"],
            id="decrease-high-below-base",
        ),
        pytest.param(
            "small_deal_amount: 200000\n  large_deal_amount: 100000",
            ["small_deal_amount cannot exceed large_deal_amount"],
            id="small-above-large",
        ),
        pytest.param("no_activity_days: true", ["thresholds.no_activity_days"], id="bool-int"),
        pytest.param("no_activity_days: 2.5", ["thresholds.no_activity_days"], id="fraction-int"),
        pytest.param("deal_age_days: '200'", ["thresholds.deal_age_days"], id="string-int"),
        pytest.param(
            "single_threaded_amount: yes", ["thresholds.single_threaded_amount", "boolean"],
            id="bool-float",
        ),
        pytest.param(
            "stalled_days_by_phase: {negotiate: true}",
            ["thresholds.stalled_days_by_phase.negotiate"],
            id="bool-in-a-mapping",
        ),
        pytest.param(
            "stalled_days_by_stage: {Verbal: 0}",
            ["thresholds.stalled_days_by_stage.Verbal"],
            id="zero-days-for-a-stage",
        ),
    ],
)  # fmt: skip
def test_given_inconsistent_or_mistyped_thresholds_then_the_playbook_is_rejected(
    thresholds: str, names: list[str]
) -> None:
    with pytest.raises(PlaybookError) as caught:
        load_playbook_text(f"name: x\nextends: meddpicc\nthresholds:\n  {thresholds}\n", "c.yaml")

    for name in names:
        assert name in str(caught.value)


def test_given_whole_numbers_for_amount_thresholds_then_they_are_accepted() -> None:
    loaded = load_playbook_text(
        "name: x\nextends: meddpicc\nthresholds:\n  single_threaded_amount: 25000\n"
        "  stalled_high_factor: 3\n",
        "c.yaml",
    )

    assert loaded.thresholds.single_threaded_amount == 25_000.0
    assert loaded.thresholds.stalled_high_factor == 3.0


@pytest.mark.parametrize("value", ["0", "true", "2.5"])
def test_given_a_bad_high_signals_critical_then_the_playbook_is_rejected(value: str) -> None:
    with pytest.raises(PlaybookError, match=r"health\.high_signals_critical"):
        load_playbook_text(
            f"name: x\nextends: meddpicc\nhealth:\n  high_signals_critical: {value}\n", "c.yaml"
        )


def test_the_deal_aging_question_asks_about_momentum_not_the_pain_question_again() -> None:
    loaded = load_playbook("meddpicc")
    aging = next(q for q in loaded.questions if q.signal == "deal_aging")
    pain = next(q for q in loaded.questions if q.element == "identify_pain")

    assert "What has changed on the customer's side" in " ".join(aging.manager.split())
    assert "keep evaluating" in aging.manager and "keep evaluating" in aging.rep
    assert "do nothing" not in aging.manager and "do nothing" not in aging.rep
    assert " ".join(aging.manager.split()) != " ".join(pain.manager.split())
