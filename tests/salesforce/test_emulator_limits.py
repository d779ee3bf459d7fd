"""Limits and injected faults, as simple-salesforce raises them; call counters."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceGeneralError,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from integrations.salesforce.emulator import SalesforceEmulator

from .conftest import client


def test_api_usage_comes_from_sforce_limit_info(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    emulator.set_daily_limit(5000, used=41)
    sf.query("SELECT Id FROM Opportunity")
    usage = sf.api_usage["api-usage"]
    assert (usage.used, usage.total) == (42, 5000)
    limits = sf.limits()
    assert limits["DailyApiRequests"] == {"Max": 5000, "Remaining": 5000 - 43}
    assert emulator.api_usage == (43, 5000)


def test_injected_rate_limit_is_request_limit_exceeded(
    emulator: SalesforceEmulator, sf: Salesforce
) -> None:
    emulator.inject_rate_limit(2)
    for _ in range(2):
        with pytest.raises(SalesforceRefusedRequest) as excinfo:
            sf.query("SELECT Id FROM Opportunity")
        assert excinfo.value.status == 403
        assert excinfo.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert sf.query("SELECT Id FROM Opportunity")["done"] is True


def test_daily_allowance_runs_out(emulator: SalesforceEmulator, sf: Salesforce) -> None:
    emulator.set_daily_limit(3, used=2)
    sf.query("SELECT Id FROM Opportunity")
    with pytest.raises(SalesforceRefusedRequest) as excinfo:
        sf.query("SELECT Id FROM Opportunity")
    assert excinfo.value.content[0] == {
        "message": "TotalRequests Limit exceeded.",
        "errorCode": "REQUEST_LIMIT_EXCEEDED",
    }
    assert sf.api_usage["api-usage"].used == 3


def test_server_errors_and_not_found(emulator: SalesforceEmulator, sf: Salesforce) -> None:
    emulator.inject_errors(1, status=503)
    with pytest.raises(SalesforceGeneralError) as excinfo:
        sf.query("SELECT Id FROM Opportunity")
    assert excinfo.value.status == 503
    emulator.inject_errors(1)
    with pytest.raises(SalesforceGeneralError) as excinfo:
        sf.Opportunity.describe()
    assert excinfo.value.content[0]["errorCode"] == "UNKNOWN_EXCEPTION"
    with pytest.raises(SalesforceResourceNotFound) as missing:
        sf.Opportunity.get("006Em0000000zzzAAA")
    assert missing.value.content[0]["errorCode"] == "NOT_FOUND"
    with pytest.raises(SalesforceResourceNotFound):
        sf.restful("nothing/here")


def test_delay_and_concurrency_limit(emulator: SalesforceEmulator) -> None:
    emulator.set_delay(0.3)
    emulator.set_concurrency_limit(2)
    clients = [client(emulator) for _ in range(5)]

    def run(sf: Salesforce) -> str:
        try:
            sf.query("SELECT Id FROM Opportunity")
        except SalesforceRefusedRequest as error:
            return str(error.content[0]["errorCode"])
        return "ok"

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=5) as pool:
        outcomes = list(pool.map(run, clients))
    assert outcomes.count("ok") == 2
    assert outcomes.count("REQUEST_LIMIT_EXCEEDED") == 3
    assert time.monotonic() - started >= 0.3


def test_call_counters_per_endpoint_kind(seeded: SalesforceEmulator, sf: Salesforce) -> None:
    seeded.reset_calls()
    sf.Opportunity.describe()
    list(sf.query_all_iter("SELECT Id FROM Opportunity"))
    opp_id = seeded.records("Opportunity")[0]["Id"]
    sf.Opportunity.update(opp_id, {"NextStep": "Call"})
    sf.restful(
        "composite/sobjects",
        method="POST",
        json={"records": [{"attributes": {"type": "Task"}, "WhatId": opp_id, "Subject": "x"}]},
    )
    with pytest.raises(SalesforceError):
        sf.query("SELECT Nope FROM Opportunity")
    assert seeded.call_counts() == {
        "describe": 1,
        "query": 2,
        "sobject": 1,
        "composite_sobjects": 1,
        "composite_records": 1,
        "api": 5,
    }
