"""A SOQL subset: tokenizer and parser (evaluation lives in :mod:`.org`).

Supported::

    SELECT item [, item ...] FROM Object
        [WHERE condition] [ORDER BY path [ASC|DESC] [NULLS FIRST|LAST], ...]
        [LIMIT n] [OFFSET n]

    item      := path (``Name``, ``Owner.Name``) | (subquery on a child relationship)
                 | COUNT()  (alone)
    condition := term [AND|OR term ...] | NOT term | (condition)
    term      := path op literal | path [NOT] IN (literal, ...) | path LIKE 'text'
    op        := = != <> < <= > >=
    literal   := 'text' (backslash escapes) | number | true | false | null
                 | 2026-01-31 | 2026-01-31T10:00:00Z (also .000Z, +01:00, -05:00)
                 | TODAY | YESTERDAY | TOMORROW | LAST_N_DAYS:n | NEXT_N_DAYS:n

Mixing AND and OR without parentheses is rejected, as Salesforce does. Not
supported (answered as ``MALFORMED_QUERY`` naming the emulator): semi-joins
(``IN (SELECT ...)``), GROUP BY and aggregates other than ``COUNT()``, TYPEOF,
FIELDS(), bind variables. A date-time with a ``+0000`` offset (no colon) is
rejected: format watermarks as ``2026-05-20T20:49:32Z``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .values import ApiError

__all__ = [
    "Comparison",
    "Condition",
    "CountAll",
    "FieldPath",
    "Literal",
    "Logical",
    "Negation",
    "OrderItem",
    "Query",
    "SubQuery",
    "parse",
    "query_error",
]

KEYWORDS = frozenset(
    {
        "select",
        "from",
        "where",
        "and",
        "or",
        "not",
        "in",
        "like",
        "order",
        "by",
        "asc",
        "desc",
        "nulls",
        "first",
        "last",
        "limit",
        "offset",
        "true",
        "false",
        "null",
        "includes",
        "excludes",
        "group",
        "having",
        "typeof",
        "with",
        "for",
        "update",
    }
)
DATE_CONSTANTS = frozenset({"today", "yesterday", "tomorrow"})
DATE_FUNCTIONS = frozenset({"last_n_days", "next_n_days"})

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:\d{2})?
                 (?:[+-]\d{4})?)
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),:])
    """,
    re.VERBOSE,
)
_VALID_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:\d{2})"
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


@dataclass(frozen=True)
class Token:
    kind: str  # string, datetime, date, number, name, op, punct, end
    text: str
    pos: int

    @property
    def lower(self) -> str:
        return self.text.lower()


