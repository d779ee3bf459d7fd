"""Errors as ``application/problem+json`` (RFC 9457), with a clear ``detail``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"

logger = logging.getLogger(__name__)

#: Stable problem ``type``s (docs/api.md, "Errors"); ``about:blank`` for the rest.
_TYPE_BASE = "https://dealcoach.dev/problems/"
CRM_NOT_FOUND = _TYPE_BASE + "crm-not-found"
CRM_INVALID = _TYPE_BASE + "crm-invalid-request"
CRM_UNAVAILABLE = _TYPE_BASE + "crm-unavailable"
CRM_REFUSED = _TYPE_BASE + "crm-refused"
BAD_JSON = _TYPE_BASE + "malformed-json"
UNSUPPORTED_MEDIA_TYPE = _TYPE_BASE + "unsupported-media-type"
TOO_DEEP = _TYPE_BASE + "nested-too-deeply"
OUT_OF_RANGE = _TYPE_BASE + "out-of-range"
BAD_TEXT = _TYPE_BASE + "invalid-text"
INTERNAL = _TYPE_BASE + "internal-error"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class Problem(Exception):
    """Raise from a route or a dependency to answer with a problem document."""

    def __init__(
        self, status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
        self.extra = extra


def problem_response(
    status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    body.update(extra)  # a ``type`` given here replaces about:blank
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field(location: tuple[Any, ...]) -> str:
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or "(request)"


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        return problem_response(exc.status_code, str(exc.detail), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        raw = list(exc.errors())
        invalid_json = next((e for e in raw if e.get("type") == "json_invalid"), None)
        if invalid_json is not None:
            where = invalid_json.get("loc", ("body", "?"))[-1]
            reason = (invalid_json.get("ctx") or {}).get("error", "JSON decode error")
            return problem_response(
                400, f"the body is not valid JSON ({reason} at character {where})", type=BAD_JSON
            )
        if _body_errors(raw) and not _is_json(request.headers.get("content-type")):
            return problem_response(
                415,
                "the body must be JSON: send Content-Type: application/json",
                type=UNSUPPORTED_MEDIA_TYPE,
            )
        errors = [
            {"field": _field(tuple(error.get("loc", ()))), "message": str(error.get("msg", ""))}
            for error in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
        return problem_response(422, detail, errors=errors)

    @app.exception_handler(RecursionError)
    async def _too_deep(_: Request, exc: RecursionError) -> JSONResponse:
        return problem_response(400, "the input is nested too deeply", type=TOO_DEEP)

    @app.exception_handler(OverflowError)
    async def _overflow(_: Request, exc: OverflowError) -> JSONResponse:
        return problem_response(
            422, "a date or number in the input is out of range", type=OUT_OF_RANGE
        )

    @app.exception_handler(UnicodeError)
    async def _unicode(_: Request, exc: UnicodeError) -> JSONResponse:
        return problem_response(
            422,
            "the input has text that is not valid Unicode (a lone surrogate?)",
            type=BAD_TEXT,
        )

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        from app.logs import REQUEST_ID_SCOPE_KEY

        # Starlette runs this handler outside the app's middleware: the request id
        # comes from the scope, so the log line and the answer can be matched.
        request_id = request.scope.get(REQUEST_ID_SCOPE_KEY)
        logger.error(
            "unhandled error on %s %s",
            request.method,
            request.url.path,
            exc_info=exc,
            extra={"request_id": request_id},
        )
        return problem_response(
            500,
            "an internal error occurred; the service log has the details",
            {"X-Request-ID": request_id} if request_id else None,
            type=INTERNAL,
        )


def _body_errors(errors: list[Any]) -> bool:
    return any(tuple(error.get("loc", ()))[:1] == ("body",) for error in errors)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def crm_problem(exc: Exception, what: str = "the request") -> Problem:
    """The answer for a CRM failure, without the CRM's own text.

    A CRM's error message can echo a query, record ids or internals (an invalid id's
    SOQL, an internal host name): it goes to the service log, and the client gets the
    kind of failure only (``RetriableError`` -> 503 with ``Retry-After``,
    ``InvalidRequestError`` -> 422, ``NotFoundError`` -> 404, any other -> 502).
    """
    from integrations.base import InvalidRequestError, NotFoundError, RetriableError

    logger.warning("CRM failure on %s: %s: %s", what, type(exc).__name__, exc)
    if isinstance(exc, NotFoundError):
        return Problem(404, f"{what}: not found in the CRM", type=CRM_NOT_FOUND)
    if isinstance(exc, InvalidRequestError):
        return Problem(
            422,
            f"{what}: the CRM refused the request as invalid (the service log has its answer)",
            type=CRM_INVALID,
        )
    if isinstance(exc, RetriableError):
        retry_after = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(max(1, int(retry_after)))} if retry_after else None
        return Problem(
            503, "the CRM is unavailable; try again later", headers=headers, type=CRM_UNAVAILABLE
        )
    return Problem(
        502,
        f"the CRM refused {what} ({type(exc).__name__}; the service log has its answer)",
        type=CRM_REFUSED,
    )


class ProblemDocument(BaseModel):
    """An error (RFC 9457 problem details)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


def _doc(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "model": ProblemDocument,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDocument"}}},
    }


#: The errors every admin route may answer, for the OpenAPI document.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _doc("No API key, or an unknown or revoked one."),
    403: _doc("The key's scope does not allow this."),
    404: _doc("No such object (or not visible to this key)."),
    409: _doc("Conflicts with the object's state."),
    422: _doc("The request is invalid; `errors` names each field."),
    502: _doc("The CRM refused the request."),
    503: _doc("The CRM is unavailable; `Retry-After` says when to try again."),
}
