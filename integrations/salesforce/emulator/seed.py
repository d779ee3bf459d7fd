"""Deterministic, realistic opportunities for the emulator (``SalesforceEmulator.seed``).

Each opportunity follows one of :data:`ARCHETYPES`, written relative to ``as_of``
(days before/after it), in turn, so the first ``len(ARCHETYPES)`` deals cover
every coaching signal of COACHING.md (``close_date_passed`` ... ``deal_aging``,
and ``methodology_gap`` from sparse methodology fields), plus a healthy deal and
closed won/lost ones. The random generator (seeded) picks accounts, contacts,
owners, amounts (scaled 0.8-1.25x, never crossing the 50,000 single-threading
line), times of day and a jitter of at most 2 days that keeps every signal's
margin. The history is produced by replaying the deal through the org's own
DML (creation, then each dated change by its owner), so OpportunityHistory,
OpportunityFieldHistory, ``LastStageChangeDate``, ``PushCount`` and
``SystemModstamp`` come out as Salesforce writes them. Activities are Tasks: a
completed one at the last activity date, an open one when a future activity is
planned (``HasOpenActivity``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .org import Org
from .values import format_date

__all__ = ["ARCHETYPES", "OWNERS", "Archetype", "seed_opportunities"]

#: (first name, last name, username) of the sales reps who own seeded deals.
OWNERS: tuple[tuple[str, str, str], ...] = (
    ("Maya", "Chen", "maya.chen@acme-sales.example"),
    ("Daniel", "Okafor", "daniel.okafor@acme-sales.example"),
    ("Priya", "Raman", "priya.raman@acme-sales.example"),
    ("Lucas", "Meyer", "lucas.meyer@acme-sales.example"),
    ("Aisha", "Bello", "aisha.bello@acme-sales.example"),
)

_COMPANIES = (
    "Northwind Logistics",
    "Contoso Health",
    "Fabrikam Manufacturing",
    "Tailspin Toys",
    "Litware",
    "Woodgrove Bank",
    "Proseware",
    "Alpine Ski House",
    "Coho Winery",
    "Fourth Coffee",
    "Wide World Importers",
    "Blue Yonder Airlines",
    "Margie's Travel",
    "Relecloud",
    "VanArsdel",
    "Adventure Works",
    "Lamna Healthcare",
    "Trey Research",
    "Humongous Insurance",
    "Datum Corporation",
    "Bellows College",
    "Consolidated Messenger",
    "Graphic Design Institute",
    "Lucerne Publishing",
    "Southridge Video",
    "Tailwind Traders",
    "Wingtip Toys",
    "City Power & Light",
    "Munson's Pickles",
    "Nod Publishers",
)
_PRODUCTS = (
    "Fleet Telematics Expansion",
    "EHR Integration Platform",
    "MES Rollout",
    "Retail Analytics",
    "Security Awareness Training",
    "Treasury Risk Platform",
    "Contact Centre AI Pilot",
    "Booking Engine Replatform",
    "ERP Migration",
    "POS Hardware Refresh",
    "Freight Visibility",
    "Crew Scheduling",
    "Corporate Booking Tool",
    "Data Warehouse Migration",
    "Field Service Mobile App",
    "Customer Portal",
    "Procurement Suite",
    "Learning Platform",
)
_FIRST = (
    "Hannah",
    "Tom",
    "Laura",
    "Sam",
    "Nadia",
    "Oliver",
    "Rachel",
    "Ben",
    "Ana",
    "Greg",
    "Mei",
    "Jordan",
    "Marcus",
    "Ethan",
    "Chloe",
    "Ravi",
    "Sofia",
    "Jonas",
    "Isabel",
    "Luke",
    "Aaron",
    "Megan",
    "Grace",
    "Peter",
    "Omar",
    "Kevin",
    "Lisa",
    "Emma",
)
_LAST = (
    "Reid",
    "Alvarez",
    "Bennett",
    "Whitfield",
    "Petrov",
    "Grant",
    "Kim",
    "Osei",
    "Souza",
    "Hollis",
    "Lin",
    "Pike",
    "Hale",
    "Brooks",
    "Martin",
    "Patel",
    "Lindqvist",
    "Berg",
    "Ortiz",
    "Chambers",
    "Feld",
    "Shaw",
    "Liu",
    "Novak",
    "Haddad",
    "O'Brien",
    "Tran",
)
_TITLES = {
    "Economic Buyer": "CFO",
    "Decision Maker": "VP Operations",
    "Technical Buyer": "Head of IT",
    "Business User": "Operations Manager",
    "Evaluator": "Solutions Architect",
    "Influencer": "Team Lead",
    "Executive Sponsor": "COO",
}
_METHODOLOGY_FULL = {
    "Metrics__c": "Cut processing time 30% (about $400k a year)",
    "Economic_Buyer__c": "CFO, owns the budget",
    "Decision_Criteria__c": "Integration effort, total cost, time to value",
    "Decision_Process__c": "Team sign-off, then CFO approval above $50k",
    "Paper_Process__c": "Standard MSA; security questionnaire done",
    "Identify_Pain__c": "Manual reconciliation takes 3 FTEs",
    "Champion__c": "Head of Operations",
    "Competition__c": "Incumbent vendor and doing nothing",
}


@dataclass(frozen=True)
class Archetype:
    """One deal shape, in days relative to ``as_of`` (negative = before)."""

    key: str
    signals: tuple[str, ...]
    created: int
    stage: str
    amount: float
    close: int  # close date at creation
    # (day, {"stage"|"amount"|"close"|"owner": value}); "owner" is an index delta
    events: tuple[tuple[int, Mapping[str, Any]], ...] = ()
    roles: tuple[str, ...] = ("Economic Buyer", "Technical Buyer")
    next_step: str | None = "Follow-up call with the buying team"
    last_activity: int | None = -3
    next_activity: int | None = None  # an open task due then
    forecast: str | None = None  # None: the stage's default
    methodology: str = "full"  # full, sparse, none
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


ARCHETYPES: tuple[Archetype, ...] = (
    Archetype(
        "passed",
        ("close_date_passed",),
        -130,
        "Prospecting",
        84000,
        -6,
        events=(
            (-115, {"stage": "Needs Analysis"}),
            (-92, {"stage": "Value Proposition"}),
            (-60, {"stage": "Proposal/Price Quote"}),
            (-20, {"stage": "Negotiation/Review"}),
        ),
        last_activity=-5,
        forecast="Commit",
    ),
    Archetype(
        "pushed",
        ("close_date_pushed",),
        -160,
        "Qualification",
        132000,
        -50,
        events=(
            (-138, {"stage": "Needs Analysis"}),
            (-110, {"stage": "Value Proposition"}),
            (-82, {"stage": "Id. Decision Makers"}),
            (-56, {"close": -20}),
            (-24, {"close": 25}),
            (-18, {"stage": "Proposal/Price Quote"}),
            (-9, {"close": 60}),
        ),
        roles=("Economic Buyer", "Technical Buyer", "Business User"),
        next_activity=4,
        forecast="Best Case",
        methodology="sparse",
    ),
    Archetype(
        "stalled",
        ("stalled_in_stage",),
        -137,
        "Prospecting",
        55000,
        70,
        events=(
            (-116, {"stage": "Needs Analysis"}),
            (-73, {"stage": "Value Proposition"}),
            (-31, {"amount": 60000}),
            (-10, {"amount": 62000}),
        ),
        roles=("Economic Buyer", "Business User"),
        methodology="sparse",
    ),
    Archetype(
        "silent",
        ("no_recent_activity",),
        -52,
        "Prospecting",
        24000,
        63,
        events=((-19, {"stage": "Qualification"}),),
        roles=("Influencer", "Evaluator"),
        last_activity=-35,
    ),
    Archetype(
        "no_next_step",
        ("next_step_missing",),
        -37,
        "Prospecting",
        18500,
        56,
        events=((-16, {"stage": "Qualification"}),),
        roles=("Evaluator",),
        next_step=None,
        last_activity=-7,
        methodology="none",
    ),
    Archetype(
        "single",
        ("single_threaded",),
        -94,
        "Prospecting",
        265000,
        98,
        events=(
            (-73, {"stage": "Needs Analysis"}),
            (-45, {"stage": "Value Proposition"}),
            (-15, {"stage": "Id. Decision Makers"}),
        ),
        roles=("Economic Buyer",),
        next_activity=6,
        methodology="sparse",
    ),
    Archetype(
        "no_buyer",
        ("no_economic_buyer",),
        -109,
        "Qualification",
        145000,
        41,
        events=(
            (-81, {"stage": "Needs Analysis"}),
            (-60, {"stage": "Value Proposition"}),
            (-39, {"stage": "Id. Decision Makers"}),
            (-17, {"stage": "Perception Analysis"}),
        ),
        roles=("Technical Buyer", "Evaluator", "Influencer"),
        last_activity=-3,
        forecast="Best Case",
    ),
    Archetype(
        "shrinking",
        ("amount_decreased",),
        -123,
        "Prospecting",
        240000,
        20,
        events=(
            (-102, {"stage": "Needs Analysis"}),
            (-80, {"stage": "Value Proposition"}),
            (-66, {"amount": 310000}),
            (-52, {"stage": "Id. Decision Makers"}),
            (-25, {"stage": "Proposal/Price Quote"}),
            (-11, {"amount": 190000, "close": 32}),
        ),
        next_activity=3,
        forecast="Best Case",
    ),
    Archetype(
        "regressed",
        ("stage_regressed",),
        -88,
        "Prospecting",
        96000,
        84,
        events=(
            (-67, {"stage": "Needs Analysis"}),
            (-53, {"stage": "Value Proposition"}),
            (-39, {"stage": "Proposal/Price Quote"}),
            (-10, {"stage": "Value Proposition"}),
        ),
        methodology="sparse",
    ),
    Archetype(
        "unrealistic",
        ("close_date_unrealistic",),
        -29,
        "Prospecting",
        27500,
        14,
        events=((-18, {"stage": "Needs Analysis"}),),
        roles=("Business User", "Evaluator"),
        last_activity=-6,
        methodology="sparse",
    ),
    Archetype(
        "mismatch",
        ("forecast_mismatch",),
        -80,
        "Prospecting",
        175000,
        40,
        events=((-59, {"stage": "Needs Analysis"}), (-21, {"stage": "Value Proposition"})),
        roles=("Decision Maker", "Economic Buyer", "Technical Buyer"),
        forecast="Commit",
    ),
    Archetype(
        "new_owner",
        ("owner_changed",),
        -66,
        "Prospecting",
        88000,
        131,
        events=((-23, {"stage": "Needs Analysis"}), (-16, {"owner": 1})),
        roles=("Evaluator", "Business User"),
        next_step="Intro call with the new account owner",
        methodology="sparse",
    ),
    Archetype(
        "aging",
        ("deal_aging",),
        -213,
        "Prospecting",
        380000,
        28,
        events=(
            (-192, {"stage": "Needs Analysis"}),
            (-164, {"stage": "Value Proposition"}),
            (-130, {"stage": "Id. Decision Makers"}),
            (-101, {"stage": "Proposal/Price Quote", "amount": 410000}),
            (-24, {"stage": "Negotiation/Review"}),
        ),
        roles=("Economic Buyer", "Decision Maker", "Technical Buyer", "Influencer"),
        next_activity=13,
        forecast="Commit",
    ),
    Archetype(
        "healthy",
        (),
        -86,
        "Prospecting",
        68000,
        28,
        events=(
            (-72, {"stage": "Needs Analysis"}),
            (-51, {"stage": "Value Proposition"}),
            (-30, {"stage": "Id. Decision Makers"}),
            (-13, {"stage": "Proposal/Price Quote"}),
        ),
        roles=("Economic Buyer", "Decision Maker", "Business User"),
        last_activity=-1,
        next_activity=5,
        forecast="Best Case",
    ),
    Archetype(
        "won",
        (),
        -193,
        "Prospecting",
        300000,
        -21,
        events=(
            (-172, {"stage": "Needs Analysis"}),
            (-144, {"stage": "Value Proposition"}),
            (-116, {"stage": "Id. Decision Makers"}),
            (-88, {"stage": "Proposal/Price Quote", "amount": 320000}),
            (-53, {"stage": "Negotiation/Review"}),
            (-21, {"stage": "Closed Won"}),
        ),
        roles=("Economic Buyer", "Technical Buyer", "Decision Maker"),
        last_activity=-21,
    ),
    Archetype(
        "lost",
        (),
        -171,
        "Qualification",
        54000,
        -81,
        events=(
            (-150, {"stage": "Needs Analysis"}),
            (-122, {"stage": "Value Proposition"}),
            (-60, {"close": -36}),
            (-36, {"stage": "Closed Lost"}),
        ),
        roles=("Evaluator",),
        next_step=None,
        last_activity=-36,
        methodology="none",
        description="Lost to an in-house build.",
    ),
)


def _at(as_of: datetime, days: int, rng: random.Random) -> datetime:
    """A working-hours moment ``days`` from ``as_of`` (never after it)."""
    day = (as_of + timedelta(days=days)).date()
    moment = datetime(day.year, day.month, day.day, 8, 0, tzinfo=UTC) + timedelta(
        seconds=rng.randrange(0, 9 * 3600)
    )
    return min(moment, as_of - timedelta(seconds=1))


def _day(as_of: datetime, days: int) -> str:
    return format_date((as_of + timedelta(days=days)).date())


def seed_opportunities(
    org: Org,
    count: int,
    *,
    owner_ids: list[str],
    as_of: datetime,
    rng: random.Random,
    start: int = 0,
) -> list[str]:
    """Create ``count`` opportunities (with accounts, contacts, roles, tasks); their ids."""
    if not owner_ids:
        raise ValueError("seeding needs at least one owner")
    as_of = as_of.astimezone(UTC).replace(microsecond=0)
    opportunity = org.schema["opportunity"]
    ids: list[str] = []
    for number in range(start, start + count):
        shape = ARCHETYPES[number % len(ARCHETYPES)]
        cycle = number // len(ARCHETYPES)
        jitter = 0 if cycle == 0 else rng.randint(0, 2)
        scale = 1.0 if cycle == 0 else rng.uniform(0.8, 1.25)
        owner_index = number % len(owner_ids)
        owner = owner_ids[owner_index]
        company = _COMPANIES[number % len(_COMPANIES)]
        if number >= len(_COMPANIES):
            company = f"{company} {number // len(_COMPANIES) + 1}"
        product = _PRODUCTS[(number * 7 + cycle) % len(_PRODUCTS)]

        def amount(value: float, scale: float = scale) -> float:
            scaled = round(value * scale, -2)
            # keep the single-threading line (50,000) on the archetype's side of it
            if (value >= 50000) != (scaled >= 50000):
                scaled = value
            return scaled

        created = _at(as_of, shape.created - jitter, rng)
        account_id = org.create("Account", {"Name": company}, owner, created - timedelta(days=1))
        values: dict[str, Any] = {
            "Name": f"{company} - {product}",
            "AccountId": account_id,
            "StageName": shape.stage,
            "Amount": amount(shape.amount),
            "CloseDate": _day(as_of, shape.close),
            "NextStep": shape.next_step,
            "Description": shape.description or f"{product} for {company}.",
            "OwnerId": owner,
            "Type": "New Customer",
            "LeadSource": "Web",
        }
        if opportunity.field("CurrencyIsoCode") is not None:
            values["CurrencyIsoCode"] = "USD"
        if shape.methodology != "none":
            for name, text in _METHODOLOGY_FULL.items():
                if opportunity.field(name) is None:
                    continue
                if shape.methodology == "full":
                    values[name] = text
                elif name in {"Metrics__c", "Identify_Pain__c"}:
                    values[name] = "TBD" if name == "Metrics__c" else text
        opp_id = org.create("Opportunity", values, owner, created)
        current_owner = owner_index
        for day, change in shape.events:
            at = _at(as_of, day - (jitter if day < -40 else 0), rng)
            if at <= created:
                at = created + timedelta(hours=1)
            update: dict[str, Any] = {}
            if "stage" in change:
                update["StageName"] = change["stage"]
            if "amount" in change:
                update["Amount"] = amount(float(change["amount"]))
            if "close" in change:
                update["CloseDate"] = _day(as_of, int(change["close"]))
            if "owner" in change:
                current_owner = (current_owner + int(change["owner"])) % len(owner_ids)
                update["OwnerId"] = owner_ids[current_owner]
            if "stage" in change and shape.forecast and change["stage"] == _final_stage(shape):
                update["ForecastCategoryName"] = shape.forecast
            org.update("Opportunity", opp_id, update, owner_ids[current_owner], at)
        if shape.forecast and not any("stage" in change for _, change in shape.events):
            org.update(
                "Opportunity",
                opp_id,
                {"ForecastCategoryName": shape.forecast},
                owner,
                created + timedelta(minutes=5),
            )
        for index, role in enumerate(shape.roles):
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            contact_id = org.create(
                "Contact",
                {
                    "FirstName": first,
                    "LastName": last,
                    "AccountId": account_id,
                    "Title": _TITLES.get(role, "Manager"),
                    "Email": f"{first}.{last}@{_domain(company)}".lower().replace("'", ""),
                },
                owner,
                created,
            )
            org.create(
                "OpportunityContactRole",
                {
                    "OpportunityId": opp_id,
                    "ContactId": contact_id,
                    "Role": role,
                    "IsPrimary": index == 0,
                },
                owner,
                created + timedelta(minutes=10 + index),
            )
        final_owner = owner_ids[current_owner]
        if shape.last_activity is not None:
            when = _at(as_of, shape.last_activity, rng)
            org.create(
                "Task",
                {
                    "WhatId": opp_id,
                    "Subject": "Call with the buying team",
                    "Status": "Completed",
                    "ActivityDate": format_date(when.date()),
                    "TaskSubtype": "Call",
                    "OwnerId": final_owner,
                },
                final_owner,
                when,
            )
        if shape.next_activity is not None:
            due = (as_of + timedelta(days=shape.next_activity)).date()
            org.create(
                "Task",
                {
                    "WhatId": opp_id,
                    "Subject": "Meeting with the customer",
                    "Status": "Not Started",
                    "ActivityDate": format_date(due),
                    "OwnerId": final_owner,
                },
                final_owner,
                _at(as_of, -1, rng),
            )
        ids.append(opp_id)
    return ids


def _final_stage(shape: Archetype) -> str:
    stage = shape.stage
    for _, change in shape.events:
        stage = change.get("stage", stage)
    return stage


def _domain(company: str) -> str:
    return "".join(char for char in company.lower() if char.isalnum())[:20] + ".example"
