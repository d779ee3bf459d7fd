"""Notes for the CRMs: stable markers, sanitised HTML, length caps."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest

from app.coaching.engine import review_fingerprint
from app.coaching.playbook import compile_playbook, load_playbook_text
from app.coaching.render import (
    ALLOWED_TAGS,
    MARKER_PREFIX,
    NOTE_MAX_CHARS,
    TEXT_NOTE_MAX_CHARS,
    clean_text,
    note_marker,
    note_title,
    render_note_html,
    render_note_text,
)
from app.coaching.results import DealReview
from app.coaching.snapshot import Contact, Stage

from .factories import (
    AS_OF,
    CHAMPION,
    CLOSED_LOST,
    CLOSED_WON,
    MEDDPICC_FIELDS,
    day,
    days_ago,
    make_deal,
    review,
)

HOSTILE = (
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">click</a>',
    '"><svg onload=alert(1)>',
    "</p></li><iframe src=//evil>",
)

#: Questions that echo CRM text ({deal}, {stage}, {category}) into the prompts.
ECHO = compile_playbook(
    load_playbook_text(
        """\
name: echo
extends: meddpicc
questions:
  - id: deal_aging.why_now
    signal: deal_aging
    manager: "Why is {deal} still open after {days} days in {stage}?"
    rep: "Why is {deal} still open?"
  - id: forecast_mismatch.commit_basis
    signal: forecast_mismatch
    manager: "Why {category} for {deal}?"
    rep: "Why {category}?"
  - id: element.metrics
    element: metrics
    manager: "Metrics for {deal} are {status}: {element_label}?"
    rep: "Metrics for {deal}?"
