"""No credential carried in a URL reaches the logs (issue 12, finding 2).

A real uvicorn server (as `dealcoach serve` runs it) answers a request on every
webhook and OAuth route with secret-looking path parameters and query values;
no captured log line (uvicorn's access log included) holds any of them.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi.routing import APIRoute

from app.config import Settings
from app.logs import REDACTED, redact_url
from app.main import ROUTERS, create_app

SECRET = "S3CRETvalue9"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(db_settings: Settings) -> Iterator[tuple[str, list[APIRoute]]]:
    settings = Settings(**{**db_settings.model_dump(), "sandbox": True})
    app = create_app(settings, embedded_worker=False)
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=True)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    routes = [
        route
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute) and route.path.startswith(("/webhooks", "/oauth"))
    ]
    try:
        yield f"http://127.0.0.1:{port}", routes
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def test_no_webhook_or_oauth_url_secret_reaches_the_logs(
    server: tuple[str, list[APIRoute]], caplog: pytest.LogCaptureFixture
) -> None:
    base, routes = server
    assert any("/outbound/{token}" in route.path for route in routes)
    assert any("/oauth/begin/" in route.path for route in routes)
    caplog.set_level(logging.INFO)
    requested = []
    with httpx.Client(base_url=base, timeout=20) as client:
        for route in routes:
            # Path parameters that are credentials get the secret; ids and names do not.
            path = re.sub(
                r"\{(\w+)\}",
                lambda m: SECRET if m.group(1) in ("token", "ticket") else "salesforce",
                route.path,
            )
            url = f"{path}?code={SECRET}&state={SECRET}&token={SECRET}"
            for method in route.methods:
                response = client.request(method, url, content=b"<x/>")
                requested.append((method, path, response.status_code))
    time.sleep(0.2)  # the access log line is written after the answer
    access = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert len(access) >= len(requested), (access, requested)
    everything = "\n".join(record.getMessage() for record in caplog.records)
    assert SECRET not in everything, everything
    assert REDACTED in everything


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "POST /webhooks/salesforce/c1/outbound/tok123 HTTP/1.1",
            f"POST /webhooks/salesforce/c1/outbound/{REDACTED} HTTP/1.1",
        ),
        ("GET /oauth/begin/tick?x=1", f"GET /oauth/begin/{REDACTED}?x={REDACTED}"),
        (
            "/oauth/callback/hubspot?code=abc&state=def",
            f"/oauth/callback/hubspot?code={REDACTED}&state={REDACTED}",
        ),
        ("/api/v1/deals?signal=stale&limit=5", "/api/v1/deals?signal=stale&limit=5"),
    ],
)
def test_redact_url_masks_only_the_secrets(raw: str, expected: str) -> None:
    assert redact_url(raw) == expected
