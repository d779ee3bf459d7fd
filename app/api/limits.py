"""Request body limits, enforced while the body is read and before anything parses it.

:class:`BodyLimit` is an ASGI middleware: it refuses a declared ``Content-Length``
over the route's limit at once, and counts the bytes of a chunked or lying body as
they arrive, answering 413 (problem+json) as soon as the count passes the limit, so
no route ever holds more than its limit in memory. Limits are per path prefix
(the admin API small, webhooks larger; ``DEALCOACH_MAX_BODY_BYTES_*``).

A body whose next chunk does not arrive within ``read_timeout`` seconds is answered
408 (a slow-body client cannot hold a worker forever).

It also refuses, with 401 and before reading a byte of the body, a request to the
admin API that carries a body without a valid API key (``key_is_valid``, checked
off the event loop): FastAPI parses a JSON body before its dependencies check the
key, so without this an anonymous client could make the process parse bodies.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.problems import PROBLEM_JSON

_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _TooLarge(HTTPException):
    """The body passed the limit while it was being read. An ``HTTPException`` so that
    FastAPI's body parsing lets it through to the problem handler (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, BodyLimit.too_large(limit))


def _problem(status: int, title: str, detail: str) -> bytes:
    return json.dumps(
        {"type": "about:blank", "title": title, "status": status, "detail": detail}
    ).encode()


class BodyLimit:
    """Limit request bodies by path prefix (first match wins; ``default`` otherwise)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        default: int,
        limits: Sequence[tuple[str, int]] = (),
        key_required_prefix: str | None = "/api/",
        read_timeout: float | None = None,
        key_is_valid: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.app = app
        self.read_timeout = read_timeout
        self.key_is_valid = key_is_valid
        self.default = default
        self.limits = tuple(limits)
        self.key_required_prefix = key_required_prefix

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.limits:
            if path.startswith(prefix):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        limit = self.limit_for(path)
        headers = {name: value for name, value in scope.get("headers", ())}
        declared = headers.get(b"content-length", b"")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(send, 413, "Content Too Large", self.too_large(limit))
            return
        has_body = chunked or (declared.isdigit() and int(declared) > 0)
        if (
            self.key_required_prefix is not None
            and has_body
            and scope.get("method") in _METHODS_WITH_BODY
            and path.startswith(self.key_required_prefix)
        ):
            authorization = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, key = authorization.partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                await self._unauthorized(
                    send, "an API key is required: Authorization: Bearer <key>"
                )
                return
            if self.key_is_valid is not None and not await self.key_is_valid(key.strip()):
                await self._unauthorized(send, "the API key is unknown or revoked")
                return

        received = 0
        started = False
        body_done = not has_body
        timeout = self.read_timeout

        async def counting_receive() -> Message:
            nonlocal received, body_done
            if body_done or timeout is None:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), timeout)
                except TimeoutError:
                    raise HTTPException(
                        408, f"the request body did not arrive within {timeout:g} s"
                    ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(limit)
                if not message.get("more_body", False):
                    body_done = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if started:
                raise
            await self._refuse(send, 413, "Content Too Large", self.too_large(limit))
        except Exception as exc:  # a framework wrapped it (an exception group, a 400)
            if _caused_by_too_large(exc) and not started:
                await self._refuse(send, 413, "Content Too Large", self.too_large(limit))
                return
            raise

    async def _unauthorized(self, send: Send, detail: str) -> None:
        await self._refuse(
            send,
            401,
            "Unauthorized",
            detail,
            extra=[(b"www-authenticate", b'Bearer realm="dealcoach"')],
        )

    @staticmethod
    def too_large(limit: int) -> str:
        return f"the request body is larger than this route accepts ({limit} bytes)"

    @staticmethod
    async def _refuse(
        send: Send,
        status: int,
        title: str,
        detail: str,
        extra: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        body = _problem(status, title, detail)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _caused_by_too_large(exc: BaseException) -> bool:
    """``exc`` or anything in its cause/context chain (or group) is :class:`_TooLarge`."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _TooLarge):
            return True
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)
    return False
