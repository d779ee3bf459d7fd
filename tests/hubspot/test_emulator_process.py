"""``python -m integrations.hubspot.emulator`` as a real process."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from hubspot import HubSpot


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_given_the_command_then_it_prints_url_and_token_and_serves(tmp_path: Path) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "integrations.hubspot.emulator",
            "--port",
            str(port),
            "--seed-count",
            "5",
            "--state-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith(f"HubSpot emulator at http://127.0.0.1:{port}")
        token = process.stdout.readline().split()[2]
        hs = HubSpot(access_token=token, host=f"http://127.0.0.1:{port}")
        assert len(hs.crm.pipelines.pipelines_api.get_all("deals").results) == 2
        state = httpx.get(f"http://127.0.0.1:{port}/__emulator/state").json()
        assert state["records"]["deals"] == 5 and state["calls"]["pipelines"] == 1
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    assert (tmp_path / "state.json").exists()  # kept for the next run


def test_given_a_port_in_use_then_one_clear_line_and_exit_1() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "integrations.hubspot.emulator", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert result.stdout.strip().startswith("error: the HubSpot emulator could not start")
    assert "Traceback" not in result.stderr
