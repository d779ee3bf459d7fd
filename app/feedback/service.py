"""Prompt feedback closes the loop: what people marked ``noise`` is shown less.

A service-level step after the engine (the engine's own ranking is untouched):

1. **Hidden on the deal.** A prompt whose latest verdict on that deal (from any
   user, in a card or through the admin API) is ``noise`` is not shown again on
   that deal. Prompt ids are stable for the same question on the same evidence
   (``app.coaching.prompts.prompt_ids``), so once the evidence changes the
   prompt has a new id and comes back. The manager and the rep wording of one
   question go together: a noise verdict on either hides both.
2. **Ranked lower across the connection.** A question (``question_id``) with
   at least :data:`DEMOTE_MIN_NOISE` noise verdicts on the connection, and at
   least :data:`DEMOTE_RATIO` times as many noise as useful verdicts, is
   *demoted*: its prompts move after every other prompt of a review (the order
   among demoted prompts, and among the others, is kept). Each verdict counts
   once per (deal, prompt, user), its latest answer.

After either, the first ``n`` prompts are the ones ``shown_first``, where ``n``
is how many the engine marked so. Applied when a card shows a review (at
request time, so a verdict takes effect at once) and to the notes and summary
fields written back (at review time). The stored review keeps the engine's
prompts as they were.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.coaching.results import DealReview, Prompt
from app.db import utcnow
from app.feedback.models import CardFeedback
from app.reviews.models import PromptFeedback, Review, Verdict

#: A question needs at least this many noise verdicts on a connection to be demoted...
DEMOTE_MIN_NOISE: Final = 3
#: ...and at least this many times as many noise as useful verdicts.
DEMOTE_RATIO: Final = 2

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FeedbackFilter:
    """What feedback changes for one deal: prompt ids hidden, questions demoted."""

    hidden_prompts: frozenset[str] = frozenset()
    demoted_questions: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class QuestionCounts:
    connection_id: str
    question_id: str
    useful: int
    noise: int

    @property
    def demoted(self) -> bool:
        return is_demoted(self.useful, self.noise)


def is_demoted(useful: int, noise: int) -> bool:
    """The connection-wide rule (see the module docstring)."""
    return noise >= DEMOTE_MIN_NOISE and noise >= DEMOTE_RATIO * useful


# ---------------------------------------------------------------- reading verdicts


def _admin_verdicts(
    session: Session, connection_ids: Sequence[str] | None, deal_id: str | None = None
) -> list[tuple[str, str, str, str, Verdict, datetime]]:
    """(connection, deal, prompt id, question id, verdict, at) of admin-API feedback."""
    query = select(
        Review.connection_id,
        Review.deal_external_id,
        Review.prompts,
        PromptFeedback.prompt_id,
        PromptFeedback.verdict,
        PromptFeedback.created_at,
    ).join(Review, Review.id == PromptFeedback.review_id)
    if connection_ids is not None:
        query = query.where(Review.connection_id.in_(list(connection_ids)))
    else:
        query = query.where(Review.connection_id.is_not(None))
    if deal_id is not None:
        query = query.where(Review.deal_external_id == deal_id)
    out = []
    for connection_id, deal, prompts, prompt_id, verdict, at in session.execute(query):
        question = next(
            (str(p.get("question_id")) for p in prompts or [] if p.get("id") == prompt_id), ""
        )
        out.append((str(connection_id), deal, prompt_id, question, Verdict(verdict), at))
    return out


def _any_feedback(session: Session, connection_id: str) -> bool:
    """Whether the connection has any verdict at all (most reviews meet none: two cheap
    queries instead of four)."""
    card = session.scalar(
        select(CardFeedback.id).where(CardFeedback.connection_id == connection_id).limit(1)
    )
    if card is not None:
        return True
    admin = session.scalar(
        select(PromptFeedback.id)
        .join(Review, Review.id == PromptFeedback.review_id)
        .where(Review.connection_id == connection_id)
        .limit(1)
    )
    return admin is not None


def deal_filter(session: Session, connection_id: str, deal_id: str) -> FeedbackFilter:
    """The feedback that applies to one deal of one connection."""
    if not _any_feedback(session, connection_id):
        return FeedbackFilter()
    latest: dict[str, tuple[datetime, Verdict]] = {}

    def see(prompt_id: str, verdict: Verdict, at: datetime) -> None:
        known = latest.get(prompt_id)
        if known is None or at >= known[0]:
            latest[prompt_id] = (at, verdict)

    rows = session.execute(
        select(CardFeedback.prompt_id, CardFeedback.verdict, CardFeedback.updated_at).where(
            CardFeedback.connection_id == connection_id,
            CardFeedback.deal_external_id == deal_id,
        )
    )
    for prompt_id, verdict, at in rows:
        see(prompt_id, Verdict(verdict), at)
    for _c, _d, prompt_id, _q, verdict, at in _admin_verdicts(session, [connection_id], deal_id):
        see(prompt_id, verdict, at)
    hidden = frozenset(pid for pid, (_at, v) in latest.items() if v == Verdict.NOISE)
    demoted = frozenset(
        c.question_id for c in question_counts(session, [connection_id]) if c.demoted
    )
    return FeedbackFilter(hidden, demoted)


def question_counts(
    session: Session, connection_ids: Sequence[str] | None = None
) -> list[QuestionCounts]:
    """Useful and noise verdicts per (connection, question), cards and admin API together,
    ordered by connection, then most noise first."""
    counts: Counter[tuple[str, str, Verdict]] = Counter()
    query = select(CardFeedback.connection_id, CardFeedback.question_id, CardFeedback.verdict)
    if connection_ids is not None:
        query = query.where(CardFeedback.connection_id.in_(list(connection_ids)))
    for connection_id, question_id, verdict in session.execute(query):
        counts[(connection_id, question_id, Verdict(verdict))] += 1
    for connection_id, _d, _p, question_id, verdict, _at in _admin_verdicts(
        session, connection_ids
    ):
        if question_id:
            counts[(connection_id, question_id, verdict)] += 1
    pairs = sorted({(c, q) for c, q, _v in counts})
    result = [
        QuestionCounts(c, q, counts[(c, q, Verdict.USEFUL)], counts[(c, q, Verdict.NOISE)])
        for c, q in pairs
    ]
    result.sort(key=lambda item: (item.connection_id, -item.noise, item.question_id))
    return result


# ---------------------------------------------------------------- recording


def record_card_feedback(
    session: Session,
    *,
    connection_id: str,
    deal_id: str,
    review: Review,
    prompt: dict[str, Any],
    verdict: Verdict,
    crm_user_id: str,
    card_key_id: str | None,
) -> CardFeedback:
    """Store (or replace) this user's verdict on this prompt of this deal, and commit.

    Two requests racing for the same first answer meet on the unique constraint;
    the loser updates the winner's row."""
    for _attempt in range(2):
        row = session.scalar(
            select(CardFeedback).where(
                CardFeedback.connection_id == connection_id,
                CardFeedback.deal_external_id == deal_id,
                CardFeedback.prompt_id == str(prompt["id"]),
                CardFeedback.crm_user_id == crm_user_id,
            )
        )
        if row is None:
            row = CardFeedback(
                connection_id=connection_id,
                deal_external_id=deal_id,
                prompt_id=str(prompt["id"]),
                crm_user_id=crm_user_id,
            )
            session.add(row)
        row.review_id = review.id
        row.question_id = str(prompt.get("question_id") or "")[:200]
        row.audience = str(prompt.get("audience") or "")[:16]
        row.verdict = verdict
        row.card_key_id = card_key_id
        row.updated_at = utcnow()
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            continue
        return row
    raise RuntimeError("could not record the feedback")  # pragma: no cover


