"""Fixtures: a running Salesforce emulator and the real simple-salesforce client on it.

simple-salesforce builds ``https://{instance}/services/data/v{version}/`` URLs, and
its login helpers post to ``https://{domain}.salesforce.com/...``. The session
trusts the emulator's self-signed certificate and routes ``*.salesforce.com`` to
the emulator. ``trust_env`` is off because ``REQUESTS_CA_BUNDLE`` (set on many
machines) would otherwise override ``session.verify``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce

from integrations.salesforce.emulator import SalesforceEmulator

#: Seeded data is written as of this moment (a fixed past time: reproducible).
AS_OF = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
VERSION = "59.0"


class RouteToEmulator(HTTPAdapter):
    """Send requests for ``*.salesforce.com`` (login endpoints) to the emulator."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        if parts.hostname and parts.hostname.endswith(".salesforce.com"):
            request.url = urlunsplit(
                ("https", f"127.0.0.1:{self.port}", parts.path, parts.query, parts.fragment)
            )
        return super().send(request, **kwargs)


def emulator_session(emulator: SalesforceEmulator) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(emulator.cert_path)
    assert emulator.port is not None
    session.mount("https://", RouteToEmulator(emulator.port))
    return session


def client(emulator: SalesforceEmulator, token: str | None = None) -> Salesforce:
    """simple-salesforce on an existing session id (no login, no automatic refresh)."""
    return Salesforce(
        instance_url=emulator.base_url,
        session_id=token or emulator.issue_token(),
        version=VERSION,
        session=emulator_session(emulator),
    )


@pytest.fixture
def emulator() -> Iterator[SalesforceEmulator]:
    with SalesforceEmulator(seed=7) as running:
        yield running


@pytest.fixture
def seeded(emulator: SalesforceEmulator) -> SalesforceEmulator:
    emulator.seed(16, as_of=AS_OF)
    return emulator


@pytest.fixture
def sf(emulator: SalesforceEmulator) -> Salesforce:
    return client(emulator)
