"""The HubSpot adapter on the emulator beyond the contract: calls per operation, the
summary property, write batches, credentials, errors."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from huey import MemoryHuey

from app.ratelimit import ConnectionLimiter
from integrations.base import (
    AuthError,
    ConnectionContext,
    InvalidRequestError,
    NoteRequest,
    RateLimitedError,
    SummaryUpdate,
)
from integrations.hubspot.adapter import HubSpotProvider
from integrations.hubspot.emulator import METHODOLOGY_PROPERTIES

from .conftest import (
    ProviderFactory,
    RetryAfterEmulator,
    api_calls,
    app_settings_for,
    oauth_credentials,
)


def _note(deal_id: str, number: int) -> NoteRequest:
    marker = f"dc1-{number:032x}"
    return NoteRequest(deal_id, marker, f"Review {number}", f"<p>Ask {number}.</p>", "Ask.")


def test_a_first_sync_makes_the_minimum_calls_without_names(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    deals = emulator.seed(250)
    provider = make_provider(settings={"contact_names": "none"})
    emulator.reset_calls()
    pages = list(provider.iter_changed_deals(None))
    assert sum(len(page.deals) for page in pages) == len(deals)
    counts = emulator.call_counts()
    assert counts.get("deals_batch_read") == math.ceil(250 / 100)
    assert counts.get("associations_batch_read") == math.ceil(250 / 100)
    assert counts.get("deals_search") == math.ceil(250 / 199)
    assert counts.get("contacts_batch_read", 0) == 0
    assert counts.get("properties") == 1 and counts.get("pipelines") == 1
    assert api_calls(emulator) == 2 + math.ceil(250 / 199) + 2 * 3
    assert all(len(page.deals) <= 100 for page in pages)


def test_one_deal_is_three_calls_with_history_labels_and_names(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    [deal_id] = emulator.seed(1)
    provider = make_provider()
    assert "dealstage" in provider.recorded_properties  # the catalogue calls, once
    emulator.reset_calls()
    deal = provider.fetch_deal(deal_id)
    assert deal.id == deal_id and deal.stage_history
    labelled = [c for c in deal.contacts if c.roles]
    assert all(c.name for c in labelled), "labelled contacts are named"
    assert api_calls(emulator) == 2 + (1 if labelled else 0)


def test_notes_go_100_a_call_and_the_association_type_is_read_once(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    deal_ids = emulator.seed(5)
    provider = make_provider()
    emulator.reset_calls()
    results = provider.write_notes([_note(deal_ids[n % 5], n) for n in range(230)])
    assert all(result.ok for result in results)
    counts = emulator.call_counts()
    assert counts.get("notes_batch_create") == 3 and counts.get("association_labels") == 1
    assert len(emulator.notes()) == 230
    notes = emulator.notes(deal_ids[0])
    assert all(note["hs_timestamp"].endswith(".999Z") for note in notes), "stamped as ours"


@pytest.fixture
def bare_emulator() -> Iterator[RetryAfterEmulator]:
    """A portal without the dealcoach summary properties."""
    with RetryAfterEmulator(
        seed=5, ten_second_limit=100_000, custom_properties=METHODOLOGY_PROPERTIES
    ) as running:
        yield running


def test_the_summary_property_is_created_once_then_written_in_batches(
    bare_emulator: RetryAfterEmulator, tmp_path: Path
) -> None:
    emulator = bare_emulator
    deal_ids = emulator.seed(3)
    context = ConnectionContext(
        "c",
        "hubspot",
        str(emulator.portal_id),
        emulator.base_url,
        oauth_credentials(emulator),
        {"rate_limit_per_10s": 10_000},
    )
    limiter = ConnectionLimiter(MemoryHuey("t", immediate=True))
    provider = HubSpotProvider(
        context,
        settings=app_settings_for(emulator, tmp_path),
        acquire=limiter.acquire,
    )
    updates = [
        SummaryUpdate(deal_id, {"dealcoach_summary": f"S{n}", "dealcoach_health": "40"})
        for n, deal_id in enumerate(deal_ids)
    ]
    results = provider.update_summaries([*updates, SummaryUpdate("nope", {"x": "y"})])
    assert [r.ok for r in results] == [True, True, True, False]
    assert isinstance(results[3].error, InvalidRequestError)
    counts = emulator.call_counts()
    assert counts.get("property_create") == 1 and counts.get("deals_batch_update") == 1
    for n, deal_id in enumerate(deal_ids):
        deal = emulator.deal(deal_id) or {}
        assert deal["dealcoach_summary"] == f"S{n}"
        assert "dealcoach_health" not in deal, "a property the portal lacks is skipped"
    provider.update_summaries(updates)
    assert emulator.call_counts().get("property_create") == 1, "created once"


def test_a_private_app_token_refused_is_not_refreshable(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    provider = make_provider(credentials={"access_token": "pat-na1-not-a-token"})
    with pytest.raises(AuthError) as caught:
        provider.list_stages()
    assert not caught.value.refreshable and "pat-" not in str(caught.value)
    with pytest.raises(AuthError):
        provider.refresh_credentials()
    good = make_provider(credentials={"access_token": emulator.private_app_token()})
    assert good.list_stages()
    usage = good.api_usage()
    assert usage is not None and usage.limit > 0, "daily headers (private apps only)"


def test_a_long_rate_limit_is_raised_and_a_short_one_waited(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    provider = make_provider()
    emulator.inject_rate_limit(1)  # no Retry-After: TEN_SECONDLY_ROLLING, 10 s
    with pytest.raises(RateLimitedError) as caught:
        provider.list_stages()
    assert caught.value.retry_after == 10.0
    emulator.retry_after = "0.2"
    emulator.inject_rate_limit(1)
    assert provider.list_stages(), "waited 0.2 s in place and retried"
    assert emulator.call_counts().get("rate_limited") == 2


def test_a_note_create_answered_5xx_is_not_replayed_in_place(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    [deal_id] = emulator.seed(1)
    provider = make_provider()
    assert provider.write_notes([_note(deal_id, 0)])[0].ok  # the association type, read
    emulator.reset_calls()
    emulator.inject_errors(1, 503)
    with pytest.raises(Exception) as caught:
        provider.write_notes([_note(deal_id, 1)])
    assert type(caught.value).__name__ == "RetriableError"
    counts = emulator.call_counts()
    assert counts.get("notes_batch_create") == 1, "the service looks the marker up first"
    assert len(emulator.notes(deal_id)) == 1


def test_a_5xx_on_a_read_is_retried_in_place(
    emulator: RetryAfterEmulator, make_provider: ProviderFactory
) -> None:
    provider = make_provider()
    emulator.inject_errors(2, 502)
    assert provider.list_stages()
    assert emulator.call_counts().get("server_error") == 2


class WholeBatchRefusal(RetryAfterEmulator):
    """A note batch create naming ``refused`` answers 400 for the whole batch (as HubSpot
    may for one invalid association)."""

    refused = ""

    def handle(self, method: str, target: str, headers: Any, body: bytes) -> Any:
        if (
            method == "POST"
            and target.startswith("/crm/v3/objects/notes/batch/create")
            and f'"id": "{self.refused}"' in body.decode()
        ):
            self._count("refused_batches")
            return super().handle("POST", "/crm/v3/objects/notes/batch/create", headers, b"{}")
        return super().handle(method, target, headers, body)


def test_a_batch_refused_as_a_whole_is_split_until_the_bad_note_stands_alone(
    tmp_path: Path,
) -> None:
    with WholeBatchRefusal(seed=2, ten_second_limit=100_000) as emulator:
        deal_ids = emulator.seed(8)
        emulator.refused = deal_ids[5]
        limiter = ConnectionLimiter(MemoryHuey("split", immediate=True))
        context = ConnectionContext(
            "c",
            "hubspot",
            str(emulator.portal_id),
            emulator.base_url,
            oauth_credentials(emulator),
            {"rate_limit_per_10s": 10_000},
        )
        provider = HubSpotProvider(
            context, settings=app_settings_for(emulator, tmp_path), acquire=limiter.acquire
        )
        results = provider.write_notes([_note(deal_id, n) for n, deal_id in enumerate(deal_ids)])
        assert [r.ok for r in results] == [n != 5 for n in range(8)]
        assert isinstance(results[5].error, InvalidRequestError)
        assert len(emulator.notes()) == 7
        assert emulator.call_counts().get("refused_batches") == 4, "8 -> 4 -> 2 -> 1"
