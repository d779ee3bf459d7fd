"""The CRM's own error text (an echoed query, internal names) never reaches an API error
body; it goes to the service log (issue 12, findings 5 and 8)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote_plus, urlsplit

import pytest

from integrations.salesforce.emulator.server import _Response
from integrations.salesforce.emulator.values import to18
from tests.pipeline.conftest import Service

from .conftest import ServiceEmulator, connect

LEAK = "SELECT Id FROM Opportunity WHERE Id = 'x' AND internal.db7.na99"


class LeakyEmulator(ServiceEmulator):
    """Salesforce answering errors whose message echoes the query and internal names."""

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Any:
        query = unquote_plus(urlsplit(target).query)
        if "FROM Opportunity WHERE Id" in query:
            payload = [{"errorCode": "INVALID_QUERY_FILTER_OPERATOR", "message": LEAK}]
            return _Response.json(400, payload)
        if "OpportunityStage" in query and self.fail_stages:
            return _Response.json(500, [{"errorCode": "UNKNOWN_EXCEPTION", "message": LEAK}])
        return super().handle(method, target, headers, body)

    fail_stages = False


@pytest.fixture
def emulator() -> Iterator[LeakyEmulator]:
    with LeakyEmulator(seed=11) as running:
        yield running


def test_an_invalid_opportunity_id_does_not_echo_the_crm_query(
    service: Service, emulator: LeakyEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    org = connect(service, emulator)
    caplog.set_level(logging.WARNING)
    deal_id = to18("006Em00000AbCdE")  # well-formed; this org's Salesforce refuses it
    response = service.client.post(
        f"/api/v1/connections/{org.connection_id}/deals/{deal_id}/reviews",
        headers=service.auth(),
        json={"dry_run": True},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "internal.db7" not in response.text and "SELECT" not in response.text
    assert response.json()["type"].endswith("/crm-invalid-request")
    assert "internal.db7" in caplog.text  # the operator still has it


def test_the_connection_test_does_not_echo_the_crm_answer(
    service: Service, emulator: LeakyEmulator
) -> None:
    org = connect(service, emulator)
    emulator.fail_stages = True
    response = service.client.post(
        f"/api/v1/connections/{org.connection_id}/test", headers=service.auth()
    )
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is False
    assert "internal.db7" not in response.text
