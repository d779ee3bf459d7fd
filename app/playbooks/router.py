"""Admin API: playbooks (the built-ins, and custom ones stored in the database)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from app.api.deps import AdminKey, Principal, ReadKey, SessionDep
from app.api.problems import PROBLEM_RESPONSES, Problem
from app.coaching.engine import review_deal
from app.coaching.playbook import BUILT_IN_PLAYBOOKS, PlaybookError, load_playbook_text
from app.deals.models import DealSnapshotRow
from app.deals.serialize import snapshot_from_json
from app.deals.service import with_observed_history
from app.playbooks.models import PlaybookRow
from app.playbooks.service import compiled_playbook, get_playbook_row, validate_source

router = APIRouter(prefix="/api/v1/playbooks", tags=["playbooks"], responses=PROBLEM_RESPONSES)

EXAMPLE = "name: acme\nextends: meddpicc\nthresholds:\n  no_activity_days: 7\n"


class PlaybookSource(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"source_yaml": EXAMPLE}]}
    )

    source_yaml: str = Field(min_length=1, max_length=200_000)


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connection_id: str
    deal_id: str


def playbook_out(row: PlaybookRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "version": row.version,
        "extends": row.extends,
        "is_active": row.is_active,
        "built_in": False,
        "source_yaml": row.source_yaml,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def _require_unlimited(key: Principal) -> None:
    """Stored playbooks serve every connection: keys limited to some may not change them."""
    if key.connection_ids is not None:
        raise Problem(403, "a key limited to some connections cannot change shared playbooks")


def _invalid(exc: PlaybookError) -> Problem:
    return Problem(422, str(exc), errors=[{"field": "source_yaml", "message": str(exc)}])


@router.get("")
def list_playbooks(session: SessionDep, key: ReadKey) -> dict[str, Any]:
    """The built-in and the stored playbooks, in one page (``next_cursor`` is null)."""
    built_in = [{"name": name, "built_in": True} for name in BUILT_IN_PLAYBOOKS]
    stored = [
        playbook_out(row) for row in session.scalars(select(PlaybookRow).order_by(PlaybookRow.name))
    ]
    return {"items": built_in + stored, "next_cursor": None}


@router.post("/validate")
def validate(body: PlaybookSource, key: ReadKey) -> dict[str, Any]:
    """Check a playbook without storing it; 422 names the offending key."""

    try:
        playbook = load_playbook_text(body.source_yaml, "<request>")
    except PlaybookError as exc:
        raise _invalid(exc) from None
    return {"valid": True, "name": playbook.name, "elements": sorted(playbook.elements)}


@router.post("", status_code=status.HTTP_201_CREATED)
def create(body: PlaybookSource, session: SessionDep, key: AdminKey) -> dict[str, Any]:
    _require_unlimited(key)

    try:
        playbook = load_playbook_text(body.source_yaml, "<request>")
    except PlaybookError as exc:
        raise _invalid(exc) from None
    if playbook.name.lower() in BUILT_IN_PLAYBOOKS or get_playbook_row(session, playbook.name):
        raise Problem(409, f"a playbook named {playbook.name!r} exists")
    row = PlaybookRow(
        name=playbook.name,
        version=playbook.version,
        source_yaml=body.source_yaml,
        extends=playbook.extends,
        is_active=True,
    )
    session.add(row)
    session.commit()
    return playbook_out(row)


@router.get("/{name}")
def get(name: str, session: SessionDep, key: ReadKey) -> dict[str, Any]:
    row = get_playbook_row(session, name)
    if row is not None:
        return playbook_out(row)
    if name.lower() in BUILT_IN_PLAYBOOKS:
        compiled = compiled_playbook(session, name)
        return {
            "name": compiled.name,
            "built_in": True,
            "playbook": compiled.playbook.model_dump(mode="json", by_alias=True),
        }
    raise Problem(404, "no such playbook")


@router.put("/{name}")
def update(name: str, body: PlaybookSource, session: SessionDep, key: AdminKey) -> dict[str, Any]:
    """Replace a stored playbook's YAML; its version goes up by one unless the YAML raises it."""
    _require_unlimited(key)
    row = get_playbook_row(session, name)
    if row is None:
        raise Problem(
            404 if name.lower() not in BUILT_IN_PLAYBOOKS else 409,
            "no such stored playbook (built-ins are read-only)",
        )
    try:
        playbook = validate_source(name, body.source_yaml)
    except PlaybookError as exc:
        raise _invalid(exc) from None
    row.source_yaml = body.source_yaml
    row.version = max(playbook.version, row.version + 1)
    row.extends = playbook.extends
    session.commit()
    return playbook_out(row)


@router.post("/{name}/preview")
def preview(name: str, body: PreviewRequest, session: SessionDep, key: ReadKey) -> dict[str, Any]:
    """Review a stored deal with this playbook now, without storing anything."""
    key.check(body.connection_id, "deal")
    try:
        compiled = compiled_playbook(session, name)
    except PlaybookError:
        raise Problem(404, "no such playbook") from None
    row = session.scalar(
        select(DealSnapshotRow).where(
            DealSnapshotRow.connection_id == body.connection_id,
            DealSnapshotRow.external_id == body.deal_id,
        )
    )
    if row is None:
        raise Problem(404, "no such deal")
    deal = with_observed_history(session, body.connection_id, snapshot_from_json(row.data))
    return review_deal(deal, compiled, datetime.now(UTC)).to_dict()
