"""Admin API: prompt feedback counted per question (cards and admin API together)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.deps import ReadKey, SessionDep
from app.api.problems import PROBLEM_RESPONSES
from app.feedback.service import DEMOTE_MIN_NOISE, DEMOTE_RATIO, question_counts

router = APIRouter(prefix="/api/v1", tags=["feedback"], responses=PROBLEM_RESPONSES)


@router.get("/feedback/questions")
def feedback_per_question(
    session: SessionDep, key: ReadKey, connection_id: str | None = None
) -> dict[str, Any]:
    """Useful and noise verdicts per question and connection, most noise first; ``demoted``
    says whether the question's prompts are ranked last on that connection."""
    if connection_id is not None:
        key.check(connection_id, "connection")
        scope: list[str] | None = [connection_id]
    else:
        scope = list(key.connection_ids) if key.connection_ids is not None else None
    return {
        "items": [
            {
                "connection_id": item.connection_id,
                "question_id": item.question_id,
                "useful": item.useful,
                "noise": item.noise,
                "demoted": item.demoted,
            }
            for item in question_counts(session, scope)
        ],
        "rule": f"demoted when noise >= {DEMOTE_MIN_NOISE} and noise >= {DEMOTE_RATIO} x useful",
    }
