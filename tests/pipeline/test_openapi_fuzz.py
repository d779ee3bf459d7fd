"""schemathesis over the OpenAPI document: no 5xx, and answers match the schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.admin.keys import create_api_key
from app.config import Settings
from app.db import session_scope
from app.jobs import configure_queue, reset_queue
from app.main import create_app
from app.runtime import get_runtime, set_runtime

from .conftest import service_settings


@pytest.fixture
def api_schema(db_settings: Settings, tmp_path: Path) -> Iterator[Any]:
    if "postgresql" in db_settings.resolved_database_url:
        pytest.skip("the fuzzing run once, on SQLite, is enough: it tests the API layer")
    settings = service_settings(db_settings, tmp_path)
    configure_queue(settings, immediate=True)
    app = create_app(settings, embedded_worker=False)
    with session_scope(get_runtime().sessions) as session:
        _, key = create_api_key(session, "fuzz", "admin")
    app.state.fuzz_key = key
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app)
    finally:
        reset_queue()
        set_runtime(None)


def test_the_api_never_answers_5xx_and_matches_its_schema(api_schema: Any) -> None:
    """Every operation, positive and negative inputs, with an admin key.

    (schemathesis' own pytest plugin does not run on this pytest, so the
    operations are walked here, one hypothesis run each.)
    """
    key = api_schema.app.state.fuzz_key
    headers = {"Authorization": f"Bearer {key}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 25
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            # A schema-valid request may still be refused on meaning (an instance URL
            # outside the CRM's domains, a stage the playbook lacks): 422 is right then.
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        run()
