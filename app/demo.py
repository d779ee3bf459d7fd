"""``dealcoach demo``: the main job end to end, set-up included, on the embedded default.

What runs (everything on 127.0.0.1, no network needed, all stopped at the end):

1. The Salesforce emulator
   (:class:`integrations.salesforce.emulator.SalesforceEmulator`) over TLS with its own
   self-signed CA, seeded with a realistic org (``--opportunities``, deterministic for
   ``--seed``).
2. The service as it ships: ``dealcoach db upgrade``, then ``dealcoach serve`` (a
   separate process: SQLite database and SQLite task queue in the demo's data
   directory, worker threads inside ``serve``) in development mode, trusting the emulator's
   CA (``DEALCOACH_CRM_CA_BUNDLE``) and using it as the Salesforce login URL and OAuth
   app.
3. ``dealcoach apikey create --scope admin``, then ``POST /api/v1/connections``: a
   Salesforce connection to the emulator's org with OAuth tokens the emulator issued,
   writing back notes and summary fields.
4. ``POST /api/v1/connections/{id}/sync``; waits until every deal is reviewed and every
   write-back is written, then prints the pipeline from the API and counts the
   coaching notes on the opportunities from the CRM side (SOQL through the emulator's
   REST API, as a sales rep).
5. Points the org's Outbound Message at the connection's ``webhook_urls.outbound_message``,
   moves one opportunity to its next stage (back one from the last) as its owner would
   in Salesforce, and measures the seconds until the service's new review and its note
   exist.
6. Reviews the bundled HubSpot sample export offline (there is no HubSpot emulator yet),
   prints where to look next, and stops the service (SIGTERM) and the emulator.

:class:`Demo` holds one run (``with Demo(...) as demo: demo.run()``; leaving the block
stops everything); :func:`run_demo` is what the command calls.
"""

from __future__ import annotations