@dataclass(frozen=True)
class FieldPath:
    parts: tuple[str, ...]
    pos: int

    @property
    def text(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Literal:
    kind: str  # string, number, boolean, null, date, datetime, date_literal
    value: Any  # str | float | bool | None; date_literal: (name, n)
    pos: int
    text: str


@dataclass(frozen=True)
class Comparison:
    path: FieldPath
    op: str  # = != < <= > >= in notin like
    value: Literal | tuple[Literal, ...]


@dataclass(frozen=True)
class Logical:
    op: str  # and / or
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Negation:
    item: Condition


Condition = Comparison | Logical | Negation


@dataclass(frozen=True)
class OrderItem:
    path: FieldPath
    descending: bool
    nulls_last: bool


@dataclass(frozen=True)
class CountAll:
    pos: int


@dataclass(frozen=True)
class SubQuery:
    query: Query
    pos: int


SelectItem = FieldPath | SubQuery | CountAll


@dataclass(frozen=True)
class Query:
    items: tuple[SelectItem, ...]
    sobject: str
    sobject_pos: int
    where: Condition | None
    order: tuple[OrderItem, ...]
    limit: int | None
    offset: int | None
    text: str  # the whole statement (positions are offsets into it)

    @property
    def subqueries(self) -> tuple[SubQuery, ...]:
        return tuple(item for item in self.items if isinstance(item, SubQuery))

    @property
    def is_count(self) -> bool:
        return any(isinstance(item, CountAll) for item in self.items)


def query_error(text: str, pos: int, code: str, message: str) -> ApiError:
    """An error in Salesforce's form: the query line, a caret, row and column, the message."""
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    line = text[line_start : line_end if line_end >= 0 else len(text)]
    row = text.count("\n", 0, pos) + 1
    column = pos - line_start
    return ApiError(
        400,
        code,
        f"\n{line}\n{' ' * column}^\nERROR at Row:{row}:Column:{column + 1}\n{message}",
    )


def _tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise query_error(text, pos, "MALFORMED_QUERY", f"unexpected token: '{text[pos]}'")
        kind = match.lastgroup or ""
        value = match.group()
        if kind == "datetime" and not _VALID_DATETIME.fullmatch(value):
            raise query_error(
                text,
                pos,
                "MALFORMED_QUERY",
                f"line 1:{pos} no viable alternative at character '{value}' (a date-time "
                "literal is YYYY-MM-DDThh:mm:ss[.sss] followed by Z, +hh:mm or -hh:mm)",
            )
        if kind != "space":
            tokens.append(Token(kind, value, pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def _unquote(token: Token, text: str) -> str:
    body = token.text[1:-1]
    out: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\":
            escaped = body[index + 1]
            if escaped in _ESCAPES:
                out.append(_ESCAPES[escaped])
            elif escaped in "%_":
                out.append("\\" + escaped)  # kept for LIKE, where it means a literal % or _
            else:
                raise query_error(
                    text,
                    token.pos + index + 1,
                    "MALFORMED_QUERY",
                    f"Invalid string literal '{token.text}'. Illegal character sequence "
                    f"'\\{escaped}' in string literal.",
                )
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0

    # -- helpers
    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def error(self, token: Token | None = None, message: str | None = None) -> ApiError:
        token = token or self.token
        if message is None:
            message = (
                "unexpected token: <EOF>"
                if token.kind == "end"
                else f"unexpected token: '{token.text}'"
            )
        return query_error(self.text, token.pos, "MALFORMED_QUERY", message)

    def unsupported(self, token: Token, what: str) -> ApiError:
        return self.error(token, f"{what} is not supported by the dealcoach Salesforce emulator")

    def keyword(self, word: str) -> bool:
        if self.token.kind == "name" and self.token.lower == word:
            self.index += 1
            return True
        return False

    def expect_keyword(self, word: str) -> Token:
        token = self.token
        if not self.keyword(word):
            raise self.error(token)
        return token

    def punct(self, char: str) -> bool:
        if self.token.kind == "punct" and self.token.text == char:
            self.index += 1
            return True
        return False

    def expect_punct(self, char: str) -> None:
        if not self.punct(char):
            raise self.error()

    def path(self) -> FieldPath:
        token = self.token
        if token.kind != "name" or token.lower in KEYWORDS:
            raise self.error(token)
        self.index += 1
        return FieldPath(tuple(token.text.split(".")), token.pos)

    # -- grammar
    def query(self, nested: bool) -> Query:
        self.expect_keyword("select")
        items: list[SelectItem] = []
        while True:
            items.append(self.select_item(nested))
            if not self.punct(","):
                break
        self.expect_keyword("from")
        sobject = self.token
        if sobject.kind != "name" or sobject.lower in KEYWORDS or "." in sobject.text:
            raise self.error(sobject)
        self.index += 1
        where = None
        if self.keyword("where"):
            where = self.condition()
        order: list[OrderItem] = []
        token = self.token
        if token.kind == "name" and token.lower in {"group", "having", "with", "for"}:
            raise self.unsupported(token, token.text.upper())
        if self.keyword("order"):
            self.expect_keyword("by")
            while True:
                path = self.path()
                descending = False
                if self.keyword("desc"):
                    descending = True
                else:
                    self.keyword("asc")
                nulls_last = descending
                if self.keyword("nulls"):
                    if self.keyword("last"):
                        nulls_last = True
                    else:
                        self.expect_keyword("first")
                        nulls_last = False
                order.append(OrderItem(path, descending, nulls_last))
                if not self.punct(","):
                    break
        limit = offset = None
        if self.keyword("limit"):
            limit = self.integer()
        if self.keyword("offset"):
            offset = self.integer()
        if self.token.kind == "name" and self.token.lower in {"for", "update"}:
            raise self.unsupported(self.token, self.token.text.upper())
        if nested:
            if not (self.token.kind == "punct" and self.token.text == ")"):
                raise self.error()
        elif self.token.kind != "end":
            raise self.error()
        names = [item for item in items if isinstance(item, FieldPath)]
        seen: set[str] = set()
        for item in names:
            key = item.text.lower()
            if key in seen:
                raise query_error(
                    self.text, item.pos, "MALFORMED_QUERY", f"duplicate field selected: {item.text}"
                )
            seen.add(key)
        if any(isinstance(item, CountAll) for item in items) and len(items) > 1:
            raise self.error(self.tokens[0], "COUNT() must be the only element in the SELECT list")
        return Query(
            items=tuple(items),
            sobject=sobject.text,
            sobject_pos=sobject.pos,
            where=where,
            order=tuple(order),
            limit=limit,
            offset=offset,
            text=self.text,
        )

    def integer(self) -> int:
        token = self.token
        if token.kind != "number" or not token.text.isdigit():
            raise self.error(token)
        self.index += 1
        return int(token.text)

    def select_item(self, nested: bool) -> SelectItem:
        token = self.token
        if token.kind == "punct" and token.text == "(":
            if nested:
                raise self.error(token, "Nesting of semi join sub-selects is not supported")
            self.index += 1
            if not (self.token.kind == "name" and self.token.lower == "select"):
                raise self.error()
            sub = self.query(nested=True)
            self.expect_punct(")")
            return SubQuery(sub, token.pos)
        if token.kind == "name" and self.tokens[self.index + 1].text == "(":
            name = token.lower
            if name == "count":
                self.index += 2
                if not self.punct(")"):
                    raise self.unsupported(token, "COUNT(field)")
                return CountAll(token.pos)
            if name in {
                "typeof",
                "fields",
                "sum",
                "max",
                "min",
                "avg",
                "count_distinct",
                "tolabel",
                "format",
                "convertcurrency",
                "calendar_year",
                "day_only",
            }:
                raise self.unsupported(token, f"{token.text.upper()}()")
            raise self.error(self.tokens[self.index + 1])
        if token.kind == "name" and token.lower == "typeof":
            raise self.unsupported(token, "TYPEOF")
        return self.path()

    def condition(self) -> Condition:
        first = self.unary()
        items = [first]
        op: str | None = None
        while self.token.kind == "name" and self.token.lower in {"and", "or"}:
            word = self.token.lower
            if op is not None and word != op:
                raise self.error(
                    self.token,
                    f"unexpected token: '{self.token.text}' (use parentheses to mix AND and OR)",
                )
            op = word
            self.index += 1
            items.append(self.unary())
        if op is None:
            return first
        return Logical(op, tuple(items))

    def unary(self) -> Condition:
        if self.keyword("not"):
            return Negation(self.unary())
        if self.punct("("):
            inner = self.condition()
            self.expect_punct(")")
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        path = self.path()
        token = self.token
        if token.kind == "op":
            self.index += 1
            op = "!=" if token.text == "<>" else token.text
            return Comparison(path, op, self.literal())
        if self.keyword("like"):
            return Comparison(path, "like", self.literal())
        negated = False
        if self.keyword("not"):
            negated = True
            if not (self.token.kind == "name" and self.token.lower == "in"):
                raise self.error()
        if self.keyword("in"):
            open_token = self.token
            self.expect_punct("(")
            if self.token.kind == "name" and self.token.lower == "select":
                raise self.unsupported(open_token, "A semi-join (IN (SELECT ...))")
            values = [self.literal()]
            while self.punct(","):
                values.append(self.literal())
            self.expect_punct(")")
            return Comparison(path, "notin" if negated else "in", tuple(values))
        if token.kind == "name" and token.lower in {"includes", "excludes"}:
            raise self.unsupported(token, token.text.upper())
        raise self.error(token)

    def literal(self) -> Literal:
        token = self.advance()
        if token.kind == "string":
            return Literal("string", _unquote(token, self.text), token.pos, token.text)
        if token.kind == "number":
            return Literal("number", float(token.text), token.pos, token.text)
        if token.kind == "date":
            return Literal("date", token.text, token.pos, token.text)
        if token.kind == "datetime":
            return Literal("datetime", token.text, token.pos, token.text)
        if token.kind == "name":
            word = token.lower
            if word in {"true", "false"}:
                return Literal("boolean", word == "true", token.pos, token.text)
            if word == "null":
                return Literal("null", None, token.pos, token.text)
            if word in DATE_CONSTANTS:
                return Literal("date_literal", (word, 0), token.pos, token.text)
            if word in DATE_FUNCTIONS:
                self.expect_punct(":")
                amount = self.integer()
                return Literal("date_literal", (word, amount), token.pos, f"{token.text}:{amount}")
        if token.kind == "punct" and token.text == ":":
            raise self.unsupported(token, "A bind variable")
        raise self.error(token)


def parse(text: str) -> Query:
    """Parse a SOQL statement; :class:`ApiError` ``MALFORMED_QUERY`` (400) if it is not one."""
    if not text or not text.strip():
        raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
    parser = _Parser(text)
    return parser.query(nested=False)
