"""The Dockerfile and docker-compose.yml follow docs/deploy.md: base pinned by digest,
dependencies from the lock in their own layer, non-root, no migration at start;
migrations as their own service; periodic tasks on exactly one consumer (issue 12,
finding 7). This machine cannot run containers: the files are checked statically,
and with hadolint when it is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_image_is_multi_stage_pinned_non_root_and_does_not_migrate() -> None:
    assert re.search(r"^ARG PYTHON_IMAGE=\S+@sha256:[0-9a-f]{64}$", DOCKERFILE, re.M)
    assert DOCKERFILE.count("FROM ${PYTHON_IMAGE}") == 2
    lock = DOCKERFILE.index("COPY requirements/runtime.lock")
    code = DOCKERFILE.index("COPY app ./app")
    assert lock < DOCKERFILE.index("--require-hashes") < code, "dependencies layer first"
    user = re.findall(r"^USER (\S+)$", DOCKERFILE, re.M)
    assert user and not user[-1].startswith(("root", "0"))
    cmd = re.findall(r"^CMD (.+)$", DOCKERFILE, re.M)[-1]
    assert "upgrade" not in cmd and "serve" in cmd


def test_compose_migrates_once_and_runs_periodic_tasks_on_one_consumer() -> None:
    services = COMPOSE["services"]
    assert services["migrate"]["command"] == ["dealcoach", "db", "upgrade"]
    consumers = {
        name: service
        for name, service in services.items()
        if "worker" in service.get("command", []) or "serve" in service.get("command", [])
    }
    periodic = [
        name
        for name, service in consumers.items()
        if "worker" in service["command"] and "--no-periodic" not in service["command"]
    ]
    assert periodic == ["scheduler"]
    assert services["scheduler"]["deploy"]["replicas"] == 1
    for name, service in consumers.items():
        assert "upgrade" not in service["command"], name
        assert service["depends_on"]["migrate"]["condition"] == ("service_completed_successfully")


@pytest.mark.skipif(
    shutil.which("hadolint") is None and not (ROOT / ".venv/bin/hadolint").exists(),
    reason="hadolint not installed",
)
def test_hadolint_finds_nothing() -> None:
    binary = shutil.which("hadolint") or str(ROOT / ".venv/bin/hadolint")
    result = subprocess.run(
        [binary, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
