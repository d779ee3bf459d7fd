"""``GET /api/v1/deals?signal=&band=`` filters in SQL: the answer is the same as filtering
each deal's latest review by hand, in one query per page (issue 12, finding 8)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from app.sync.tasks import sync_connection_task

from .conftest import Service, sample_deal


def _latest_reviews(service: Service) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        page = service.client.get(
            "/api/v1/reviews",
            params={"limit": 200, **({"cursor": cursor} if cursor else {})},
            headers=service.auth(),
        ).json()
        for review in page["items"]:
            known = latest.get(review["deal_id"])
            if known is None or review["created_at"] > known["created_at"]:
                latest[review["deal_id"]] = review
        cursor = page["next_cursor"]
        if cursor is None:
            return latest


def _all_deals(service: Service, **params: str) -> list[str]:
    found, cursor = [], None
    while True:
        page = service.client.get(
            "/api/v1/deals",
            params={**params, "limit": 3, **({"cursor": cursor} if cursor else {})},
            headers=service.auth(),
        ).json()
        found.extend(item["deal_id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return sorted(found)


def test_signal_and_band_filters_match_the_latest_reviews_in_one_query(service: Service) -> None:
    connection_id, crm = service.add_fake_connection(page_size=50)
    for number in range(1, 13):
        crm.put_deal(sample_deal(f"D{number}", number))
    sync_connection_task.call_local(connection_id)
    crm.put_deal(sample_deal("D2", 20))  # a newer review for D2 replaces the first one
    sync_connection_task.call_local(connection_id)

    latest = _latest_reviews(service)
    codes = {code for review in latest.values() for code in _codes(review)}
    assert codes, "the sample deals raise signals"
    for code in sorted(codes):
        expected = sorted(d for d, review in latest.items() if code in _codes(review))
        assert _all_deals(service, signal=code) == expected, code
    for band in ("healthy", "at_risk", "critical"):
        expected = sorted(d for d, r in latest.items() if r["health"]["band"] == band)
        assert _all_deals(service, band=band) == expected, band
    assert _all_deals(service, signal="no_such_signal") == []

    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    engine = service.runtime.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        answer = service.client.get(
            "/api/v1/deals",
            params={"signal": sorted(codes)[0], "limit": 200},
            headers=service.auth(),
        )
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert answer.status_code == 200
    deal_queries = [s for s in statements if "deal_snapshots" in s]
    assert len(deal_queries) == 1, deal_queries
    assert not [s for s in statements if s.lstrip().upper().startswith("SELECT reviews".upper())]


def _codes(review: dict[str, Any]) -> set[str]:
    return {s if isinstance(s, str) else s["code"] for s in review["signals"]}
