"""Coach, don't interrogate: every question of the built-in banks is an open question,
for the manager and in the rep's self-review wording alike."""

from __future__ import annotations

import re

import pytest

from app.coaching.playbook import load_playbook

#: First words that make a yes/no question ("Is there budget?", "Can I state ...?").
CLOSED_OPENERS = frozenset(
    [
        "is",
        "are",
        "am",
        "was",
        "were",
        "do",
        "does",
        "did",
        "has",
        "have",
        "had",
        "can",
        "could",
        "will",
        "would",
        "shall",
        "should",
        "may",
        "might",
        "must",
        "isn't",
        "aren't",
        "wasn't",
        "weren't",
        "don't",
        "doesn't",
        "didn't",
        "hasn't",
        "haven't",
        "hadn't",
        "can't",
        "couldn't",
        "won't",
        "wouldn't",
        "shouldn't",
    ]
)
BUILT_INS = ("core", "meddpicc", "bant", "spiced")


def first_word(text: str) -> str:
    """The first word, placeholders such as ``{days}`` read as words."""
    words = re.findall(r"[A-Za-z']+", text)
    return words[0].lower() if words else ""


@pytest.mark.parametrize("name", BUILT_INS)
@pytest.mark.parametrize("audience", ["manager", "rep"])
def test_every_built_in_question_is_open(name: str, audience: str) -> None:
    closed = [
        (question.id, getattr(question, audience))
        for question in load_playbook(name).questions
        if first_word(getattr(question, audience)) in CLOSED_OPENERS
    ]
    assert closed == []


@pytest.mark.parametrize(
    ("text", "closed"),
    [
        ("Is there budget set aside for this?", True),
        ("Can I state the customer's problem in their words?", True),
        ("Doesn't the CFO sign?", True),
        ("{days} days in {stage}: what moves this forward?", False),
        ("Who owns the budget?", False),
        ("Island expansion: what changed?", False),  # "Is" only as a whole word
    ],
)
def test_the_check_tells_yes_no_openers_from_open_ones(text: str, closed: bool) -> None:
    assert (first_word(text) in CLOSED_OPENERS) is closed
