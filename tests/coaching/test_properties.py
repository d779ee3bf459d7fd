"""Properties the engine keeps for any well-typed snapshot."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.coaching.engine import review_deal, review_fingerprint, snapshot_fingerprint
from app.coaching.playbook import CompiledPlaybook
from app.coaching.render import (
    NOTE_MAX_CHARS,
    TITLE_MAX_CHARS,
    note_marker,
    note_title,
    render_note_html,
    render_note_text,
)
from app.coaching.snapshot import DealSnapshot

from .factories import make_deal, playbook
from .strategies import HOSTILE_TEXT, as_ofs, closed_deals, deals
from .test_render import ECHO, assert_safe_html

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
playbooks = st.sampled_from(["meddpicc", "bant", "spiced", "core", "echo"]).map(
    lambda name: ECHO if name == "echo" else playbook(name)
)


@FAST
@given(deal=deals, compiled=playbooks, as_of=as_ofs)
def test_any_deal_is_reviewed_deterministically_without_raising(
    deal: DealSnapshot, compiled: CompiledPlaybook, as_of: datetime
) -> None:
    first = review_deal(deal, compiled, as_of)
    again = review_deal(replace(deal), compiled, as_of)

    assert first.to_dict() == again.to_dict()
    assert review_fingerprint(first) == review_fingerprint(again)
    assert snapshot_fingerprint(deal) == snapshot_fingerprint(replace(deal))


@FAST
@given(deal=deals, compiled=playbooks, as_of=as_ofs)
def test_any_review_keeps_its_invariants(
    deal: DealSnapshot, compiled: CompiledPlaybook, as_of: datetime
) -> None:
    result = review_deal(deal, compiled, as_of)
    settings_ = compiled.playbook.prompts
    health = compiled.playbook.health

    assert all(signal.evidence for signal in result.signals)
    assert 0 <= result.health.score <= 100
    score_band = (
        "healthy"
        if result.health.score >= health.healthy_min
        else "at_risk"
        if result.health.score >= health.at_risk_min
        else "critical"
    )
    rank = {"healthy": 0, "at_risk": 1, "critical": 2}
    # The band is never better than the score's; risks floor it further.
    assert rank[result.health.band] >= rank[score_band]
    risks = [
        s
        for s in result.signals
        if s.code != "methodology_gap" and s.status != "not_recorded" and s.severity != "low"
    ]
    if risks:  # one medium or high risk makes a deal at risk
        assert rank[result.health.band] >= 1
    serious_gap = any(
        s.code == "methodology_gap" and s.status == "absent" and s.severity == "high"
        for s in result.signals
    )
    if not risks and not serious_gap:
        assert result.health.band == score_band
    # What the organisation does not record costs nothing.
    penalties = dict(result.health.penalties)
    for s in result.signals:
        if s.status == "not_recorded":
            assert penalties[s.key] == 0 and s.severity == "low"
    assert sum(1 for p in result.prompts if p.why.find("not recorded in the CRM") >= 0) <= 1
    assert len(result.prompts) == len(result.rep_prompts) <= settings_.max_per_deal
    assert sum(p.shown_first for p in result.prompts) <= settings_.show_first
    assert [p.question_id for p in result.prompts] == [p.question_id for p in result.rep_prompts]
    assert len({p.id for p in (*result.prompts, *result.rep_prompts)}) == 2 * len(result.prompts)
    gaps = [s.element for s in result.signals if s.code == "methodology_gap"]
    assert len(gaps) == len(set(gaps))
    if not deal.is_open:
        assert result.signals == () and result.prompts == () and result.rep_prompts == ()


@FAST
@given(deal=closed_deals, compiled=playbooks, as_of=as_ofs)
def test_closed_deals_raise_nothing_whatever_their_data(
    deal: DealSnapshot, compiled: CompiledPlaybook, as_of: datetime
) -> None:
    result = review_deal(deal, compiled, as_of)

    assert (result.signals, result.prompts, result.rep_prompts) == ((), (), ())
    assert result.health.score == 100


@FAST
@given(
    deal=deals,
    name=st.one_of(st.sampled_from(HOSTILE_TEXT), st.text()),
    compiled=playbooks,
    as_of=as_ofs,
    connection=st.one_of(st.none(), st.text(max_size=20)),
)
def test_any_note_is_capped_marked_and_safe(
    deal: DealSnapshot,
    name: str,
    compiled: CompiledPlaybook,
    as_of: datetime,
    connection: str | None,
) -> None:
    result = review_deal(replace(deal, name=name + deal.name), compiled, as_of)
    marker = note_marker(connection, result.deal_id, review_fingerprint(result))

    for audience in ("manager", "rep"):
        document = render_note_html(result, marker, audience)
        assert len(document) <= NOTE_MAX_CHARS
        assert marker in document
        assert_safe_html(document)
        text = render_note_text(result, marker, audience)
        assert len(text) <= NOTE_MAX_CHARS
    assert len(note_title(result)) <= TITLE_MAX_CHARS


@FAST
@given(deal=deals)
def test_equal_snapshots_have_equal_fingerprints_whatever_the_order_of_their_fields(
    deal: DealSnapshot,
) -> None:
    reordered = replace(deal, fields=dict(reversed(list(deal.fields.items()))))
    assert reordered == deal

    assert snapshot_fingerprint(reordered) == snapshot_fingerprint(deal)


def test_different_snapshots_have_different_fingerprints() -> None:
    deal = make_deal()

    assert snapshot_fingerprint(deal) != snapshot_fingerprint(replace(deal, amount=20_001.0))
    assert snapshot_fingerprint(deal) != snapshot_fingerprint(
        replace(deal, fields={**deal.fields, "Metrics__c": "TBD"})
    )
