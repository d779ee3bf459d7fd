"""Request dependencies: the database session and the API key behind the request."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.admin.keys import authenticate
from app.admin.models import ApiKey, ApiKeyScope
from app.api.problems import Problem
from app.runtime import Runtime

T = TypeVar("T")


def get_runtime_dep(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; the route commits what it changes."""
    runtime: Runtime = request.app.state.runtime
    session = runtime.sessions()
    try:
        yield session
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime_dep)]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="dealcoach"'}


@dataclass(frozen=True, slots=True)
class Principal:
    """The API key a request authenticated with."""

    key_id: str
    name: str
    scope: ApiKeyScope
    connection_ids: tuple[str, ...] | None

    def can_see(self, connection_id: str | None) -> bool:
        if self.connection_ids is None:
            return True
        return connection_id is not None and connection_id in self.connection_ids

    def visible(self, query: Any, column: Any, connection_id: str | None) -> Any:
        """``query`` narrowed to what this key may see, and to ``connection_id`` if given
        (404 for a connection the key may not see)."""
        if connection_id is not None:
            self.check(connection_id, "connection")
            return query.where(column == connection_id)
        if self.connection_ids is not None:
            return query.where(column.in_(self.connection_ids))
        return query

    def get(self, session: Session, model: type[T], row_id: str, what: str) -> T:
        """The row of ``model`` (with a ``connection_id``) by id; 404 ``no such <what>``
        when it does not exist or belongs to a connection this key may not see."""
        row = session.get(model, row_id)
        if row is None or not self.can_see(getattr(row, "connection_id", None)):
            raise Problem(404, f"no such {what}")
        return row

    def check(self, connection_id: str | None, what: str = "object") -> None:
        """404 (not 403) for objects of connections this key may not see."""
        if not self.can_see(connection_id):
            raise Problem(404, f"no such {what}")


def _principal(request: Request, session: Session) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(
            401, "an API key is required: Authorization: Bearer <key>", headers=_CHALLENGE
        )
    key: ApiKey | None = authenticate(session, token.strip())
    if key is None:
        raise Problem(401, "the API key is unknown or revoked", headers=_CHALLENGE)
    session.commit()  # last_used_at
    return Principal(
        key_id=key.id,
        name=key.name,
        scope=ApiKeyScope(key.scope),
        connection_ids=tuple(key.connection_ids) if key.connection_ids is not None else None,
    )


#: Declares the bearer scheme in the OpenAPI document (the Authorize button of /docs);
#: the key itself is checked by :func:`_principal`, which answers in problem+json.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `dealcoach apikey create`.",
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def read_access(request: Request, session: SessionDep, _: BearerDep) -> Principal:
    """Any valid key (``read`` or ``admin``)."""
    return _principal(request, session)


def admin_access(request: Request, session: SessionDep, _: BearerDep) -> Principal:
    """A valid ``admin`` key; a ``read`` key gets 403."""
    principal = _principal(request, session)
    if principal.scope != ApiKeyScope.ADMIN:
        raise Problem(403, "this API key may only read (scope 'read')")
    return principal


ReadKey = Annotated[Principal, Depends(read_access)]
AdminKey = Annotated[Principal, Depends(admin_access)]


def encode_cursor(value: str) -> str:
    import base64

    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    import base64
    import binascii

    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Problem(422, "cursor: not a cursor this API returned", errors=[]) from None


def page_of(
    session: Session,
    query: Any,
    id_column: Any,
    limit: int,
    cursor: str | None,
    render: Callable[[Any], dict[str, Any]],
) -> dict[str, Any]:
    """One page of ``query`` in id order: ``{"items": [...], "next_cursor": ...}``."""
    if cursor is not None:
        query = query.where(id_column > decode_cursor(cursor))
    rows = session.scalars(query.order_by(id_column).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [render(row) for row in rows],
        "next_cursor": encode_cursor(str(rows[-1].id)) if more else None,
    }
