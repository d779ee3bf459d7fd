"""Fixtures: a running HubSpot emulator, the real hubspot-api-client on it, a webhook sink.

``sdk_call`` calls one SDK method normally (the SDK picks the model by status code
and deserializes) while keeping the raw answer, and checks that the model holds
every non-null value of the wire JSON: a key the model does not know, or a value
it changed, fails the test.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hubspot import HubSpot

from integrations.hubspot.emulator import HubSpotEmulator

#: Seeded data is written as of this moment (a fixed past time: reproducible).
AS_OF = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def client(emulator: HubSpotEmulator, token: str | None = None) -> HubSpot:
    return HubSpot(access_token=token or emulator.issue_token(), host=emulator.base_url)


@pytest.fixture
def emulator() -> Iterator[HubSpotEmulator]:
    with HubSpotEmulator(seed=7) as running:
        yield running


@pytest.fixture
def seeded(emulator: HubSpotEmulator) -> HubSpotEmulator:
    emulator.seed(18, as_of=AS_OF)
    return emulator


@pytest.fixture
def hs(emulator: HubSpotEmulator) -> HubSpot:
    return client(emulator)


# ------------------------------------------------------------------ lossless calls


def _strip_nulls(value: Any, keep_null_keys: bool = False) -> Any:
    if isinstance(value, dict):
        return {
            key: _strip_nulls(item, key in {"properties"})
            for key, item in value.items()
            if item is not None or keep_null_keys
        }
    if isinstance(value, list):
        return [_strip_nulls(item) for item in value]
    return value


def _same_scalar(wire: Any, model: Any) -> bool:
    if wire == model:
        return True
    if isinstance(wire, int) and not isinstance(wire, bool) and isinstance(model, str):
        return str(wire) == model  # a number in a string-typed field (toObjectId)
    if isinstance(wire, str) and isinstance(model, str):
        try:
            left = datetime.fromisoformat(wire.replace("Z", "+00:00"))
            right = datetime.fromisoformat(model.replace("Z", "+00:00"))
        except ValueError:
            return False
        return left == right
    return False


def assert_lossless(wire: Any, model: Any, where: str = "$") -> None:
    """Every non-null value of ``wire`` is in ``model`` (both JSON-like), unchanged."""
    if isinstance(wire, dict):
        assert isinstance(model, dict), f"{where}: the model has {type(model).__name__}"
        missing = set(wire) - set(model)
        assert not missing, f"{where}: the SDK model drops {sorted(missing)}"
        for key, item in wire.items():
            assert_lossless(item, model[key], f"{where}.{key}")
    elif isinstance(wire, list):
        assert isinstance(model, list) and len(model) == len(wire), f"{where}: list differs"
        for index, (left, right) in enumerate(zip(wire, model, strict=True)):
            assert_lossless(left, right, f"{where}[{index}]")
    else:
        assert _same_scalar(wire, model), f"{where}: wire {wire!r} became {model!r}"


@dataclass
class Call:
    model: Any
    raw: Any
    status: int
    headers: dict[str, str]


def sdk_call(api: Any, method: str, *args: Any, **kwargs: Any) -> Call:
    """Call ``api.method`` through the SDK, keep the raw answer, check nothing is lost."""
    rest = api.api_client.rest_client
    original = rest.request
    seen: list[Any] = []

    def request(*a: Any, **k: Any) -> Any:
        response = original(*a, **k)
        seen.append(response)
        return response

    rest.request = request
    try:
        model = getattr(api, method)(*args, **kwargs)
    finally:
        rest.request = original
    response = seen[-1]
    raw = json.loads(response.data)
    sanitized = api.api_client.sanitize_for_serialization(model)
    assert_lossless(_strip_nulls(raw), _strip_nulls(sanitized))
    headers = {key.lower(): value for key, value in response.getheaders().items()}
    return Call(model, raw, response.status, headers)


# ------------------------------------------------------------------ webhook sink


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def events(self) -> list[dict[str, Any]]:
        value: list[dict[str, Any]] = json.loads(self.body)
        return value


@dataclass
class Sink:
    """A local webhook receiver: answers ``statuses`` in turn (then 200), after ``delay``."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    delay_count: int = 0
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.01)
        with self.lock:
            return list(self.received)


@pytest.fixture
def sink() -> Iterator[Sink]:
    state = Sink()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with state.lock:
                state.received.append(
                    Received(
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                        time.monotonic(),
                    )
                )
                status = state.statuses.pop(0) if state.statuses else 200
                delay = 0.0
                if state.delay_count > 0:
                    state.delay_count -= 1
                    delay = state.delay
            if delay:
                time.sleep(delay)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/hubspot?tenant=acme"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
