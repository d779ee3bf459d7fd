"""`dealcoach demo` as a newcomer runs it (a real process, which starts the emulator and a real
`dealcoach serve`), then the figures it printed checked against what the service's database
and the Salesforce emulator's saved org really hold; and a failing step stops everything."""

from __future__ import annotations

import json
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
from app.connections.models import Connection, Provider
from app.demo import Demo, DemoError, DemoOptions, run_demo
from app.reviews.models import Review, ReviewTrigger
from app.writeback.models import WriteBack, WriteBackState, WriteBackTarget
from integrations.hubspot.adapter import MARKER
from integrations.hubspot.emulator import DEFAULT_PIPELINES, HubSpotEmulator
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
    assert "against both CRM sandboxes" in out

    # Everything it started is stopped: the service process and both ports.
    serve = _figure(r"ready at http://127\.0\.0\.1:(\d+) \(pid (\d+)\)", out)
    assert _gone(int(serve.group(2)))
    assert _refused(int(serve.group(1)))
    emulator_port = int(_figure(r"https://127\.0\.0\.1:(\d+), org", out).group(1))
    assert _refused(emulator_port)
    hubspot_port = int(_figure(r"http://127\.0\.0\.1:(\d+), portal", out).group(1))
    assert _refused(hubspot_port)

    # The service's own records.
    engine = create_engine(f"sqlite:///{data / 'dealcoach.db'}")
    with Session(engine) as session:
        all_writebacks = session.scalars(select(WriteBack)).all()
        all_reviews = session.scalars(select(Review)).all()
        providers = {c.id: c.provider for c in session.scalars(select(Connection)).all()}
    engine.dispose()
    assert {w.state for w in all_writebacks} == {WriteBackState.WRITTEN}
    assert sorted(providers.values()) == [Provider.HUBSPOT, Provider.SALESFORCE]
    # The Salesforce connection's records first.
    writebacks = [w for w in all_writebacks if providers[w.connection_id] == Provider.SALESFORCE]
    reviews = [r for r in all_reviews if providers[r.connection_id] == Provider.SALESFORCE]
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
    salesforce_part, hubspot_part = out.split("The HubSpot app's webhook subscription")
    at_once = _figure(
        r"4 more stage changes at once \(2 in Salesforce, 2 in HubSpot, deals moved back one "
        r"stage\): every one reviewed from its webhook; notes in the CRMs after ([\d., ]+) s",
        hubspot_part,
    )
    assert all(0 < float(x) < 30 for x in at_once.group(1).split(", "))
    assert sum(r.trigger == ReviewTrigger.WEBHOOK for r in all_reviews) == 6
    seconds = [float(s) for s in re.findall(r"after (?:< )?([\d.]+) s:", salesforce_part)]
    assert len(seconds) == 3 and seconds == sorted(seconds)
    assert seconds[-1] < 30

    # HubSpot: the portal as the emulator saved it; every note once, on its deal.
    portal = HubSpotEmulator(data / "hubspot")
    hubspot_notes = {
        deal_id: [m for n in portal.notes(deal_id) for m in MARKER.findall(n["hs_note_body"])]
        for deal_id in portal.deal_ids()
    }
    hubspot_markers = [m for found in hubspot_notes.values() for m in found]
    assert len(hubspot_markers) == len(set(hubspot_markers)) > 0
    hubspot_writebacks = [
        w for w in all_writebacks if providers[w.connection_id] == Provider.HUBSPOT
    ]
    hubspot_all_reviews = [r for r in all_reviews if providers[r.connection_id] == Provider.HUBSPOT]
    assert set(hubspot_markers) == {
        w.marker for w in hubspot_writebacks if w.target == WriteBackTarget.NOTE
    }
    synced = _figure(
        r"HubSpot: every deal reviewed and written back in [\d.]+ s: (\d+) notes?", out
    )
    hubspot_reviews = {r.id for r in hubspot_all_reviews if r.trigger == ReviewTrigger.SYNC}
    assert len(hubspot_reviews) == len(portal.deal_ids()) == 18
    first_notes = [
        w
        for w in hubspot_writebacks
        if w.target == WriteBackTarget.NOTE and w.review_id in hubspot_reviews
    ]
    assert int(synced.group(1)) == len(first_notes)
    moved = _figure(r'In HubSpot, its owner moves "([^"]+)" from (.+?) to (.+?) after', out)
    deal_id = next(
        d for d in portal.deal_ids() if (portal.deal(d) or {}).get("dealname") == moved.group(1)
    )
    labels = {stage.id: stage.label for p in DEFAULT_PIPELINES for stage in p.stages}
    assert labels[str((portal.deal(deal_id) or {})["dealstage"])] == moved.group(3)
    hubspot_review = _figure(
        r"a new review \(trigger webhook, id ([0-9a-f-]+)\)", hubspot_part
    ).group(1)
    assert next(r for r in hubspot_all_reviews if r.id == hubspot_review).deal_external_id == (
        deal_id
    )
    if "its note is on the deal in HubSpot" in hubspot_part:
        assert any(
            w.marker in hubspot_notes[deal_id]
            for w in hubspot_writebacks
            if w.review_id == hubspot_review
        )


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


def test_once_json_prints_one_object_of_counts_read_back_from_both_crms(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEALCOACH_")}
    done = subprocess.run(
        [
            str(BIN / "dealcoach"),
            "demo",
            "--once",
            "--json",
            "--data-dir",
            str(data),
            "--timeout",
            "40",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout  # ONE JSON object, nothing else
    figures = json.loads(lines[0])
    assert set(figures) == {
        "deals_synced",
        "reviews",
        "notes_written",
        "stage_changes",
        "stage_change_to_note_ms",
        "duplicate_notes",
    }

    org = SalesforceEmulator(data / "salesforce")
    portal = HubSpotEmulator(data / "hubspot")
    assert figures["deals_synced"] == {
        "salesforce": len(org.records("Opportunity")),
        "hubspot": len(portal.deal_ids()),
    }
    salesforce_titles = [t for titles in _coaching_notes(org).values() for t in titles]
    hubspot_markers = [
        m for note in portal.notes() for m in MARKER.findall(note["hs_note_body"] or "")
    ]
    assert figures["notes_written"] == {
        "salesforce": len(salesforce_titles),
        "hubspot": len(hubspot_markers),
    }
    assert figures["notes_written"]["hubspot"] > 0
    markers = [t.rsplit("[", 1)[1].rstrip("]") for t in salesforce_titles] + hubspot_markers
    assert figures["duplicate_notes"] == len(markers) - len(set(markers)) == 0

    engine = create_engine(f"sqlite:///{data / 'dealcoach.db'}")
    with Session(engine) as session:
        reviews = session.scalars(select(Review)).all()
    engine.dispose()
    assert figures["reviews"] == len(reviews)
    # three stage changes in each CRM (the default), each reviewed once from its webhook
    assert figures["stage_changes"] == 6 == sum(r.trigger == ReviewTrigger.WEBHOOK for r in reviews)
    timing = figures["stage_change_to_note_ms"]
    assert timing["p50"] is not None and 0 < timing["p50"] <= timing["p95"] < 30000


def test_keep_running_refuses_json() -> None:
    result = CliRunner().invoke(main, ["demo", "--keep-running", "--json"])
    assert result.exit_code == 2
    assert "cannot be combined" in result.output
