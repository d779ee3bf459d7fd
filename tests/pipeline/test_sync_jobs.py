"""``POST .../sync`` answers 202 with a sync job and its ``Location``; the job can be
polled until it is done (issue 12, finding 5)."""

from __future__ import annotations

from typing import Any

from .conftest import Service, sample_deal


def test_a_requested_sync_is_a_job_to_poll_until_it_succeeds(service: Service) -> None:
    connection_id, crm = service.add_fake_connection()
    for number in range(1, 4):
        crm.put_deal(sample_deal(f"D{number}", number))

    response = service.client.post(
        f"/api/v1/connections/{connection_id}/sync", headers=service.auth()
    )
    assert response.status_code == 202, response.text
    location = response.headers["location"]
    job = response.json()
    assert location == f"/api/v1/sync-jobs/{job['id']}"
    assert job["state"] in {"queued", "running", "succeeded"}
    assert job["requested_at"].endswith("Z")

    polled: dict[str, Any] = {}

    def done() -> bool:
        polled.update(service.client.get(location, headers=service.auth(service.read_key)).json())
        return polled["state"] in {"succeeded", "failed", "skipped"}

    service.wait_for(done, timeout=30)
    assert polled["state"] == "succeeded", polled
    assert "3 deals" in polled["detail"]
    assert polled["started_at"] and polled["finished_at"]


def test_an_unknown_sync_job_is_404(service: Service) -> None:
    response = service.client.get("/api/v1/sync-jobs/nope", headers=service.auth())
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
