"""``dealcoach worker`` as a real process: it consumes tasks and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import Settings
from app.db import upgrade_database
from app.jobs import configure_queue
from tests.conftest import TEST_SECRET_KEY
from tests.jobs import sample_tasks
from tests.jobs.conftest import wait_for

REPO = Path(__file__).resolve().parents[2]
# The CLI's own entry point, after importing the test tasks so the worker knows them.
WORKER = (
    "import tests.jobs.sample_tasks; from app.cli import main; "
    "main(['worker', '--threads', '2'], prog_name='dealcoach')"
)


@pytest.fixture
def worker_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEALCOACH_")}
    env.update(
        DEALCOACH_DATA_DIR=str(tmp_path / "data"),
        DEALCOACH_LOG_LEVEL="INFO",
        DEALCOACH_SECRET_KEYS=TEST_SECRET_KEY,
        PYTHONPATH=str(REPO),
    )
    upgrade_database(Settings(data_dir=tmp_path / "data"))  # the worker refuses an old schema
    return env


def test_the_worker_processes_tasks_and_stops_gracefully_on_sigterm(
    tmp_path: Path, worker_env: dict[str, str]
) -> None:
    configure_queue(Settings(data_dir=tmp_path / "data"))  # the same SQLite queue file
    log = (tmp_path / "worker.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER], cwd=REPO, env=worker_env, stdout=log, stderr=log
    )
    try:
        first = tmp_path / "first.txt"
        sample_tasks.write_file(str(first), "one")
        wait_for(first.exists, timeout=30)

        started, done = tmp_path / "started", tmp_path / "done"
        sample_tasks.slow_write(str(started), str(done), 1.0)
        wait_for(started.exists, timeout=30)
        process.send_signal(signal.SIGTERM)  # while the task runs
        assert process.wait(timeout=30) == 0
        assert done.read_text() == "done"  # the running task was allowed to finish
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        log.seek(0)
        output = log.read()
        log.close()
    assert "tests.jobs.sample_tasks.write_file" in output  # the worker's task list
    assert "Shutting down gracefully" in output


def test_worker_help_names_its_options() -> None:
    from click.testing import CliRunner

    from app.cli import main

    result = CliRunner().invoke(main, ["worker", "--help"])
    assert result.exit_code == 0
    assert "--threads" in result.output
    assert "--no-periodic" in result.output
