"""The provider contract on the fake CRM, and what only the fake has: fault injection,
state shared across processes, the pause after a write, and its signed webhooks."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.coaching.snapshot import DealSnapshot
from app.connections.models import Provider
from integrations.base import (
    AuthError,
    ConnectionContext,
    CrmProvider,
    InboundRequest,
    InvalidRequestError,
    NoteRequest,
    NotFoundError,
    RateLimitedError,
    RetriableError,
    SummaryResult,
    SummaryUpdate,
    WebhookRejected,
)
from integrations.fake import (
    FakeCrm,
    FakeProvider,
    fake_instance_url,
    parse_fake_webhook,
    sign_fake_webhook,
    store_path,
)
from integrations.registry import ProviderKind, provider_for, webhook_parser_for
from integrations.salesforce.mapping import DEFAULT_STAGES
from tests.contract.suite import CrmHandle, CrmNote, ProviderContract, deal_template

SPAWN = multiprocessing.get_context("spawn")


class FakeHandle:
    """:class:`CrmHandle` over a :class:`FakeCrm`."""

    def __init__(self, crm: FakeCrm) -> None:
        self.crm = crm

    def seed_deal(self, template: DealSnapshot) -> str:
        deal_id = self.crm.new_deal_id()
        self.crm.put_deal(replace(template, id=deal_id))
        return deal_id

    def rename_deal(self, deal_id: str, name: str) -> None:
        deal = self.crm.get_deal(deal_id)
        assert deal is not None
        self.crm.put_deal(replace(deal, name=name))

    def delete_deal(self, deal_id: str) -> None:
        self.crm.delete_deal(deal_id)

    def notes_on(self, deal_id: str) -> list[CrmNote]:
        return [CrmNote(n.id, n.deal_id, n.title, n.html) for n in self.crm.notes_on(deal_id)]

    def unknown_deal_id(self) -> str:
        return "D999999999"

    def malformed_deal_id(self) -> str:
        return "006' OR 1=1 --"

    def calls(self) -> int:
        return self.crm.calls()

    def expire_token(self) -> None:
        self.crm.expire_token()

    def rate_limit_next(self, retry_after: float) -> None:
        self.crm.fail_next("*", ("rate_limit", retry_after))


@pytest.fixture
def fake_crm(tmp_path: Path) -> FakeCrm:
    return FakeCrm(tmp_path / "crm.db", account_id="acct-1")


class TestFakeProvider(ProviderContract):
    @pytest.fixture
    def crm(self, fake_crm: FakeCrm) -> CrmHandle:
        return FakeHandle(fake_crm)

    @pytest.fixture
    def provider(
        self, crm: CrmHandle, provider_settings: dict[str, Any], fake_crm: FakeCrm
    ) -> CrmProvider:
        return FakeProvider(fake_crm.context(settings=provider_settings))


# ---------------------------------------------------------------- helpers


def _seed(crm: FakeCrm, name: str = "Acme") -> str:
    deal_id = crm.new_deal_id()
    crm.put_deal(replace(deal_template(DEFAULT_STAGES.stages, name), id=deal_id))
    return deal_id


def _note(deal_id: str, marker: str) -> NoteRequest:
    return NoteRequest(
        deal_id=deal_id,
        marker=marker,
        title="dealcoach review",
        html=f"<p>Who signs?</p><p><em>dealcoach-ref: {marker}</em></p>",
        text=f"Who signs?\n  dealcoach-ref: {marker}",
    )


@pytest.fixture
def provider(fake_crm: FakeCrm) -> FakeProvider:
    return FakeProvider(fake_crm.context())


# ---------------------------------------------------------------- construction


def test_instance_url_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "a b" / "crm.db"
    crm = FakeCrm(path)
    assert crm.instance_url.startswith("fake:///")
    assert store_path(crm.instance_url) == path.resolve()
    assert fake_instance_url(path) == crm.instance_url


@pytest.mark.parametrize(
    "url",
    [None, "", "https://example.com/x.db", "fake://host/x.db", "fake:relative.db", "fake:///"],
)
def test_bad_instance_url_is_an_invalid_request(fake_crm: FakeCrm, url: str | None) -> None:
    context = replace(fake_crm.context(), instance_url=url)
    with pytest.raises(InvalidRequestError):
        FakeProvider(context)


def test_missing_store_is_an_invalid_request_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nothing.db"
    context = ConnectionContext("c", "fake", "acct", fake_instance_url(path), {})
    with pytest.raises(InvalidRequestError):
        FakeProvider(context)
    assert not path.exists()


@pytest.mark.parametrize("size", [0, -1, "10", 1.5, True, 10_000])
def test_bad_page_size_is_refused(fake_crm: FakeCrm, size: object) -> None:
    with pytest.raises(InvalidRequestError):
        FakeProvider(fake_crm.context(settings={"page_size": size}))


def test_account_id_is_fixed_at_creation(tmp_path: Path) -> None:
    FakeCrm(tmp_path / "crm.db", account_id="first")
    assert FakeCrm(tmp_path / "crm.db", account_id="second").account_id == "first"
    assert FakeCrm.open(tmp_path / "crm.db").context().external_account_id == "first"


# ---------------------------------------------------------------- fault injection


def test_server_errors_then_success(fake_crm: FakeCrm, provider: FakeProvider) -> None:
    deal_id = _seed(fake_crm)
    fake_crm.fail_next("fetch", ("server_error",), times=2)
    for _ in range(2):
        with pytest.raises(RetriableError) as caught:
            provider.fetch_deal(deal_id)
        assert not isinstance(caught.value, RateLimitedError)
        assert caught.value.retry_after is None
    assert provider.fetch_deal(deal_id).id == deal_id
    assert fake_crm.calls("fetch") == 3


def test_fault_hits_only_its_method(fake_crm: FakeCrm, provider: FakeProvider) -> None:
    deal_id = _seed(fake_crm)
    fake_crm.fail_next("write", ("rate_limit", 3))
    assert provider.fetch_deal(deal_id).id == deal_id
    with pytest.raises(RateLimitedError) as caught:
        provider.write_notes([_note(deal_id, "dc1-x")])
    assert caught.value.retry_after == 3
    assert fake_crm.notes_on(deal_id) == []
    assert provider.write_notes([_note(deal_id, "dc1-x")])[0].ok
    assert fake_crm.call_log() == ["fetch", "write", "write"]


def test_not_found_fault(fake_crm: FakeCrm, provider: FakeProvider) -> None:
    deal_id = _seed(fake_crm)
    fake_crm.fail_next("find", ("not_found",))
    with pytest.raises(NotFoundError):
        provider.find_note(deal_id, "dc1-x")
    assert provider.find_note(deal_id, "dc1-x") is None


def test_expired_token_fault_lasts_until_a_refresh(
    fake_crm: FakeCrm, provider: FakeProvider
) -> None:
    deal_id = _seed(fake_crm)
    fake_crm.fail_next("fetch", ("expired_token",))
    for call in (lambda: provider.fetch_deal(deal_id), provider.list_stages):
        with pytest.raises(AuthError) as caught:
            call()
        assert caught.value.refreshable
    fresh = provider.refresh_credentials()
    assert set(fresh) == {"access_token", "refresh_token"}
    assert provider.fetch_deal(deal_id).id == deal_id
    assert FakeProvider(fake_crm.context(credentials=fresh)).list_stages()
    assert fake_crm.calls("refresh") == 1


def test_revoked_is_not_refreshable_until_reauthorised(
    fake_crm: FakeCrm, provider: FakeProvider
) -> None:
    deal_id = _seed(fake_crm)
    fake_crm.fail_next("*", ("revoked",))
    with pytest.raises(AuthError) as caught:
        provider.fetch_deal(deal_id)
    assert not caught.value.refreshable
    with pytest.raises(AuthError) as refresh_error:
        provider.refresh_credentials()
    assert not refresh_error.value.refreshable
    granted = fake_crm.authorize()
    assert FakeProvider(fake_crm.context(credentials=granted)).fetch_deal(deal_id).id == deal_id


@pytest.mark.parametrize(
    ("credentials", "refreshable"),
    [
        ({"access_token": "wrong", "refresh_token": "__valid__"}, True),
        ({"access_token": "wrong", "refresh_token": "wrong"}, False),
        ({}, False),
        ({"access_token": None, "refresh_token": 3}, False),
    ],
)
def test_wrong_credentials(
    fake_crm: FakeCrm, credentials: dict[str, Any], refreshable: bool
) -> None:
    if credentials.get("refresh_token") == "__valid__":
        credentials = {**credentials, "refresh_token": fake_crm.credentials()["refresh_token"]}
    deal_id = _seed(fake_crm)
    provider = FakeProvider(fake_crm.context(credentials=credentials))
    with pytest.raises(AuthError) as caught:
        provider.fetch_deal(deal_id)
    assert caught.value.refreshable is refreshable
    assert "wrong" not in str(caught.value)


def test_refresh_does_not_invalidate_other_workers_tokens(fake_crm: FakeCrm) -> None:
    deal_id = _seed(fake_crm)
    first = FakeProvider(fake_crm.context())
    second = FakeProvider(fake_crm.context())
    first.refresh_credentials()
    assert second.fetch_deal(deal_id).id == deal_id
    assert first.fetch_deal(deal_id).id == deal_id


def test_unknown_fault_or_method_is_refused(fake_crm: FakeCrm) -> None:
    with pytest.raises(ValueError):
        fake_crm.fail_next("fetch", ("teapot",))
    with pytest.raises(ValueError):
        fake_crm.fail_next("delete", ("server_error",))
    with pytest.raises(ValueError):
        fake_crm.fail_next("fetch", ("not_found", 3))
    with pytest.raises(ValueError):
        fake_crm.fail_note("D1", ("expired_token",))


def test_clear_faults(fake_crm: FakeCrm, provider: FakeProvider) -> None:
    deal_id = _seed(fake_crm)
    fake_crm.fail_next("*", ("server_error",), times=5)
    fake_crm.fail_note(deal_id, ("server_error",), times=None)
    fake_crm.clear_faults()
    assert provider.fetch_deal(deal_id).id == deal_id
    assert provider.write_notes([_note(deal_id, "dc1-x")])[0].ok


# ---------------------------------------------------------------- batches


def test_partial_batch_by_marker_and_by_deal(fake_crm: FakeCrm, provider: FakeProvider) -> None:
    a, b = _seed(fake_crm, "A"), _seed(fake_crm, "B")
    fake_crm.fail_note("dc1-two", ("rate_limit", 2))
    fake_crm.fail_note(b, ("server_error",), times=None)
    batch = [_note(a, "dc1-one"), _note(a, "dc1-two"), _note(b, "dc1-three"), _note(a, "dc1-4")]
    results = provider.write_notes(batch)
    assert [r.marker for r in results] == ["dc1-one", "dc1-two", "dc1-three", "dc1-4"]
    assert [r.ok for r in results] == [True, False, False, True]
    assert isinstance(results[1].error, RateLimitedError) and results[1].error.retry_after == 2
    assert isinstance(results[2].error, RetriableError)
    assert [n.id for n in fake_crm.notes_on(a)] == [results[0].external_id, results[3].external_id]
    assert fake_crm.calls("write") == 1
    # The marker fault was for one note only; the deal fault stays.
    again = provider.write_notes([_note(a, "dc1-two"), _note(b, "dc1-three")])
    assert [r.ok for r in again] == [True, False]


def test_note_must_carry_its_marker(fake_crm: FakeCrm, provider: FakeProvider) -> None:
    deal_id = _seed(fake_crm)
    bad = replace(_note(deal_id, "dc1-x"), html="<p>no marker here</p>")
    [result] = provider.write_notes([bad])
    assert isinstance(result.error, InvalidRequestError)
    assert fake_crm.notes_on(deal_id) == []


def test_malformed_deal_id_in_a_batch_is_that_notes_error(
    fake_crm: FakeCrm, provider: FakeProvider
) -> None:
    deal_id = _seed(fake_crm)
    results = provider.write_notes([_note("nope", "dc1-a"), _note(deal_id, "dc1-b")])
    assert isinstance(results[0].error, InvalidRequestError)
    assert results[1].ok


def test_empty_batch_makes_no_call(fake_crm: FakeCrm, provider: FakeProvider) -> None:
    assert provider.write_notes([]) == []
    assert fake_crm.calls() == 0


def test_find_note_refuses_an_empty_marker(fake_crm: FakeCrm, provider: FakeProvider) -> None:
    deal_id = _seed(fake_crm)
    provider.write_notes([_note(deal_id, "dc1-x")])
    with pytest.raises(InvalidRequestError):
        provider.find_note(deal_id, " ")
    with pytest.raises(InvalidRequestError):
        provider.find_note("x", "dc1-x")


def test_find_note_finds_a_marker_only_in_the_body_text(
    fake_crm: FakeCrm, provider: FakeProvider
) -> None:
    deal_id = _seed(fake_crm)
    note = replace(
        _note(deal_id, "dc1-abc"), html="<p>Plan</p><p>dealcoach-ref: dc1-abc</p>", title="t"
    )
    [result] = provider.write_notes([note])
    assert provider.find_note(deal_id, "dc1-abc") == result.external_id
    assert provider.find_note(deal_id, "dc1-ab") == result.external_id  # a substring search
    assert provider.find_note(deal_id, "dc1-abcd") is None


# ---------------------------------------------------------------- sync and summary


def test_sync_page_counting_and_exact_multiple(fake_crm: FakeCrm) -> None:
    for n in range(4):
        _seed(fake_crm, f"D{n}")
    provider = FakeProvider(fake_crm.context(settings={"page_size": 2}))
    pages = list(provider.iter_changed_deals(None))
    assert [len(p.deals) for p in pages] == [2, 2]
    assert [p.watermark for p in pages] == ["2", "4"]
    assert fake_crm.calls("list") == 3  # the third finds nothing and yields no page
    assert list(provider.iter_changed_deals("4")) == []


def test_default_page_size_is_fifty(fake_crm: FakeCrm, provider: FakeProvider) -> None:
    for n in range(51):
        _seed(fake_crm, f"D{n}")
    assert [len(p.deals) for p in provider.iter_changed_deals(None)] == [50, 1]


@pytest.mark.parametrize("watermark", ["", "abc", "-1", "1.5", " 3"])
def test_malformed_watermark(provider: FakeProvider, watermark: str) -> None:
    with pytest.raises(InvalidRequestError):
        provider.iter_changed_deals(watermark)


def test_delete_then_put_again(fake_crm: FakeCrm, provider: FakeProvider) -> None:
    deal_id = _seed(fake_crm)
    provider.write_notes([_note(deal_id, "dc1-x")])
    deal = fake_crm.get_deal(deal_id)
    assert deal is not None
    fake_crm.delete_deal(deal_id)
    with pytest.raises(NotFoundError):
        provider.fetch_deal(deal_id)
    assert fake_crm.notes_on(deal_id) == []
    with pytest.raises(KeyError):
        fake_crm.delete_deal(deal_id)
    fake_crm.put_deal(deal)
    assert provider.fetch_deal(deal_id) == deal
    [page] = provider.iter_changed_deals(None)
    assert [d.id for d in page.deals] == [deal_id] and page.deleted_ids == ()


def test_snapshot_round_trips_exactly(fake_crm: FakeCrm, provider: FakeProvider) -> None:
    deal = replace(
        deal_template(DEFAULT_STAGES.stages), id="D7", fields={"MEDDPICC_Champion__c": "Ada"}
    )
    fake_crm.put_deal(deal)
    assert provider.fetch_deal("D7") == deal
    assert fake_crm.new_deal_id() == "D8"  # ids given by put_deal are not handed out again


def test_update_summary_is_a_modification_by_dealcoach(
    fake_crm: FakeCrm, provider: FakeProvider
) -> None:
    deal_id, other = _seed(fake_crm), _seed(fake_crm, "Other")
    [page] = provider.iter_changed_deals(None)
    [done] = provider.update_summaries(
        [SummaryUpdate(deal_id, {"Dealcoach_Summary__c": "At risk: no champion"})]
    )
    assert done == SummaryResult(deal_id)
    assert fake_crm.last_writer(deal_id) == "dealcoach"
    assert fake_crm.last_writer(other) == "user"
    [later] = provider.iter_changed_deals(page.watermark)
    assert [d.id for d in later.deals] == [deal_id]
    assert later.deals[0].fields["Dealcoach_Summary__c"] == "At risk: no champion"
    provider.update_summaries([SummaryUpdate(deal_id, {"Dealcoach_Health__c": "critical"})])
    assert dict(provider.fetch_deal(deal_id).fields) == {
        "Dealcoach_Summary__c": "At risk: no champion",
        "Dealcoach_Health__c": "critical",
    }


def test_update_summaries_fail_per_deal(fake_crm: FakeCrm, provider: FakeProvider) -> None:
    deal_id = _seed(fake_crm)
    calls = fake_crm.calls()
    results = provider.update_summaries(
        [
            SummaryUpdate("D404", {"x": "y"}),
            SummaryUpdate("bad", {"x": "y"}),
            SummaryUpdate(deal_id, {"": "y"}),
            SummaryUpdate(deal_id, {}),
            SummaryUpdate(deal_id, {"Dealcoach_Band__c": "at_risk"}),
        ]
    )
    assert [r.deal_id for r in results] == ["D404", "bad", deal_id, deal_id, deal_id]
    assert isinstance(results[0].error, NotFoundError)
    assert isinstance(results[1].error, InvalidRequestError)
    assert isinstance(results[2].error, InvalidRequestError)
    assert results[3].ok and results[4].ok
    assert fake_crm.calls() == calls + 2  # the unknown deal and the real update
    assert provider.fetch_deal(deal_id).fields["Dealcoach_Band__c"] == "at_risk"


# ---------------------------------------------------------------- threads and processes


def test_concurrent_writers_in_threads(fake_crm: FakeCrm) -> None:
    deal_id = _seed(fake_crm)
    ids: list[str | None] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        provider = FakeProvider(fake_crm.context())
        for n in range(10):
            [result] = provider.write_notes([_note(deal_id, f"dc1-{worker}-{n}")])
            with lock:
                ids.append(result.external_id)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert None not in ids and len(set(ids)) == 80
    assert fake_crm.note_count() == 80


def _child_write(path: str, credentials: dict[str, Any], deal_id: str, marker: str) -> None:
    """Run in a spawned process: write one note through a provider built from scratch."""
    context = ConnectionContext("conn-x", "fake", "acct-1", fake_instance_url(path), credentials)
    FakeProvider(context).write_notes([_note(deal_id, marker)])


def _child_write_and_report(
    path: str, credentials: dict[str, Any], deal_id: str, marker: str, done: Any
) -> None:
    """Run in a spawned process: write, then report the external id (if it ever returns)."""
    context = ConnectionContext("conn-x", "fake", "acct-1", fake_instance_url(path), credentials)
    [result] = FakeProvider(context).write_notes([_note(deal_id, marker)])
    done.put(result.external_id)


def test_write_in_a_child_process_is_seen_by_the_parent(fake_crm: FakeCrm) -> None:
    deal_id = _seed(fake_crm)
    child = SPAWN.Process(
        target=_child_write,
        args=(str(fake_crm.path), fake_crm.credentials(), deal_id, "dc1-child"),
    )
    child.start()
    child.join(60)
    assert child.exitcode == 0
    [note] = fake_crm.notes_on(deal_id)
    assert FakeProvider(fake_crm.context()).find_note(deal_id, "dc1-child") == note.id
    assert fake_crm.calls("write") == 1


def _wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_pause_after_write_lets_the_caller_die_after_the_crm_wrote(fake_crm: FakeCrm) -> None:
    deal_id = _seed(fake_crm)
    fake_crm.pause_after_write(60)
    done = SPAWN.Queue()
    child = SPAWN.Process(
        target=_child_write_and_report,
        args=(str(fake_crm.path), fake_crm.credentials(), deal_id, "dc1-kill", done),
    )
    child.start()
    try:
        _wait_for(lambda: fake_crm.notes_on(deal_id))
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
    finally:
        if child.is_alive():
            child.kill()
    assert child.exitcode == -signal.SIGKILL
    assert done.empty()  # the caller never learnt the external id...
    fake_crm.pause_after_write(0)
    [note] = fake_crm.notes_on(deal_id)
    # ...but a restarted caller finds the note by its marker and does not write it again.
    assert FakeProvider(fake_crm.context()).find_note(deal_id, "dc1-kill") == note.id


def test_pause_after_write_in_a_thread(fake_crm: FakeCrm, provider: FakeProvider) -> None:
    deal_id = _seed(fake_crm)
    fake_crm.pause_after_write(0.5)
    started = time.monotonic()
    thread = threading.Thread(target=provider.write_notes, args=([_note(deal_id, "dc1-p")],))
    thread.start()
    _wait_for(lambda: fake_crm.notes_on(deal_id), timeout=5)
    assert thread.is_alive()
    thread.join()
    assert time.monotonic() - started >= 0.5
    provider.update_summaries([SummaryUpdate(deal_id, {"f": "v"})])
    assert time.monotonic() - started >= 1.0


# ---------------------------------------------------------------- webhooks

SECRET = "whsec-test"
RECEIVED = datetime(2026, 11, 20, 9, 1, tzinfo=UTC)
EVENT = {
    "id": "evt-1",
    "deal_id": "D1",
    "kind": "stage_change",
    "occurred_at": "2026-11-20T09:00:00Z",
}


def _body(*events: object) -> bytes:
    return json.dumps({"events": list(events)}).encode()


def _request(
    body: bytes,
    *,
    secret: str = SECRET,
    sent: datetime = RECEIVED,
    headers: dict[str, str] | None = None,
) -> InboundRequest:
    signed = sign_fake_webhook(body, secret, int(sent.timestamp()))
    chosen = signed if headers is None else headers
    return InboundRequest("POST", "https://dc.example/webhooks/fake", chosen, body, RECEIVED)


@pytest.fixture
def connection(fake_crm: FakeCrm) -> ConnectionContext:
    return fake_crm.context()


def test_signature_format() -> None:
    headers = sign_fake_webhook(b"{}", SECRET, 1_700_000_000)
    assert headers["X-Fake-Timestamp"] == "1700000000"
    prefix, digest = headers["X-Fake-Signature"].split("=", 1)
    assert prefix == "sha256" and len(digest) == 64 and int(digest, 16) >= 0


def test_valid_webhook(connection: ConnectionContext) -> None:
    parsed = parse_fake_webhook(_request(_body(EVENT)), connection, SECRET)
    [event] = parsed.events
    assert event.deal_id == "D1" and event.kind == "stage_change"
    assert event.occurred_at == datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    assert len(event.identity) == 64
    assert json.loads(parsed.reply_body) == {"received": 1}
    assert parsed.reply_content_type == "application/json"


def test_header_names_are_case_insensitive(connection: ConnectionContext) -> None:
    body = _body(EVENT)
    signed = sign_fake_webhook(body, SECRET, int(RECEIVED.timestamp()))
    lower = {key.lower(): value for key, value in signed.items()}
    assert parse_fake_webhook(_request(body, headers=lower), connection, SECRET).events


def test_kinds_map_to_neutral_or_ignored(connection: ConnectionContext) -> None:
    events = [
        {**EVENT, "id": f"e{n}", "kind": kind}
        for n, kind in enumerate(["stage_change", "created", "changed", "deleted", "merged"])
    ]
    parsed = parse_fake_webhook(_request(_body(*events)), connection, SECRET)
    kinds = [e.kind for e in parsed.events]
    assert kinds == ["stage_change", "created", "changed", "ignored", "ignored"]
    assert parse_fake_webhook(_request(_body()), connection, SECRET).events == ()


def test_tampered_body_is_401(connection: ConnectionContext) -> None:
    request = _request(_body(EVENT))
    tampered = replace(request, body=request.body.replace(b"D1", b"D2"))
    with pytest.raises(WebhookRejected) as caught:
        parse_fake_webhook(tampered, connection, SECRET)
    assert caught.value.status == 401


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Fake-Timestamp": str(int(RECEIVED.timestamp()))},
        {"X-Fake-Signature": "sha256=" + "0" * 64},
        {"X-Fake-Signature": "sha256=" + "0" * 64, "X-Fake-Timestamp": "soon"},
        {"X-Fake-Signature": "md5=abc", "X-Fake-Timestamp": str(int(RECEIVED.timestamp()))},
    ],
)
def test_missing_or_bad_signature_headers_are_401(
    connection: ConnectionContext, headers: dict[str, str]
) -> None:
    with pytest.raises(WebhookRejected) as caught:
        parse_fake_webhook(_request(_body(EVENT), headers=headers), connection, SECRET)
    assert caught.value.status == 401


def test_wrong_or_missing_secret_is_401(connection: ConnectionContext) -> None:
    request = _request(_body(EVENT), secret="someone-else")
    for secret in (SECRET, None, ""):
        with pytest.raises(WebhookRejected) as caught:
            parse_fake_webhook(request, connection, secret)
        assert caught.value.status == 401


@pytest.mark.parametrize(
    ("offset", "ok"),
    [
        (timedelta(minutes=-6), False),
        (timedelta(minutes=-4, seconds=-59), True),
        (timedelta(minutes=4), True),
        (timedelta(minutes=6), False),
    ],
)
def test_timestamp_window(connection: ConnectionContext, offset: timedelta, ok: bool) -> None:
    request = _request(_body(EVENT), sent=RECEIVED + offset)
    if ok:
        assert parse_fake_webhook(request, connection, SECRET).events
        return
    with pytest.raises(WebhookRejected) as caught:
        parse_fake_webhook(request, connection, SECRET)
    assert caught.value.status == 401


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"events": {}}',
        b'{"other": []}',
        _body("evt"),
        _body({**EVENT, "id": ""}),
        _body({k: v for k, v in EVENT.items() if k != "kind"}),
        _body({**EVENT, "deal_id": "006xx"}),
        _body({**EVENT, "deal_id": 1}),
        _body({**EVENT, "occurred_at": "yesterday"}),
        _body({**EVENT, "occurred_at": 1_700_000_000}),
    ],
)
def test_malformed_but_signed_is_400(connection: ConnectionContext, body: bytes) -> None:
    with pytest.raises(WebhookRejected) as caught:
        parse_fake_webhook(_request(body), connection, SECRET)
    assert caught.value.status == 400


def test_malformed_and_unsigned_is_401(connection: ConnectionContext) -> None:
    with pytest.raises(WebhookRejected) as caught:
        parse_fake_webhook(_request(b"not json", headers={}), connection, SECRET)
    assert caught.value.status == 401


def test_oversized_body_is_413(connection: ConnectionContext) -> None:
    with pytest.raises(WebhookRejected) as caught:
        parse_fake_webhook(_request(b" " * (2 << 20)), connection, SECRET)
    assert caught.value.status == 413


def test_identity_is_stable_across_redeliveries(connection: ConnectionContext) -> None:
    first = parse_fake_webhook(_request(_body(EVENT)), connection, SECRET)
    later = RECEIVED + timedelta(seconds=30)
    redelivered = InboundRequest(
        "POST",
        "https://dc.example/webhooks/fake",
        sign_fake_webhook(_body(EVENT), SECRET, int(later.timestamp())),
        _body({**EVENT, "occurred_at": "2026-11-20T09:00:00+00:00"}),
        later,
    )
    redelivered = replace(
        redelivered,
        headers=sign_fake_webhook(redelivered.body, SECRET, int(later.timestamp())),
    )
    second = parse_fake_webhook(redelivered, connection, SECRET)
    assert first.events[0].identity == second.events[0].identity
    expected = hashlib.sha256(
        json.dumps(["acct-1", "evt-1", "D1", "stage_change", "2026-11-20T09:00:00+00:00"]).encode()
    ).hexdigest()
    assert first.events[0].identity == expected


def test_identity_is_unique_per_event_and_account(connection: ConnectionContext) -> None:
    variants = [
        EVENT,
        {**EVENT, "id": "evt-2"},
        {**EVENT, "deal_id": "D2"},
        {**EVENT, "kind": "changed"},
        {**EVENT, "occurred_at": "2026-11-20T09:00:01Z"},
    ]
    parsed = parse_fake_webhook(_request(_body(*variants)), connection, SECRET)
    identities = {event.identity for event in parsed.events}
    other_account = replace(connection, external_account_id="acct-2")
    identities |= {
        e.identity for e in parse_fake_webhook(_request(_body(EVENT)), other_account, SECRET).events
    }
    assert len(identities) == len(variants) + 1


# ---------------------------------------------------------------- registry


def test_provider_kind_is_the_connection_enum() -> None:
    assert ProviderKind is Provider
    assert {kind.value for kind in ProviderKind} == {"salesforce", "hubspot", "fake"}


def test_registry_builds_the_fake(fake_crm: FakeCrm) -> None:
    provider = provider_for(fake_crm.context())
    assert isinstance(provider, FakeProvider) and isinstance(provider, CrmProvider)
    assert webhook_parser_for("fake") is parse_fake_webhook
    assert webhook_parser_for(ProviderKind.FAKE) is parse_fake_webhook


@pytest.mark.parametrize("kind", ["zoho", ""])
def test_registry_refuses_kinds_without_an_adapter(fake_crm: FakeCrm, kind: str) -> None:
    context = replace(fake_crm.context(), provider=kind)
    with pytest.raises(NotImplementedError, match=repr(kind)):
        provider_for(context)
    with pytest.raises(NotImplementedError):
        webhook_parser_for(kind)
