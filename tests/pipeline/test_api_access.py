"""Every admin route: authentication, scopes, visibility; no secret ever shown or logged."""

from __future__ import annotations

import logging
import re

import pytest

from app.admin.keys import create_api_key
from app.db import session_scope

from .conftest import WEBHOOK_SECRET, Service, sample_deal

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
#: Routes any valid key may call although they are POST: they change nothing shared.
READ_POSTS = {"/api/v1/playbooks/validate", "/api/v1/playbooks/{name}/preview"}
READ_POSTS_FEEDBACK = "/api/v1/reviews/{review_id}/feedback"


def admin_routes(service: Service) -> list[tuple[str, str]]:
    """Every (method, path) of the admin API, as its OpenAPI document lists them."""
    routes = []
    for path, operations in service.app.openapi()["paths"].items():
        if path.startswith("/api/v1"):
            routes.extend((method.upper(), path) for method in sorted(operations))
    return routes


def fill(path: str, **values: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "unknown-id"), path)


def test_every_admin_route_needs_a_key(service: Service) -> None:
    routes = admin_routes(service)
    assert len(routes) >= 25
    for method, path in routes:
        response = service.client.request(method, fill(path), json={})
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["www-authenticate"].startswith("Bearer")
        wrong = service.client.request(
            method, fill(path), json={}, headers={"Authorization": "Bearer dck_nope_nope"}
        )
        assert wrong.status_code == 401, (method, path)


def test_a_read_key_may_not_write(service: Service) -> None:
    for method, path in admin_routes(service):
        if method not in WRITE_METHODS or path in READ_POSTS or path == READ_POSTS_FEEDBACK:
            continue
        response = service.client.request(
            method, fill(path), json={}, headers=service.auth(service.read_key)
        )
        assert response.status_code == 403, (method, path, response.status_code)


def test_ids_a_key_may_not_see_are_404(service: Service) -> None:
    connection_id, crm = service.add_fake_connection()
    crm.put_deal(sample_deal("D1"))
    reviewed = service.client.post(
        f"/api/v1/connections/{connection_id}/deals/D1/reviews",
        headers=service.auth(),
        json={"dry_run": True},
    )
    assert reviewed.status_code == 201, reviewed.text
    review_id = reviewed.json()["id"]
    with session_scope(service.runtime.sessions) as session:
        row, limited = create_api_key(session, "other tenant", "admin")
        row.connection_ids = ["some-other-connection"]
    ids = {
        "connection_id": connection_id,
        "deal_id": "D1",
        "review_id": review_id,
    }
    for method, path in admin_routes(service):
        if not any(f"{{{name}}}" in path for name in ids):
            continue
        response = service.client.request(
            method, fill(path, **ids), json={}, headers=service.auth(limited)
        )
        assert response.status_code in (404, 422), (method, path, response.status_code)
        if response.status_code == 422:  # the body was refused first: retry with a valid one
            body = {"prompt_id": "p", "verdict": "useful"} if "feedback" in path else {}
            response = service.client.request(
                method, fill(path, **ids), json=body, headers=service.auth(limited)
            )
            assert response.status_code == 404, (method, path, response.status_code)
    # The same key lists nothing of the connection it may not see.
    listed = service.client.get("/api/v1/connections", headers=service.auth(limited)).json()
    assert listed == {"items": [], "next_cursor": None}
    assert (
        service.client.get("/api/v1/reviews", headers=service.auth(limited)).json()["items"] == []
    )


@pytest.mark.parametrize(
    "body",
    [
        {"credentials": {"access_token": "stolen"}},
        {"webhook_secret": "x"},
        {"status": "active"},
        {"external_account_id": "other"},
        {"provider": "hubspot"},
    ],
)
def test_an_update_cannot_mass_assign_secrets_or_status(
    service: Service, body: dict[str, object]
) -> None:
    connection_id, _ = service.add_fake_connection()
    response = service.client.patch(
        f"/api/v1/connections/{connection_id}", headers=service.auth(), json=body
    )
    assert response.status_code == 422
    field = next(iter(body))
    assert field in response.json()["detail"]


def test_no_response_or_log_line_contains_a_secret(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    connection_id, crm = service.add_fake_connection()
    token = crm.credentials()["access_token"]
    refresh = crm.credentials()["refresh_token"]
    crm.put_deal(sample_deal("D1"))
    bodies = [
        service.client.get(f"/api/v1/connections/{connection_id}", headers=service.auth()).text,
        service.client.get("/api/v1/connections", headers=service.auth()).text,
        service.client.post(
            f"/api/v1/connections/{connection_id}/deals/D1/reviews",
            headers=service.auth(),
            json={},
        ).text,
        service.client.post(
            f"/api/v1/connections/{connection_id}/test", headers=service.auth()
        ).text,
        service.client.get("/openapi.json").text,
    ]
    crm.expire_token()
    service.client.post(
        f"/api/v1/connections/{connection_id}/deals/D1/reviews", headers=service.auth(), json={}
    )
    service.wait_for(lambda: len(crm.notes_on("D1")) >= 1)
    secrets = [token, refresh, WEBHOOK_SECRET, service.admin_key, service.read_key]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in secrets:
        for body in bodies:
            assert secret not in body
        assert secret not in logged
    assert '"has_credentials":true' in bodies[0].replace(" ", "")


def test_a_key_created_for_one_connection_sees_that_connection_only(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from app.cli import main
    from app.config import get_settings

    mine, _ = service.add_fake_connection("mine")
    other, _ = service.add_fake_connection("other")
    for name, value in {
        "DEALCOACH_DATABASE_URL": service.settings.resolved_database_url,
        "DEALCOACH_SECRET_KEYS": service.settings.secret_keys or "",
        "DEALCOACH_DATA_DIR": str(service.settings.data_dir),
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        created = CliRunner().invoke(
            main, ["apikey", "create", "--name", "tenant", "--scope", "read", "--connection", mine]
        )
        refused = CliRunner().invoke(
            main, ["apikey", "create", "--name", "x", "--scope", "read", "--connection", "nope"]
        )
    finally:
        get_settings.cache_clear()
    assert created.exit_code == 0, created.output
    assert refused.exit_code == 2 and "nope" in refused.output
    key = created.output.strip().splitlines()[-1]
    listed = service.client.get("/api/v1/connections", headers=service.auth(key)).json()
    assert [c["id"] for c in listed["items"]] == [mine]
    hidden = service.client.get(f"/api/v1/connections/{other}", headers=service.auth(key))
    assert hidden.status_code == 404


def test_salesforce_read_settings_round_trip_and_bad_ones_are_refused(service: Service) -> None:
    connection_id, _ = service.add_fake_connection()
    path = f"/api/v1/connections/{connection_id}"
    good = {"custom_fields": ["Budget__c", "Decision_Date__c"], "bulk_threshold": 20000}
    response = service.client.patch(path, headers=service.auth(), json={"settings": good})
    assert response.status_code == 200, response.text
    shown = service.client.get(path, headers=service.auth()).json()["settings"]
    assert shown["custom_fields"] == good["custom_fields"]
    assert shown["bulk_threshold"] == 20000

    for bad in (
        {"custom_fields": ["Budget"]},  # not a custom field
        {"custom_fields": ["x__c' OR Id != '"]},  # never reaches SOQL
        {"bulk_threshold": -1},
        {"bulk_threshold": "lots"},
    ):
        response = service.client.patch(path, headers=service.auth(), json={"settings": bad})
        assert response.status_code == 422, bad
    assert service.client.get(path, headers=service.auth()).json()["settings"] == shown
