"""`dealcoach demo` as a newcomer runs it (a real process, which starts the emulator and a real
`dealcoach serve`), then the figures it printed checked against what the service's database
and the Salesforce emulator's saved org really hold; and a failing step stops everything."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from app.cli import main
from app.demo import Demo, DemoError, DemoOptions, run_demo
from app.reviews.models import Review, ReviewTrigger
from app.writeback.models import WriteBack, WriteBackState, WriteBackTarget
from integrations.salesforce.emulator import SalesforceEmulator

BIN = Path(sys.executable).parent


def _flat(text: str) -> str:
    """The output with its wrapping undone (figures may sit across a line break)."""
    return " ".join(text.split())


def _figure(pattern: str, text: str) -> re.Match[str]:
    found = re.search(pattern, text)
    assert found is not None, f"{pattern!r} not in the output:\n{text}"
    return found


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _coaching_notes(emulator: SalesforceEmulator) -> dict[str, list[str]]:
    """Opportunity id -> titles of the dealcoach notes linked to it, from the org itself."""
    opportunities = {o["Id"][:15]: o["Id"] for o in emulator.records("Opportunity")}
    notes: dict[str, list[str]] = {}
    for link in emulator.records("ContentDocumentLink"):
        opportunity = opportunities.get(link["LinkedEntityId"][:15])
        note = emulator.record(link["ContentDocumentId"])
        if opportunity and note and not note.get("IsDeleted") and "[dc1-" in note["Title"]:
            notes.setdefault(opportunity, []).append(note["Title"])
    return notes


def test_the_demo_runs_end_to_end_and_its_figures_are_real(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEALCOACH_")}
    done = subprocess.run(
        [str(BIN / "dealcoach"), "demo", "--data-dir", str(data), "--timeout", "40"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = _flat(done.stdout)
    assert "no HubSpot emulator yet" in out

    # Everything it started is stopped: the service process and both ports.
    serve = _figure(r"ready at http://127\.0\.0\.1:(\d+) \(pid (\d+)\)", out)
    assert _gone(int(serve.group(2)))
    assert _refused(int(serve.group(1)))
    emulator_port = int(_figure(r"https://127\.0\.0\.1:(\d+), org", out).group(1))
    assert _refused(emulator_port)

    # The service's own records.
    engine = create_engine(f"sqlite:///{data / 'dealcoach.db'}")
    with Session(engine) as session:
        writebacks = session.scalars(select(WriteBack)).all()
        reviews = session.scalars(select(Review)).all()
    engine.dispose()
    assert {w.state for w in writebacks} == {WriteBackState.WRITTEN}
    note_markers = {w.marker for w in writebacks if w.target == WriteBackTarget.NOTE}

    # The org as the emulator saved it when the demo stopped it: the CRM side.
    crm = SalesforceEmulator(data / "salesforce")
    notes = _coaching_notes(crm)
    in_crm = [title for titles in notes.values() for title in titles]
    assert {title.rsplit("[", 1)[1].rstrip("]") for title in in_crm} == note_markers
    assert len(in_crm) == len(note_markers)  # each note exactly once

    # The sync's figures as printed.
    synced = _figure(r"(\d+) notes? and (\d+) summary-field updates? written", out)
    sync_reviews = [r for r in reviews if r.trigger == ReviewTrigger.SYNC]
    sync_notes = [
        w
        for w in writebacks
        if w.target == WriteBackTarget.NOTE and w.review_id in {r.id for r in sync_reviews}
    ]
    assert int(synced.group(1)) == len(sync_notes) > 0
    assert int(synced.group(2)) == len(sync_notes)  # summary fields for the same reviews
    pipeline = _figure(
        r"(\d+) deals reviewed: (\d+) open \((\d+) healthy, (\d+) at risk, (\d+) critical\), "
        r"(\d+) closed",
        out,
    )
    opportunities = crm.records("Opportunity")
    assert int(pipeline.group(1)) == len(sync_reviews) == len(opportunities) == 40
    closed = sum(1 for o in opportunities if o["IsClosed"])
    assert int(pipeline.group(6)) == closed
    bands = Counter(
        r.health_band
        for r in sync_reviews
        if r.deal_external_id in {o["Id"] for o in opportunities if not o["IsClosed"]}
    )
    assert [int(pipeline.group(n)) for n in (3, 4, 5)] == [
        bands["healthy"],
        bands["at_risk"],
        bands["critical"],
    ]
    counted = _figure(r"(\d+) coaching notes on (\d+) of the (\d+) opportunities", out)
    assert int(counted.group(1)) == len(sync_notes)  # before the stage change added one
    assert int(counted.group(2)) == len(sync_notes)
    assert int(counted.group(3)) == 40

    # The stage change: the opportunity moved in Salesforce, a webhook review exists, and
    # its note sits on that opportunity beside the sync's.
    moved = _figure(r'moves "([^"]+)" from (.+?) to (.+?)\. Its last review', out)
    opportunity = next(o for o in opportunities if o["Name"] == moved.group(1))
    assert opportunity["StageName"] == moved.group(3) != moved.group(2)
    review_id = _figure(r"a new review \(trigger webhook, id ([0-9a-f-]+)\)", out).group(1)
    webhook_review = next(r for r in reviews if r.id == review_id)
    assert webhook_review.trigger == ReviewTrigger.WEBHOOK
    assert webhook_review.deal_external_id == opportunity["Id"]
    titles = notes[opportunity["Id"]]
    assert len(titles) == 2
    assert any(webhook_review.marker in title for title in titles)
    seconds = [float(s) for s in re.findall(r"after (?:< )?([\d.]+) s:", out)]
    assert len(seconds) == 3 and seconds == sorted(seconds)
    assert seconds[-1] < 30


def test_a_failing_step_stops_the_service_and_the_emulator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: Demo) -> None:
        raise DemoError("the sync step broke (injected)")

    monkeypatch.setattr(Demo, "sync", broken)
    lines: list[str] = []
    with pytest.raises(DemoError) as failure:
        run_demo(DemoOptions(timeout=30), lines.append)
    message = str(failure.value)
    assert message.startswith("the sync step broke (injected)")
    assert "last lines of the service log" in message  # the log, read before its folder went
    out = _flat("\n".join(lines))
    serve = _figure(r"ready at http://127\.0\.0\.1:(\d+) \(pid (\d+)\): .*? in (\S+),", out)
    assert _gone(int(serve.group(2)))
    assert _refused(int(serve.group(1)))
    assert not Path(serve.group(3)).exists()  # the temporary data directory is removed


def test_the_command_refuses_a_data_directory_in_use(tmp_path: Path) -> None:
    (tmp_path / "dealcoach.db").write_text("")
    result = CliRunner().invoke(main, ["demo", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "dealcoach: demo failed:" in result.output
    assert "is not empty" in result.output
