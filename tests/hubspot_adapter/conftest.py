"""Fixtures: a HubSpot emulator per test and the adapter on it, through the real
hubspot-api-client (plain HTTP on 127.0.0.1, sandbox mode).

:class:`RetryAfterEmulator` adds a ``Retry-After`` header to an injected 429 (the
emulator sends none, as HubSpot for its ten-second policy; the contract suite checks
that a CRM's ``Retry-After`` reaches the error). The adapter's shared limiter is a real
:class:`~app.ratelimit.ConnectionLimiter` on an in-memory queue.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from huey import MemoryHuey

from app.coaching.snapshot import DealSnapshot
from app.config import Settings
from app.ratelimit import ConnectionLimiter
from integrations.base import ConnectionContext
from integrations.hubspot.adapter import PRIMARY_LABEL, HubSpotProvider
from integrations.hubspot.emulator import OWNERS, HubSpotEmulator
from integrations.hubspot.emulator.portal import Source
from tests.contract.suite import CrmNote


class RetryAfterEmulator(HubSpotEmulator):
    """The emulator, plus an optional ``Retry-After`` on its next injected 429."""

    retry_after: str | None = None

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Any:
        response = super().handle(method, target, headers, body)
        if self.retry_after is not None and response.status == 429:
            response.headers["Retry-After"] = self.retry_after
            self.retry_after = None
        return response


_DERIVED = ("_inputs", "_created", "_writes", "_archived")


def all_requests(emulator: HubSpotEmulator) -> int:
    """Every request the emulator received (token, refused and failed ones included)."""
    counts = emulator.call_counts()
    return sum(
        v
        for k, v in counts.items()
        if k not in {"api", "rate_limited", "server_error"} and not k.endswith(_DERIVED)
    )


def api_calls(emulator: HubSpotEmulator) -> int:
    """CRM API calls the emulator answered (not refused)."""
    return emulator.call_counts().get("api", 0)


class EmulatorHandle:
    """:class:`tests.contract.suite.CrmHandle` over a :class:`HubSpotEmulator`: seeding and
    inspection through the emulator's Python API (as a user in the UI), never the adapter."""

    def __init__(self, emulator: RetryAfterEmulator) -> None:
        self.emulator = emulator

    def _owner(self) -> tuple[int, Source]:
        owner_id, user_id = OWNERS[0][0], OWNERS[0][1]
        return owner_id, Source("CRM_UI", f"userId:{user_id}", None, user_id)

    def seed_deal(self, template: DealSnapshot) -> str:
        emulator = self.emulator
        portal = emulator.portal
        owner_id, user = self._owner()
        created = template.created_at
        history = list(template.stage_history)
        first = history[0].old if history and history[0].old is not None else template.stage
        values: dict[str, Any] = {
            "dealname": template.name,
            "pipeline": template.pipeline or "default",
            "dealstage": first.key,
            "amount": None if template.amount is None else str(template.amount),
            "closedate": (template.close_date or created.date()).isoformat(),
            "hs_next_step": template.next_step,
            "description": template.description,
            "hubspot_owner_id": str(owner_id),
            "deal_currency_code": template.currency,
            **template.fields,
        }
        with emulator._lock:
            record = portal.create(
                "deals", {k: v for k, v in values.items() if v}, user, at=created
            )
            last = created
            for change in history:
                if change.new is not None:
                    portal.update(record, {"dealstage": change.new.key}, user, at=change.at)
                    last = change.at
            if record.get("dealstage") != template.stage.key:
                last += timedelta(hours=1)
                portal.update(record, {"dealstage": template.stage.key}, user, at=last)
            for number, contact in enumerate(template.contacts):
                first_name, _, last_name = (contact.name or f"Contact {number}").rpartition(" ")
                person = portal.create(
                    "contacts",
                    {"firstname": first_name or None, "lastname": last_name},
                    user,
                    at=created,
                )
                type_ids = [3] + [portal.add_contact_label(role) for role in contact.roles]
                if contact.is_primary:
                    type_ids.append(portal.add_contact_label(PRIMARY_LABEL.capitalize()))
                portal.associate("deals", record.id, "contacts", person.id, type_ids, at=created)
        return record.id

    def rename_deal(self, deal_id: str, name: str) -> None:
        self.emulator.update_deal(deal_id, {"dealname": name})

    def delete_deal(self, deal_id: str) -> None:
        self.emulator.archive_deal(deal_id)

    def notes_on(self, deal_id: str) -> list[CrmNote]:
        notes = sorted(self.emulator.notes(deal_id), key=lambda n: (n["created_at"], int(n["id"])))
        found = []
        for note in notes:
            body = note["hs_note_body"] or ""
            title = re.search(r"<strong>(.*?)</strong>", body)
            found.append(CrmNote(note["id"], deal_id, title.group(1) if title else "", body))
        return found

    def unknown_deal_id(self) -> str:
        return "987654321012"

    def malformed_deal_id(self) -> str:
        return "12 OR 1=1"

    def calls(self) -> int:
        return all_requests(self.emulator)

    def expire_token(self) -> None:
        self.emulator.expire_tokens()

    def rate_limit_next(self, retry_after: float) -> None:
        self.emulator.retry_after = f"{retry_after:g}"
        self.emulator.inject_rate_limit(1)


@pytest.fixture
def emulator() -> Iterator[RetryAfterEmulator]:
    with RetryAfterEmulator(seed=11, ten_second_limit=100_000) as running:
        yield running


def app_settings_for(emulator: HubSpotEmulator, data_dir: Path) -> Settings:
    """The service's settings as a sandbox deployment whose OAuth app is the emulator's."""
    return Settings(
        sandbox=True,
        data_dir=data_dir,
        hubspot_client_id=emulator.CLIENT_ID,
        hubspot_client_secret=emulator.CLIENT_SECRET,
        hubspot_oauth_url=emulator.base_url,
    )


@pytest.fixture
def app_settings(emulator: RetryAfterEmulator, tmp_path: Path) -> Settings:
    return app_settings_for(emulator, tmp_path)


def oauth_credentials(emulator: HubSpotEmulator) -> dict[str, Any]:
    access, refresh = emulator.issue_tokens()
    return {"auth": "oauth", "access_token": access, "refresh_token": refresh}


@pytest.fixture
def limiter() -> ConnectionLimiter:
    return ConnectionLimiter(MemoryHuey("hubspot-adapter-tests", immediate=True))


ProviderFactory = Callable[..., HubSpotProvider]


@pytest.fixture
def make_provider(
    emulator: RetryAfterEmulator, app_settings: Settings, limiter: ConnectionLimiter
) -> ProviderFactory:
    """``make_provider(credentials=None, settings=None)``: an adapter on the emulator
    (OAuth tokens by default; a generous rate budget unless ``settings`` set one)."""

    def make(
        credentials: Mapping[str, Any] | None = None, settings: Mapping[str, Any] | None = None
    ) -> HubSpotProvider:
        context = ConnectionContext(
            connection_id="conn-hs",
            provider="hubspot",
            external_account_id=str(emulator.portal_id),
            instance_url=emulator.base_url,
            credentials=dict(oauth_credentials(emulator) if credentials is None else credentials),
            settings={"rate_limit_per_10s": 10_000, **(settings or {})},
        )
        return HubSpotProvider(context, settings=app_settings, acquire=limiter.acquire)

    return make
