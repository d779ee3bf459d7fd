"""ContentNote bodies: what Salesforce accepts and keeps.

``Content`` is base64 of the note's HTML. Salesforce refuses a body with a bare
``&`` or ``<`` (text must be HTML-escaped) and strips unsafe markup. The emulator
keeps a small allow-list of tags (``p br b strong i em u s strike ul ol li a span
div pre code blockquote h1-h6``), keeps only ``href`` (http, https, mailto) on
links, drops ``script``/``style`` with their content and every other tag (keeping
its text). The text preview is the plain text, whitespace collapsed, 255
characters at most.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from html.parser import HTMLParser

from .values import ApiError

__all__ = ["decode_note_content", "text_preview"]

_ALLOWED = frozenset(
    {
        "p",
        "br",
        "b",
        "strong",
        "i",
        "em",
        "u",
        "s",
        "strike",
        "ul",
        "ol",
        "li",
        "a",
        "span",
        "div",
        "pre",
        "code",
        "blockquote",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
    }
)
_VOID = frozenset({"br"})
_DROP_WITH_CONTENT = frozenset({"script", "style", "iframe", "object", "embed", "template"})
_ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});")
_TAG_START = re.compile(r"</?[A-Za-z!]")
_UNESCAPED = (
    "Note can't be saved because it contains HTML tags or unescaped characters that are not "
    "allowed in a Note."
)


class _Sanitizer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.out: list[str] = []
        self.dropping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP_WITH_CONTENT:
            self.dropping += 1
            return
        if self.dropping or tag not in _ALLOWED:
            return
        kept = ""
        if tag == "a":
            for name, value in attrs:
                if name == "href" and value and re.match(r"(?i)(https?:|mailto:)", value):
                    kept += f' href="{html.escape(value, quote=True)}"'
        self.out.append(f"<{tag}{kept}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self.dropping and tag in _ALLOWED:
            self.out.append(f"<{tag}>" if tag in _VOID else f"<{tag}></{tag}>")

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP_WITH_CONTENT:
            self.dropping = max(0, self.dropping - 1)
            return
        if not self.dropping and tag in _ALLOWED and tag not in _VOID:
            self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if not self.dropping:
            self.out.append(data)

    def handle_entityref(self, name: str) -> None:
        if not self.dropping:
            self.out.append(f"&{name};")

    def handle_charref(self, name: str) -> None:
        if not self.dropping:
            self.out.append(f"&#{name};")


def decode_note_content(value: object) -> str:
    """The sanitised HTML of a ``Content`` value (base64); :class:`ApiError` if refused."""
    if not isinstance(value, str):
        raise ApiError(
            400, "JSON_PARSER_ERROR", "Cannot deserialize instance of base64 from a non-string"
        )
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise ApiError(
            400, "JSON_PARSER_ERROR", "Cannot deserialize instance of base64: not valid base64"
        ) from None
    for match in re.finditer("&", text):
        if not _ENTITY.match(text, match.start()):
            raise ApiError(400, "FIELD_INTEGRITY_EXCEPTION", _UNESCAPED, ["Content"])
    for match in re.finditer("<", text):
        if not _TAG_START.match(text, match.start()):
            raise ApiError(400, "FIELD_INTEGRITY_EXCEPTION", _UNESCAPED, ["Content"])
    sanitizer = _Sanitizer()
    sanitizer.feed(text)
    sanitizer.close()
    return "".join(sanitizer.out)


def text_preview(body: str) -> str:
    text = re.sub(r"<br\s*/?>|</p>|</li>|</div>", " ", body)
    text = html.unescape(re.sub(r"<[^>]*>", "", text))
    return " ".join(text.split())[:255]
