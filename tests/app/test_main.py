"""The HTTP service's health probes."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app


def test_healthz_answers_ok(db_settings: Settings) -> None:
    with TestClient(create_app(db_settings)) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ok_when_the_database_answers(db_settings: Settings) -> None:
    with TestClient(create_app(db_settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


def test_readyz_is_503_when_the_database_cannot_be_reached(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url="postgresql://nobody@127.0.0.1:1/none?connect_timeout=1",
        sandbox=True,
        queue_url=f"sqlite:///{tmp_path / 'queue.db'}",
    )
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
