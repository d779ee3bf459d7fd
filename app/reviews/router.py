"""Admin API: reviews (run one now, list, get) and feedback on prompts."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from app.api.deps import AdminKey, ReadKey, RuntimeDep, SessionDep, page_of
from app.api.problems import PROBLEM_RESPONSES, Problem, crm_problem
from app.connections.runner import Parked, with_provider
from app.deals.router import review_full
from app.jobs import enqueue_after_commit
from app.reviews.models import PromptFeedback, Review, ReviewTrigger, Verdict
from app.reviews.pipeline import fetch_and_review
from app.writeback.tasks import send_writebacks
from integrations.base import NotFoundError, ProviderError

router = APIRouter(prefix="/api/v1", tags=["reviews"], responses=PROBLEM_RESPONSES)


class ReviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: bool = Field(False, description="Preview: review and store, write nothing back.")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_id: str = Field(min_length=1, max_length=128)
    verdict: Literal["useful", "noise"]
    comment: str | None = Field(None, max_length=2000)


@router.post(
    "/connections/{connection_id}/deals/{deal_id}/reviews",
    status_code=status.HTTP_201_CREATED,
)
def run_review(
    connection_id: str,
    deal_id: str,
    body: ReviewRequest,
    session: SessionDep,
    runtime: RuntimeDep,
    key: AdminKey,
) -> dict[str, Any]:
    """Fetch the deal from the CRM now, review it, and queue the note (unless dry run)."""
    key.check(connection_id, "connection")
    session.close()

    def work(s: Any, connection: Any, provider: Any) -> dict[str, Any]:
        result = fetch_and_review(
            s, connection, provider, deal_id, trigger=ReviewTrigger.API, dry_run=body.dry_run
        )
        assert result is not None  # an API review is never skipped
        if result.writebacks:
            enqueue_after_commit(s, send_writebacks, connection.id)
        out = review_full(result.review)
        out["writebacks"] = [w.id for w in result.writebacks]
        return out

    try:
        return with_provider(runtime, connection_id, work)
    except Parked as exc:
        raise Problem(409, str(exc)) from None
    except NotFoundError:
        raise Problem(404, "no such deal in the CRM") from None
    except ProviderError as exc:  # the CRM's own text stays in the log
        raise crm_problem(exc, "deal_id") from None


Audience = Annotated[
    Literal["manager", "rep"] | None,
    Query(
        description="Keep only the manager's questions (`manager`) or the rep's self-review "
        "(`rep`); default both."
    ),
]


@router.get("/reviews")
def list_reviews(
    session: SessionDep,
    key: ReadKey,
    connection_id: str | None = None,
    deal_id: str | None = None,
    audience: Audience = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    query = select(Review)
    query = key.visible(query, Review.connection_id, connection_id)
    if deal_id is not None:
        query = query.where(Review.deal_external_id == deal_id)
    return page_of(session, query, Review.id, limit, cursor, lambda r: review_full(r, audience))


def _review(session: SessionDep, key: ReadKey, review_id: str) -> Review:
    return key.get(session, Review, review_id, "review")


@router.get("/reviews/{review_id}")
def get_review(
    review_id: str, session: SessionDep, key: ReadKey, audience: Audience = None
) -> dict[str, Any]:
    """One review; ``?audience=rep`` is the rep's self-review view."""
    return review_full(_review(session, key, review_id), audience)


@router.post("/reviews/{review_id}/feedback", status_code=status.HTTP_201_CREATED)
def feedback(
    review_id: str, body: FeedbackRequest, session: SessionDep, key: ReadKey
) -> dict[str, Any]:
    """Say whether a prompt was ``useful`` or ``noise`` (any key; once per key and prompt,
    a second answer replaces the first)."""
    review = _review(session, key, review_id)
    if body.prompt_id not in {p.get("id") for p in review.prompts}:
        raise Problem(422, "prompt_id: not a prompt of this review")
    row = session.scalar(
        select(PromptFeedback).where(
            PromptFeedback.review_id == review.id,
            PromptFeedback.prompt_id == body.prompt_id,
            PromptFeedback.api_key_id == key.key_id,
        )
    )
    if row is None:
        row = PromptFeedback(review_id=review.id, prompt_id=body.prompt_id, api_key_id=key.key_id)
        session.add(row)
    row.verdict = Verdict(body.verdict)
    row.comment = body.comment
    session.commit()
    return {
        "id": row.id,
        "review_id": review.id,
        "prompt_id": row.prompt_id,
        "verdict": body.verdict,
    }
