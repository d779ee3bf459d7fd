"""Admin API: sync jobs (``POST /api/v1/connections/{id}/sync`` answers with one)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from app.api.deps import ReadKey, SessionDep
from app.api.problems import PROBLEM_RESPONSES
from app.sync.models import SyncJob, SyncJobState

router = APIRouter(prefix="/api/v1/sync-jobs", tags=["sync"], responses=PROBLEM_RESPONSES)


class SyncJobOut(BaseModel):
    """A requested sync and how it went."""

    id: str
    connection_id: str
    state: SyncJobState
    detail: str | None
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def sync_job_out(job: SyncJob) -> SyncJobOut:
    return SyncJobOut(
        id=job.id,
        connection_id=job.connection_id,
        state=job.state,
        detail=job.detail,
        requested_at=job.requested_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


@router.get("/{job_id}", response_model=SyncJobOut)
def get_sync_job(job_id: str, session: SessionDep, key: ReadKey) -> SyncJobOut:
    """One sync job: ``queued``, ``running``, then ``succeeded``, ``failed`` or
    ``skipped`` (a sync of the connection was already running and covers it)."""
    return sync_job_out(key.get(session, SyncJob, job_id, "sync job"))
