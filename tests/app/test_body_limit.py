"""The body-limit middleware at the ASGI level: a slow body is cut off with 408, and the
limit holds for a body that arrives in chunks without a Content-Length."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from app.api.limits import BodyLimit


async def echo_length(scope: Any, receive: Any, send: Any) -> None:
    from starlette.exceptions import HTTPException

    request = Request(scope, receive)
    try:
        body = await request.body()
    except HTTPException as exc:  # what the app's problem handler does
        response = JSONResponse({"status": exc.status_code}, status_code=exc.status_code)
    else:
        response = JSONResponse({"length": len(body)})
    await response(scope, receive, send)


def call(middleware: BodyLimit, chunks: list[bytes], delay: float = 0.0) -> tuple[int, Any]:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/webhooks/x",
        "headers": [(b"transfer-encoding", b"chunked")],
    }
    pending = list(chunks)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(delay)
        body = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    status = sent[0]["status"]
    return status, json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def test_a_chunked_body_within_the_limit_passes_and_one_over_it_is_413() -> None:
    middleware = BodyLimit(echo_length, default=10, limits=[("/webhooks/", 100)])
    assert call(middleware, [b"x" * 60, b"x" * 40]) == (200, {"length": 100})
    assert call(middleware, [b"x" * 60, b"x" * 41])[0] == 413


def test_a_body_that_stalls_is_cut_off_with_408() -> None:
    middleware = BodyLimit(echo_length, default=100, read_timeout=0.2)
    assert call(middleware, [b"x", b"y"], delay=0.5)[0] == 408
    assert call(middleware, [b"x", b"y"], delay=0.01) == (200, {"length": 2})
