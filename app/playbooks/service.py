"""Playbooks by name: the built-ins, and custom ones stored in the database."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.coaching.playbook import (
    BUILT_IN_PLAYBOOKS,
    CompiledPlaybook,
    Playbook,
    PlaybookError,
    compile_playbook,
    load_playbook,
    load_playbook_text,
)
from app.playbooks.models import PlaybookRow


@lru_cache(maxsize=16)
def _built_in(name: str) -> CompiledPlaybook:
    return compile_playbook(load_playbook(name))


@lru_cache(maxsize=64)
def _compiled_text(name: str, version: int, source: str) -> CompiledPlaybook:
    return compile_playbook(load_playbook_text(source, name))


def get_playbook_row(session: Session, name: str) -> PlaybookRow | None:
    return session.scalar(select(PlaybookRow).where(PlaybookRow.name == name))


def compiled_playbook(session: Session, name: str) -> CompiledPlaybook:
    """The compiled playbook called ``name``: a stored one first, else a built-in.

    Raises:
        PlaybookError: no playbook has that name, or the stored one is invalid.
    """
    row = get_playbook_row(session, name)
    if row is not None and row.is_active:
        return _compiled_text(row.name, row.version, row.source_yaml)
    if name.lower() in BUILT_IN_PLAYBOOKS:
        return _built_in(name.lower())
    raise PlaybookError(f"playbook {name}: no such playbook")


def validate_source(name: str, source: str) -> Playbook:
    """Validate YAML for a stored playbook; its ``name`` must match."""
    playbook = load_playbook_text(source, name)
    if playbook.name != name:
        raise PlaybookError(f"playbook {name}: name: the YAML says {playbook.name!r}")
    return playbook
