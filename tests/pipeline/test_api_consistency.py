"""One API: list envelopes, RFC 3339 ``Z`` timestamps, problem+json for every error
(400 malformed JSON, 413, 415, 500), clean operationIds, local API docs, and no 5xx for
malformed input on any route (issue 12, findings 5 and 8)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from .conftest import Service, sample_deal

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def fill(path: str, **values: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "unknown-id"), path)


@pytest.fixture
def worked(service: Service) -> dict[str, str]:
    """A connection with a synced deal, its review and write-back, and a webhook."""
    connection_id, crm = service.add_fake_connection()
    deal_id = "D101"
    crm.put_deal(sample_deal(deal_id))
    synced = service.client.post(
        f"/api/v1/connections/{connection_id}/deals/{deal_id}/reviews",
        headers=service.auth(),
        json={"dry_run": False},
    )
    assert synced.status_code == 201, synced.text
    assert service.post_webhook(connection_id, service.webhook_body(("ev-1", deal_id))) == 200
    review = service.client.get("/api/v1/reviews", headers=service.auth()).json()["items"][0]
    return {
        "connection_id": connection_id,
        "deal_id": deal_id,
        "review_id": review["id"],
        "name": "meddpicc",
    }


def test_every_list_is_an_items_envelope_and_every_timestamp_ends_in_z(
    service: Service, worked: dict[str, str]
) -> None:
    lists = [
        "/api/v1/connections",
        "/api/v1/playbooks",
        "/api/v1/reviews",
        "/api/v1/writebacks",
        "/api/v1/webhook-deliveries",
        "/api/v1/deals",
    ]
    seen = 0
    for path in lists:
        body = service.client.get(path, headers=service.auth()).json()
        assert set(body) >= {"items", "next_cursor"}, (path, body)
        assert body["items"], path
        for text in strings(body):
            if TIMESTAMP.match(text):
                seen += 1
                assert text.endswith("Z"), (path, text)
    for path in (
        f"/api/v1/connections/{worked['connection_id']}",
        f"/api/v1/reviews/{worked['review_id']}",
        f"/api/v1/connections/{worked['connection_id']}/deals/{worked['deal_id']}",
    ):
        body = service.client.get(path, headers=service.auth()).json()
        for text in strings(body):
            if TIMESTAMP.match(text):
                seen += 1
                assert text.endswith("Z"), (path, text)
    assert seen >= 10


def test_malformed_json_is_400_and_a_wrong_content_type_415(service: Service) -> None:
    url = "/api/v1/playbooks/validate"
    broken = service.client.post(
        url,
        content=b'{"source_yaml": ',
        headers={**service.auth(), "Content-Type": "application/json"},
    )
    assert broken.status_code == 400, broken.text
    assert broken.headers["content-type"].startswith("application/problem+json")
    assert broken.json()["type"].endswith("/malformed-json")
    plain = service.client.post(
        url,
        content=b'{"source_yaml": "name: x"}',
        headers={**service.auth(), "Content-Type": "text/plain"},
    )
    assert plain.status_code == 415, plain.text
    assert plain.json()["type"].endswith("/unsupported-media-type")


def test_an_unhandled_error_is_problem_json_without_a_stack_trace(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.playbooks.router

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("internal detail: /srv/secret/path.py line 12")

    monkeypatch.setattr(app.playbooks.router, "load_playbook_text", broken)
    client = TestClient(service.app, raise_server_exceptions=False)
    response = client.post(
        "/api/v1/playbooks/validate", json={"source_yaml": "name: x"}, headers=service.auth()
    )
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("/internal-error")
    assert "secret" not in response.text and "Traceback" not in response.text
    assert len(response.headers["x-request-id"]) == 32  # to find the log line


def test_operation_ids_follow_one_scheme(service: Service) -> None:
    ids = [
        operation["operationId"]
        for operations in service.app.openapi()["paths"].values()
        for operation in operations.values()
    ]
    assert len(ids) == len(set(ids))
    assert "connections.create" in ids and "connections.list_connections" in ids
    for operation_id in ids:
        assert re.fullmatch(r"[a-z-]+\.[a-z_]+", operation_id), operation_id


def test_the_api_docs_load_nothing_from_another_host(service: Service) -> None:
    for page in ("/docs", "/redoc"):
        html = service.client.get(page).text
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        assert assets, page
        for asset in assets:
            assert asset.startswith("/"), (page, asset)
            assert service.client.get(asset).status_code == 200, asset
        assert "https://" not in html.replace("https://github.com", "")


# --- body limits -------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_before_it_is_read(service: Service) -> None:
    limit = service.settings.max_api_body_bytes
    declared = service.client.post(
        "/api/v1/playbooks/validate",
        content=b"x" * (limit + 1),
        headers={**service.auth(), "Content-Type": "application/json"},
    )
    assert declared.status_code == 413, declared.text
    assert declared.headers["content-type"].startswith("application/problem+json")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        for _ in range(limit // 4096 + 2):
            yield b" " * 4096

    streamed = service.client.post(
        "/api/v1/playbooks/validate",
        content=chunks(),
        headers={**service.auth(), "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413, streamed.text


def test_a_webhook_body_over_its_limit_is_413(service: Service, worked: dict[str, str]) -> None:
    limit = service.settings.max_webhook_body_bytes
    response = service.client.post(
        f"/webhooks/fake/{worked['connection_id']}",
        content=b"{" + b" " * limit + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413


def test_an_anonymous_body_is_refused_before_it_is_read(service: Service) -> None:
    response = service.client.post(
        "/api/v1/playbooks/validate",
        content=json.dumps({"source_yaml": "x" * 1000}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    # A made-up key with malformed JSON: refused as a key (401), never parsed (400).
    made_up = service.client.post(
        "/api/v1/playbooks/validate",
        content=b'{"source_yaml": ',
        headers={"Content-Type": "application/json", "Authorization": "Bearer dck_nope_nope"},
    )
    assert made_up.status_code == 401, made_up.text


# --- malformed input on every route ------------------------------------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


CORPUS: list[tuple[str, bytes, str]] = [
    ("deep json", _nested(100_000).encode(), "application/json"),
    ("deep object", ('{"a":' * 50_000 + "1" + "}" * 50_000).encode(), "application/json"),
    (
        "deep xml",
        (b"<a>" * 50_000) + (b"</a>" * 50_000),
        "text/xml; charset=utf-8",
    ),
    (
        "year 9999 with an offset",
        json.dumps(
            {
                "as_of": "9999-12-31T23:59:59-05:00",
                "occurred_at": "0001-01-01T00:00:00+05:00",
                "events": [
                    {
                        "id": "e",
                        "deal_id": "d",
                        "kind": "stage_change",
                        "occurred_at": "9999-12-31T23:59:59-05:00",
                    }
                ],
                "dry_run": True,
            }
        ).encode(),
        "application/json",
    ),
    (
        "lone surrogate",
        b'{"name": "\\ud800", "source_yaml": "name: \\"\\ud800\\"", "prompt_id": "\\udfff",'
        b' "verdict": "useful", "comment": "\\ud800", "connection_id": "\\ud800",'
        b' "deal_id": "\\ud800", "events": [{"id": "\\ud800", "deal_id": "\\ud800"}]}',
        "application/json",
    ),
    (
        "deep yaml",
        json.dumps({"source_yaml": "a: " + "[" * 5000 + "]" * 5000}).encode(),
        "application/json",
    ),
    ("not utf-8", b'{"name": "\xff\xfe"}', "application/json"),
]


@pytest.mark.parametrize(("label", "body", "content_type"), CORPUS, ids=[c[0] for c in CORPUS])
def test_malformed_input_on_every_route_is_a_4xx(
    service: Service, worked: dict[str, str], label: str, body: bytes, content_type: str
) -> None:
    client = TestClient(service.app, raise_server_exceptions=False)
    paths = service.app.openapi()["paths"]
    tried = 0
    for path, operations in paths.items():
        for method in operations:
            url = fill(path, **worked)
            for query in ("", "?as_of=9999-12-31T23:59:59-05:00&since=0001-01-01T00:00:00%2B05:00"):
                response = client.request(
                    method.upper(),
                    url + query,
                    content=body,
                    headers={**service.auth(), "Content-Type": content_type},
                )
                tried += 1
                assert response.status_code < 500, (label, method, path, response.text[:300])
    assert tried >= 60
