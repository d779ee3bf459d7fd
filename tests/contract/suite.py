"""The provider contract: what every :class:`CrmProvider` must do, run on each of them.

A provider's test module subclasses :class:`ProviderContract` in a class named
``Test...`` and supplies two fixtures:

* ``crm``: a :class:`CrmHandle` on a fresh, empty CRM account (the fake's file,
  an emulator's state), used to seed deals and look at what was written;
* ``provider``: the :class:`CrmProvider` under test, connected to that account
  with ``settings`` from the suite's ``provider_settings`` fixture (a small
  page size, so paging is exercised).

Stages come from the provider's own catalogue, and the CRM assigns deal ids
(``seed_deal`` returns it), so the same tests fit every CRM.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import pytest

from app.coaching.snapshot import Change, Contact, DealSnapshot, Stage
from integrations.base import (
    AuthError,
    CrmProvider,
    DealPage,
    InvalidRequestError,
    NoteRequest,
    NotFoundError,
    RateLimitedError,
)

#: The page size every provider under contract is configured with.
CONTRACT_PAGE_SIZE = 2
T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class CrmNote:
    """A note as the CRM shows it: its id and the body it stores (HTML)."""

    external_id: str
    deal_id: str
    title: str
    body: str


class CrmHandle(Protocol):
    """Seeding and inspection of one CRM account, outside the provider (never through it)."""

    def seed_deal(self, template: DealSnapshot) -> str:
        """Create a deal like ``template`` (its ``id`` is ignored) with its stage history,
        contacts and dates as given; return the id the CRM assigned."""
        ...

    def rename_deal(self, deal_id: str, name: str) -> None:
        """Change the deal as a CRM user would (a modification for incremental sync)."""
        ...

    def delete_deal(self, deal_id: str) -> None: ...

    def notes_on(self, deal_id: str) -> list[CrmNote]:
        """The notes on the deal, oldest first."""
        ...

    def unknown_deal_id(self) -> str:
        """A well-formed deal id that no deal has."""
        ...

    def malformed_deal_id(self) -> str:
        """A string this CRM can never accept as a deal id."""
        ...

    def calls(self) -> int:
        """API requests the CRM has received so far."""
        ...

    def expire_token(self) -> None:
        """Expire the current access token (the refresh token stays valid)."""
        ...

    def rate_limit_next(self, retry_after: float) -> None:
        """Refuse the next API request for a rate limit, with this ``Retry-After``."""
        ...


def deal_template(
    stages: tuple[Stage, ...],
    name: str = "Acme renewal",
    *,
    with_history: bool = True,
    with_contacts: bool = True,
) -> DealSnapshot:
    """A deal in the third open stage of the catalogue, having moved through the first two."""
    open_stages = [stage for stage in stages if not stage.is_closed]
    first, second, third = open_stages[0], open_stages[1], open_stages[2]
    history: tuple[Change[Stage], ...] = ()
    if with_history:
        history = (
            Change(T0 + timedelta(days=3), first, second),
            Change(T0 + timedelta(days=10), second, third),
        )
    contacts: tuple[Contact, ...] = ()
    if with_contacts:
        contacts = (
            Contact("c-1", ("Economic Buyer",), is_primary=True, name="Ada Lovelace"),
            Contact("c-2", ("Technical Evaluator",), name="Alan Turing"),
        )
    return DealSnapshot(
        id="template",
        name=name,
        stage=third,
        created_at=T0,
        amount=48_000.0,
        currency="USD",
        close_date=date(2026, 12, 15),
        owner_id="owner-1",
        owner_name="Grace Hopper",
        next_step="Send the proposal",
        contacts=contacts,
        contact_count=len(contacts),
        stage_history=history,
    )


def _collect(pages: list[DealPage]) -> tuple[list[str], list[str]]:
    deals = [deal.id for page in pages for deal in page.deals]
    deleted = [deal_id for page in pages for deal_id in page.deleted_ids]
    return deals, deleted


def _note(deal_id: str, marker: str, title: str = "dealcoach review") -> NoteRequest:
    return NoteRequest(
        deal_id=deal_id,
        marker=marker,
        title=title,
        html=f"<p>Ask about the decision process.</p><p><em>dealcoach-ref: {marker}</em></p>",
        text=f"Ask about the decision process.\n  dealcoach-ref: {marker}",
    )


class ProviderContract:
    """The tests every provider passes. Subclass as ``Test<Provider>`` with the fixtures."""

    @pytest.fixture
    def provider_settings(self) -> dict[str, Any]:
        """Connection settings the ``provider`` fixture must be built with."""
        return {"page_size": CONTRACT_PAGE_SIZE}

    @pytest.fixture
    def crm(self) -> CrmHandle:
        raise NotImplementedError("a provider's contract test class must define the crm fixture")

    @pytest.fixture
    def provider(self, crm: CrmHandle, provider_settings: dict[str, Any]) -> CrmProvider:
        raise NotImplementedError("a provider's contract test class must define provider")

    @pytest.fixture
    def stages(self, provider: CrmProvider) -> tuple[Stage, ...]:
        catalogues = provider.list_stages()
        return next(iter(catalogues.values())).stages

    # ---------------------------------------------------------------- stages and deals

    def test_is_a_crm_provider(self, provider: CrmProvider) -> None:
        assert isinstance(provider, CrmProvider)
        assert isinstance(type(provider).kind, str) and type(provider).kind

    def test_lists_stages(self, provider: CrmProvider) -> None:
        catalogues = provider.list_stages()
        assert catalogues
        for catalogue in catalogues.values():
            stages = catalogue.stages
            assert len(stages) >= 3
            orders = [stage.order for stage in stages if stage.order is not None]
            assert len(orders) == len(stages)
            assert orders == sorted(orders)
            assert len({stage.key for stage in stages}) == len(stages)
            assert any(stage.is_closed and stage.is_won for stage in stages)
            assert any(stage.is_closed and not stage.is_won for stage in stages)
            assert sum(not stage.is_closed for stage in stages) >= 3
            assert all(0.0 <= stage.probability <= 1.0 for stage in stages)

    def test_fetches_a_seeded_deal_with_history_and_contacts(
        self, provider: CrmProvider, crm: CrmHandle, stages: tuple[Stage, ...]
    ) -> None:
        template = deal_template(stages)
        deal_id = crm.seed_deal(template)
        deal = provider.fetch_deal(deal_id)
        assert deal.id == deal_id
        assert deal.name == template.name
        assert deal.stage.key == template.stage.key
        assert deal.amount == template.amount
        assert deal.close_date == template.close_date
        assert deal.created_at == template.created_at
        assert [(c.old and c.old.key, c.new and c.new.key) for c in deal.stage_history] == [
            (c.old and c.old.key, c.new and c.new.key) for c in template.stage_history
        ]
        assert [c.at for c in deal.stage_history] == [c.at for c in template.stage_history]
        assert deal.contacts_known
        assert sorted((c.name, c.roles, c.is_primary) for c in deal.contacts) == sorted(
            (c.name, c.roles, c.is_primary) for c in template.contacts
        )

    def test_unknown_deal_is_not_found(self, provider: CrmProvider, crm: CrmHandle) -> None:
        with pytest.raises(NotFoundError):
            provider.fetch_deal(crm.unknown_deal_id())

    def test_malformed_id_is_refused_without_calling_the_crm(
        self, provider: CrmProvider, crm: CrmHandle
    ) -> None:
        before = crm.calls()
        with pytest.raises(InvalidRequestError):
            provider.fetch_deal(crm.malformed_deal_id())
        with pytest.raises(InvalidRequestError):
            provider.fetch_deal("")
        assert crm.calls() == before

    # ---------------------------------------------------------------- incremental sync

    def test_first_sync_returns_every_deal_page_by_page(
        self, provider: CrmProvider, crm: CrmHandle, stages: tuple[Stage, ...]
    ) -> None:
        seeded = [crm.seed_deal(deal_template(stages, f"Deal {n}")) for n in range(5)]
        pages = list(provider.iter_changed_deals(None))
        deals, deleted = _collect(pages)
        assert sorted(set(deals)) == sorted(seeded)
        assert deleted == []
        assert len(pages) >= 3  # five deals, two a page
        assert all(len(page.deals) <= CONTRACT_PAGE_SIZE for page in pages)
        assert all(page.watermark is not None for page in pages)
        by_id = {deal.id: deal for page in pages for deal in page.deals}
        assert by_id[seeded[0]].name == "Deal 0"

    def test_sync_resumes_from_any_page_watermark(
        self, provider: CrmProvider, crm: CrmHandle, stages: tuple[Stage, ...]
    ) -> None:
        seeded = [crm.seed_deal(deal_template(stages, f"Deal {n}")) for n in range(5)]
        first_page = next(iter(provider.iter_changed_deals(None)))
        rest, _ = _collect(list(provider.iter_changed_deals(first_page.watermark)))
        assert set(seeded) == {deal.id for deal in first_page.deals} | set(rest)

    def test_incremental_sync_returns_only_later_changes_and_deletes(
        self, provider: CrmProvider, crm: CrmHandle, stages: tuple[Stage, ...]
    ) -> None:
        untouched, renamed, deleted = (
            crm.seed_deal(deal_template(stages, f"Deal {n}")) for n in range(3)
        )
        pages = list(provider.iter_changed_deals(None))
        watermark = pages[-1].watermark
        crm.rename_deal(renamed, "Deal 1 (renamed)")
        crm.delete_deal(deleted)
        added = crm.seed_deal(deal_template(stages, "Deal 3"))

        later = list(provider.iter_changed_deals(watermark))
        deals, deleted_ids = _collect(later)
        assert untouched not in deals
        assert renamed in deals and added in deals
        assert deleted in deleted_ids and deleted not in deals
        by_id = {deal.id: deal for page in later for deal in page.deals}
        assert by_id[renamed].name == "Deal 1 (renamed)"

        final = later[-1].watermark
        assert _collect(list(provider.iter_changed_deals(final))) == ([], [])

    # ---------------------------------------------------------------- notes

    def test_write_notes_returns_one_result_per_note_in_order(
        self, provider: CrmProvider, crm: CrmHandle, stages: tuple[Stage, ...]
    ) -> None:
        first = crm.seed_deal(deal_template(stages, "First"))
        second = crm.seed_deal(deal_template(stages, "Second"))
        notes = [_note(first, "dc1-aaa"), _note(second, "dc1-bbb"), _note(first, "dc1-ccc")]
        results = provider.write_notes(notes)
        assert [result.marker for result in results] == ["dc1-aaa", "dc1-bbb", "dc1-ccc"]
        assert all(result.ok and result.external_id for result in results)
        assert len({result.external_id for result in results}) == 3
        on_first = crm.notes_on(first)
        assert [note.external_id for note in on_first] == [
            results[0].external_id,
            results[2].external_id,
        ]
        assert "dc1-aaa" in on_first[0].body
        assert [note.external_id for note in crm.notes_on(second)] == [results[1].external_id]

    def test_one_bad_note_does_not_fail_the_batch(
        self, provider: CrmProvider, crm: CrmHandle, stages: tuple[Stage, ...]
    ) -> None:
        deal_id = crm.seed_deal(deal_template(stages))
        notes = [
            _note(deal_id, "dc1-ok1"),
            _note(crm.unknown_deal_id(), "dc1-missing"),
            _note(deal_id, "dc1-ok2"),
        ]
        results = provider.write_notes(notes)
        assert [result.marker for result in results] == ["dc1-ok1", "dc1-missing", "dc1-ok2"]
        assert results[0].ok and results[2].ok
        assert not results[1].ok and results[1].external_id is None
        assert len(crm.notes_on(deal_id)) == 2

    def test_find_note_by_marker(
        self, provider: CrmProvider, crm: CrmHandle, stages: tuple[Stage, ...]
    ) -> None:
        deal_id = crm.seed_deal(deal_template(stages))
        other = crm.seed_deal(deal_template(stages, "Other"))
        [result] = provider.write_notes([_note(deal_id, "dc1-findme")])
        assert provider.find_note(deal_id, "dc1-findme") == result.external_id
        assert provider.find_note(deal_id, "dc1-absent") is None
        assert provider.find_note(other, "dc1-findme") is None

    # ---------------------------------------------------------------- errors

    def test_expired_token_is_refreshable_and_refresh_fixes_it(
        self, provider: CrmProvider, crm: CrmHandle, stages: tuple[Stage, ...]
    ) -> None:
        deal_id = crm.seed_deal(deal_template(stages))
        crm.expire_token()
        with pytest.raises(AuthError) as caught:
            provider.fetch_deal(deal_id)
        assert caught.value.refreshable
        fresh = provider.refresh_credentials()
        assert fresh
        assert provider.fetch_deal(deal_id).id == deal_id

    def test_rate_limit_carries_retry_after(
        self, provider: CrmProvider, crm: CrmHandle, stages: tuple[Stage, ...]
    ) -> None:
        deal_id = crm.seed_deal(deal_template(stages))
        crm.rate_limit_next(retry_after=7)
        with pytest.raises(RateLimitedError) as caught:
            provider.fetch_deal(deal_id)
        assert caught.value.retry_after == pytest.approx(7)
        assert provider.fetch_deal(deal_id).id == deal_id


__all__ = [
    "CONTRACT_PAGE_SIZE",
    "CrmHandle",
    "CrmNote",
    "ProviderContract",
    "deal_template",
]