""",
        "echo",
    )
)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def tags_of(document: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    parser = _Tags()
    parser.feed(document)
    parser.close()
    return parser.tags


def assert_safe_html(document: str) -> None:
    """Only allowlisted tags, none with an attribute: no script, no handler, no link."""
    for tag, attrs in tags_of(document):
        assert tag in ALLOWED_TAGS, tag
        assert attrs == [], (tag, attrs)
    lowered = document.lower()
    assert "<script" not in lowered
    assert "<img" not in lowered and "<svg" not in lowered and "<iframe" not in lowered
    assert not re.search(r"<[^>]*(onerror|onload|javascript:)", lowered)


def _steady_review(as_of=AS_OF, **overrides: object) -> DealReview:
    values: dict[str, object] = {
        "amount": 60_000.0,
        "contacts": (CHAMPION,),
        "next_step": "",
        "fields": {**MEDDPICC_FIELDS, "Metrics__c": "TBD"},
    }
    values.update(overrides)
    return review(make_deal(**values), as_of=as_of)


def _marker(result: DealReview, connection: str | None = "conn-1") -> str:
    return note_marker(connection, result.deal_id, review_fingerprint(result))


# --------------------------------------------------------------- the marker


def test_given_same_connection_deal_and_content_when_marked_then_marker_is_stable() -> None:
    first = _marker(_steady_review())
    second = _marker(_steady_review())

    assert first == second
    assert re.fullmatch(r"dc1-[0-9a-f]{32}", first)


def test_given_another_connection_when_marked_then_marker_differs() -> None:
    result = _steady_review()

    assert _marker(result, "conn-1") != _marker(result, "conn-2")
    assert _marker(result, None) == _marker(result, None)
    assert _marker(result, None) != _marker(result, "conn-1")


def test_given_another_deal_with_same_content_when_marked_then_marker_differs() -> None:
    assert _marker(_steady_review()) != _marker(_steady_review(id="006B"))


def test_given_changed_evidence_when_marked_then_marker_differs() -> None:
    before = _steady_review()
    after = _steady_review(last_activity_at=days_ago(20))
    amount_changed = _steady_review(amount=61_000.0)

    assert _marker(before) != _marker(after)
    assert _marker(before) != _marker(amount_changed)


def test_given_as_of_a_day_later_with_same_evidence_when_marked_then_marker_is_unchanged() -> None:
    today = _steady_review()
    tomorrow = _steady_review(as_of=AS_OF + timedelta(days=1))

    assert today.as_of != tomorrow.as_of
    assert review_fingerprint(today) == review_fingerprint(tomorrow)
    assert _marker(today) == _marker(tomorrow)


def test_given_a_day_passes_and_a_threshold_is_crossed_when_marked_then_marker_changes() -> None:
    today = _steady_review(last_activity_at=days_ago(14))
    tomorrow = _steady_review(last_activity_at=days_ago(14), as_of=AS_OF + timedelta(days=1))

    assert _marker(today) != _marker(tomorrow)


# --------------------------------------------------------------- HTML


def test_given_a_review_when_rendered_as_html_then_only_allowlisted_tags_are_used() -> None:
    result = _steady_review(close_date=day(-3))
    marker = _marker(result)

    document = render_note_html(result, marker)

    assert_safe_html(document)
    assert {tag for tag, _ in tags_of(document)} <= {"p", "br", "strong", "em", "ol", "ul", "li"}
    assert f"{MARKER_PREFIX} {marker}" in document
    assert "Questions for the deal review" in document
    assert "Also worth asking" in document  # prompts beyond the first three
    assert document.count("<li>") == len(result.prompts)  # the questions, no signal list


def test_given_rep_audience_when_rendered_then_the_rep_wording_is_used() -> None:
    result = _steady_review()

    document = render_note_html(result, _marker(result), audience="rep")

    assert "Self-review" in document
    assert clean_text(result.rep_prompts[0].text, 600).split(",")[0] in document


@pytest.mark.parametrize("hostile", HOSTILE)
def test_given_hostile_crm_text_when_rendered_then_nothing_executable_survives(
    hostile: str,
) -> None:
    deal = make_deal(
        name=hostile,
        stage=Stage("x", hostile, 4, 0.6),
        stage_history=(),
        created_at=days_ago(200),
        forecast_category=hostile,
        currency=hostile,
        fields={**MEDDPICC_FIELDS, "Metrics__c": hostile},
        contacts=(Contact("003", (hostile,), name=hostile),),
    )
    result = review(deal, ECHO)
    assert any(hostile[:10] in p.text for p in result.prompts)  # the text does reach the note

    document = render_note_html(result, _marker(result))

    assert_safe_html(document)
    assert _marker(result) in document
    text = render_note_text(result, _marker(result))
    assert "\x00" not in text


def test_given_control_characters_when_cleaned_then_they_are_gone_and_text_is_one_line() -> None:
    dirty = "Acme\x00\x07 deal\u200b\r\n\tsecond \u2028line\ufeff\x7f"

    assert clean_text(dirty) == "Acme deal second line"


@pytest.mark.parametrize(("limit", "size"), [(300, 10_000), (10, 11), (10, 10)])
def test_given_long_text_when_cleaned_then_it_is_capped_with_an_ellipsis(
    limit: int, size: int
) -> None:
    cleaned = clean_text("x" * size, limit)

    assert len(cleaned) <= limit
    assert cleaned.endswith("…") is (size > limit)


def test_given_enormous_deal_name_when_titled_then_title_fits_255_characters() -> None:
    result = review(make_deal(name="Ω" * 100_000))

    title = note_title(result)

    assert len(title) <= 255
    assert title.startswith("dealcoach review: ΩΩ")


def test_given_short_deal_name_when_titled_then_title_carries_it_cleanly() -> None:
    assert (
        note_title(review(make_deal(name="Acme\n renewal\x00"))) == "dealcoach review: Acme renewal"
    )


def test_given_enormous_texts_when_rendered_then_notes_stay_under_the_cap() -> None:
    huge = "&<" * 50_000
    deal = make_deal(
        name=huge,
        stage=Stage("x", huge, 4, 0.6),
        stage_history=(),
        created_at=days_ago(400),
        forecast_category="Commit",
        fields={},
        contacts=(),
    )
    result = review(deal, ECHO)

    document = render_note_html(result, _marker(result))
    text = render_note_text(result, _marker(result))

    assert len(document) <= NOTE_MAX_CHARS and _marker(result) in document
    assert len(text) <= NOTE_MAX_CHARS and _marker(result) in text
    assert max(len(line) for line in text.splitlines()) < 1_000
    assert_safe_html(document)


def test_given_a_review_when_rendered_as_text_then_it_lists_prompts_signals_and_marker() -> None:
    result = _steady_review(close_date=day(-3))

    text = render_note_text(result, "dc1-abc")

    lines = text.splitlines()
    assert lines[0] == "Acme finance platform [006A]"
    assert lines[1] == f"  {MARKER_PREFIX} dc1-abc"  # near the top: no cut drops it
    assert len(result.prompts) > 3
    questions = lines.index("  Questions for the deal review:")
    more = lines.index("  Also worth asking:")
    assert [line[:7] for line in lines[questions + 1 : more : 2]] == [
        "    1. ",
        "    2. ",
        "    3. ",
    ]
    assert lines[more + 1].startswith("    4. ")
    assert not any("(more)" in line for line in lines)
    assert lines[-1] == f"  Health: At risk ({result.health.score}/100)"
    assert not any("Signals" in line or "methodology_gap" in line for line in lines)


def test_given_a_note_over_the_cap_when_rendered_then_it_is_cut_but_keeps_its_marker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.coaching import render

    result = _steady_review()
    marker = _marker(result)
    full = render.render_note_html(result, marker)
    monkeypatch.setattr(render, "NOTE_MAX_CHARS", len(full) // 4)
    cut = render.render_note_html(result, marker)
    assert len(cut) <= len(full) // 4
    assert cut.endswith("</em></p>")
    assert marker in cut
    assert_safe_html(cut)


# --------------------------------------------------------------- closed deals, caps, controls


@pytest.mark.parametrize(
    ("stage", "label"), [(CLOSED_WON, "Closed won"), (CLOSED_LOST, "Closed lost")]
)
def test_given_a_closed_deal_when_rendered_then_the_notes_say_how_it_closed_not_its_health(
    stage: Stage, label: str
) -> None:
    result = review(make_deal(stage=stage, close_date=day(-30)))

    text = render_note_text(result, "dc1-abc")
    document = render_note_html(result, "dc1-abc")

    assert text.splitlines()[-1] == f"  {label}"
    assert "Health:" not in text and "/100" not in text
    assert f"<p><em>{label} · Playbook meddpicc" in document
    assert "/100" not in document


def test_the_text_note_is_capped_at_salesforce_task_description_length() -> None:
    assert TEXT_NOTE_MAX_CHARS == 32_000


def test_given_a_text_note_over_the_cap_when_rendered_then_it_is_cut_at_a_line_end_with_marker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.coaching import render

    result = _steady_review(close_date=day(-3))
    full = render.render_note_text(result, "dc1-abc")
    cap = len(full) // 2
    monkeypatch.setattr(render, "TEXT_NOTE_MAX_CHARS", cap)

    cut = render.render_note_text(result, "dc1-abc")

    assert len(cut) <= cap
    *body, last = cut.splitlines()
    assert full.startswith("\n".join(body) + "\n")  # whole lines only
    assert last == full.splitlines()[-1] == f"  Health: At risk ({result.health.score}/100)"
    assert cut.splitlines()[1] == f"  {MARKER_PREFIX} dc1-abc"


@pytest.mark.parametrize(
    "hidden",
    ["\u2066", "\u2067", "\u2068", "\u2069", "\u202e", "\x80", "\x85", "\x9b", "\x9f"],
    ids=lambda ch: f"U+{ord(ch):04X}",
)
def test_given_bidi_isolates_and_c1_controls_when_cleaned_then_they_are_removed(
    hidden: str,
) -> None:
    assert clean_text(f"Acme{hidden} deal{hidden}") == "Acme deal"


# --------------------------------------------------------------- what the note leads with


def test_given_a_review_when_rendered_then_the_note_leads_with_questions_and_ends_with_health() -> (
    None
):
    result = _steady_review(close_date=day(-3))
    marker = _marker(result)

    document = render_note_html(result, marker)
    text = render_note_text(result, marker)

    top = result.prompts[0]
    paragraphs = document.split("</p>")
    assert "dealcoach:" not in document and "Critical" not in paragraphs[0]
    assert "/100" not in document.rsplit("<p>", 1)[0]  # the score: only in the last paragraph
    last = document.rsplit("<p>", 1)[1]
    assert f"Health: At risk ({result.health.score}/100)" in last and marker in last
    plain = html.unescape(document)
    assert plain.index(top.text) < plain.index("Why: ")
    for signal in result.signals:  # each signal is said once: as its question's why
        assert plain.count(signal.message) <= 1
    assert text.splitlines()[3] == "  Questions for the deal review:"
    assert text.splitlines()[4] == f"    1. {clean_text(top.text, 600)}"
    assert text.splitlines()[5] == f"       why: {clean_text(top.why)}"
    assert sum("/100" in line for line in text.splitlines()) == 1


def test_given_both_audiences_when_rendered_then_one_note_holds_both_sections() -> None:
    result = _steady_review()
    marker = _marker(result)

    document = render_note_html(result, marker, audience="both")
    text = render_note_text(result, marker, audience="both")

    assert document.index("Questions for the deal review") < document.index("Self-review questions")
    assert document.count("<li>") == len(result.prompts) + len(result.rep_prompts)
    assert document.count(marker) == 1 and document.count("/100") == 1
    assert "  Self-review questions:" in text.splitlines()
    assert clean_text(result.rep_prompts[0].text, 600) in text
    assert_safe_html(document)


def test_given_rep_audience_when_rendered_as_text_then_only_the_rep_wording_is_used() -> None:
    result = _steady_review()

    text = render_note_text(result, "dc1-abc", audience="rep")

    assert "  Self-review questions:" in text.splitlines()
    assert "Questions for the deal review" not in text
    assert all(clean_text(p.text, 600) in text for p in result.rep_prompts)
    assert not any(
        clean_text(p.text, 600) in text
        for p in result.prompts
        if p.text not in {r.text for r in result.rep_prompts}
    )


def test_given_an_unknown_audience_when_rendered_then_value_error() -> None:
    with pytest.raises(ValueError, match="audience"):
        render_note_html(_steady_review(), "dc1-abc", audience="cfo")


def test_given_a_healthy_open_deal_when_rendered_then_the_note_says_there_is_nothing_to_ask() -> (
    None
):
    result = review(make_deal())

    assert result.signals == () and result.is_open
    assert "No questions for this deal: no risk signals." in render_note_text(result, "dc1-a")
    assert "<p>No questions for this deal: no risk signals.</p>" in render_note_html(
        result, "dc1-a"
    )


def test_the_caps_are_below_the_crms_limits() -> None:
    assert NOTE_MAX_CHARS < 65_536  # HubSpot hs_note_body
    assert TEXT_NOTE_MAX_CHARS <= 32_000  # Salesforce Task.Description


def test_given_a_playbook_asking_many_long_questions_when_rendered_then_the_last_ones_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.coaching import render

    result = _steady_review(close_date=day(-3))
    marker = _marker(result)
    full = render.render_note_html(result, marker)
    monkeypatch.setattr(render, "NOTE_MAX_CHARS", len(full) - 50)

    cut = render.render_note_html(result, marker)

    assert len(cut) <= len(full) - 50
    assert result.prompts[0].text in html.unescape(cut)  # the top question stays
    assert result.prompts[-1].text not in html.unescape(cut)  # the last one went
    assert cut.endswith("</em></p>") and marker in cut and "/100" in cut
    assert_safe_html(cut)