import contextlib
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
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

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
DEFAULT_SEED = 7
#: The bundled samples were written for a review at this moment.
SAMPLES_AS_OF = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"
#: The sales rep whose view of the org the demo reads notes through (a seeded owner).
CRM_READER = "maya.chen@acme-sales.example"
_MARKER_PREFIX = "[dc1-"
_BAND_LABEL = {"healthy": "healthy", "at_risk": "at risk", "critical": "critical"}
_BAND_TITLE = {"healthy": "Healthy", "at_risk": "At risk", "critical": "Critical"}
WIDTH = 100
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
    seed: int = DEFAULT_SEED
    #: Where the databases, the emulator's state and the logs go. None: a temporary
    #: directory, removed at the end; a given directory is kept.
    data_dir: Path | None = None
    #: Seconds each wait (service start, sync, webhook) may take before the demo fails.
    timeout: float = 60.0
    samples_dir: Path = SAMPLES_DIR


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
    #: The offline HubSpot review of the bundled sample.
    hubspot_reviewed: int = 0
    hubspot_bands: dict[str, int] = field(default_factory=dict)
    hubspot_closed: int = 0
    total_seconds: float = 0.0


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
        links: dict[str, str] = {}
        for opportunity in opportunities:
            related = opportunity.get("ContentDocumentLinks") or {}
            for link in related.get("records", []):
                note_id = str(link["ContentDocumentId"])
                if not _RECORD_ID.fullmatch(note_id):
                    raise DemoError(f"Salesforce returned a malformed record id {note_id!r}")
                links[note_id] = str(opportunity["Id"])
        counts = dict.fromkeys((str(o["Id"]) for o in opportunities), 0)
        ids = sorted(links)
        for start in range(0, len(ids), 200):
            chunk = ", ".join(f"'{note_id}'" for note_id in ids[start : start + 200])
            soql = f"SELECT Id, Title FROM ContentNote WHERE Id IN ({chunk})"  # noqa: S608 - ids checked
            for note in self.query(soql):
                if _MARKER_PREFIX in str(note.get("Title") or ""):
                    counts[links[str(note["Id"])]] += 1
        return counts

    def notes_on(self, opportunity_id: str) -> int:
        found = [o for o in self.opportunities() if o["Id"] == opportunity_id]
        return self.coaching_notes(found).get(opportunity_id, 0)

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
        for client in (self.api, self.crm):
            if client is not None:
                client.close()
        self.api = self.crm = None
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
        self.echo(f"[{number}/6] {title}")

    # ------------------------------------------------------------ the steps

    def run(self) -> DemoReport:
        """Every step in turn; the report of what was printed."""
        self.say(
            "dealcoach demo: the main job end to end, set-up included, on the embedded "
            "default, against the Salesforce emulator. There is no "
            "HubSpot emulator yet: step 6 reviews the HubSpot sample export offline. Everything "
            "runs on 127.0.0.1, needs no network, and stops at the end.",
            indent=0,
            hang=0,
        )
        self.start_salesforce()
        self.start_service()
        self.connect()
        self.sync()
        self.stage_change()
        self.hubspot()
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
                # A proxy of the caller's must not see the local calls.
                "NO_PROXY": ",".join(filter(None, [local, os.environ.get("NO_PROXY")])),
                "no_proxy": ",".join(filter(None, [local, os.environ.get("no_proxy")])),
            }
        )
        self._env = env
        self.step(2, "The service on the embedded default, set-up included")
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
        self.step(3, "The org connected through the admin API")
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

    def _writebacks(self) -> list[dict[str, Any]]:
        assert self.api is not None
        return self.api.all_items(
            "/api/v1/writebacks", {"connection_id": self.report.connection_id}
        )

    def _wait_for_sync(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Wait until every opportunity of the org has a review and every write-back is
        written (a sync commits page by page, so ``last_synced_at`` alone does not say it
        is over); the deals and the write-backs."""
        api = self.api
        assert api is not None
        report = self.report
        connection_path = f"/api/v1/connections/{report.connection_id}"
        deadline = self._deadline()
        while True:
            connection = api.call("GET", connection_path)
            if connection["status"] != "active":
                raise DemoError(
                    f"the connection is {connection['status']}: {connection.get('last_error')}"
                )
            deals = api.all_items("/api/v1/deals", {"connection_id": report.connection_id})
            reviewed = sum(1 for d in deals if d["latest_review"] is not None)
            if reviewed >= report.opportunities:
                writebacks = self._writebacks()
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
                    f"after {self.options.timeout:.0f} s, {reviewed} of {report.opportunities} "
                    "opportunities are reviewed and not every write-back is written"
                    + (f" (the connection's last error: {error})" if error else "")
                )
            time.sleep(_POLL)

    def sync(self) -> None:
        api, crm, emulator = self.api, self.crm, self.emulator
        assert api is not None and crm is not None and emulator is not None
        report = self.report
        self.step(4, "First sync: every opportunity reviewed, the coaching written to Salesforce")
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
        self.step(5, "A stage change in Salesforce: its Outbound Message, a review, a note")
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

    def hubspot(self) -> None:
        from app.coaching.playbook import compile_playbook, load_playbook
        from app.reviews.offline import ExportError, review_export

        report = self.report
        samples = self.options.samples_dir
        self.step(6, "HubSpot, offline: the bundled sample export")
        self.say(
            "There is no HubSpot emulator yet (no HubSpot adapter, webhook endpoint or "
            "emulator), so the engine reviews the bundled HubSpot export offline, as "
            "`dealcoach review --provider hubspot --file samples/hubspot_deals.json "
            "--stages samples/hubspot_pipelines.json "
            f"--as-of {SAMPLES_AS_OF:%Y-%m-%dT%H:%M:%SZ}` does:"
        )
        deals, pipelines = samples / "hubspot_deals.json", samples / "hubspot_pipelines.json"
        if not deals.is_file():
            self.say(f"(skipped: {deals} is not here; the samples come with a clone)")
            return
        try:
            result = review_export(
                "hubspot",
                deals,
                compile_playbook(load_playbook("meddpicc")),
                SAMPLES_AS_OF,
                pipelines if pipelines.is_file() else None,
            )
        except ExportError as exc:
            raise DemoError(f"the HubSpot sample could not be reviewed: {exc}") from None
        report.hubspot_reviewed = len(result.reviews)
        report.hubspot_closed = sum(1 for r in result.reviews if not r.is_open)
        report.hubspot_bands = dict(Counter(r.health.band for r in result.reviews if r.is_open))
        self.say(
            f"{_n(report.hubspot_reviewed, 'deal')} reviewed: "
            f"{_bands_line(report.hubspot_bands, report.hubspot_closed)}"
        )
        risky = sorted(
            (r for r in result.reviews if r.is_open and r.prompts),
            key=lambda r: (r.health.score, -(r.amount or 0.0)),
        )
        if risky:
            first = risky[0]
            self.say(
                f"The riskiest: {_BAND_TITLE[first.health.band]} {first.health.score}/100: "
                f"{first.deal_name} ({_money(first.amount, first.currency)}, "
                f"{first.stage_label})"
            )
            self.say(f"- {first.prompts[0].text}", indent=9)
            self.say(f"why: {first.prompts[0].why}", indent=11)

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
                f"service log:   {self.service_log}",
            ):
                self.echo("      " + line)
        else:
            self.say(
                "`dealcoach demo --keep-running` leaves the service and the emulator running "
                "until Ctrl-C and prints the admin key: then open the OpenAPI page "
                "(<service>/docs, Authorize with the key) or "
                '`curl -H "Authorization: Bearer <key>" <service>/api/v1/deals`.'
            )
        self.say(
            "docs/demo.md (this demo), docs/api.md (the API), docs/salesforce.md (connecting "
            "a real org), docs/deploy.md (running it for real)"
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
            echo("Stopping the service (SIGTERM) and the Salesforce emulator ...")
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
