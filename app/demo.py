"""``dealcoach demo``: the main job end to end, set-up included, on the embedded default.

What runs (everything on 127.0.0.1, no network needed, all stopped at the end), in the
seven printed steps:

1. The Salesforce emulator
   (:class:`integrations.salesforce.emulator.SalesforceEmulator`) over TLS with its own
   self-signed CA, seeded with a realistic org (``--opportunities``, deterministic for
   ``--seed``).
2. The HubSpot sandbox: the HubSpot emulator
   (:class:`integrations.hubspot.emulator.HubSpotEmulator`, plain http) seeded with a
   portal (``--hubspot-deals``).
3. The service as it ships: ``dealcoach db upgrade``, then ``dealcoach serve`` (a
   separate process: SQLite database and SQLite task queue in the demo's data
   directory, worker threads inside ``serve``) in development mode, trusting the Salesforce
   emulator's CA (``DEALCOACH_CRM_CA_BUNDLE``), with the emulators as the Salesforce
   login URL and connected app and as the HubSpot OAuth URL and app.
4. ``dealcoach apikey create --scope admin``, then ``POST /api/v1/connections`` twice:
   a Salesforce connection to the org and a HubSpot connection to the portal, with
   OAuth tokens the emulators issued, writing back notes and summary fields.
5. ``POST /api/v1/connections/{id}/sync`` for each; waits until every deal is reviewed
   and every write-back is written, then prints the pipelines from the API and counts
   the coaching notes from the CRM side (SOQL as a sales rep; the HubSpot emulator's
   notes).
6. Points the org's Outbound Message at ``webhook_urls.outbound_message`` and moves one
   opportunity as its owner would, then points the HubSpot app's webhooks at
   ``webhook_urls.hubspot`` and moves one deal back a stage (a v3-signed
   ``object.propertyChange`` event); measures the seconds until each new review and
   its note exist; then makes the other ``--stage-changes`` at once in both CRMs.
7. Reads both CRMs back (notes with a dealcoach marker, duplicates), prints where to
   look next, and stops the service (SIGTERM) and both emulators.

``dealcoach demo --once --json`` prints only :meth:`DemoReport.summary`: one JSON
object whose note counts are read from the emulators, not from the service's database.

:class:`Demo` holds one run (``with Demo(...) as demo: demo.run()``; leaving the block
stops everything); :func:`run_demo` is what the command calls.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from integrations.hubspot.emulator import DEFAULT_PIPELINES, HubSpotEmulator
from integrations.salesforce.emulator import API_VERSION, DEFAULT_STAGES, SalesforceEmulator

__all__ = [
    "DEFAULT_OPPORTUNITIES",
    "DEFAULT_SEED",
    "Demo",
    "DemoError",
    "DemoOptions",
    "DemoReport",
    "RiskyDeal",
    "run_demo",
    "sigterm_as_interrupt",
]

DEFAULT_OPPORTUNITIES = 40
DEFAULT_HUBSPOT_DEALS = 18
DEFAULT_STAGE_CHANGES = 3
DEFAULT_SEED = 7
#: The sales rep whose view of the org the demo reads notes through (a seeded owner).
CRM_READER = "maya.chen@acme-sales.example"
_MARKER_PREFIX = "[dc1-"
#: The marker of a dealcoach note in a HubSpot note body (the HubSpot adapter's).
_HUBSPOT_MARKER = re.compile(r"dc1-[0-9A-Za-z-]{1,64}")
_BAND_LABEL = {"healthy": "healthy", "at_risk": "at risk", "critical": "critical"}
_BAND_TITLE = {"healthy": "Healthy", "at_risk": "At risk", "critical": "Critical"}
WIDTH = 100
STEPS = 7
_POLL = 0.2
#: A uvicorn access-log line of a successful request.
_SUCCESS = re.compile(r'" [23]\d\d [A-Za-z ]*$')
_RECORD_ID = re.compile(r"[0-9A-Za-z]{15}(?:[0-9A-Za-z]{3})?")

Echo = Callable[[str], None]


class DemoError(Exception):
    """A step of the demo failed; the message says which step and why."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    opportunities: int = DEFAULT_OPPORTUNITIES
    hubspot_deals: int = DEFAULT_HUBSPOT_DEALS
    #: Stage changes per CRM: the first shown step by step, the others made at once.
    stage_changes: int = DEFAULT_STAGE_CHANGES
    seed: int = DEFAULT_SEED
    #: Where the databases, the emulator's state and the logs go. None: a temporary
    #: directory, removed at the end; a given directory is kept.
    data_dir: Path | None = None
    #: Seconds each wait (service start, sync, webhook) may take before the demo fails.
    timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class RiskyDeal:
    deal_id: str
    name: str
    amount: float | None
    currency: str | None
    stage: str
    band: str
    score: int
    signals: tuple[str, ...]
    #: (question, why) of the first prompts for the manager's deal review.
    prompts: tuple[tuple[str, str], ...]


@dataclass(slots=True)
class DemoReport:
    """The figures the demo prints, as it read them (API and CRM side)."""

    emulator_url: str = ""
    org_id: str = ""
    service_url: str = ""
    data_dir: Path = Path()
    connection_id: str = ""
    opportunities: int = 0
    #: From the service's API after the sync.
    deals_reviewed: int = 0
    bands: dict[str, int] = field(default_factory=dict)  # open deals by band
    closed: int = 0
    notes_written: int = 0  # note write-backs in state "written"
    summary_fields_written: int = 0
    sync_seconds: float = 0.0
    sync_api_calls: int = 0
    risky: list[RiskyDeal] = field(default_factory=list)
    #: From the CRM (SOQL through the emulator's REST API).
    notes_in_crm: int = 0
    opportunities_with_notes: int = 0
    health_fields_in_crm: int = 0
    #: The stage change.
    webhook_deal_id: str = ""
    webhook_deal_name: str = ""
    webhook_old_stage: str = ""
    webhook_new_stage: str = ""
    webhook_owner: str = ""
    webhook_ack_seconds: float = 0.0
    webhook_review_id: str = ""
    webhook_review_seconds: float = 0.0
    webhook_note_seconds: float = 0.0
    webhook_notes_before: int = 0
    webhook_notes_after: int = 0
    #: The HubSpot portal (the HubSpot emulator) and its connection.
    hubspot_url: str = ""
    portal_id: str = ""
    hubspot_connection_id: str = ""
    hubspot_deals: int = 0
    hubspot_reviewed: int = 0
    hubspot_bands: dict[str, int] = field(default_factory=dict)
    hubspot_closed: int = 0
    hubspot_notes_written: int = 0
    hubspot_summaries_written: int = 0
    hubspot_sync_seconds: float = 0.0
    hubspot_sync_api_calls: int = 0
    #: From the portal (the emulator's control API): notes with a dealcoach marker.
    hubspot_notes_in_crm: int = 0
    hubspot_deals_with_notes: int = 0
    hubspot_deal_id: str = ""
    hubspot_deal_name: str = ""
    hubspot_old_stage: str = ""
    hubspot_new_stage: str = ""
    hubspot_webhook_seconds: float = 0.0
    hubspot_review_seconds: float = 0.0
    hubspot_note_seconds: float = 0.0
    #: Every stage change made and, for those that led to a note, the seconds to it.
    stage_changes: int = 0
    stage_change_to_note: list[float] = field(default_factory=list)
    reviews: int = 0
    #: Markers found on more than one note, both CRMs (read from the emulators).
    duplicate_notes: int = 0
    total_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """The one JSON object of ``dealcoach demo --once --json`` (CRM-side counts)."""
        millis = sorted(seconds * 1000 for seconds in self.stage_change_to_note)
        return {
            "deals_synced": {"salesforce": self.opportunities, "hubspot": self.hubspot_deals},
            "reviews": self.reviews,
            "notes_written": {
                "salesforce": self.notes_in_crm,
                "hubspot": self.hubspot_notes_in_crm,
            },
            "stage_changes": self.stage_changes,
            "stage_change_to_note_ms": {
                "p50": _percentile(millis, 50),
                "p95": _percentile(millis, 95),
            },
            "duplicate_notes": self.duplicate_notes,
        }


