"""Generate the bundled CRM sample exports (deterministic; standard library only).

    python samples/make_samples.py          # rewrite the JSON files next to this script
    python samples/make_samples.py --check  # exit 1 if a committed file differs

The exports are made for a review at ``AS_OF`` (2026-11-20T09:00:00Z). Each deal
is written down once as a timeline (creation values, then dated changes) and
rendered the way the CRM's API returns it: a Salesforce SOQL query response with
``OpportunityHistories``, ``Histories`` and ``OpportunityContactRoles``
subqueries, and HubSpot deal objects with ``propertiesWithHistory`` and
``associations``. ``signals`` on each deal names the coaching signals the deal is
meant to raise (see /work/shared/COACHING.md); the tests check them.

Both orgs are standard: no MEDDPICC custom fields or properties, as most orgs
have them. Some Salesforce records carry ``LastStageChangeDate`` and some HubSpot
deals ``hs_v2_date_entered_current_stage``; others give only the stage history,
and a few have a history that starts inside their current stage (an org whose
history was switched on, or imported, after the deal entered it). Several
HubSpot deals have contacts without association labels (roles not recorded).

``extra`` keys: ``type`` (Salesforce ``Type`` / HubSpot ``dealtype``),
``stage_date`` (Salesforce: write ``LastStageChangeDate``; HubSpot: write
``hs_v2_date_entered_current_stage``), ``history_from`` (drop the history before
this moment), ``no_stage_dates`` (HubSpot: no ``hs_v2_date_entered_*``), and the
HubSpot shape switches ``v3``, ``epoch_ms``, ``date_only_close``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

AS_OF = "2026-11-20T09:00:00Z"
HERE = Path(__file__).resolve().parent
API = "/services/data/v59.0"

# --------------------------------------------------------------------------- shared spec


@dataclass(frozen=True)
class Deal:
    """One deal, CRM-neutral: values at creation, then dated changes."""

    key: str
    account: str
    title: str
    owner: str  # owner at creation (a key of the CRM's owner table)
    created: str  # "YYYY-MM-DD HH:MM:SS" UTC
    stage: str  # stage at creation
    amount: float | None
    close: str  # close date at creation
    # (when, {"stage"|"amount"|"close"|"owner": new value}), oldest first
    events: tuple[tuple[str, dict[str, Any]], ...] = ()
    next_step: str | None = None
    description: str | None = None
    last_activity: str | None = None  # SF: a date; HubSpot: a date-time
    next_activity: str | None = None  # SF: HasOpenActivity; HubSpot: the date-time
    contacts: tuple[tuple[str, str | None, bool], ...] = ()  # name, role/label, primary
    forecast: str | None = None  # Salesforce only
    signals: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def final(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "stage": self.stage,
            "amount": self.amount,
            "close": self.close,
            "owner": self.owner,
        }
        for _, change in self.events:
            state.update(change)
        return state


def _moment(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


# --------------------------------------------------------------------------- Salesforce

SF_OWNERS = {
    "maya": ("005Hn00000Kq7aXIAR", "Maya Chen"),
    "daniel": ("005Hn00000Kq7bYIAR", "Daniel Okafor"),
    "priya": ("005Hn00000Kq7cZIAR", "Priya Raman"),
}

SF_STAGES = (
    # ApiName, SortOrder, DefaultProbability, IsClosed, IsWon, ForecastCategoryName
    ("Prospecting", 1, 10, False, False),
    ("Qualification", 2, 10, False, False),
    ("Needs Analysis", 3, 20, False, False),
    ("Value Proposition", 4, 50, False, False),
    ("Id. Decision Makers", 5, 60, False, False),
    ("Perception Analysis", 6, 70, False, False),
    ("Proposal/Price Quote", 7, 75, False, False),
    ("Negotiation/Review", 8, 90, False, False),
    ("Closed Won", 9, 100, True, True),
    ("Closed Lost", 10, 0, True, False),
)
SF_PROBABILITY = {name: probability for name, _, probability, _, _ in SF_STAGES}


def _sf_probability(stage: str) -> int:
    # Only the deliberately bad sample uses a stage outside the standard list
    # ("Verbal Commit", as some orgs add): give it the probability such orgs use.
    return SF_PROBABILITY.get(stage, 90)


#: Field history tracking (OpportunityFieldHistory) was switched on for
#: StageName, Amount, CloseDate and Owner on this date: earlier changes are in
#: OpportunityHistory only, later ones in both.
SF_TRACKING_FROM = "2026-08-01 00:00:00"

SF_DEALS: tuple[Deal, ...] = (
    Deal(
        key="northwind",
        account="Northwind Logistics",
        title="Fleet Telematics Expansion",
        owner="maya",
        created="2026-07-14 10:20:31",
        stage="Prospecting",
        amount=60000,
        close="2026-11-13",
        events=(
            ("2026-07-29 16:02:11", {"stage": "Needs Analysis"}),
            ("2026-08-19 09:41:57", {"stage": "Value Proposition", "amount": 84000}),
            ("2026-09-16 14:12:03", {"stage": "Proposal/Price Quote"}),
            ("2026-10-23 17:30:45", {"stage": "Negotiation/Review"}),
        ),
        next_step="Awaiting signed order form from the Ops Director",
        description="Telematics for 1,200 additional vans across the northern depots.",
        last_activity="2026-10-27",
        contacts=(
            ("Hannah Reid", "Economic Buyer", True),
            ("Tom Alvarez", "Technical Buyer", False),
        ),
        forecast="Commit",
        signals=("close_date_passed", "no_recent_activity"),
        extra={"stage_date": True, "type": "Existing Customer - Upgrade"},
    ),
    Deal(
        key="contoso",
        account="Contoso Health",
        title="EHR Integration Platform",
        owner="daniel",
        created="2026-06-16 13:05:09",
        stage="Qualification",
        amount=132000,
        close="2026-09-30",
        events=(
            ("2026-07-08 10:44:20", {"stage": "Needs Analysis"}),
            ("2026-08-05 15:18:02", {"stage": "Value Proposition"}),
            ("2026-09-02 11:27:36", {"stage": "Id. Decision Makers"}),
            ("2026-09-24 16:55:13", {"close": "2026-10-31"}),
            ("2026-10-27 08:31:40", {"close": "2026-12-15"}),
            ("2026-11-02 14:09:58", {"stage": "Proposal/Price Quote"}),
        ),
        next_step="Security review call with the CISO on 24 Nov",
        description="Interface engine replacing point-to-point HL7 feeds at 6 hospitals.",
        last_activity="2026-11-18",
        next_activity="yes",
        contacts=(
            ("Laura Bennett", "Economic Buyer", True),
            ("Sam Whitfield", "Technical Buyer", False),
            ("Nadia Petrov", "Business User", False),
        ),
        forecast="Best Case",
        signals=("close_date_pushed",),
    ),
    Deal(
        key="fabrikam",
        account="Fabrikam Manufacturing",
        title="MES Rollout Phase 2",
        owner="priya",
        created="2026-04-21 09:12:44",
        stage="Prospecting",
        amount=380000,
        close="2026-06-30",
        events=(
            ("2026-05-12 15:40:19", {"stage": "Needs Analysis"}),
            ("2026-06-09 10:03:51", {"stage": "Value Proposition"}),
            ("2026-06-22 16:21:07", {"close": "2026-08-31"}),
            ("2026-07-14 11:35:29", {"stage": "Id. Decision Makers"}),
            ("2026-08-11 13:48:02", {"stage": "Proposal/Price Quote", "amount": 410000}),
            ("2026-08-25 09:57:33", {"close": "2026-09-30"}),
            ("2026-09-10 14:16:45", {"close": "2026-09-15"}),
            ("2026-09-14 17:02:18", {"close": "2026-12-18"}),
            ("2026-10-27 10:25:56", {"stage": "Negotiation/Review"}),
        ),
        next_step="Procurement to confirm the PO number; legal on clause 14",
        description="Phase 2: four plants in Ohio and Ontario, 18-month rollout.",
        last_activity="2026-11-19",
        next_activity="yes",
        contacts=(
            ("Oliver Grant", "Economic Buyer", False),
            ("Rachel Kim", "Decision Maker", True),
            ("Ben Osei", "Technical Buyer", False),
            ("Ana Souza", "Influencer", False),
        ),
        forecast="Commit",
        signals=("close_date_pushed", "deal_aging"),
    ),
    Deal(
        key="tailspin",
        account="Tailspin Toys",
        title="Retail Analytics Suite",
        owner="maya",
        created="2026-07-06 11:50:02",
        stage="Prospecting",
        amount=55000,
        close="2027-01-29",
        events=(
            ("2026-07-27 15:33:47", {"stage": "Needs Analysis"}),
            ("2026-09-08 10:14:26", {"stage": "Value Proposition"}),
            # The latest rows change only the amount: the stage clock still
            # runs from 8 September.
            ("2026-10-20 16:41:08", {"amount": 60000}),
            ("2026-11-10 09:22:37", {"amount": 62000}),
        ),
        next_step="Demo for the merchandising team (date TBC)",
        description="Store-level sell-through analytics for 140 stores.",
        last_activity="2026-11-12",
        contacts=(
            ("Greg Hollis", "Economic Buyer", True),
            ("Mei Lin", "Business User", False),
        ),
        forecast="Pipeline",
        signals=("stalled_in_stage",),
    ),
    Deal(
        key="litware",
        account="Litware Inc",
        title="Security Awareness Training",
        owner="daniel",
        created="2026-10-14 14:27:15",
        stage="Prospecting",
        amount=18500,
        close="2027-01-15",
        events=(("2026-11-04 10:08:49", {"stage": "Qualification"}),),
        next_step=None,
        description="850 seats; phishing simulation add-on discussed.",
        last_activity="2026-11-13",
        contacts=(("Jordan Pike", "Evaluator", True),),
        forecast="Pipeline",
        signals=("next_step_missing",),
    ),
    Deal(
        key="woodgrove",
        account="Woodgrove Bank",
        title="Treasury Risk Platform",
        owner="priya",
        created="2026-08-18 08:55:40",
        stage="Prospecting",
        amount=265000,
        close="2027-02-26",
        events=(
            ("2026-09-08 13:20:11", {"stage": "Needs Analysis"}),
            ("2026-10-06 16:47:32", {"stage": "Value Proposition"}),
            ("2026-11-05 11:03:24", {"stage": "Id. Decision Makers"}),
        ),
        next_step="Workshop with the treasury team on 26 Nov",
        description="Intraday liquidity and FX exposure reporting for group treasury.",
        last_activity="2026-11-18",
        next_activity="yes",
        contacts=(("Marcus Hale", "Economic Buyer", True),),
        forecast="Pipeline",
        signals=("single_threaded",),
        extra={"stage_date": True, "type": "New Customer"},
    ),
    Deal(
        key="proseware",
        account="Proseware",
        title="Contact Centre AI Pilot",
        owner="maya",
        created="2026-08-03 15:15:55",
        stage="Qualification",
        amount=145000,
        close="2026-12-31",
        events=(
            ("2026-08-31 10:36:12", {"stage": "Needs Analysis"}),
            ("2026-09-21 14:52:48", {"stage": "Value Proposition"}),
            ("2026-10-12 09:11:05", {"stage": "Id. Decision Makers"}),
            ("2026-11-03 16:29:33", {"stage": "Perception Analysis"}),
        ),
        next_step="Pilot success criteria review with IT",
        description="Agent assist and call summaries for 300 agents.",
        last_activity="2026-11-17",
        contacts=(
            ("Ethan Brooks", "Technical Buyer", True),
            ("Chloe Martin", "Evaluator", False),
            ("Ravi Patel", "Influencer", False),
        ),
        forecast="Best Case",
        signals=("no_economic_buyer",),
    ),
    Deal(
        key="alpine",
        account="Alpine Ski House",
        title="Booking Engine Replatform",
        owner="daniel",
        created="2026-07-20 12:40:18",
        stage="Prospecting",
        amount=240000,
        close="2026-12-10",
        events=(
            ("2026-08-10 09:58:41", {"stage": "Needs Analysis"}),
            ("2026-09-01 15:24:06", {"stage": "Value Proposition"}),
            ("2026-09-15 11:45:52", {"amount": 310000}),
            ("2026-09-29 14:33:19", {"stage": "Id. Decision Makers"}),
            ("2026-10-26 10:17:27", {"stage": "Proposal/Price Quote"}),
            ("2026-11-09 16:05:44", {"amount": 190000, "close": "2026-12-22"}),
        ),
        next_step="Revised quote without the loyalty module",
        description="Lift tickets, lessons and rentals in one checkout; loyalty descoped.",
        last_activity="2026-11-16",
        next_activity="yes",
        contacts=(
            ("Sofia Lindqvist", "Economic Buyer", True),
            ("Jonas Berg", "Technical Buyer", False),
        ),
        forecast="Best Case",
        signals=("amount_decreased",),
    ),
    Deal(
        key="coho",
        account="Coho Winery",
        title="ERP Migration",
        owner="priya",
        created="2026-08-24 10:06:37",
        stage="Prospecting",
        amount=96000,
        close="2027-02-12",
        events=(
            ("2026-09-14 14:44:02", {"stage": "Needs Analysis"}),
            ("2026-09-28 11:19:25", {"stage": "Value Proposition"}),
            ("2026-10-12 15:51:10", {"stage": "Proposal/Price Quote"}),
            ("2026-11-10 13:37:48", {"stage": "Value Proposition"}),
        ),
        next_step="Re-scope the inventory module with the CFO",
        description="Move from on-premise ERP; bonded warehouse inventory is the crux.",
        last_activity="2026-11-18",
        contacts=(
            ("Isabel Ortiz", "Economic Buyer", True),
            ("Luke Chambers", "Business User", False),
        ),
        forecast="Pipeline",
        signals=("stage_regressed",),
    ),
    Deal(
        key="fourthcoffee",
        account="Fourth Coffee",
        title="POS Hardware Refresh",
        owner="maya",
        created="2026-10-22 09:30:14",
        stage="Prospecting",
        amount=27500,
        close="2026-12-04",
        events=(("2026-11-02 15:12:56", {"stage": "Needs Analysis"}),),
        next_step="Site survey at the flagship store",
        description="Card readers and kitchen displays for 12 cafes.",
        last_activity="2026-11-14",
        contacts=(
            ("Aaron Feld", "Business User", True),
            ("Megan Shaw", "Evaluator", False),
        ),
        forecast="Pipeline",
        signals=("close_date_unrealistic",),
    ),
    Deal(
        key="wideworld",
        account="Wide World Importers",
        title="Global Freight Visibility",
        owner="daniel",
        created="2026-09-01 11:22:08",
        stage="Prospecting",
        amount=175000,
        close="2026-12-30",
        events=(
            ("2026-09-22 16:08:34", {"stage": "Needs Analysis"}),
            ("2026-10-30 10:49:21", {"stage": "Value Proposition"}),
        ),
        next_step="Business case review with the COO",
        description="Container tracking across 9 carriers and 3 forwarders.",
        last_activity="2026-11-18",
        contacts=(
            ("Grace Liu", "Decision Maker", True),
            ("Peter Novak", "Economic Buyer", False),
            ("Omar Haddad", "Technical Buyer", False),
        ),
        forecast="Commit",
        signals=("forecast_mismatch",),
    ),
    Deal(
        key="blueyonder",
        account="Blue Yonder Airlines",
        title="Crew Scheduling Optimisation",
        owner="daniel",
        created="2026-09-15 13:58:26",
        stage="Prospecting",
        amount=88000,
        close="2027-03-31",
        events=(
            ("2026-10-28 09:26:03", {"stage": "Needs Analysis"}),
            ("2026-11-04 15:40:12", {"owner": "priya"}),
        ),
        next_step="Intro call with the new account owner",
        description="Reserve crew optimisation for the regional fleet.",
        last_activity="2026-11-12",
        contacts=(
            ("Kevin O'Brien", "Evaluator", True),
            ("Lisa Tran", "Business User", False),
        ),
        forecast="Pipeline",
        signals=("owner_changed",),
    ),
    Deal(
        key="margies",
        account="Margie's Travel",
        title="Corporate Booking Tool",
        owner="maya",
        created="2026-08-25 14:03:50",
        stage="Prospecting",
        amount=68000,
        close="2026-12-18",
        events=(
            ("2026-09-08 10:31:17", {"stage": "Needs Analysis"}),
            ("2026-09-29 15:46:39", {"stage": "Value Proposition"}),
            ("2026-10-20 11:12:58", {"stage": "Id. Decision Makers"}),
            ("2026-11-06 16:20:04", {"stage": "Proposal/Price Quote"}),
        ),
        next_step="Proposal walkthrough with the CFO on 25 Nov",
        description="Self-service booking and duty-of-care reporting for 40 agencies.",
        last_activity="2026-11-19",
        next_activity="yes",
        contacts=(
            ("Emma Novak", "Economic Buyer", False),
            ("Carlos Ruiz", "Decision Maker", True),
            ("Julia Weber", "Business User", False),
        ),
        forecast="Best Case",
        signals=(),
        extra={"stage_date": True},
    ),
    Deal(
        key="relecloud",
        account="Relecloud",
        title="Data Warehouse Migration",
        owner="priya",
        created="2026-05-11 10:45:33",
        stage="Prospecting",
        amount=300000,
        close="2026-10-30",
        events=(
            ("2026-06-01 14:10:09", {"stage": "Needs Analysis"}),
            ("2026-06-29 09:52:46", {"stage": "Value Proposition"}),
            ("2026-07-27 15:35:22", {"stage": "Id. Decision Makers"}),
            ("2026-08-24 11:18:57", {"stage": "Proposal/Price Quote", "amount": 320000}),
            ("2026-09-28 16:44:31", {"stage": "Negotiation/Review"}),
            ("2026-10-30 18:02:15", {"stage": "Closed Won"}),
        ),
        next_step="Kick-off with professional services",
        description="Won: 3-year subscription plus migration services.",
        last_activity="2026-10-30",
        contacts=(
            ("Victor Hugo", "Economic Buyer", True),
            ("Amelia Stone", "Technical Buyer", False),
            ("Noah Fischer", "Decision Maker", False),
        ),
        forecast="Closed",
        signals=(),
    ),
    Deal(
        key="vanarsdel",
        account="VanArsdel",
        title="Field Service Mobile App",
        owner="daniel",
        created="2026-06-02 09:08:27",
        stage="Qualification",
        amount=54000,
        close="2026-09-30",
        events=(
            ("2026-06-23 13:29:44", {"stage": "Needs Analysis"}),
            ("2026-07-21 10:57:18", {"stage": "Value Proposition"}),
            ("2026-09-21 15:14:36", {"close": "2026-10-15"}),
            ("2026-10-15 17:46:02", {"stage": "Closed Lost"}),
        ),
        description="Lost to an in-house build by their IT team.",
        last_activity="2026-10-15",
        contacts=(("Ivy Chen", "Evaluator", True),),
        forecast="Omitted",
        signals=(),
    ),
    Deal(
        key="adatum",
        account="A. Datum Corporation",
        title="Analytics Platform",
        owner="daniel",
        created="2026-08-12 10:14:52",
        stage="Prospecting",
        amount=150000,
        close="2026-12-15",
        events=(
            ("2026-09-01 15:20:33", {"stage": "Needs Analysis"}),
            ("2026-11-05 11:42:08", {"stage": "Value Proposition"}),
        ),
        # Forecast as Commit from an early stage, 25 days before its close date.
        next_step="Follow-up call booked",
        description="Self-service analytics for the finance and sales teams.",
        last_activity="2026-11-17",
        next_activity="yes",
        contacts=(
            ("Rita Gomez", "Decision Maker", True),
            ("Paul Nguyen", "Technical Buyer", False),
        ),
        forecast="Commit",
        signals=("forecast_mismatch",),
        extra={"stage_date": True, "type": "New Customer"},
    ),
    Deal(
        key="lamna",
        account="Lamna Healthcare",
        title="Platform Renewal",
        owner="priya",
        created="2026-09-15 09:31:26",
        stage="Proposal/Price Quote",
        amount=96000,
        close="2026-11-08",
        events=(("2026-10-26 14:05:51", {"stage": "Negotiation/Review"}),),
        next_step="Renewal order form with their procurement",
        description="Annual renewal of 400 seats; two new sites asked about.",
        last_activity="2026-11-13",
        contacts=(
            ("Owen Park", "Economic Buyer", True),
            ("Sara Ali", "Business User", False),
        ),
        forecast="Commit",
        signals=("close_date_passed",),
        extra={"type": "Renewal"},
    ),
    Deal(
        key="trey",
        account="Trey Research",
        title="Lab Data Platform",
        owner="maya",
        created="2026-09-28 13:22:40",
        stage="Prospecting",
        amount=88000,
        close="2026-12-11",
        events=(
            ("2026-10-12 10:05:17", {"stage": "Needs Analysis"}),
            ("2026-10-26 16:48:29", {"stage": "Value Proposition"}),
            ("2026-11-09 11:15:03", {"stage": "Proposal/Price Quote"}),
        ),
        # A clean deal: nothing is wrong with it.
        next_step="Security review with their CISO on 12/2",
        description="Instrument data capture for 3 labs.",
        last_activity="2026-11-18",
        next_activity="yes",
        contacts=(
            ("Helen Zhou", "Economic Buyer", True),
            ("Raj Mehta", "Technical Buyer", False),
        ),
        forecast="Best Case",
        signals=(),
        extra={"stage_date": True, "type": "New Customer"},
    ),
    Deal(
        key="consolidated",
        account="Consolidated Messenger",
        title="Courier Dispatch",
        owner="daniel",
        created="2026-02-10 09:12:05",
        stage="Prospecting",
        amount=72000,
        close="2027-01-29",
        events=(
            ("2026-03-03 14:40:19", {"stage": "Needs Analysis"}),
            ("2026-04-14 10:55:42", {"stage": "Id. Decision Makers"}),
            ("2026-09-22 15:31:08", {"amount": 76000}),
            ("2026-10-30 11:07:56", {"close": "2027-02-26"}),
        ),
        # Migrated into this org on 1 September: the history starts inside the
        # current stage, so the stage clock reads "at least" from 22 September.
        next_step="Reference call with a courier firm in Leeds",
        description="Dispatch and proof of delivery for 180 couriers.",
        last_activity="2026-11-16",
        contacts=(
            ("Nina Olsen", "Economic Buyer", True),
            ("Tom Reyes", "Evaluator", False),
        ),
        forecast="Pipeline",
        signals=("stalled_in_stage", "deal_aging"),
        extra={"history_from": "2026-09-01 00:00:00"},
    ),
)


class _Ids:
    """Deterministic Salesforce-looking 18-character ids per key prefix."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}

    def next(self, prefix: str, middle: str, suffix: str) -> str:
        count = self.counters.get(prefix, 0) + 1
        self.counters[prefix] = count
        value = f"{prefix}Hn00000{middle}{count:03d}{suffix}"
        assert len(value) == 18, value
        return value


