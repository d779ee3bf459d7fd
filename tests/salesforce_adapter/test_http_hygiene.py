"""Salesforce calls: never follow a redirect (the instance URL is checked once, so a hop
elsewhere would be an SSRF), and name the client in ``Sforce-Call-Options`` (issue 12,
findings 8 and 9)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from integrations.base import ProviderError
from integrations.salesforce.emulator.values import to18
from tests.salesforce_adapter.conftest import ProviderFactory, RetryAfterEmulator


class RecordingEmulator(RetryAfterEmulator):
    """The emulator, recording each request's headers, and optionally redirecting data
    API calls to ``redirect_to``."""

    redirect_to: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[str, dict[str, str]]] = []

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Any:
        self.seen.append((target, {k.lower(): v for k, v in headers.items()}))
        if self.redirect_to is not None and target.startswith("/services/data/"):
            from integrations.salesforce.emulator.server import _Response

            return _Response(302, b"", "text/plain", {"Location": self.redirect_to + target})
        return super().handle(method, target, headers, body)


class Elsewhere:
    """A plain-http server on 127.0.0.1 (a 'private address') counting the requests."""

    def __init__(self) -> None:
        hits = self.hits = []  # type: list[str]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"totalSize": 0, "done": true, "records": []}')

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def emulator() -> Iterator[RecordingEmulator]:
    with RecordingEmulator(seed=11) as running:
        yield running


def test_every_api_call_names_dealcoach_in_sforce_call_options(
    emulator: RecordingEmulator, make_provider: ProviderFactory
) -> None:
    provider = make_provider()
    provider.list_stages()
    data_calls = [headers for target, headers in emulator.seen if "/services/data/" in target]
    assert data_calls
    assert {h.get("sforce-call-options") for h in data_calls} == {"client=dealcoach"}


def test_a_redirect_is_not_followed_to_another_host(
    emulator: RecordingEmulator, make_provider: ProviderFactory
) -> None:
    elsewhere = Elsewhere()
    try:
        provider = make_provider()
        emulator.redirect_to = elsewhere.url
        with pytest.raises(ProviderError) as raised:
            provider.fetch_deal(to18("006Em00000AbCdE"))
        assert "302" in str(raised.value)
        assert elsewhere.hits == []
    finally:
        elsewhere.close()


def test_every_call_is_counted_by_connection_and_status(
    emulator: RecordingEmulator, make_provider: ProviderFactory
) -> None:
    from app.metrics import CRM_CALLS

    def calls() -> float:
        return sum(
            sample.value
            for metric in CRM_CALLS.collect()
            for sample in metric.samples
            if sample.name.endswith("_total") and sample.labels["connection"] == "conn-sf"
        )

    before = calls()
    make_provider().list_stages()
    data_calls = [t for t, _ in emulator.seen if "/services/data/" in t]
    assert calls() - before == len(data_calls) > 0
