"""What the service delivers to people: the note's audience, the rep's view of a review,
and the pipeline agenda served from stored reviews."""

from __future__ import annotations

from typing import Any

import pytest

from app.api.deps import encode_cursor
from app.reviews.models import Review
from app.sync.tasks import sync_connection_task

from .conftest import Service, sample_deal


def _review_now(service: Service, connection_id: str, deal_id: str) -> dict[str, Any]:
    response = service.client.post(
        f"/api/v1/connections/{connection_id}/deals/{deal_id}/reviews",
        headers=service.auth(),
        json={},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    ("setting", "headings", "absent"),
    [
        (None, ["Questions for the deal review"], "Self-review questions"),
        ("rep", ["Self-review questions"], "Questions for the deal review"),
        ("both", ["Questions for the deal review", "Self-review questions"], None),
    ],
)
def test_the_note_audience_setting_chooses_whose_questions_the_note_carries(
    service: Service, setting: str | None, headings: list[str], absent: str | None
) -> None:
    settings = {"writeback_targets": ["note", "task"]}
    if setting is not None:
        settings["note_audience"] = setting  # type: ignore[assignment]
    connection_id, crm = service.add_fake_connection(**settings)
    crm.put_deal(sample_deal("D1"))

    review = _review_now(service, connection_id, "D1")

    service.wait_for(lambda: len(crm.notes_on("D1")) == 2)
    note, task = sorted(crm.notes_on("D1"), key=lambda n: n.kind)
    assert (note.kind, task.kind) == ("note", "task")
    for heading in headings:
        assert heading in note.html and heading in task.text
    if absent is not None:
        assert absent not in note.html and absent not in task.text
    assert note.html.index(headings[0]) < note.html.index("/100")  # questions first
    assert review["marker"] in note.html
    rep_texts = [p["text"] for p in review["prompts"] if p["audience"] == "rep"]
    assert rep_texts
    if setting in {"rep", "both"}:
        assert " ".join(rep_texts[0].split())[:50] in task.text


def test_a_bad_note_audience_is_refused(service: Service) -> None:
    response = service.client.post(
        "/api/v1/connections",
        headers=service.auth(),
        json={
            "provider": "fake",
            "name": "x",
            "external_account_id": "acct-x",
            "instance_url": "http://127.0.0.1:1/x",
            "settings": {"note_audience": "cfo"},
        },
    )
    assert response.status_code == 422
    assert "note_audience" in response.text


def test_a_review_has_a_rep_view_and_a_manager_view(service: Service) -> None:
    connection_id, crm = service.add_fake_connection(writeback_mode="off")
    crm.put_deal(sample_deal("D1"))
    review_id = _review_now(service, connection_id, "D1")["id"]

    def prompts(query: str, key: str | None = None) -> list[dict[str, Any]]:
        response = service.client.get(
            f"/api/v1/reviews/{review_id}{query}", headers=service.auth(key)
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["prompts"]
        return items

    both = prompts("")
    rep = prompts("?audience=rep", service.read_key)
    manager = prompts("?audience=manager")
    assert rep and manager
    assert {p["audience"] for p in rep} == {"rep"}
    assert {p["audience"] for p in manager} == {"manager"}
    assert len(both) == len(rep) + len(manager)
    assert [p["question_id"] for p in rep] == [p["question_id"] for p in manager]
    listed = service.client.get(
        f"/api/v1/reviews?connection_id={connection_id}&audience=rep", headers=service.auth()
    ).json()["items"]
    assert {p["audience"] for item in listed for p in item["prompts"]} == {"rep"}
    bad = service.client.get(f"/api/v1/reviews/{review_id}?audience=cfo", headers=service.auth())
    assert bad.status_code == 422


def _agenda(service: Service, query: str) -> dict[str, Any]:
    response = service.client.get(f"/api/v1/agenda?{query}", headers=service.auth())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_agenda_is_served_from_stored_reviews_ranked_grouped_and_paged(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection_id, crm = service.add_fake_connection(writeback_mode="off")
    for number in range(1, 13):
        crm.put_deal(sample_deal(f"D{number}", number))
    sync_connection_task.call_local(connection_id)
    reviews_before = service.count(Review)
    fetches_before = crm.calls("fetch") + crm.calls("list")

    def no_review(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the agenda must not review again")

    monkeypatch.setattr("app.coaching.engine.review_deal", no_review)
    monkeypatch.setattr("app.reviews.pipeline.review_deal", no_review)

    whole = _agenda(service, f"connection_id={connection_id}&limit=200")

    assert service.count(Review) == reviews_before, "nothing reviewed or stored"
    assert crm.calls("fetch") + crm.calls("list") == fetches_before, "nothing fetched"
    items = whole["items"]
    assert items and whole["next_cursor"] is None and whole["unreviewed_deals"] == 0
    assert whole["exceptions"] == len(items)
    groups = [
        0
        if i["in_period"] and (i["past_due"] or i["forecast_mismatch"])
        else 1
        if i["in_period"]
        else 2
        for i in items
    ]
    assert groups == sorted(groups)
    for item in items:
        assert {"close_date", "forecast_category", "top_question", "owner_id"} <= set(item)
        stored = service.client.get(
            f"/api/v1/reviews?connection_id={connection_id}&deal_id={item['deal_id']}",
            headers=service.auth(),
        ).json()["items"]
        assert item["health"] == stored[-1]["health"]
        first = next(p for p in stored[-1]["prompts"] if p["audience"] == "manager")
        assert item["top_question"] == {"text": first["text"], "why": first["why"]}
    assert sum(owner["exceptions"] for owner in whole["owners"]) == len(items)

    pages: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = _agenda(
            service,
            f"connection_id={connection_id}&limit=2" + (f"&cursor={cursor}" if cursor else ""),
        )
        pages.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [i["deal_id"] for i in pages] == [i["deal_id"] for i in items]

    owner = whole["owners"][0]["owner_id"]
    mine = _agenda(service, f"connection_id={connection_id}&owner={owner}&limit=200")
    assert mine["items"] and {i["owner_id"] for i in mine["items"]} == {owner}
    assert len(mine["items"]) == whole["owners"][0]["exceptions"]

    for cursor in ("bm9wZQ", encode_cursor("agenda:²"), encode_cursor("agenda:-1")):
        bad = service.client.get(
            f"/api/v1/agenda?connection_id={connection_id}&cursor={cursor}",
            headers=service.auth(),
        )
        assert bad.status_code == 422, cursor


def test_the_agenda_counts_open_deals_not_yet_reviewed(service: Service) -> None:
    connection_id, crm = service.add_fake_connection(writeback_mode="off")
    crm.put_deal(sample_deal("D1"))
    sync_connection_task.call_local(connection_id)
    from app.db import session_scope

    with session_scope(service.runtime.sessions) as session:
        session.query(Review).delete()

    body = _agenda(service, f"connection_id={connection_id}")

    assert body["items"] == [] and body["unreviewed_deals"] == 1