def _sf_datetime(text: str) -> str:
    return _moment(text).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _sf_attributes(sobject: str, record_id: str) -> dict[str, str]:
    return {"type": sobject, "url": f"{API}/sobjects/{sobject}/{record_id}"}


def _sf_subquery(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not records:
        return None  # Salesforce returns null for an empty child relationship
    return {"totalSize": len(records), "done": True, "records": records}


def salesforce_opportunity(deal: Deal, number: int, ids: _Ids) -> dict[str, Any]:
    opp_id = f"006Hn00000Lm3{number:02d}AAQ"
    final = deal.final()
    owner_id, owner_name = SF_OWNERS[final["owner"]]
    account_id = ids.next("001", "Ac", "AAC")
    last_event = deal.events[-1][0] if deal.events else deal.created

    # OpportunityHistory: one full row at creation and one per change of
    # stage, amount or close date (owner changes are not in it).
    state = {"stage": deal.stage, "amount": deal.amount, "close": deal.close}
    opp_history: list[dict[str, Any]] = []
    field_history: list[dict[str, Any]] = []

    def history_row(when: str) -> None:
        row_id = ids.next("008", "Oh", "QAA")
        opp_history.append(
            {
                "attributes": _sf_attributes("OpportunityHistory", row_id),
                "StageName": state["stage"],
                "Amount": state["amount"],
                "CloseDate": state["close"],
                "Probability": _sf_probability(state["stage"]),
                "CreatedDate": _sf_datetime(when),
            }
        )

    def field_row(when: str, name: str, old: Any, new: Any) -> None:
        row_id = ids.next("017", "Fh", "IAA")
        field_history.append(
            {
                "attributes": _sf_attributes("OpportunityFieldHistory", row_id),
                "Field": name,
                "OldValue": old,
                "NewValue": new,
                "CreatedDate": _sf_datetime(when),
            }
        )

    history_row(deal.created)
    if deal.created >= SF_TRACKING_FROM:
        field_row(deal.created, "created", None, None)
    stage_changed = deal.created
    owner = deal.owner
    for when, change in deal.events:
        tracked = when >= SF_TRACKING_FROM
        if "owner" in change:
            new_owner = change["owner"]
            # Salesforce writes an owner change twice: names, then ids.
            field_row(when, "Owner", SF_OWNERS[owner][1], SF_OWNERS[new_owner][1])
            field_row(when, "Owner", SF_OWNERS[owner][0], SF_OWNERS[new_owner][0])
            owner = new_owner
        values = {k: v for k, v in change.items() if k != "owner"}
        if not values:
            continue
        for key, sf_field in (("stage", "StageName"), ("amount", "Amount"), ("close", "CloseDate")):
            if key in values and tracked:
                field_row(when, sf_field, state[key], values[key])
        if "stage" in values and values["stage"] != state["stage"]:
            stage_changed = when
        state.update(values)
        history_row(when)

    history_from = deal.extra.get("history_from")
    if history_from is not None:
        # The org's history starts here (switched on, or data imported, later).
        cut = _sf_datetime(history_from)
        opp_history = [row for row in opp_history if row["CreatedDate"] >= cut]
        field_history = [row for row in field_history if row["CreatedDate"] >= cut]

    roles = []
    for name, role, primary in deal.contacts:
        contact_id = ids.next("003", "Pc", "AAE")
        role_id = ids.next("00K", "Rr", "UAA")
        roles.append(
            {
                "attributes": _sf_attributes("OpportunityContactRole", role_id),
                "ContactId": contact_id,
                "Role": role,
                "IsPrimary": primary,
                "Contact": {"attributes": _sf_attributes("Contact", contact_id), "Name": name},
            }
        )

    stage = final["stage"]
    is_closed = stage in {"Closed Won", "Closed Lost"}
    record: dict[str, Any] = {
        "attributes": _sf_attributes("Opportunity", opp_id),
        "Id": opp_id,
        "Name": f"{deal.account} - {deal.title}",
        "AccountId": account_id,
        "Account": {"attributes": _sf_attributes("Account", account_id), "Name": deal.account},
        "StageName": stage,
        "Amount": final["amount"],
        "CloseDate": final["close"],
        "Probability": _sf_probability(stage),
        "ForecastCategoryName": deal.forecast,
        "NextStep": deal.next_step,
        "Description": deal.description,
        "LastActivityDate": deal.last_activity,
        "HasOpenActivity": deal.next_activity is not None,
        "HasOverdueTask": False,
        "IsClosed": is_closed,
        "IsWon": stage == "Closed Won",
        "OwnerId": owner_id,
        "Owner": {"attributes": _sf_attributes("User", owner_id), "Name": owner_name},
        "CurrencyIsoCode": "USD",
        "CreatedDate": _sf_datetime(deal.created),
        "LastModifiedDate": _sf_datetime(last_event),
        "SystemModstamp": _sf_datetime(last_event),
    }
    if "type" in deal.extra:
        record["Type"] = deal.extra["type"]
    if deal.extra.get("stage_date"):
        record["LastStageChangeDate"] = _sf_datetime(stage_changed)
    record["OpportunityHistories"] = _sf_subquery(opp_history)
    record["OpportunityContactRoles"] = _sf_subquery(roles)
    record["Histories"] = _sf_subquery(field_history)
    return record


def salesforce_stages() -> dict[str, Any]:
    ids = _Ids()
    records = []
    for name, sort_order, probability, is_closed, is_won in SF_STAGES:
        stage_id = ids.next("01J", "St", "EAA")
        records.append(
            {
                "attributes": _sf_attributes("OpportunityStage", stage_id),
                "Id": stage_id,
                "ApiName": name,
                "MasterLabel": name,
                "SortOrder": sort_order,
                "IsActive": True,
                "IsClosed": is_closed,
                "IsWon": is_won,
                "DefaultProbability": probability,
                "ForecastCategoryName": (
                    "Closed" if is_won else "Omitted" if is_closed else "Pipeline"
                ),
            }
        )
    return {"totalSize": len(records), "done": True, "records": records}


def salesforce_opportunities(deals: tuple[Deal, ...], first: int = 1) -> dict[str, Any]:
    ids = _Ids()
    records = [salesforce_opportunity(deal, first + i, ids) for i, deal in enumerate(deals)]
    return {"totalSize": len(records), "done": True, "records": records}


SF_BAD_DEALS = (
    Deal(
        key="lucerne",
        account="Lucerne Publishing",
        title="Editorial Workflow Seats",
        owner="maya",
        created="2026-11-02 10:15:00",
        stage="Prospecting",
        amount=12000,
        close="2027-02-26",
        events=(("2026-11-09 14:30:00", {"stage": "Qualification"}),),
        next_step="Trial accounts for the features desk",
        last_activity="2026-11-18",
        contacts=(("Ruth Adler", "Evaluator", True),),
        forecast="Pipeline",
    ),
    Deal(
        key="graphic",
        account="Graphic Design Institute",
        title="Campus Licence",
        owner="daniel",
        created="2026-09-14 09:00:00",
        stage="Prospecting",
        amount=41000,
        close="2026-12-19",
        # "Verbal Commit" is a stage this org's catalogue does not have.
        events=(("2026-11-16 16:45:00", {"stage": "Verbal Commit"}),),
        next_step="Order form to the registrar",
        last_activity="2026-11-17",
        contacts=(("Dean Morales", "Decision Maker", True),),
        forecast="Commit",
    ),
)

# --------------------------------------------------------------------------- HubSpot

HS_OWNERS = {"alex": "41529873", "jamie": "41530210", "sam": "52277310"}

HS_PIPELINES: tuple[tuple[str, str, tuple[tuple[str, str, float, bool], ...]], ...] = (
    (
        "default",
        "Sales Pipeline",
        (
            ("appointmentscheduled", "Appointment Scheduled", 0.2, False),
            ("qualifiedtobuy", "Qualified To Buy", 0.4, False),
            ("presentationscheduled", "Presentation Scheduled", 0.6, False),
            ("decisionmakerboughtin", "Decision Maker Bought-In", 0.8, False),
            ("contractsent", "Contract Sent", 0.9, False),
            ("closedwon", "Closed Won", 1.0, True),
            ("closedlost", "Closed Lost", 0.0, True),
        ),
    ),
    (
        "81234567",
        "Renewals",
        (
            ("152003001", "Renewal Identified", 0.6, False),
            ("152003002", "Pricing Proposed", 0.75, False),
            ("152003003", "Renewal Negotiation", 0.9, False),
            ("152003004", "Renewed", 1.0, True),
            ("152003005", "Churned", 0.0, True),
        ),
    ),
)
HS_STAGE_PIPELINE = {stage[0]: pid for pid, _, stages in HS_PIPELINES for stage in stages}
HS_STAGE_CLOSED = {stage[0]: stage[3] for _, _, stages in HS_PIPELINES for stage in stages}
HS_STAGE_WON = {
    stage[0]: stage[3] and stage[2] == 1.0 for _, _, stages in HS_PIPELINES for stage in stages
}

# Association labels defined in the sample portal (deal -> contact, USER_DEFINED).
HS_LABEL_TYPES = {
    "Decision Maker": 29,
    "Economic Buyer": 31,
    "Champion": 33,
    "Technical Evaluator": 35,
}

HS_DEALS: tuple[Deal, ...] = (
    Deal(
        key="greenfield",
        account="Greenfield Dental Group",
        title="Practice Management Suite",
        owner="alex",
        created="2026-07-09 14:22:18",
        stage="appointmentscheduled",
        amount=72000,
        close="2026-11-10",
        events=(
            ("2026-07-23 10:11:42", {"stage": "qualifiedtobuy"}),
            ("2026-08-20 15:37:09", {"stage": "presentationscheduled"}),
            ("2026-09-24 09:48:55", {"stage": "decisionmakerboughtin"}),
            ("2026-10-28 16:05:31", {"stage": "contractsent"}),
        ),
        next_step="Chasing the signature with the practice owner",
        description="Scheduling, charting and billing for 14 practices.",
        last_activity="2026-11-17 15:30:00",
        contacts=(
            ("Dr Paul Meyer", "Decision Maker", False),
            ("Sara Lopez", None, False),
        ),
        signals=("close_date_passed",),
        extra={"stage_date": True},
    ),
    Deal(
        key="harbor",
        account="Harbor Freightways",
        title="Route Optimisation",
        owner="jamie",
        created="2026-07-01 09:35:27",
        stage="appointmentscheduled",
        amount=118000,
        close="2026-09-30",
        events=(
            ("2026-07-22 13:14:50", {"stage": "qualifiedtobuy"}),
            ("2026-09-28 11:02:36", {"close": "2026-10-31"}),
            ("2026-10-29 16:48:03", {"close": "2026-12-19"}),
            ("2026-11-03 10:26:19", {"stage": "presentationscheduled"}),
        ),
        next_step="Route simulation results with the dispatch leads",
        description="Dynamic routing for 220 trucks out of 5 terminals.",
        last_activity="2026-11-18 17:05:00",
        next_activity="2026-11-25 15:00:00",
        contacts=(
            ("Diane Foster", "Economic Buyer", True),
            ("Mark Jensen", "Technical Evaluator", False),
            ("Lena Cruz", None, False),
        ),
        signals=("close_date_pushed",),
        extra={"no_stage_dates": True},
    ),
    Deal(
        key="summitridge",
        account="Summit Ridge Credit Union",
        title="Digital Onboarding",
        owner="sam",
        created="2026-04-14 15:10:42",
        stage="appointmentscheduled",
        amount=345000,
        close="2026-06-30",
        events=(
            ("2026-05-06 10:20:13", {"stage": "qualifiedtobuy"}),
            ("2026-06-03 14:41:57", {"stage": "presentationscheduled"}),
            ("2026-06-24 09:33:08", {"close": "2026-08-31"}),
            ("2026-08-26 16:12:45", {"close": "2026-10-30"}),
            ("2026-10-22 11:58:21", {"close": "2026-12-23"}),
            ("2026-10-26 15:07:34", {"stage": "decisionmakerboughtin"}),
        ),
        next_step="Board risk committee on 9 Dec",
        description="Account opening and KYC for members, web and branch.",
        last_activity="2026-11-18 14:15:00",
        contacts=(
            ("Robert Chang", "Economic Buyer", True),
            ("Keisha Moore", "Champion", False),
            ("Ivan Petrov", "Technical Evaluator", False),
        ),
        signals=("close_date_pushed", "deal_aging"),
        extra={"epoch_ms": True},
    ),
    Deal(
        key="brightline",
        account="Brightline Architects",
        title="Project Accounting",
        owner="alex",
        created="2026-08-11 11:44:03",
        stage="appointmentscheduled",
        amount=52000,
        close="2027-01-29",
        events=(
            ("2026-08-25 15:19:28", {"stage": "qualifiedtobuy"}),
            ("2026-09-15 10:03:47", {"stage": "presentationscheduled"}),
            ("2026-10-22 14:28:12", {"amount": 55000}),
            ("2026-11-12 09:51:39", {"amount": 58000}),
        ),
        next_step="Send the revised licence count",
        description="Time, fees and project profitability for 90 architects.",
        last_activity="2026-11-13 16:40:00",
        contacts=(
            ("Helen Park", "Economic Buyer", True),
            ("Jon Avery", None, False),
        ),
        signals=("stalled_in_stage",),
        extra={"no_stage_dates": True},
    ),
    Deal(
        key="oakridge",
        account="Oakridge Veterinary",
        title="Clinic Telehealth",
        owner="jamie",
        created="2026-09-29 13:27:55",
        stage="appointmentscheduled",
        amount=24000,
        close="2027-01-22",
        events=(("2026-11-01 10:36:20", {"stage": "qualifiedtobuy"}),),
        next_step="Follow up on the pricing questions",
        description="Video consults for 6 clinics.",
        last_activity="2026-10-16 11:20:00",
        contacts=(("Nora Blake", None, True), ("Felix Grant", None, False)),
        signals=("no_recent_activity",),
        extra={"v3": True},
    ),
    Deal(
        key="pinecrest",
        account="Pinecrest Schools",
        title="Learning Platform Pilot",
        owner="sam",
        created="2026-10-20 08:48:31",
        stage="appointmentscheduled",
        amount=9500,
        close="2027-02-15",
        events=(("2026-11-06 14:55:02", {"stage": "qualifiedtobuy"}),),
        next_step="",
        description="Pilot for 3 schools, 1,100 students.",
        last_activity="2026-11-16 10:05:00",
        contacts=(("Tanya Reed", None, True),),
        signals=("next_step_missing",),
        extra={"v3": True, "date_only_close": True},
    ),
    Deal(
        key="meridian",
        account="Meridian Energy",
        title="Grid Asset Analytics",
        owner="alex",
        created="2026-08-04 10:13:16",
        stage="appointmentscheduled",
        amount=480000,
        close="2027-02-26",
        events=(
            ("2026-08-27 15:42:38", {"stage": "qualifiedtobuy"}),
            ("2026-10-01 09:29:04", {"stage": "presentationscheduled"}),
            ("2026-11-09 13:16:51", {"stage": "decisionmakerboughtin"}),
        ),
        next_step="Reference call with a utility in Texas",
        description="Predictive maintenance for 4,000 substations.",
        last_activity="2026-11-19 09:45:00",
        next_activity="2026-11-26 16:00:00",
        contacts=(("Adrian Cole", "Decision Maker", True),),
        signals=("single_threaded",),
        extra={"stage_date": True},
    ),
    Deal(
        key="cobalt",
        account="Cobalt Robotics",
        title="Fleet Maintenance SaaS",
        owner="jamie",
        created="2026-07-28 14:05:49",
        stage="qualifiedtobuy",
        amount=136000,
        close="2026-12-31",
        events=(
            ("2026-08-18 11:47:15", {"stage": "presentationscheduled"}),
            ("2026-10-29 16:33:42", {"stage": "decisionmakerboughtin"}),
        ),
        next_step="Pricing options for 2- and 3-year terms",
        description="Maintenance scheduling for 2,500 deployed robots.",
        last_activity="2026-11-17 13:10:00",
        contacts=(
            ("Zoe Adams", "Champion", True),
            ("Liam Walsh", "Technical Evaluator", False),
            ("Priyanka Das", None, False),
        ),
        signals=("no_economic_buyer",),
    ),
    Deal(
        key="lakeside",
        account="Lakeside Hospitality",
        title="Guest WiFi Upgrade",
        owner="sam",
        created="2026-08-17 09:52:24",
        stage="appointmentscheduled",
        amount=150000,
        close="2026-12-12",
        events=(
            ("2026-09-02 14:18:37", {"stage": "qualifiedtobuy"}),
            ("2026-09-23 10:44:09", {"stage": "presentationscheduled"}),
            ("2026-10-20 15:26:53", {"amount": 120000}),
            ("2026-10-27 11:35:16", {"stage": "decisionmakerboughtin"}),
            ("2026-11-02 16:09:40", {"stage": "contractsent"}),
            ("2026-11-11 10:57:28", {"amount": 95000}),
        ),
        next_step="Confirm the reduced scope (8 hotels instead of 12) in writing",
        description="Guest and staff WiFi for the resort portfolio.",
        last_activity="2026-11-18 12:00:00",
        contacts=(
            ("Grace Hopper", "Economic Buyer", True),
            ("Tim Baker", "Technical Evaluator", False),
            ("Ella Moss", None, False),
        ),
        signals=("amount_decreased",),
    ),
    Deal(
        key="ironwood",
        account="Ironwood Legal",
        title="Contract AI",
        owner="alex",
        created="2026-08-12 13:38:07",
        stage="appointmentscheduled",
        amount=88000,
        close="2027-01-15",
        events=(
            ("2026-09-01 10:25:33", {"stage": "qualifiedtobuy"}),
            ("2026-09-22 14:52:18", {"stage": "presentationscheduled"}),
            ("2026-10-13 09:17:46", {"stage": "decisionmakerboughtin"}),
            ("2026-10-30 15:44:29", {"stage": "contractsent"}),
            ("2026-11-12 11:08:55", {"stage": "presentationscheduled"}),
        ),
        next_step="Second demo for the litigation partners",
        description="Clause extraction and review for 60 lawyers.",
        last_activity="2026-11-18 09:30:00",
        contacts=(
            ("Martin Shaw", "Economic Buyer", True),
            ("Anita Rao", "Champion", False),
        ),
        signals=("stage_regressed",),
    ),
    Deal(
        key="sunbeam",
        account="Sunbeam Bakeries",
        title="Inventory Forecasting",
        owner="jamie",
        created="2026-11-03 10:40:12",
        stage="appointmentscheduled",
        amount=16000,
        close="2026-12-05",
        next_step="Discovery call with the supply chain lead",
        description="Demand forecasting for 30 bakery cafes.",
        last_activity="2026-11-13 15:00:00",
        contacts=(("Oscar Diaz", None, True),),
        signals=("close_date_unrealistic",),
        extra={"v3": True},
    ),
    Deal(
        key="quartz",
        account="Quartz Media",
        title="Ad Ops Automation",
        owner="jamie",
        created="2026-09-08 12:16:45",
        stage="appointmentscheduled",
        amount=64000,
        close="2027-03-15",
        events=(
            ("2026-10-27 09:58:22", {"stage": "qualifiedtobuy"}),
            ("2026-11-09 14:31:07", {"owner": "sam"}),
        ),
        next_step="Handover call with the new owner and the ad ops lead",
        description="Campaign trafficking automation across 4 ad servers.",
        last_activity="2026-11-16 11:45:00",
        contacts=(("Bianca Rossi", None, True), ("Derek Hall", None, False)),
        signals=("owner_changed",),
    ),
    Deal(
        key="northstar",
        account="Northstar Outfitters",
        title="Ecommerce Personalisation",
        owner="alex",
        created="2026-08-19 15:29:11",
        stage="appointmentscheduled",
        amount=112000,
        close="2026-12-30",
        events=(
            ("2026-09-03 10:07:36", {"stage": "qualifiedtobuy"}),
            ("2026-09-30 14:46:02", {"stage": "presentationscheduled"}),
            ("2026-11-05 11:21:49", {"stage": "decisionmakerboughtin"}),
        ),
        next_step="Security review and MSA redlines by 1 Dec",
        description="Product recommendations and search for the online store.",
        last_activity="2026-11-19 16:20:00",
        next_activity="2026-11-24 15:00:00",
        contacts=(
            ("Megan Fox", "Economic Buyer", False),
            ("Tyler Brooks", "Champion", True),
            ("Yuki Tanaka", "Technical Evaluator", False),
        ),
        signals=(),
    ),
    Deal(
        key="atlas",
        account="Atlas Cargo",
        title="2027 Platform Renewal",
        owner="sam",
        created="2026-10-05 09:14:38",
        stage="152003001",
        amount=205000,
        close="2027-01-31",
        events=(("2026-11-04 13:42:17", {"stage": "152003002"}),),
        next_step="Renewal pricing call with procurement on 2 Dec",
        description="Renewal of the 3-year platform subscription, adding 2 warehouses.",
        last_activity="2026-11-17 10:00:00",
        next_activity="2026-12-02 16:00:00",
        contacts=(
            ("Hugo Lambert", "Economic Buyer", True),
            ("Claire Dubois", "Champion", False),
        ),
        signals=(),
        extra={"type": "existingbusiness"},
    ),
    Deal(
        key="evergreen",
        account="Evergreen Clinics",
        title="Patient Scheduling",
        owner="sam",
        created="2026-06-10 10:05:26",
        stage="appointmentscheduled",
        amount=46000,
        close="2026-10-28",
        events=(
            ("2026-06-24 14:36:51", {"stage": "qualifiedtobuy"}),
            ("2026-07-22 09:54:13", {"stage": "presentationscheduled"}),
            ("2026-08-26 15:21:38", {"stage": "decisionmakerboughtin"}),
            ("2026-10-07 11:43:02", {"stage": "contractsent"}),
            ("2026-10-28 17:12:29", {"stage": "closedwon"}),
        ),
        next_step="Onboarding kick-off",
        description="Won: online booking for 9 clinics.",
        last_activity="2026-10-28 16:00:00",
        contacts=(("Dr Amy Wong", "Decision Maker", True),),
        signals=(),
    ),
    Deal(
        key="redwood",
        account="Redwood Analytics",
        title="BI Seats",
        owner="jamie",
        created="2026-06-29 13:48:17",
        stage="appointmentscheduled",
        amount=12500,
        close="2026-09-30",
        events=(
            ("2026-07-15 10:22:44", {"stage": "qualifiedtobuy"}),
            ("2026-09-29 16:37:05", {"stage": "closedlost"}),
        ),
        description="Lost: stayed with the incumbent vendor.",
        last_activity="2026-09-29 15:00:00",
        contacts=(("Sean Murphy", None, True),),
        signals=(),
        extra={"v3": True, "closed_lost_reason": "Chose incumbent vendor"},
    ),
    Deal(
        key="vertex",
        account="Vertex Foods",
        title="Supply Chain Suite",
        owner="alex",
        created="2026-08-03 11:08:27",
        stage="appointmentscheduled",
        amount=420000,
        close="2027-01-31",
        events=(
            ("2026-08-24 15:32:10", {"stage": "qualifiedtobuy"}),
            ("2026-09-21 10:17:45", {"stage": "presentationscheduled"}),
            ("2026-10-19 14:51:02", {"stage": "decisionmakerboughtin"}),
            ("2026-11-14 09:40:36", {"stage": "contractsent"}),
            ("2026-11-18 16:22:19", {"amount": 260000}),
        ),
        # The contract went out, then the amount fell and a pricing call appeared.
        next_step="Pricing call 12/4",
        description="Demand planning and supplier portal for 6 plants.",
        last_activity="2026-11-19 10:30:00",
        next_activity="2026-12-04 15:00:00",
        contacts=(
            ("Karen Liu", "Economic Buyer", True),
            ("Sam Ortiz", "Champion", False),
            ("Ben Clarke", None, False),
        ),
        signals=("amount_decreased",),
        extra={"stage_date": True, "type": "newbusiness"},
    ),
    Deal(
        key="northbeam",
        account="Northbeam Logistics",
        title="Yard Management",
        owner="jamie",
        created="2026-09-02 13:45:11",
        stage="appointmentscheduled",
        amount=98000,
        close="2027-01-20",
        events=(
            ("2026-09-16 10:02:37", {"stage": "qualifiedtobuy"}),
            ("2026-10-07 15:26:48", {"stage": "presentationscheduled"}),
            ("2026-11-10 11:39:14", {"stage": "decisionmakerboughtin"}),
        ),
        # Three contacts, no association labels: who decides is not recorded.
        next_step="Site visit at the Rotterdam yard on 3 Dec",
        description="Gate, yard and dock scheduling for 4 distribution centres.",
        last_activity="2026-11-18 14:00:00",
        contacts=(
            ("Eva Jansen", None, True),
            ("Pieter de Vries", None, False),
            ("Mila Bakker", None, False),
        ),
        signals=("no_economic_buyer",),
        extra={"stage_date": True},
    ),
    Deal(
        key="harborview",
        account="Harborview Hotels",
        title="Annual Renewal",
        owner="sam",
        created="2026-09-01 10:20:00",
        stage="152003001",
        amount=64000,
        close="2026-11-01",
        events=(
            ("2026-09-29 14:10:33", {"stage": "152003002"}),
            ("2026-10-26 09:55:47", {"stage": "152003003"}),
        ),
        next_step="Waiting on their GM's signature",
        description="Renewal of the guest messaging platform for 11 hotels.",
        last_activity="2026-11-09 16:45:00",
        contacts=(
            ("Laura Finch", "Economic Buyer", True),
            ("Marco Bell", None, False),
        ),
        signals=("close_date_passed",),
        extra={"type": "existingbusiness"},
    ),
    Deal(
        key="pioneer",
        account="Pioneer Textiles",
        title="Production Planning",
        owner="alex",
        created="2026-01-20 10:04:51",
        stage="appointmentscheduled",
        amount=58000,
        close="2027-02-19",
        events=(
            ("2026-02-17 14:28:36", {"stage": "qualifiedtobuy"}),
            ("2026-03-10 09:51:12", {"stage": "presentationscheduled"}),
            ("2026-10-01 15:33:40", {"amount": 61000}),
        ),
        # Imported from their old CRM on 15 August: the stage history starts there,
        # already in Presentation Scheduled ("at least" 97 days).
        next_step="Capacity model review with the plant managers on 2 Dec",
        description="Finite capacity scheduling for 3 weaving plants.",
        last_activity="2026-11-17 11:15:00",
        contacts=(
            ("Farah Khan", "Economic Buyer", True),
            ("Leo Wright", "Technical Evaluator", False),
        ),
        signals=("stalled_in_stage", "deal_aging"),
        extra={"history_from": "2026-08-15 00:00:00", "no_stage_dates": True},
    ),
)


def _hs_iso(text: str) -> str:
    moment = _moment(text)
    millis = (moment.hour * 3600 + moment.minute * 60 + moment.second) * 7 % 1000
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


def _hs_epoch(text: str) -> str:
    return str(int(_moment(text).timestamp()) * 1000)


def _hs_close(value: str, deal: Deal) -> str:
    if deal.extra.get("date_only_close"):
        return value
    if deal.extra.get("epoch_ms"):
        return _hs_epoch(f"{value} 00:00:00")
    return f"{value}T00:00:00Z"


def _hs_time(value: str, deal: Deal) -> str:
    return _hs_epoch(value) if deal.extra.get("epoch_ms") else _hs_iso(value)


def _hs_amount(value: float | None) -> str | None:
    if value is None:
        return None
    return str(int(value)) if float(value).is_integer() else str(value)


def hubspot_deal(deal: Deal, number: int) -> dict[str, Any]:
    deal_id = str(18765432100 + number * 37)
    final = deal.final()
    stage = final["stage"]
    pipeline = HS_STAGE_PIPELINE[stage]
    last_event = deal.events[-1][0] if deal.events else deal.created

    # Property history, oldest first while building, newest first on the wire.
    history: dict[str, list[tuple[str, str | None, str]]] = {
        "dealstage": [(deal.created, deal.stage, "CRM_UI")],
        "amount": [(deal.created, _hs_amount(deal.amount), "CRM_UI")],
        "closedate": [(deal.created, _hs_close(deal.close, deal), "CRM_UI")],
        "hubspot_owner_id": [(deal.created, HS_OWNERS[deal.owner], "CRM_UI")],
    }
    entered: dict[str, str] = {deal.stage: deal.created}
    for when, change in deal.events:
        for key, value in change.items():
            if key == "stage":
                history["dealstage"].append((when, value, "CRM_UI"))
                entered[value] = when
            elif key == "amount":
                history["amount"].append((when, _hs_amount(value), "CRM_UI"))
            elif key == "close":
                history["closedate"].append((when, _hs_close(value, deal), "CRM_UI"))
            elif key == "owner":
                history["hubspot_owner_id"].append((when, HS_OWNERS[value], "AUTOMATION_PLATFORM"))

    properties: dict[str, Any] = {
        "amount": _hs_amount(final["amount"]),
        "closedate": _hs_close(final["close"], deal),
        "createdate": _hs_time(deal.created, deal),
        "deal_currency_code": "USD",
        "dealname": f"{deal.account} - {deal.title}",
        "dealstage": stage,
        "description": deal.description,
        "hs_is_closed": "true" if HS_STAGE_CLOSED[stage] else "false",
        "hs_is_closed_won": "true" if HS_STAGE_WON[stage] else "false",
        "hs_lastmodifieddate": _hs_iso(last_event),
        "hs_next_step": deal.next_step,
        "hs_object_id": deal_id,
        "hubspot_owner_id": HS_OWNERS[final["owner"]],
        "notes_last_contacted": (
            _hs_time(deal.last_activity, deal) if deal.last_activity else None
        ),
        "notes_last_updated": _hs_time(deal.last_activity, deal) if deal.last_activity else None,
        "notes_next_activity_date": (
            _hs_time(deal.next_activity, deal) if deal.next_activity else None
        ),
        "num_associated_contacts": str(len(deal.contacts)),
        "pipeline": pipeline,
    }
    if not deal.extra.get("no_stage_dates"):
        for stage_id, when in sorted(entered.items()):
            properties[f"hs_v2_date_entered_{stage_id}"] = _hs_time(when, deal)
    if deal.extra.get("stage_date"):
        properties["hs_v2_date_entered_current_stage"] = _hs_time(entered[stage], deal)
    if "type" in deal.extra:
        properties["dealtype"] = deal.extra["type"]
    history_from = deal.extra.get("history_from")
    if history_from is not None:
        # Imported into HubSpot at history_from: each property's history starts with
        # the value it had then, written by the import.
        for name, entries in history.items():
            before = [entry for entry in entries if entry[0] < history_from]
            kept = [entry for entry in entries if entry[0] >= history_from]
            if before:
                kept.insert(0, (history_from, before[-1][1], "IMPORT"))
            history[name] = kept
    if "closed_lost_reason" in deal.extra:
        properties["closed_lost_reason"] = deal.extra["closed_lost_reason"]

    owner_user = {"41529873": 9912001, "41530210": 9912002, "52277310": 9912003}
    properties_with_history = {
        name: [
            {
                "value": value,
                "timestamp": _hs_iso(when),
                "sourceType": source,
                "sourceId": (
                    "userId:" + str(owner_user[HS_OWNERS[deal.owner]])
                    if source == "CRM_UI"
                    else "import:88120"
                    if source == "IMPORT"
                    else "enrollmentId:7741025"
                ),
                **(
                    {"updatedByUserId": owner_user[HS_OWNERS[deal.owner]]}
                    if source == "CRM_UI"
                    else {}
                ),
            }
            for when, value, source in reversed(entries)
        ]
        for name, entries in history.items()
    }

    contact_ids = [str(85012300 + number * 10 + i) for i in range(len(deal.contacts))]
    if deal.extra.get("v3"):
        results: list[dict[str, Any]] = [
            {"id": cid, "type": "deal_to_contact"} for cid in contact_ids
        ]
    else:
        results = []
        for cid, (_, label, _) in zip(contact_ids, deal.contacts, strict=True):
            types: list[dict[str, Any]] = [
                {"category": "HUBSPOT_DEFINED", "typeId": 3, "label": None}
            ]
            if label is not None:
                types.append(
                    {"category": "USER_DEFINED", "typeId": HS_LABEL_TYPES[label], "label": label}
                )
            results.append({"toObjectId": int(cid), "associationTypes": types})

    return {
        "id": deal_id,
        "properties": properties,
        "propertiesWithHistory": properties_with_history,
        "createdAt": _hs_iso(deal.created),
        "updatedAt": _hs_iso(last_event),
        "archived": False,
        "associations": {"contacts": {"results": results}},
    }


def hubspot_deals(deals: tuple[Deal, ...], first: int = 1) -> dict[str, Any]:
    return {"results": [hubspot_deal(deal, first + i) for i, deal in enumerate(deals)]}


def hubspot_pipelines() -> dict[str, Any]:
    created = "2024-03-11T15:02:44.182Z"
    results = []
    for order, (pipeline_id, label, stages) in enumerate(HS_PIPELINES):
        results.append(
            {
                "label": label,
                "displayOrder": order,
                "id": pipeline_id,
                "stages": [
                    {
                        "label": stage_label,
                        "displayOrder": position,
                        "metadata": {
                            "isClosed": "true" if closed else "false",
                            "probability": str(probability),
                        },
                        "id": stage_id,
                        "createdAt": created,
                        "updatedAt": created,
                        "archived": False,
                        "writePermissions": "CRUD_ALL",
                    }
                    for position, (stage_id, stage_label, probability, closed) in enumerate(stages)
                ],
                "createdAt": created,
                "updatedAt": created,
                "archived": False,
            }
        )
    return {"results": results}


HS_BAD_DEALS = (
    Deal(
        key="blueridge",
        account="Blue Ridge Outfitters",
        title="Inventory Sync",
        owner="alex",
        created="2026-10-12 10:00:00",
        stage="appointmentscheduled",
        amount=21000,
        close="2027-01-08",
        events=(("2026-11-02 15:00:00", {"stage": "qualifiedtobuy"}),),
        next_step="Scoping call with the warehouse lead",
        last_activity="2026-11-17 10:00:00",
        contacts=(("Paula Grant", None, True),),
    ),
    Deal(
        key="crestview",
        account="Crestview Dental",
        title="Imaging Archive",
        owner="jamie",
        created="2026-09-21 09:00:00",
        stage="appointmentscheduled",
        amount=33000,
        close="2026-12-31",
        events=(("2026-10-19 14:00:00", {"stage": "presentationscheduled"}),),
        next_step="Demo with the clinical director",
        last_activity="2026-11-16 10:00:00",
        contacts=(("Ian Rhodes", "Decision Maker", True),),
    ),
)


def hubspot_bad_deals() -> dict[str, Any]:
    payload = hubspot_deals(HS_BAD_DEALS, first=101)
    # A date as a person types it, not as HubSpot stores it.
    payload["results"][1]["properties"]["closedate"] = "31/12/2026"
    return payload


# --------------------------------------------------------------------------- files


def build() -> dict[str, Any]:
    """Every sample file, by path relative to ``samples/``."""
    return {
        "salesforce_stages.json": salesforce_stages(),
        "salesforce_opportunities.json": salesforce_opportunities(SF_DEALS),
        "hubspot_pipelines.json": hubspot_pipelines(),
        "hubspot_deals.json": hubspot_deals(HS_DEALS),
        "bad/salesforce_unknown_stage.json": salesforce_opportunities(SF_BAD_DEALS, first=91),
        "bad/hubspot_bad_date.json": hubspot_bad_deals(),
    }


def render(payload: Any) -> str:
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for relative, payload in build().items():
        path = HERE / relative
        text = render(payload)
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(relative)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        print("out of date (run python samples/make_samples.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