def _percentile(values: Sequence[float], percent: float) -> float | None:
    """The nearest-rank percentile of sorted ``values`` (None when empty), rounded to ms."""
    if not values:
        return None
    rank = max(1, math.ceil(percent / 100 * len(values)))
    return round(values[rank - 1], 1)


# ------------------------------------------------------------------ helpers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dealcoach_command() -> list[str]:
    """The ``dealcoach`` command of this installation (the script next to the Python)."""
    script = Path(sys.executable).parent / "dealcoach"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main())"]


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])[:300]
    return str(body)[:300]


def _money(amount: float | None, currency: str | None) -> str:
    if amount is None:
        return "no amount"
    return f"{amount:,.0f} {currency or 'USD'}"


def _n(count: int, noun: str, plural: str | None = None) -> str:
    """``1 note``, ``2 notes``."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def _seconds(value: float) -> str:
    return "< 0.1 s" if value < 0.1 else f"{value:.1f} s"


def _bands_line(bands: Mapping[str, int], closed: int) -> str:
    parts = [f"{bands.get(band, 0)} {label}" for band, label in _BAND_LABEL.items()]
    open_deals = sum(bands.values())
    return f"{open_deals} open ({', '.join(parts)}), {closed} closed"


class _Api:
    """The service's admin API with one key (no proxies: everything is local)."""

    def __init__(self, base_url: str, key: str) -> None:
        self.base_url = base_url
        self.client = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=15.0,
            trust_env=False,
        )

    def call(self, method: str, path: str, *, expect: int = 200, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise DemoError(f"{method} {path}: the service did not answer ({exc})") from None
        if response.status_code != expect:
            raise DemoError(
                f"{method} {path} answered {response.status_code}: {_problem(response)}"
            )
        return response.json() if response.content else None

    def all_items(self, path: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every item of a paged list route."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            query = {**params, "limit": "200", **({"cursor": cursor} if cursor else {})}
            page = self.call("GET", path, params=query)
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    def close(self) -> None:
        self.client.close()


class _Crm:
    """The emulator seen from outside: its control API and, as a sales rep, its REST API."""

    def __init__(self, base_url: str, cert_path: Path) -> None:
        self.base_url = base_url
        context = ssl.create_default_context(cafile=str(cert_path))
        self.client = httpx.Client(base_url=base_url, verify=context, timeout=15.0, trust_env=False)
        self._token: str | None = None

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise DemoError(f"the Salesforce emulator did not answer {url} ({exc})") from None

    def control(self, method: str, action: str, payload: Any = None) -> Any:
        response = self._request(method, f"/__emulator/{action}", json=payload)
        if response.status_code not in (200, 201):
            raise DemoError(f"Salesforce emulator: {action} answered {response.status_code}")
        return response.json()

    def query(self, soql: str) -> list[dict[str, Any]]:
        """Every record of a SOQL query, as the sales rep :data:`CRM_READER`."""
        if self._token is None:
            self._token = str(
                self.control("POST", "token", {"username": CRM_READER})["access_token"]
            )
        headers = {"Authorization": f"Bearer {self._token}"}
        response = self._request(
            "GET", f"/services/data/v{API_VERSION}/query", params={"q": soql}, headers=headers
        )
        records: list[dict[str, Any]] = []
        while True:
            if response.status_code != 200:
                raise DemoError(
                    f"Salesforce query answered {response.status_code}: {response.text}"
                )
            body = response.json()
            records.extend(body["records"])
            if body.get("done", True) or not body.get("nextRecordsUrl"):
                return records
            response = self._request("GET", str(body["nextRecordsUrl"]), headers=headers)

    def opportunities(self) -> list[dict[str, Any]]:
        """Every opportunity with its owner, stage, health field and linked notes."""
        return self.query(
            "SELECT Id, Name, StageName, IsClosed, Owner.Name, Dealcoach_Health__c, "
            "(SELECT ContentDocumentId FROM ContentDocumentLinks) FROM Opportunity ORDER BY Id"
        )

    def coaching_notes(self, opportunities: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """Opportunity id -> the number of dealcoach notes linked to it (marker in the title)."""
        return {key: len(titles) for key, titles in self.note_titles(opportunities).items()}

    def note_titles(self, opportunities: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
        """Opportunity id -> the titles of the dealcoach notes linked to it."""
        links: dict[str, str] = {}
        for opportunity in opportunities:
            related = opportunity.get("ContentDocumentLinks") or {}
            for link in related.get("records", []):
                note_id = str(link["ContentDocumentId"])
                if not _RECORD_ID.fullmatch(note_id):
                    raise DemoError(f"Salesforce returned a malformed record id {note_id!r}")
                links[note_id] = str(opportunity["Id"])
        titles: dict[str, list[str]] = {str(o["Id"]): [] for o in opportunities}
        ids = sorted(links)
        for start in range(0, len(ids), 200):
            chunk = ", ".join(f"'{note_id}'" for note_id in ids[start : start + 200])
            soql = f"SELECT Id, Title FROM ContentNote WHERE Id IN ({chunk})"  # noqa: S608 - ids checked
            for note in self.query(soql):
                title = str(note.get("Title") or "")
                if _MARKER_PREFIX in title:
                    titles[links[str(note["Id"])]].append(title)
        return titles

    def notes_on(self, opportunity_id: str) -> int:
        found = [o for o in self.opportunities() if o["Id"] == opportunity_id]
        return self.coaching_notes(found).get(opportunity_id, 0)

    def close(self) -> None:
        self.client.close()


class _HubSpotCrm:
    """The HubSpot emulator seen from outside: its control API (deals, notes, webhooks)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.client = httpx.Client(base_url=base_url, timeout=15.0, trust_env=False)

    def control(self, method: str, action: str, payload: Any = None, params: Any = None) -> Any:
        try:
            response = self.client.request(
                method, f"/__emulator/{action}", json=payload, params=params
            )
        except httpx.HTTPError as exc:
            raise DemoError(f"the HubSpot emulator did not answer {action} ({exc})") from None
        if response.status_code != 200:
            raise DemoError(f"HubSpot emulator: {action} answered {response.status_code}")
        return response.json()

    def deal(self, deal_id: str) -> dict[str, Any]:
        return dict(self.control("GET", f"deals/{deal_id}")["properties"])

    def coaching_notes(self, deal_id: str | None = None) -> dict[str, list[str]]:
        """Deal id -> the markers of the dealcoach notes on it (all deals, or one)."""
        params = {"deal": deal_id} if deal_id else None
        found: dict[str, list[str]] = {}
        for note in self.control("GET", "notes", params=params)["results"]:
            markers = _HUBSPOT_MARKER.findall(str(note.get("hs_note_body") or ""))
            if not markers:
                continue
            for linked in note["deal_ids"]:
                if deal_id is None or linked == deal_id:
                    found.setdefault(str(linked), []).append(markers[-1])
        return found

    def notes_on(self, deal_id: str) -> int:
        return len(self.coaching_notes(deal_id).get(deal_id, []))

    def close(self) -> None:
        self.client.close()


# ------------------------------------------------------------------ the demo


class Demo:
    """One demo run: ``with Demo(options, echo) as demo: report = demo.run()``.

    Leaving the block stops the service and the emulator and removes a temporary data
    directory, whatever happened; :meth:`run` raises :class:`DemoError` on a failure.
    """

    def __init__(self, options: DemoOptions | None = None, echo: Echo = print) -> None:
        self.options = options or DemoOptions()
        self.echo = echo
        self.report = DemoReport()
        self.emulator: SalesforceEmulator | None = None
        self.hubspot_emulator: HubSpotEmulator | None = None
        self.hub: _HubSpotCrm | None = None
        self.service: subprocess.Popen[bytes] | None = None
        self.api: _Api | None = None
        self.crm: _Crm | None = None
        self.api_key = ""
        self._own_dir = self.options.data_dir is None
        self.data_dir = Path()
        self._log: Any = None
        self._env: dict[str, str] = {}
        self._started = 0.0

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> Demo:
        self._started = time.monotonic()
        if self.options.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="dealcoach-demo-"))
        else:
            self.data_dir = self.options.data_dir.resolve()
            if self.data_dir.exists() and any(self.data_dir.iterdir()):
                raise DemoError(f"--data-dir {self.data_dir} is not empty: give a new directory")
            self.data_dir.mkdir(parents=True, exist_ok=True)
        self.report.data_dir = self.data_dir
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the service (SIGTERM, then SIGKILL after 30 s) and the emulator; remove a
        temporary data directory. Safe to call twice."""
        for client in (self.api, self.crm, self.hub):
            if client is not None:
                client.close()
        self.api = self.crm = self.hub = None
        service, self.service = self.service, None
        try:
            if service is not None and service.poll() is None:
                service.send_signal(signal.SIGTERM)
                try:
                    service.wait(30)
                except subprocess.TimeoutExpired:
                    service.kill()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        service.wait(5)
        finally:
            # Whatever happened to the service, the emulator and the files go too.
            emulator, self.emulator = self.emulator, None
            if emulator is not None:
                emulator.stop()  # saves its state into the data directory
            hubspot, self.hubspot_emulator = self.hubspot_emulator, None
            if hubspot is not None:
                hubspot.stop()  # saves its portal into the data directory
            if self._log is not None:
                self._log.close()
                self._log = None
            if self._own_dir and self.data_dir != Path() and self.data_dir.exists():
                shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def service_log(self) -> Path:
        return self.data_dir / "service.log"

    def log_tail(self, lines: int = 15) -> list[str]:
        """The last lines of the service's log, successful requests left out (for a
        failure message)."""
        try:
            text = self.service_log.read_text("utf-8", errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if not _SUCCESS.search(line)][-lines:]

    @property
    def elapsed(self) -> float:
        """Seconds since the demo started."""
        return time.monotonic() - self._started

    def _deadline(self) -> float:
        return time.monotonic() + self.options.timeout

    # ------------------------------------------------------------ output

    def say(self, text: str, indent: int = 6, hang: int = 2) -> None:
        """Print ``text`` wrapped to :data:`WIDTH` columns, continuation lines indented
        ``hang`` more."""
        self.echo(
            textwrap.fill(
                " ".join(text.split()),
                WIDTH,
                initial_indent=" " * indent,
                subsequent_indent=" " * (indent + hang),
                break_long_words=False,
                break_on_hyphens=False,
            )
        )

    def step(self, number: int, title: str) -> None:
        self.echo("")
        self.echo(f"[{number}/{STEPS}] {title}")

    # ------------------------------------------------------------ the steps

    def run(self) -> DemoReport:
        """Every step in turn; the report of what was printed."""
        self.say(
            "dealcoach demo: the main job end to end, set-up included, on the embedded "
            "default, against both CRM sandboxes: the Salesforce emulator and the HubSpot "
            "emulator. Everything runs on 127.0.0.1, needs no network, and stops at the end.",
            indent=0,
            hang=0,
        )
        self.start_salesforce()
        self.start_hubspot()
        self.start_service()
        self.connect()
        self.connect_hubspot()
        self.sync()
        self.sync_hubspot()
        self.stage_change()
        self.hubspot_stage_change()
        self.more_stage_changes()
        self.tally()
        self.report.total_seconds = self.elapsed
        return self.report

    def start_salesforce(self) -> None:
        self.step(1, "The Salesforce emulator")
        emulator = SalesforceEmulator(self.data_dir / "salesforce", seed=self.options.seed)
        self.emulator = emulator
        try:
            emulator.seed(self.options.opportunities)
            base = emulator.start()
        except (OSError, ValueError) as exc:
            raise DemoError(f"the Salesforce emulator did not start: {exc}") from None
        assert emulator.cert_path is not None
        self.crm = _Crm(base, emulator.cert_path)
        state = self.crm.control("GET", "state")
        report = self.report
        report.emulator_url, report.org_id = base, str(state["org_id"])
        report.opportunities = int(state["records"]["Opportunity"])
        self.say(f"{base}, org {report.org_id}, TLS with its own CA ({emulator.cert_path})")
        self.say(
            f"{_n(report.opportunities, 'opportunity', 'opportunities')} of "
            f"{len(emulator.owner_ids)} sales reps, "
            "with stage history, contact roles and activities (seed "
            f"{self.options.seed}: the same org every time)"
        )

    def _dealcoach(self, *args: str) -> str:
        """Run a ``dealcoach`` command with the demo's settings; its standard output."""
        try:
            done = subprocess.run(  # noqa: S603 - our own command line
                [*_dealcoach_command(), *args],
                env=self._env,
                cwd=self.data_dir,
                capture_output=True,
                text=True,
                timeout=self.options.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DemoError(f"dealcoach {' '.join(args)}: {exc}") from None
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise DemoError(
                f"dealcoach {' '.join(args)} exited with {done.returncode}: "
                + (detail[-1] if detail else "no output")
            )
        return done.stdout

    def start_service(self) -> None:
        emulator = self.emulator
        assert emulator is not None and emulator.cert_path is not None
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        self.report.service_url = url
        # Only the demo's settings: none of the caller's DEALCOACH_* variables (a
        # PostgreSQL URL, a Redis queue...) and no .env file (the commands run in the
        # data directory). The embedded default: SQLite files in the data directory.
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEALCOACH_")}
        local = "127.0.0.1,localhost"
        env.update(
            {
                "DEALCOACH_DATA_DIR": str(self.data_dir),
                "DEALCOACH_DATABASE_URL": f"sqlite:///{self.data_dir / 'dealcoach.db'}",
                "DEALCOACH_QUEUE_URL": f"sqlite:///{self.data_dir / 'queue.db'}",
                "DEALCOACH_DEV_MODE": "true",
                "DEALCOACH_PUBLIC_URL": url,
                "DEALCOACH_CRM_CA_BUNDLE": str(emulator.cert_path),
                "DEALCOACH_SALESFORCE_LOGIN_URL": emulator.base_url,
                "DEALCOACH_SALESFORCE_CLIENT_ID": emulator.CLIENT_ID,
                "DEALCOACH_SALESFORCE_CLIENT_SECRET": emulator.CLIENT_SECRET,
                "DEALCOACH_HUBSPOT_CLIENT_ID": HubSpotEmulator.CLIENT_ID,
                "DEALCOACH_HUBSPOT_CLIENT_SECRET": HubSpotEmulator.CLIENT_SECRET,
                "DEALCOACH_HUBSPOT_OAUTH_URL": self._hubspot_url(),
                # A proxy of the caller's must not see the local calls.
                "NO_PROXY": ",".join(filter(None, [local, os.environ.get("NO_PROXY")])),
                "no_proxy": ",".join(filter(None, [local, os.environ.get("no_proxy")])),
            }
        )
        self._env = env
        self.step(3, "The service on the embedded default, set-up included")
        self.say("$ dealcoach db upgrade")
        self.say(self._dealcoach("db", "upgrade"), indent=8)
        self._log = self.service_log.open("ab")
        command = [*_dealcoach_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
        # Its own session: Ctrl-C in the terminal reaches the demo only, which then stops
        # the service with SIGTERM (graceful) in its cleanup.
        self.service = subprocess.Popen(  # noqa: S603 - our own command line
            command,
            env=env,
            cwd=self.data_dir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = self._deadline()
        with httpx.Client(timeout=2.0, trust_env=False) as probe:
            while True:
                if self.service.poll() is not None:
                    raise DemoError(f"dealcoach serve exited with {self.service.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if probe.get(f"{url}/readyz").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise DemoError(f"dealcoach serve did not answer /readyz at {url}")
                time.sleep(0.2)
        self.say(f"$ dealcoach serve --port {port}")
        self.say(
            f"ready at {url} (pid {self.service.pid}): the SQLite database and task queue in "
            f"{self.data_dir}, worker threads inside serve; development mode, trusting the "
            "emulator's CA (DEALCOACH_CRM_CA_BUNDLE), with the emulator as Salesforce login "
            "URL and OAuth app",
            indent=8,
        )

    def connect(self) -> None:
        emulator = self.emulator
        assert emulator is not None
        self.step(4, "Both CRMs connected through the admin API")
        self.say("$ dealcoach apikey create --name demo --scope admin")
        output = self._dealcoach("apikey", "create", "--name", "demo", "--scope", "admin")
        self.api_key = output.strip().splitlines()[-1]
        self.say(f"admin key {self.api_key[:12]}... (shown in full with --keep-running)", 8)
        self.api = _Api(self.report.service_url, self.api_key)
        body = {
            "provider": "salesforce",
            "name": "Acme (Salesforce emulator)",
            "external_account_id": self.report.org_id,
            "instance_url": emulator.base_url,
            "credentials": {
                "auth": "oauth",
                "access_token": emulator.issue_token(),
                "refresh_token": emulator.issue_refresh_token(),
                "instance_url": emulator.base_url,
            },
            "webhook_secret": secrets.token_urlsafe(24),
            "settings": {"playbook": "meddpicc", "writeback_targets": ["note", "summary_fields"]},
        }
        connection = self.api.call("POST", "/api/v1/connections", expect=201, json=body)
        self.report.connection_id = str(connection["id"])
        self.say(
            f"POST /api/v1/connections: connection {connection['id']}, {connection['status']}; "
            "OAuth tokens from the emulator's connected app, the org id as "
            "external_account_id; write-back targets note and summary_fields"
        )
        tested = self.api.call("POST", f"/api/v1/connections/{connection['id']}/test")
        if not tested.get("ok"):
            raise DemoError(f"the connection test failed: {tested.get('detail')}")
        self.say(
            f"POST /api/v1/connections/{{id}}/test: ok, {tested['stages']} stages read "
            "from Salesforce"
        )

    def _writebacks(self, connection_id: str | None = None) -> list[dict[str, Any]]:
        assert self.api is not None
        return self.api.all_items(
            "/api/v1/writebacks", {"connection_id": connection_id or self.report.connection_id}
        )

    def _wait_for_sync(
        self, connection_id: str | None = None, expected: int | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Wait until every opportunity of the org has a review and every write-back is
        written (a sync commits page by page, so ``last_synced_at`` alone does not say it
        is over); the deals and the write-backs."""
        api = self.api
        assert api is not None
        report = self.report
        connection_id = connection_id or report.connection_id
        expected = report.opportunities if expected is None else expected
        connection_path = f"/api/v1/connections/{connection_id}"
        deadline = self._deadline()
        while True:
            connection = api.call("GET", connection_path)
            if connection["status"] != "active":
                raise DemoError(
                    f"the connection is {connection['status']}: {connection.get('last_error')}"
                )
            deals = api.all_items("/api/v1/deals", {"connection_id": connection_id})
            reviewed = sum(1 for d in deals if d["latest_review"] is not None)
            if reviewed >= expected:
                writebacks = self._writebacks(connection_id)
                states = Counter(str(w["state"]) for w in writebacks)
                if states["failed"] or states["dead"]:
                    failed = [w for w in writebacks if w["state"] in ("failed", "dead")]
                    raise DemoError(
                        f"{len(failed)} write-backs failed, e.g.: {failed[0].get('last_error')}"
                    )
                if set(states) <= {"written", "superseded"}:  # nothing left to send
                    return deals, writebacks
            if time.monotonic() > deadline:
                error = connection["last_error"]
                raise DemoError(
                    f"after {self.options.timeout:.0f} s, {reviewed} of {expected} "
                    "deals are reviewed and not every write-back is written"
                    + (f" (the connection's last error: {error})" if error else "")
                )
            time.sleep(_POLL)

    def sync(self) -> None:
        api, crm, emulator = self.api, self.crm, self.emulator
        assert api is not None and crm is not None and emulator is not None
        report = self.report
        self.step(5, "First syncs: every deal reviewed, the coaching written to both CRMs")
        emulator.reset_calls()
        started = time.monotonic()
        api.call("POST", f"/api/v1/connections/{report.connection_id}/sync", expect=202)
        deals, writebacks = self._wait_for_sync()
        report.sync_seconds = time.monotonic() - started
        calls = emulator.call_counts()  # before the demo's own queries below
        report.sync_api_calls = calls.get("api", 0)
        written = Counter(str(w["target"]) for w in writebacks if w["state"] == "written")
        report.notes_written = written["note"]
        report.summary_fields_written = written["summary_fields"]
        self.say(
            f"POST /api/v1/connections/{{id}}/sync: every opportunity reviewed and written back "
            f"in {report.sync_seconds:.1f} s: "
            f"{_n(report.notes_written, 'note')} and "
            f"{_n(report.summary_fields_written, 'summary-field update')} written; "
            f"{_n(report.sync_api_calls, 'Salesforce API call')} in all (the org read in "
            "one query with its history and contact roles, notes and summary fields written "
            "in batches of up to 200 records a call)"
        )

        reviewed = [d for d in deals if d["latest_review"] is not None]
        report.deals_reviewed = len(reviewed)
        report.closed = sum(1 for d in reviewed if d["is_closed"])
        report.bands = dict(
            Counter(
                str(d["latest_review"]["health"]["band"]) for d in reviewed if not d["is_closed"]
            )
        )
        self.say(
            f"GET /api/v1/deals: {_n(report.deals_reviewed, 'deal')} reviewed: "
            f"{_bands_line(report.bands, report.closed)}"
        )

        opportunities = crm.opportunities()
        notes = crm.coaching_notes(opportunities)
        report.notes_in_crm = sum(notes.values())
        report.opportunities_with_notes = sum(1 for count in notes.values() if count)
        report.health_fields_in_crm = sum(
            1 for o in opportunities if o.get("Dealcoach_Health__c") is not None
        )
        total = _n(len(opportunities), "opportunity", "opportunities")
        self.say(
            f"In Salesforce (SOQL as the sales rep {CRM_READER}): "
            f"{_n(report.notes_in_crm, 'coaching note')} on "
            f"{report.opportunities_with_notes} of the {total}, "
            f"Dealcoach_Health__c filled on {report.health_fields_in_crm}: "
            "one note on each open deal with a question to ask, none on closed deals"
        )
        if report.notes_in_crm != report.notes_written:
            raise DemoError(
                f"the service recorded {report.notes_written} notes written, but Salesforce "
                f"holds {report.notes_in_crm}"
            )
        self._agenda()

    def _agenda(self) -> None:
        api = self.api
        assert api is not None
        report = self.report
        connection_path = f"/api/v1/connections/{report.connection_id}"
        agenda = api.call("GET", "/api/v1/agenda", params={"connection_id": report.connection_id})
        figures = agenda["integrity"]
        self.say(
            f"GET /api/v1/agenda: the pipeline review of this quarter has "
            f"{_n(len(agenda['items']), 'deal')} to discuss (of {figures['open_deals']} open); "
            f"{figures['close_date_passed']} with a close date in the past, "
            f"{figures['next_step_missing']} without a next step, {figures['stale']} stale"
        )
        # The agenda's ranking (risk x amount), one deal per leading signal.
        chosen: list[dict[str, Any]] = []
        leads: set[str] = set()
        for item in agenda["items"]:
            prompts = [p for p in item["prompts"] if p.get("audience") != "rep"]
            lead = str(prompts[0]["signal"]) if prompts else ""
            if prompts and lead not in leads:
                leads.add(lead)
                chosen.append(item)
            if len(chosen) == 3:
                break
        self.say("Its first deals, with the first questions the note asks the manager:")
        for rank, item in enumerate(chosen, start=1):
            deal = api.call("GET", f"{connection_path}/deals/{item['deal_id']}")
            snapshot = deal.get("snapshot") or {}
            risky = RiskyDeal(
                deal_id=str(item["deal_id"]),
                name=str(item["deal_name"]),
                amount=item["amount"],
                currency=snapshot.get("currency"),
                stage=str(item["stage"]),
                band=str(item["health"]["band"]),
                score=int(item["health"]["score"]),
                signals=tuple(str(s) for s in item["signals"]),
                prompts=tuple(
                    (str(p["text"]), str(p["why"]))
                    for p in item["prompts"]
                    if p.get("audience") != "rep"
                )[:2],
            )
            report.risky.append(risky)
            owner = snapshot.get("owner_name") or "no owner"
            self.say(
                f"{rank}. {_BAND_TITLE[risky.band]} {risky.score}/100: {risky.name} "
                f"({_money(risky.amount, risky.currency)}, {risky.stage}, {owner})",
                hang=3,
            )
            for text, why in risky.prompts:
                self.say(f"- {text}", indent=9)
                self.say(f"why: {why}", indent=11)

    def stage_change(self) -> None:
        api, crm = self.api, self.crm
        assert api is not None and crm is not None
        report = self.report
        self.step(6, "Stage changes in both CRMs: their webhooks, a review, a note")
        connection = api.call("GET", f"/api/v1/connections/{report.connection_id}")
        outbound_url = str(connection["webhook_urls"]["outbound_message"])
        crm.control("POST", "outbound", {"url": outbound_url})
        shown = outbound_url.rsplit("/", 1)[0] + "/<token>"
        self.say(
            "The org's Outbound Message on StageName changes now posts to the connection's "
            f"webhook_urls.outbound_message: {shown}"
        )

        opportunities = {str(o["Id"]): o for o in crm.opportunities()}
        order = [stage.api_name for stage in DEFAULT_STAGES if not stage.is_closed]

        def movable(deal_id: str) -> bool:
            found = opportunities.get(deal_id)
            if found is None or found["IsClosed"]:
                return False
            return found["StageName"] in order and len(order) > 1

        # Preferably a deal stalled in its stage (moving it on changes its review), the
        # largest first; else a deal of the agenda, else any open deal. It moves to its
        # next open stage, or back one from the last.
        stalled = api.all_items(
            "/api/v1/deals",
            {"connection_id": report.connection_id, "signal": "stalled_in_stage"},
        )
        stalled.sort(key=lambda d: -(d["amount"] or 0.0))
        candidates = [str(d["deal_id"]) for d in stalled]
        candidates += [d.deal_id for d in report.risky] + sorted(opportunities)
        deal_id = next((d for d in candidates if movable(d)), None)
        if deal_id is None:
            raise DemoError("the org has no open opportunity whose stage could change")
        chosen = opportunities[deal_id]
        old = str(chosen["StageName"])
        at = order.index(old)
        new = order[at + 1] if at + 1 < len(order) else order[at - 1]
        report.webhook_deal_id, report.webhook_deal_name = deal_id, str(chosen["Name"])
        report.webhook_old_stage, report.webhook_new_stage = old, new
        report.webhook_owner = str((chosen.get("Owner") or {}).get("Name") or "its owner")
        report.webhook_notes_before = crm.notes_on(deal_id)
        reviews_path = "/api/v1/reviews"
        query = {"connection_id": report.connection_id, "deal_id": deal_id}
        before = api.all_items(reviews_path, query)
        known = {str(r["id"]) for r in before}
        previous = max(before, key=lambda r: str(r["created_at"])) if before else None
        deliveries = len(crm.control("GET", "state")["deliveries"])

        was = f". Its last review: {previous['summary']}" if previous else ""
        started = time.monotonic()
        crm.control("POST", f"records/Opportunity/{deal_id}", {"fields": {"StageName": new}})
        report.stage_changes += 1
        self.say(
            f'In Salesforce, {report.webhook_owner} moves "{report.webhook_deal_name}" '
            f"from {old} to {new}{was}"
        )
        deadline = self._deadline()
        review: dict[str, Any] | None = None
        while True:
            elapsed = time.monotonic() - started
            if not report.webhook_ack_seconds:
                sent = crm.control("GET", "state")["deliveries"][deliveries:]
                if any(d["acked"] for d in sent):
                    report.webhook_ack_seconds = elapsed
                elif any(d["attempts"] >= 5 for d in sent):
                    raise DemoError("the service did not acknowledge the Outbound Message")
            if review is None:
                for item in api.all_items(reviews_path, query):
                    if str(item["id"]) not in known and item["trigger"] == "webhook":
                        review = item
                        report.webhook_review_id = str(item["id"])
                        report.webhook_review_seconds = elapsed
                if review is not None and not any(
                    p.get("audience") != "rep" for p in review["prompts"]
                ):
                    break  # nothing to ask: the service writes no note
            elif crm.notes_on(deal_id) > report.webhook_notes_before:
                report.webhook_note_seconds = elapsed
                report.stage_change_to_note.append(elapsed)
                break
            if time.monotonic() > deadline:
                if not report.webhook_ack_seconds:
                    missing = "acknowledged"
                else:
                    missing = "reviewed" if review is None else "noted in Salesforce"
                raise DemoError(
                    f"the stage change was not {missing} within {self.options.timeout:.0f} s"
                )
            time.sleep(_POLL)
        report.webhook_notes_after = crm.notes_on(deal_id)
        self.say(
            f"after {_seconds(report.webhook_ack_seconds)}: the service acknowledged the Outbound "
            "Message (stored in its webhook inbox)"
        )
        self.say(
            f"after {_seconds(report.webhook_review_seconds)}: a new review (trigger webhook, id "
            f"{review['id']}): {review['summary']}"
        )
        if report.webhook_note_seconds:
            self.say(
                f"after {_seconds(report.webhook_note_seconds)}: its note is on the opportunity "
                f"in Salesforce, beside the earlier ones "
                f"({_n(report.webhook_notes_after, 'coaching note')} there)"
            )
        else:
            self.say("no note: the new review has no question to ask, so nothing is written")
        self.say(
            "The service waits DEALCOACH_WEBHOOK_COALESCE_SECONDS (5 s by default) before it "
            "reviews, so a burst of edits to one deal makes one review."
        )

    # ------------------------------------------------------------ HubSpot

    def _hubspot_url(self) -> str:
        emulator = self.hubspot_emulator
        return emulator.base_url if emulator is not None else ""

    def start_hubspot(self) -> None:
        self.step(2, "The HubSpot sandbox: the HubSpot emulator")
        emulator = HubSpotEmulator(self.data_dir / "hubspot", seed=self.options.seed)
        self.hubspot_emulator = emulator
        try:
            if not emulator.deal_ids():
                emulator.seed(self.options.hubspot_deals)
            base = emulator.start()
        except (OSError, ValueError) as exc:
            raise DemoError(f"the HubSpot emulator did not start: {exc}") from None
        self.hub = _HubSpotCrm(base)
        state = self.hub.control("GET", "state")
        report = self.report
        report.hubspot_url, report.portal_id = base, str(state["portal_id"])
        report.hubspot_deals = int(state["records"]["deals"])
        self.say(
            f"{base}, portal {report.portal_id}: the hubspot-api-client talks to it over "
            "plain http on 127.0.0.1"
        )
        self.say(
            f"{_n(report.hubspot_deals, 'deal')} in two pipelines (sales and renewals), with "
            "property history, labelled contacts and activity dates (the same portal every "
            "time)"
        )

    def connect_hubspot(self) -> None:
        emulator, api = self.hubspot_emulator, self.api
        assert emulator is not None and api is not None
        access, refresh = emulator.issue_tokens()
        body = {
            "provider": "hubspot",
            "name": "Acme (HubSpot sandbox)",
            "external_account_id": self.report.portal_id,
            "instance_url": emulator.base_url,
            "credentials": {"auth": "oauth", "access_token": access, "refresh_token": refresh},
            "settings": {"playbook": "meddpicc", "writeback_targets": ["note", "summary_fields"]},
        }
        connection = api.call("POST", "/api/v1/connections", expect=201, json=body)
        self.report.hubspot_connection_id = str(connection["id"])
        self.say(
            f"POST /api/v1/connections: HubSpot connection {connection['id']}, "
            f"{connection['status']}; OAuth tokens from the emulator's app, the portal id as "
            "external_account_id"
        )
        tested = api.call("POST", f"/api/v1/connections/{connection['id']}/test")
        if not tested.get("ok"):
            raise DemoError(f"the HubSpot connection test failed: {tested.get('detail')}")
        self.say(
            f"POST /api/v1/connections/{{id}}/test: ok, {tested['stages']} stages read "
            "from HubSpot's pipelines"
        )

    def sync_hubspot(self) -> None:
        api, hub, emulator = self.api, self.hub, self.hubspot_emulator
        assert api is not None and hub is not None and emulator is not None
        report = self.report
        connection_id = report.hubspot_connection_id
        emulator.reset_calls()
        started = time.monotonic()
        api.call("POST", f"/api/v1/connections/{connection_id}/sync", expect=202)
        deals, writebacks = self._wait_for_sync(connection_id, report.hubspot_deals)
        report.hubspot_sync_seconds = time.monotonic() - started
        report.hubspot_sync_api_calls = int(hub.control("GET", "calls").get("api", 0))
        written = Counter(str(w["target"]) for w in writebacks if w["state"] == "written")
        report.hubspot_notes_written = written["note"]
        report.hubspot_summaries_written = written["summary_fields"]
        reviewed = [d for d in deals if d["latest_review"] is not None]
        report.hubspot_reviewed = len(reviewed)
        report.hubspot_closed = sum(1 for d in reviewed if d["is_closed"])
        report.hubspot_bands = dict(
            Counter(
                str(d["latest_review"]["health"]["band"]) for d in reviewed if not d["is_closed"]
            )
        )
        self.say(
            f"HubSpot: every deal reviewed and written back in "
            f"{report.hubspot_sync_seconds:.1f} s: {_n(report.hubspot_notes_written, 'note')} "
            f"and {_n(report.hubspot_summaries_written, 'summary-property update')} written; "
            f"{_n(report.hubspot_sync_api_calls, 'HubSpot API call')} in all (searches by "
            "hs_lastmodifieddate, batch reads with history, labelled contacts and notes in "
            "batches)"
        )
        self.say(
            f"{_n(report.hubspot_reviewed, 'deal')} reviewed: "
            f"{_bands_line(report.hubspot_bands, report.hubspot_closed)}"
        )
        notes = hub.coaching_notes()
        in_crm = sum(len(markers) for markers in notes.values())
        self.say(
            f"In HubSpot (the emulator's notes): {_n(in_crm, 'coaching note')} on "
            f"{len(notes)} of the {_n(report.hubspot_deals, 'deal')}, each associated with "
            "its deal (association type 214)"
        )
        if in_crm != report.hubspot_notes_written:
            raise DemoError(
                f"the service recorded {report.hubspot_notes_written} HubSpot notes written, "
                f"but the portal holds {in_crm}"
            )

    def hubspot_stage_change(self) -> None:
        api, hub = self.api, self.hub
        assert api is not None and hub is not None
        report = self.report
        connection_id = report.hubspot_connection_id
        connection = api.call("GET", f"/api/v1/connections/{connection_id}")
        url = str(connection["webhook_urls"]["hubspot"])
        hub.control("POST", "webhooks", {"url": url, "style": "object"})
        self.say(
            "The HubSpot app's webhook subscription (deal stage changes) now posts to the "
            f"connection's webhook_urls.hubspot: {url}, signed with the app's client secret "
            "(X-HubSpot-Signature-v3)"
        )
        pipeline = next(p for p in DEFAULT_PIPELINES if p.id == "default")
        order = [stage.id for stage in pipeline.stages if not stage.is_closed]
        labels = {stage.id: stage.label for stage in pipeline.stages}
        # The largest open deal past the first stage moves back one stage (a regression
        # the new review asks about), else any open deal moves on.
        everyone = api.all_items("/api/v1/deals", {"connection_id": connection_id})
        everyone.sort(key=lambda d: (-(d["amount"] or 0.0), str(d["deal_id"])))
        chosen: dict[str, Any] | None = None
        deal_id = ""
        for later in (True, False):
            for item in everyone:
                properties = hub.deal(str(item["deal_id"]))
                stage = properties.get("dealstage")
                if (
                    properties.get("pipeline") == "default"
                    and properties.get("hs_is_closed") != "true"
                    and stage in order
                    and (order.index(str(stage)) > 0 or not later)
                ):
                    chosen, deal_id = properties, str(item["deal_id"])
                    break
            if chosen is not None:
                break
        if chosen is None:
            raise DemoError("the portal has no open deal whose stage could change")
        old = str(chosen["dealstage"])
        at = order.index(old)
        new = order[at - 1] if at > 0 else order[at + 1]
        report.hubspot_deal_id, report.hubspot_deal_name = deal_id, str(chosen["dealname"])
        report.hubspot_old_stage, report.hubspot_new_stage = labels[old], labels[new]
        notes_before = hub.notes_on(deal_id)
        query = {"connection_id": connection_id, "deal_id": deal_id}
        known = {str(r["id"]) for r in api.all_items("/api/v1/reviews", query)}
        deliveries = len(hub.control("GET", "deliveries")["results"])
        started = time.monotonic()
        hub.control("POST", f"deals/{deal_id}/stage", {"stage": new})
        report.stage_changes += 1
        self.say(
            f'In HubSpot, its owner moves "{report.hubspot_deal_name}" from {labels[old]} to '
            f"{labels[new]}"
        )
        deadline = self._deadline()
        review: dict[str, Any] | None = None
        while True:
            elapsed = time.monotonic() - started
            if not report.hubspot_webhook_seconds:
                sent = hub.control("GET", "deliveries")["results"][deliveries:]
                if any(d["delivered"] for d in sent):
                    report.hubspot_webhook_seconds = elapsed
                elif any(not d["delivered"] for d in sent):
                    raise DemoError("the service did not accept the HubSpot webhook")
            if review is None:
                for item in api.all_items("/api/v1/reviews", query):
                    if str(item["id"]) not in known and item["trigger"] == "webhook":
                        review = item
                        report.hubspot_review_seconds = elapsed
                if review is not None and not any(
                    p.get("audience") != "rep" for p in review["prompts"]
                ):
                    break  # nothing to ask: the service writes no note
            elif hub.notes_on(deal_id) > notes_before:
                report.hubspot_note_seconds = elapsed
                report.stage_change_to_note.append(elapsed)
                break
            if time.monotonic() > deadline:
                if not report.hubspot_webhook_seconds:
                    missing = "delivered"
                else:
                    missing = "reviewed" if review is None else "noted in HubSpot"
                raise DemoError(
                    f"the HubSpot stage change was not {missing} within "
                    f"{self.options.timeout:.0f} s"
                )
            time.sleep(_POLL)
        assert review is not None
        self.say(
            f"after {_seconds(report.hubspot_webhook_seconds)}: the service accepted the "
            "signed webhook (200, stored in its webhook inbox)"
        )
        self.say(
            f"after {_seconds(report.hubspot_review_seconds)}: a new review (trigger webhook, "
            f"id {review['id']}): {review['summary']}"
        )
        if report.hubspot_note_seconds:
            self.say(
                f"after {_seconds(report.hubspot_note_seconds)}: its note is on the deal in "
                f"HubSpot ({_n(hub.notes_on(deal_id), 'coaching note')} there)"
            )
        else:
            self.say("no note: the new review has no question to ask, so nothing is written")

    def more_stage_changes(self) -> None:
        """The other stage changes of ``--stage-changes``, made at once in both CRMs: open
        deals past their first stage move back one (a regression, which the new review
        asks about); each is timed from its move to its note in the CRM."""
        extra = self.options.stage_changes - 1
        api, crm, hub = self.api, self.crm, self.hub
        if extra <= 0:
            return
        assert api is not None and crm is not None and hub is not None
        report = self.report
        salesforce_order = [stage.api_name for stage in DEFAULT_STAGES if not stage.is_closed]
        hubspot_pipeline = next(p for p in DEFAULT_PIPELINES if p.id == "default")
        hubspot_order = [stage.id for stage in hubspot_pipeline.stages if not stage.is_closed]
        moves: list[tuple[str, str, str, str]] = []  # (crm, connection id, deal id, new stage)
        opportunities = sorted(crm.opportunities(), key=lambda o: str(o["Id"]))
        for opportunity in opportunities:
            stage = str(opportunity["StageName"])
            deal_id = str(opportunity["Id"])
            if len([m for m in moves if m[0] == "salesforce"]) == extra:
                break
            if (
                not opportunity["IsClosed"]
                and stage in salesforce_order[1:]
                and deal_id != report.webhook_deal_id
            ):
                new = salesforce_order[salesforce_order.index(stage) - 1]
                moves.append(("salesforce", report.connection_id, deal_id, new))
        properties = "dealstage,pipeline,hs_is_closed"
        deals = hub.control("GET", "deals", params={"properties": properties})["results"]
        for deal in sorted(deals, key=lambda d: int(d["id"])):
            values = deal["properties"]
            if len([m for m in moves if m[0] == "hubspot"]) == extra:
                break
            if (
                values.get("pipeline") == "default"
                and values.get("hs_is_closed") != "true"
                and values.get("dealstage") in hubspot_order[1:]
                and deal["id"] != report.hubspot_deal_id
            ):
                new = hubspot_order[hubspot_order.index(str(values["dealstage"])) - 1]
                moves.append(("hubspot", report.hubspot_connection_id, str(deal["id"]), new))
        if not moves:
            return

        def notes_on(kind: str, deal_id: str) -> int:
            return crm.notes_on(deal_id) if kind == "salesforce" else hub.notes_on(deal_id)

        def reviews_of(connection_id: str, deal_id: str) -> list[dict[str, Any]]:
            query = {"connection_id": connection_id, "deal_id": deal_id}
            return api.all_items("/api/v1/reviews", query)

        before = {m[2]: notes_on(m[0], m[2]) for m in moves}
        known = {m[2]: {str(r["id"]) for r in reviews_of(m[1], m[2])} for m in moves}
        moved_at: dict[str, float] = {}
        for kind, _, deal_id, new in moves:
            if kind == "salesforce":
                path = f"records/Opportunity/{deal_id}"
                crm.control("POST", path, {"fields": {"StageName": new}})
            else:
                hub.control("POST", f"deals/{deal_id}/stage", {"stage": new})
            moved_at[deal_id] = time.monotonic()
            report.stage_changes += 1
        pending = {m[2]: m for m in moves}
        reviewed: set[str] = set()
        timings: list[float] = []
        deadline = self._deadline()
        while pending:
            for deal_id, (kind, connection_id, _, _) in list(pending.items()):
                if deal_id not in reviewed:
                    fresh = [
                        r
                        for r in reviews_of(connection_id, deal_id)
                        if str(r["id"]) not in known[deal_id] and r["trigger"] == "webhook"
                    ]
                    if not fresh:
                        continue
                    reviewed.add(deal_id)
                    if not any(p.get("audience") != "rep" for p in fresh[-1]["prompts"]):
                        del pending[deal_id]  # nothing to ask: no note
                        continue
                if notes_on(kind, deal_id) > before[deal_id]:
                    elapsed = time.monotonic() - moved_at[deal_id]
                    timings.append(elapsed)
                    report.stage_change_to_note.append(elapsed)
                    del pending[deal_id]
            if pending and time.monotonic() > deadline:
                raise DemoError(
                    f"{len(pending)} of {len(moves)} stage changes made at once were not "
                    f"reviewed and noted within {self.options.timeout:.0f} s"
                )
            if pending:
                time.sleep(_POLL)
        shown = ", ".join(f"{seconds:.1f}" for seconds in sorted(timings)) or "none"
        count = Counter(kind for kind, *_ in moves)
        self.say(
            f"{_n(len(moves), 'more stage change')} at once ({count['salesforce']} in "
            f"Salesforce, {count['hubspot']} in HubSpot, deals moved back one stage): every "
            f"one reviewed from its webhook; notes in the CRMs after {shown} s"
        )

    def tally(self) -> None:
        """Read both CRMs back: notes per CRM, duplicates; the service's review count."""
        api, crm, hub = self.api, self.crm, self.hub
        assert api is not None and crm is not None and hub is not None
        report = self.report
        self.step(7, "Read back from both CRMs")
        titles = crm.note_titles(crm.opportunities())
        salesforce_markers = [
            title.rsplit("[", 1)[1].rstrip("]") for found in titles.values() for title in found
        ]
        hubspot_markers = [m for found in hub.coaching_notes().values() for m in found]
        report.notes_in_crm = len(salesforce_markers)
        report.hubspot_notes_in_crm = len(hubspot_markers)
        report.duplicate_notes = sum(
            count - 1 for count in Counter(salesforce_markers + hubspot_markers).values()
        )
        report.reviews = sum(
            len(api.all_items("/api/v1/reviews", {"connection_id": connection}))
            for connection in (report.connection_id, report.hubspot_connection_id)
        )
        # Deals synced: the deals in each CRM (step 5 waited until every one had a review).
        report.opportunities = len(titles)
        report.hubspot_deals = len(
            hub.control("GET", "deals", params={"properties": "dealname"})["results"]
        )
        millis = sorted(seconds * 1000 for seconds in report.stage_change_to_note)
        self.say(
            f"Salesforce: {_n(report.notes_in_crm, 'coaching note')} on "
            f"{_n(report.opportunities, 'opportunity', 'opportunities')}; HubSpot: "
            f"{_n(report.hubspot_notes_in_crm, 'coaching note')} on "
            f"{_n(report.hubspot_deals, 'deal')}; {_n(report.duplicate_notes, 'duplicate')}; "
            f"{_n(report.reviews, 'review')} in the service; {report.stage_changes} stage "
            f"changes, note after p50 {_percentile(millis, 50)} ms, p95 "
            f"{_percentile(millis, 95)} ms"
        )

    def where_next(self, keep_running: bool) -> None:
        report = self.report
        url = report.service_url
        self.echo("")
        self.echo("Where to look next")
        if keep_running:
            emulator = self.emulator
            cert = emulator.cert_path if emulator is not None else None
            deal = report.webhook_deal_id or "<opportunity id>"
            for line in (
                f"OpenAPI page:  {url}/docs  (Authorize with the admin key)",
                f"admin key:     {self.api_key}",
                f'the API:       curl -H "Authorization: Bearer {self.api_key}" \\',
                f"                 '{url}/api/v1/deals?connection_id={report.connection_id}"
                "&band=critical'",
                f"the emulator:  curl --cacert {cert} {report.emulator_url}/__emulator/state",
                f"move a deal:   curl --cacert {cert} -H 'Content-Type: application/json' \\",
                """                 -d '{"fields": {"StageName": "Negotiation/Review"}}' \\""",
                f"                 {report.emulator_url}/__emulator/records/Opportunity/{deal}",
                f"HubSpot:       curl {report.hubspot_url}/__emulator/state",
                f"               curl '{report.hubspot_url}/__emulator/notes?deal="
                f"{report.hubspot_deal_id or '<deal id>'}'",
                f"service log:   {self.service_log}",
            ):
                self.echo("      " + line)
        else:
            self.say(
                "`dealcoach demo --keep-running` leaves the service and the emulators running "
                "until Ctrl-C and prints the admin key: then open the OpenAPI page "
                "(<service>/docs, Authorize with the key) or "
                '`curl -H "Authorization: Bearer <key>" <service>/api/v1/deals`.'
            )
        self.say(
            "docs/demo.md (this demo), docs/api.md (the API), docs/salesforce.md and "
            "docs/hubspot.md (connecting a real org or portal), docs/deploy.md (running it for "
            "real)"
        )


def run_demo(options: DemoOptions, echo: Echo, *, keep_running: bool = False) -> DemoReport:
    """Run the demo; with ``keep_running``, wait for Ctrl-C (or SIGTERM) before stopping.

    Raises:
        DemoError: a step failed (everything started is stopped first); the message ends
            with the last lines of the service's log when there are any.
    """
    demo = Demo(options, echo)
    tail: list[str] = []
    try:
        with demo:
            try:
                report = demo.run()
                demo.where_next(keep_running)
                if keep_running:
                    echo("")
                    echo("Running until Ctrl-C ...")
                    with contextlib.suppress(KeyboardInterrupt):
                        while demo.service is not None and demo.service.poll() is None:
                            time.sleep(0.5)
                        if demo.service is not None:
                            code = demo.service.returncode
                            raise DemoError(f"dealcoach serve exited with {code}")
            except DemoError:
                tail = demo.log_tail()  # before the data directory goes
                raise
            except Exception as exc:  # a bug, or an answer of an unexpected shape
                tail = demo.log_tail()
                where = traceback.extract_tb(exc.__traceback__)[-1]
                raise DemoError(
                    f"unexpected {type(exc).__name__}: {exc} "
                    f"({Path(where.filename).name}:{where.lineno})"
                ) from exc
            echo("")
            echo("Stopping the service (SIGTERM) and both emulators ...")
    except DemoError as exc:
        message = str(exc)
        if tail:
            lines = "\n".join("    " + line for line in tail)
            message += f"\n  last lines of the service log:\n{lines}"
        if options.data_dir is not None and demo.data_dir.is_dir():
            message += f"\n  the data directory is kept: {demo.data_dir}"
        raise DemoError(message) from exc.__cause__
    report.total_seconds = demo.elapsed
    kept = "" if options.data_dir is None else f"; data kept in {demo.data_dir}"
    echo(f"Done in {report.total_seconds:.1f} s{kept}.")
    return report


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the demo like Ctrl-C (cleanup runs) instead of killing it."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