def user_verdicts(
    session: Session, connection_id: str, deal_id: str, crm_user_id: str | None
) -> dict[str, str]:
    """This user's verdicts on this deal's prompts, by prompt id."""
    if not crm_user_id:
        return {}
    rows = session.execute(
        select(CardFeedback.prompt_id, CardFeedback.verdict).where(
            CardFeedback.connection_id == connection_id,
            CardFeedback.deal_external_id == deal_id,
            CardFeedback.crm_user_id == crm_user_id,
        )
    )
    return {prompt_id: str(verdict) for prompt_id, verdict in rows}


# ---------------------------------------------------------------- applying


def _arrange(
    items: Sequence[T],
    *,
    question_id: Callable[[T], str],
    first: Callable[[T], bool],
    with_first: Callable[[T, bool], T],
    hidden_questions: Iterable[str],
    demoted: frozenset[str],
) -> list[T]:
    hidden = set(hidden_questions)
    shown_first = sum(1 for item in items if first(item))
    kept = [item for item in items if question_id(item) not in hidden]
    kept.sort(key=lambda item: question_id(item) in demoted)  # stable
    out = []
    for index, item in enumerate(kept):
        wanted = index < shown_first
        out.append(item if first(item) == wanted else with_first(item, wanted))
    return out


def _hidden_questions(pairs: Iterable[tuple[str, str]], hidden: frozenset[str]) -> set[str]:
    return {question for prompt_id, question in pairs if prompt_id in hidden}


def arrange_prompt_dicts(
    prompts: Sequence[dict[str, Any]], feedback: FeedbackFilter
) -> list[dict[str, Any]]:
    """A stored review's prompts (``Review.prompts``: manager then rep) with feedback applied."""
    hidden = _hidden_questions(
        ((str(p.get("id")), str(p.get("question_id"))) for p in prompts), feedback.hidden_prompts
    )
    out: list[dict[str, Any]] = []
    for audience in ("manager", "rep"):
        out.extend(
            _arrange(
                [p for p in prompts if p.get("audience") == audience],
                question_id=lambda p: str(p.get("question_id")),
                first=lambda p: bool(p.get("shown_first")),
                with_first=lambda p, value: {**p, "shown_first": value},
                hidden_questions=hidden,
                demoted=feedback.demoted_questions,
            )
        )
    return out


def arrange_review(result: DealReview, feedback: FeedbackFilter) -> DealReview:
    """The engine's review with feedback applied (for the notes written back)."""
    if not feedback.hidden_prompts and not feedback.demoted_questions:
        return result
    hidden = _hidden_questions(
        ((p.id, p.question_id) for p in (*result.prompts, *result.rep_prompts)),
        feedback.hidden_prompts,
    )

    def arrange(items: Sequence[Prompt]) -> tuple[Prompt, ...]:
        return tuple(
            _arrange(
                items,
                question_id=lambda p: p.question_id,
                first=lambda p: p.shown_first,
                with_first=lambda p, value: replace(p, shown_first=value),
                hidden_questions=hidden,
                demoted=feedback.demoted_questions,
            )
        )

    return replace(result, prompts=arrange(result.prompts), rep_prompts=arrange(result.rep_prompts))


def review_for_writeback(
    session: Session, connection_id: str, deal_id: str, result: DealReview
) -> DealReview:
    """What the notes and summary fields of this review show (see the module docstring)."""
    return arrange_review(result, deal_filter(session, connection_id, deal_id))
