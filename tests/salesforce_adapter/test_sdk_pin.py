"""The adapter uses simple-salesforce's private ``_Bulk2Client`` (its job-level calls
expose the job id and the result locator that a bulk checkpoint needs; the public
``sf.bulk2`` API hides them). pyproject pins simple-salesforce to the tested minor
version; this test fails when the private API changes shape, before a silent breakage
in production (issue 12, finding 3)."""

from __future__ import annotations

import inspect
from importlib.metadata import version

from simple_salesforce.bulk2 import Operation, _Bulk2Client

EXPECTED = {
    "__init__": ["self", "object_name", "bulk2_url", "headers", "session"],
    "create_job": [
        "self",
        "operation",
        "query",
        "column_delimiter",
        "line_ending",
        "external_id_field",
    ],
    "get_job": ["self", "job_id", "is_query"],
    "get_query_results": ["self", "job_id", "locator", "max_records"],
}


def test_the_private_bulk_client_has_the_shape_the_adapter_calls() -> None:
    for name, parameters in EXPECTED.items():
        signature = inspect.signature(getattr(_Bulk2Client, name))
        assert list(signature.parameters) == parameters, (name, signature)
    assert Operation.query.value == "query"


def test_simple_salesforce_is_the_pinned_minor_version() -> None:
    major, minor = version("simple-salesforce").split(".")[:2]
    assert (major, minor) == ("1", "12"), "re-check _Bulk2Client, then move the pin"
