"""Rendering reviews: the note written to each CRM (HTML and plain text) and its marker.

Every string that came from the CRM (deal names, stage labels, field values)
is untrusted: it is stripped of control characters, length-capped, escaped,
and the finished HTML goes through nh3 with a small allowlist that both
Salesforce ContentNote and HubSpot notes accept.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Mapping
from typing import Literal

import nh3

from app.coaching.results import DealReview, Prompt

#: HubSpot's ``hs_note_body`` holds at most 65,536 characters; stay well below.
NOTE_MAX_CHARS = 60_000
#: The plain-text note: Salesforce ``Task.Description`` holds at most 32,000 characters.
TEXT_NOTE_MAX_CHARS = 32_000
#: Salesforce ContentNote.Title and Task.Subject hold at most 255 characters.
TITLE_MAX_CHARS = 255
#: Any one CRM-supplied string in a note.
CRM_TEXT_MAX_CHARS = 300
MARKER_PREFIX = "dealcoach-ref:"

ALLOWED_TAGS = frozenset({"p", "br", "b", "strong", "i", "em", "ul", "ol", "li"})
#: C0 and C1 controls, zero-width and bidirectional formatting characters (embeddings,
#: overrides and isolates), line/paragraph separators and the BOM.
_CONTROL = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]"
)
BAND_LABEL = {"healthy": "Healthy", "at_risk": "At risk", "critical": "Critical"}


def standing(review: DealReview) -> str:
    """How the deal stands, for a note's last line: "At risk (45/100)", or "Closed won"."""
    if not review.is_open:
        return "Closed won" if review.is_won else "Closed lost"
    return f"{BAND_LABEL[review.health.band]} ({review.health.score}/100)"


def clean_text(value: object, limit: int = CRM_TEXT_MAX_CHARS) -> str:
    """Untrusted text made safe to place in a note: no control characters, one line, capped."""
    text = _CONTROL.sub("", str(value))
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _h(value: object, limit: int = CRM_TEXT_MAX_CHARS) -> str:
    return html.escape(clean_text(value, limit), quote=True)


def note_marker(connection_id: str | None, deal_id: str, review_fingerprint: str) -> str:
    """The stable marker a note carries: the same connection, deal and review content
    always give the same marker, so a note is never written twice."""
    digest = hashlib.sha256(
        f"{connection_id or '-'}|{deal_id}|{review_fingerprint}".encode()
    ).hexdigest()
    return f"dc1-{digest[:32]}"


def note_title(review: DealReview) -> str:
    title = f"dealcoach review: {clean_text(review.deal_name, 200)}"
    return title[:TITLE_MAX_CHARS]


def _money(amount: float | None, currency: str | None) -> str:
    if amount is None:
        return "no amount"
    code = f" {clean_text(currency, 5)}" if currency else ""
    return f"{amount:,.0f}{code}"


def _headline(review: DealReview) -> str:
    close = review.close_date.isoformat() if review.close_date else "no close date"
    return (
        f"{clean_text(review.stage_label, 120)} · {_money(review.amount, review.currency)} · "
        f"closes {close}"
    )


#: Whose prompts a note shows: the manager's questions, the rep's self-review, or both.
NoteAudience = Literal["manager", "rep", "both"]
NOTE_AUDIENCES: tuple[NoteAudience, ...] = ("manager", "rep", "both")
HEADINGS: Mapping[str, str] = {
    "manager": "Questions for the deal review",
    "rep": "Self-review questions",
}


def _sections(review: DealReview, audience: str) -> list[tuple[str, tuple[Prompt, ...]]]:
    if audience not in NOTE_AUDIENCES:
        raise ValueError(f"audience: one of {', '.join(NOTE_AUDIENCES)}, not {audience!r}")
    if audience == "both":
        return [("manager", review.prompts), ("rep", review.rep_prompts)]
    return [(audience, review.prompts if audience == "manager" else review.rep_prompts)]


def _closing_line(review: DealReview) -> str:
    """The one line on how the deal stands, at the end of a note: never a verdict on top."""
    return f"Health: {standing(review)}" if review.is_open else standing(review)


def _no_questions(review: DealReview) -> str:
    if not review.is_open:
        return "No coaching questions: the deal is closed."
    return (
        "No questions for this deal: no risk signals."
        if not review.signals
        else ("No questions for this deal.")
    )


