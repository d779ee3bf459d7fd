"""Fixtures: a Salesforce emulator per test and the adapter on it, through the real
simple-salesforce client (TLS with the emulator's self-signed certificate).

:class:`RetryAfterEmulator` adds one thing the emulator does not do: a ``Retry-After``
header on an injected ``REQUEST_LIMIT_EXCEEDED`` (Salesforce never sends one; the
contract suite checks that a CRM's ``Retry-After`` reaches the error). Without it the
adapter falls back to :data:`~integrations.salesforce.adapter.RATE_LIMIT_RETRY_AFTER`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.coaching.snapshot import DealSnapshot
from app.config import Settings
from integrations.base import ConnectionContext
from integrations.salesforce.adapter import SalesforceProvider
from integrations.salesforce.emulator import SalesforceEmulator
from integrations.salesforce.emulator.values import to18
from tests.contract.suite import CrmNote


class RetryAfterEmulator(SalesforceEmulator):
    """The emulator, plus an optional ``Retry-After`` on its rate-limit refusals."""

    retry_after: str | None = None

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Any:
        response = super().handle(method, target, headers, body)
        if (
            self.retry_after is not None
            and response.status == 403
            and b"REQUEST_LIMIT_EXCEEDED" in response.body
        ):
            response.headers["Retry-After"] = self.retry_after
            self.retry_after = None
        return response


def api_calls(emulator: SalesforceEmulator) -> int:
    """Data API calls the emulator answered (what the daily allowance counts)."""
    return emulator.call_counts().get("api", 0)


def all_requests(emulator: SalesforceEmulator) -> int:
    """Every request the emulator received (token, refused and failed ones included)."""
    counts = emulator.call_counts()
    return sum(v for k, v in counts.items() if k not in {"api", "composite_records"})


class EmulatorHandle:
    """:class:`tests.contract.suite.CrmHandle` over a :class:`SalesforceEmulator`: seeding and
    inspection through the emulator's Python API (as a user in the UI), never the adapter."""

    def __init__(self, emulator: RetryAfterEmulator) -> None:
        self.emulator = emulator

    def seed_deal(self, template: DealSnapshot) -> str:
        emulator = self.emulator
        owner = emulator.owner_ids[0]
        created = template.created_at
        account = emulator.create(
            "Account", {"Name": f"{template.name} Inc"}, at=created - timedelta(days=1)
        )
        history = list(template.stage_history)
        first = history[0].old if history and history[0].old is not None else template.stage
        values: dict[str, Any] = {
            "Name": template.name,
            "AccountId": account,
            "StageName": first.key,
            "Amount": template.amount,
            "CloseDate": (template.close_date or created.date()).isoformat(),
            "NextStep": template.next_step,
            "Description": template.description,
            "OwnerId": owner,
        }
        if template.currency and emulator.org.schema["opportunity"].field("CurrencyIsoCode"):
            values["CurrencyIsoCode"] = template.currency
        for key, value in template.fields.items():
            values[key] = value
        deal_id = emulator.create("Opportunity", values, at=created)
        last = created
        for change in history:
            if change.new is not None:
                emulator.update("Opportunity", deal_id, {"StageName": change.new.key}, at=change.at)
                last = change.at
        if emulator.record(deal_id)["StageName"] != template.stage.key:  # type: ignore[index]
            last += timedelta(hours=1)
            emulator.update("Opportunity", deal_id, {"StageName": template.stage.key}, at=last)
        for number, contact in enumerate(template.contacts):
            first_name, _, last_name = (contact.name or f"Contact {number}").rpartition(" ")
            contact_id = emulator.create(
                "Contact",
                {"FirstName": first_name or None, "LastName": last_name, "AccountId": account},
                at=created,
            )
            for index, role in enumerate(contact.roles or (None,)):
                emulator.create(
                    "OpportunityContactRole",
                    {
                        "OpportunityId": deal_id,
                        "ContactId": contact_id,
                        "Role": role,
                        "IsPrimary": contact.is_primary and index == 0,
                    },
                    at=created + timedelta(minutes=1 + number),
                )
        return deal_id

    def rename_deal(self, deal_id: str, name: str) -> None:
        self.emulator.update("Opportunity", deal_id, {"Name": name})

    def delete_deal(self, deal_id: str) -> None:
        self.emulator.delete("Opportunity", deal_id)

    def notes_on(self, deal_id: str) -> list[CrmNote]:
        emulator = self.emulator
        links = [
            link
            for link in emulator.records("ContentDocumentLink")
            if link["LinkedEntityId"][:15] == deal_id[:15]
        ]
        notes: list[tuple[str, str, CrmNote]] = []
        for link in links:
            note = emulator.record(link["ContentDocumentId"])
            if note is None or note.get("IsDeleted"):
                continue
            body = emulator.note_body(note["Id"]) or ""
            notes.append(
                (note["CreatedDate"], note["Id"], CrmNote(note["Id"], deal_id, note["Title"], body))
            )
        return [entry[2] for entry in sorted(notes, key=lambda entry: entry[:2])]

    def unknown_deal_id(self) -> str:
        return to18("006Em99999ZZZZZ")

    def malformed_deal_id(self) -> str:
        return "006' OR Name != '"

    def calls(self) -> int:
        return all_requests(self.emulator)

    def expire_token(self) -> None:
        self.emulator.expire_sessions()

    def rate_limit_next(self, retry_after: float) -> None:
        self.emulator.retry_after = f"{retry_after:g}"
        self.emulator.inject_rate_limit(1)


@pytest.fixture
def emulator() -> Iterator[RetryAfterEmulator]:
    with RetryAfterEmulator(seed=11) as running:
        yield running


def app_settings_for(emulator: SalesforceEmulator, data_dir: Path) -> Settings:
    """The service's settings as a sandbox deployment whose OAuth app is the emulator's."""
    return Settings(
        sandbox=True,
        data_dir=data_dir,
        salesforce_client_id=emulator.CLIENT_ID,
        salesforce_client_secret=emulator.CLIENT_SECRET,
        salesforce_login_url=emulator.base_url,
    )


@pytest.fixture
def app_settings(emulator: RetryAfterEmulator, tmp_path: Path) -> Settings:
    return app_settings_for(emulator, tmp_path)


def oauth_credentials(emulator: SalesforceEmulator) -> dict[str, Any]:
    return {
        "auth": "oauth",
        "access_token": emulator.issue_token(),
        "refresh_token": emulator.issue_refresh_token(),
        "instance_url": emulator.base_url,
    }


ProviderFactory = Callable[..., SalesforceProvider]


@pytest.fixture
def make_provider(emulator: RetryAfterEmulator, app_settings: Settings) -> ProviderFactory:
    """``make_provider(credentials=None, settings=None, **context_changes)``: an adapter on
    the emulator (OAuth tokens by default; ``ca_bundle`` always the emulator's cert)."""

    def make(
        credentials: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        **changes: Any,
    ) -> SalesforceProvider:
        context = ConnectionContext(
            connection_id="conn-sf",
            provider="salesforce",
            external_account_id=emulator.org.org_id,
            instance_url=emulator.base_url,
            credentials=dict(oauth_credentials(emulator) if credentials is None else credentials),
            settings={**(settings or {}), "ca_bundle": str(emulator.cert_path)},
        )
        return SalesforceProvider(replace(context, **changes), settings=app_settings)

    return make
