"""Hypothesis strategies: well-typed but otherwise arbitrary deal snapshots."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from hypothesis import strategies as st

from app.coaching.playbook import load_playbook
from app.coaching.snapshot import Change, Contact, DealSnapshot, Stage

from .factories import AS_OF, CLOSED_STAGES, OPEN_STAGES, RETIRED

T = TypeVar("T")

HOSTILE_TEXT = (
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "\"'><svg/onload=alert(1)>",
    "</li></ol><iframe src=javascript:alert(1)>",
    "{deal} {0} {{}} %s",
    "TBD",
    "\x00\x1b[31m\u202etxet\u200b",
    "",
    "   ",
)

#: Every field name any built-in playbook maps an element to, and a few it does not.
FIELD_NAMES = sorted(
    {
        name
        for book in ("meddpicc", "bant", "spiced")
        for element in load_playbook(book).elements.values()
        for source in element.sources
        for name in source.field or ()
    }
    | {"Other__c", "hs_custom"}
)

ROLES = (
    "Economic Buyer",
    "economic_buyer",
    "Decision Maker",
    "Economic Decision Maker",
    "Champion",
    "Executive Sponsor",
    "Technical Buyer",
    "Evaluator",
)

#: Text of any kind: short unicode (control characters included), hostile markup, or long.
texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(HOSTILE_TEXT),
    st.builds(
        lambda chunk, times: chunk * times, st.text(min_size=1, max_size=8), st.integers(0, 20_000)
    ),
)

_NEAR = st.integers(min_value=-400 * 24, max_value=400 * 24).map(
    lambda hours: AS_OF + timedelta(hours=hours)
)
_FAR = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9998, 12, 30), timezones=st.just(UTC)
)
#: Mostly around as_of, sometimes anywhere from year 1 to 9998.
moments = st.one_of(_NEAR, _NEAR, _NEAR, _FAR)
days = moments.map(lambda moment: moment.date())

amounts = st.one_of(
    st.none(),
    st.just(0.0),
    st.sampled_from([4_999.0, 9_999.99, 10_000.0, 49_999.99, 50_000.0, 100_000.0, 500_000.0]),
    st.floats(min_value=-1e6, max_value=1e15, allow_nan=False, allow_infinity=False),
)

_CUSTOM_STAGES = st.builds(
    Stage,
    key=st.text(max_size=10),
    label=texts,
    order=st.one_of(st.none(), st.integers(-5, 50)),
    probability=st.floats(min_value=0.0, max_value=1.0),
    is_closed=st.booleans(),
    is_won=st.booleans(),
)
#: Catalogue stages (open and closed), a retired stage, or anything well-typed.
stages = st.one_of(st.sampled_from(OPEN_STAGES + CLOSED_STAGES + (RETIRED,)), _CUSTOM_STAGES)

contacts = st.builds(
    Contact,
    id=st.text(min_size=1, max_size=8),
    roles=st.lists(st.one_of(st.sampled_from(ROLES), texts), max_size=3).map(tuple),
    is_primary=st.booleans(),
    name=st.one_of(st.none(), texts),
)


def histories(values: st.SearchStrategy[T]) -> st.SearchStrategy[tuple[Change[T], ...]]:
    """Changes oldest first, with any old/new values (None included)."""
    change = st.builds(
        Change, at=moments, old=st.one_of(st.none(), values), new=st.one_of(st.none(), values)
    )
    return st.lists(change, max_size=8).map(
        lambda changes: tuple(sorted(changes, key=lambda c: c.at))
    )


field_values = st.dictionaries(
    st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=10)),
    st.one_of(st.sampled_from(["TBD", "n/a", "?", "Yes", " "]), texts),
    max_size=8,
)

deals = st.builds(
    DealSnapshot,
    id=st.text(min_size=1, max_size=20),
    name=texts,
    stage=stages,
    created_at=moments,
    amount=amounts,
    currency=st.one_of(st.none(), st.sampled_from(["EUR", "USD"]), texts),
    close_date=st.one_of(st.none(), days),
    owner_id=st.one_of(st.none(), st.sampled_from(["005A", "005B"])),
    owner_name=st.one_of(st.none(), texts),
    next_step=st.one_of(st.none(), texts),
    description=st.one_of(st.none(), texts),
    last_activity_at=st.one_of(st.none(), moments),
    has_future_activity=st.booleans(),
    next_activity_at=st.one_of(st.none(), moments),
    forecast_category=st.one_of(
        st.none(), st.sampled_from(["Commit", "commit", "Closed", "Best Case", "Pipeline"]), texts
    ),
    contacts=st.lists(contacts, max_size=6).map(tuple),
    contact_count=st.one_of(st.none(), st.integers(0, 10_000)),
    contacts_known=st.booleans(),
    stage_entered_at=st.one_of(st.none(), moments),
    stage_history=histories(stages),
    close_date_history=histories(days),
    amount_history=histories(
        st.floats(min_value=-1e6, max_value=1e15, allow_nan=False, allow_infinity=False)
    ),
    owner_history=histories(st.text(max_size=8)),
    fields=field_values,
    pipeline=st.one_of(st.none(), st.text(max_size=10)),
    stage_entered_field=st.one_of(
        st.none(), st.sampled_from(["LastStageChangeDate", "hs_v2_date_entered_current_stage"])
    ),
    stage_history_from=st.one_of(st.none(), moments),
    recorded_fields=st.one_of(
        st.none(), st.frozensets(st.sampled_from(FIELD_NAMES), max_size=len(FIELD_NAMES))
    ),
    deal_type=st.one_of(
        st.none(), st.sampled_from(["Renewal", "existingbusiness", "New Customer"]), texts
    ),
)

#: Deals in a closed stage (won or lost), with any data at all.
closed_deals = st.builds(
    lambda deal, stage: replace(deal, stage=stage), deals, st.sampled_from(CLOSED_STAGES)
)


as_ofs = st.one_of(
    st.just(AS_OF),
    st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
)