def _clean_html(document: str) -> str:
    cleaned: str = nh3.clean(document, tags=set(ALLOWED_TAGS), attributes={}, link_rel=None)
    return cleaned


def render_note_html(review: DealReview, marker: str, audience: str = "manager") -> str:
    """The note as sanitised HTML, capped at :data:`NOTE_MAX_CHARS`.

    It leads with the questions (the first three numbered, the rest under "Also
    worth asking"), each with its why; the signals are not listed again (each
    question's why is its signal). The health score and band are one line at the
    end, with the playbook, the review date and the marker. ``audience``:
    ``manager`` (default), ``rep`` (the rep's self-review) or ``both`` (two sections).
    Over the cap, the last questions are left out; the closing line always stays.
    """
    head = f"<p>{_h(_headline(review))}</p>"
    sections: list[tuple[str, list[str], list[str]]] = []
    for who, prompts in _sections(review, audience):
        first = [_prompt_item(p) for p in prompts if p.shown_first]
        later = [_prompt_item(p) for p in prompts if not p.shown_first]
        sections.append((who, first, later))
    tail = (
        f"<p><em>{_h(_closing_line(review))} · Playbook {_h(review.playbook, 60)} "
        f"v{review.playbook_version}, reviewed {review.as_of.date().isoformat()} · "
        f"{MARKER_PREFIX} {_h(marker, 80)}</em></p>"
    )

    def assemble() -> str:
        parts = [head]
        for who, first, later in sections:
            if not first and not later:
                continue
            parts.append(f"<p><strong>{HEADINGS[who]}</strong></p>")
            if first:
                parts.append("<ol>" + "".join(first) + "</ol>")
            if later:
                parts.append("<p><strong>Also worth asking</strong></p>")
                parts.append("<ul>" + "".join(later) + "</ul>")
        if len(parts) == 1:
            parts.append(f"<p>{_no_questions(review)}</p>")
        return "".join(parts) + tail

    document = assemble()
    # Only with extreme playbooks: leave out the last questions until the note fits.
    while len(document) > NOTE_MAX_CHARS and any(f or m for _, f, m in sections):
        for _, first, later in reversed(sections):
            if later:
                later.pop()
                break
            if first:
                first.pop()
                break
        document = assemble()
    cleaned = _clean_html(document)
    if len(cleaned) > NOTE_MAX_CHARS:  # the head and the tail alone: keep the marker anyway
        marker_line = _clean_html(tail)
        body = _clean_html(cleaned[: max(0, NOTE_MAX_CHARS - len(marker_line) - 16)])
        cleaned = body + marker_line
    return cleaned


def _prompt_item(prompt: Prompt) -> str:
    return f"<li><strong>{_h(prompt.text, 600)}</strong><br><em>Why: {_h(prompt.why)}</em></li>"


def render_note_text(
    review: DealReview, marker: str | None = None, audience: str = "manager"
) -> str:
    """The review as plain text: the Task description, the CLI's text output.

    The deal's name, then the marker (the second line, so however the text is cut
    it stays), the stage, amount and close date, the questions with their why, and
    the health as the last line. Capped at :data:`TEXT_NOTE_MAX_CHARS`: whole
    questions are cut from the end, the last line is kept.
    """
    lines = [f"{clean_text(review.deal_name, 200)} [{clean_text(review.deal_id, 40)}]"]
    if marker:
        lines.append(f"  {MARKER_PREFIX} {clean_text(marker, 80)}")
    lines.append(f"  {_headline(review)}")
    asked = False
    for who, prompts in _sections(review, audience):
        first = [p for p in prompts if p.shown_first]
        later = [p for p in prompts if not p.shown_first]
        if not prompts:
            continue
        asked = True
        lines.append(f"  {HEADINGS[who]}:")
        for index, prompt in enumerate([*first, *later], start=1):
            if index == len(first) + 1:
                lines.append("  Also worth asking:")
            lines.append(f"    {index}. {clean_text(prompt.text, 600)}")
            lines.append(f"       why: {clean_text(prompt.why)}")
    if not asked:
        lines.append(f"  {_no_questions(review)}")
    closing = f"  {_closing_line(review)}"
    body = "\n".join(lines)
    room = TEXT_NOTE_MAX_CHARS - len(closing) - 1
    if len(body) > room:
        cut = body.rfind("\n", 0, room + 1)
        body = body[:cut] if cut > 0 else body[:room]
    return f"{body}\n{closing}"
