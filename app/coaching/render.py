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
    """How the deal stands in a note's head: "At risk (45/100)", or "Closed won"."""
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


def render_note_html(review: DealReview, marker: str, audience: str = "manager") -> str:
    """The note as sanitised HTML, capped at :data:`NOTE_MAX_CHARS`."""
    prompts: tuple[Prompt, ...] = review.prompts if audience == "manager" else review.rep_prompts
    heading = "Questions for the deal review" if audience == "manager" else "Self-review"
    parts = [
        f"<p><strong>dealcoach: {standing(review)}</strong><br>{_h(_headline(review))}</p>",
        f"<p>{_h(review.summary, 600)}</p>",
    ]
    first = [p for p in prompts if p.shown_first]
    later = [p for p in prompts if not p.shown_first]
    if first:
        parts.append(f"<p><strong>{heading}</strong></p>")
        parts.append("<ol>" + "".join(_prompt_item(p) for p in first) + "</ol>")
    if later:
        parts.append("<p><strong>Also worth asking</strong></p>")
        parts.append("<ul>" + "".join(_prompt_item(p) for p in later) + "</ul>")
    tail = (
        f"<p><em>Playbook {_h(review.playbook, 60)} v{review.playbook_version}, reviewed "
        f"{review.as_of.date().isoformat()}. {MARKER_PREFIX} {_h(marker, 80)}</em></p>"
    )
    signals_html = ""
    if review.signals:
        items = "".join(
            f"<li>{_h(signal.severity, 10)}: {_h(signal.message)}</li>" for signal in review.signals
        )
        signals_html = f"<p><strong>Signals</strong></p><ul>{items}</ul>"
    document = "".join(parts) + signals_html + tail
    if len(document) > NOTE_MAX_CHARS:  # only with extreme playbooks: drop the signal list
        document = "".join(parts) + tail
    cleaned: str = nh3.clean(document, tags=set(ALLOWED_TAGS), attributes={}, link_rel=None)
    if len(cleaned) > NOTE_MAX_CHARS:  # unreachable with today's caps; keep the marker anyway
        marker_line = nh3.clean(tail, tags=set(ALLOWED_TAGS), attributes={}, link_rel=None)
        body = nh3.clean(
            cleaned[: NOTE_MAX_CHARS - len(marker_line) - 16],
            tags=set(ALLOWED_TAGS),
            attributes={},
            link_rel=None,
        )
        cleaned = body + marker_line
    return cleaned


def _prompt_item(prompt: Prompt) -> str:
    return f"<li>{_h(prompt.text, 600)}<br><em>Why: {_h(prompt.why)}</em></li>"


def render_note_text(
    review: DealReview, marker: str | None = None, audience: str = "manager"
) -> str:
    """The review as plain text: the Task description, the CLI's text output.

    The marker is the second line, so however the text is cut it stays; the text
    is capped at :data:`TEXT_NOTE_MAX_CHARS`, cut at the end of a line.
    """
    prompts = review.prompts if audience == "manager" else review.rep_prompts
    lines = [f"{clean_text(review.deal_name, 200)} [{clean_text(review.deal_id, 40)}]"]
    if marker:
        lines.append(f"  {MARKER_PREFIX} {clean_text(marker, 80)}")
    lines.append(f"  {_headline(review)}")
    lines.append(f"  {standing(review)}" if not review.is_open else f"  Health: {standing(review)}")
    lines.append(f"  {clean_text(review.summary, 600)}")
    first = [p for p in prompts if p.shown_first]
    later = [p for p in prompts if not p.shown_first]
    if first:
        lines.append(
            "  Questions for the deal review:" if audience == "manager" else "  Self-review:"
        )
    for index, prompt in enumerate([*first, *later], start=1):
        if index == len(first) + 1:
            lines.append("  Also worth asking:")
        lines.append(f"    {index}. {clean_text(prompt.text, 600)}")
        lines.append(f"       why: {clean_text(prompt.why)}")
    if review.signals:
        lines.append("  Signals:")
        for signal in review.signals:
            label = signal.code + (f"[{signal.element}]" if signal.element else "")
            lines.append(f"    - {signal.severity:<6} {label}: {clean_text(signal.message)}")
    text = "\n".join(lines)
    if len(text) > TEXT_NOTE_MAX_CHARS:
        cut = text.rfind("\n", 0, TEXT_NOTE_MAX_CHARS + 1)
        text = text[:cut] if cut > 0 else text[:TEXT_NOTE_MAX_CHARS]
    return text
