"""Deterministic, realistic deals for the emulator (``HubSpotEmulator.seed``).

Each deal follows one of :data:`ARCHETYPES`, written relative to ``as_of`` (days
before/after it), in turn, so the first ``len(ARCHETYPES)`` deals cover every
coaching signal of COACHING.md on HubSpot's terms: close date passed or pushed,
stalled, silent (``notes_last_contacted`` long ago), no ``hs_next_step``,
single-threaded, no contact labelled "Economic Buyer"/"Decision Maker", amount
cut, stage regression, unrealistic close, forecast mismatch
(``hs_manual_forecast_category`` COMMIT early), owner change, aging, methodology
gaps (sparse ``dealcoach_*`` properties), plus healthy deals, renewals in the
second pipeline (``dealtype`` ``existingbusiness``) and closed won/lost ones.
The random generator (seeded) picks companies, contacts, amounts (scaled
0.8-1.25x, never crossing the 50,000 single-threading line), times of day and a
jitter of at most 2 days. Histories are produced by replaying each deal through
the portal's own writes (creation, then each dated change by its owner in the
UI), so ``propertiesWithHistory`` and the ``hs_date_entered_*`` properties come
out as HubSpot computes them. Contacts are associated with and without labels.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .portal import CALCULATED, Portal, Source, format_datetime
from .schema import CONTACT_LABELS

__all__ = ["ARCHETYPES", "OWNERS", "Archetype", "seed_deals"]

#: (owner id, user id, first name, last name, email) of the sales reps.
OWNERS: tuple[tuple[int, int, str, str, str], ...] = (
    (41529873, 9912001, "Maya", "Chen", "maya.chen@acme-sales.example"),
    (41529874, 9912002, "Daniel", "Okafor", "daniel.okafor@acme-sales.example"),
    (41529875, 9912003, "Priya", "Raman", "priya.raman@acme-sales.example"),
    (41529876, 9912004, "Lucas", "Meyer", "lucas.meyer@acme-sales.example"),
    (41529877, 9912005, "Aisha", "Bello", "aisha.bello@acme-sales.example"),
)

_COMPANIES = (
    "Greenfield Dental Group",
    "Harbor Freight Lines",
    "Quantum Bikes",
    "Maple Leaf Clinics",
    "Brightside Schools",
    "Orchard Analytics",
    "Summit Legal",
    "Blue Heron Hotels",
    "Copperline Mining",
    "Evergreen Credit Union",
    "Kestrel Aerospace",
    "Lighthouse Media",
    "Northstar Pharmacy",
    "Pioneer Agritech",
    "Redwood Property",
    "Silverline Logistics",
    "Tidewater Utilities",
    "Urban Nest Realty",
    "Vista Optics",
    "Willow Home Care",
)
_PRODUCTS = (
    "Practice Management Suite",
    "Fleet Dispatch",
    "Dealer Portal",
    "Patient Intake",
    "Learning Platform",
    "BI Rollout",
    "Matter Management",
    "Guest Experience Platform",
    "Safety Compliance",
    "Member Onboarding",
    "Supplier Quality",
    "Ad Sales Workflow",
    "Pharmacy Inventory",
    "Field Sensors",
    "Tenant Portal",
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
    "Ravi",
    "Sofia",
)
_LAST = (
    "Reid",
    "Alvarez",
    "Bennett",
    "Petrov",
    "Grant",
    "Kim",
    "Osei",
    "Souza",
    "Lin",
    "Hale",
    "Patel",
    "Berg",
    "Ortiz",
    "O'Brien",
)
_TITLES = {
    "Economic Buyer": "CFO",
    "Decision Maker": "VP Operations",
    "Technical Buyer": "Head of IT",
    "Champion": "Operations Manager",
    "Influencer": "Team Lead",
    "Evaluator": "Solutions Architect",
    None: "Manager",
}
_METHODOLOGY_FULL = {
    "dealcoach_metrics": "Cut processing time 30% (about $400k a year)",
    "dealcoach_economic_buyer": "CFO, owns the budget",
    "dealcoach_decision_criteria": "Integration effort, total cost, time to value",
    "dealcoach_decision_process": "Team sign-off, then CFO approval above $50k",
    "dealcoach_paper_process": "Standard MSA; security questionnaire done",
    "dealcoach_identify_pain": "Manual reconciliation takes 3 FTEs",
    "dealcoach_champion": "Head of Operations",
    "dealcoach_competition": "Incumbent vendor and doing nothing",
}
_RENEWALS = "1467325"


@dataclass(frozen=True)
class Archetype:
    """One deal shape, in days relative to ``as_of`` (negative = before)."""

    key: str
    signals: tuple[str, ...]
    created: int
    stage: str
    amount: float
    close: int
    # (day, {"stage"|"amount"|"close"|"owner"|"forecast": value}); "owner" is an index delta
    events: tuple[tuple[int, Mapping[str, Any]], ...] = ()
    contacts: tuple[str | None, ...] = ("Economic Buyer", "Technical Buyer")
    next_step: str | None = "Follow-up call booked with the buying team"
    last_contacted: int | None = -3
    next_activity: int | None = None
    forecast: str | None = None
    methodology: str = "full"  # full, sparse, none
    pipeline: str = "default"
    dealtype: str = "newbusiness"
    extra: Mapping[str, Any] = field(default_factory=dict)


ARCHETYPES: tuple[Archetype, ...] = (
    Archetype(
        "passed",
        ("close_date_passed",),
        -130,
        "appointmentscheduled",
        84000,
        -6,
        events=(
            (-115, {"stage": "qualifiedtobuy"}),
            (-92, {"stage": "presentationscheduled"}),
            (-60, {"stage": "decisionmakerboughtin"}),
            (-20, {"stage": "contractsent", "forecast": "COMMIT"}),
        ),
        last_contacted=-5,
    ),
    Archetype(
        "pushed",
        ("close_date_pushed",),
        -160,
        "appointmentscheduled",
        132000,
        -50,
        events=(
            (-138, {"stage": "qualifiedtobuy"}),
            (-82, {"stage": "presentationscheduled"}),
            (-56, {"close": -20}),
            (-24, {"close": 25}),
            (-18, {"stage": "decisionmakerboughtin"}),
            (-9, {"close": 60}),
        ),
        contacts=("Economic Buyer", "Technical Buyer", None),
        next_activity=4,
        forecast="BEST_CASE",
        methodology="sparse",
    ),
    Archetype(
        "stalled",
        ("stalled_in_stage",),
        -137,
        "appointmentscheduled",
        55000,
        70,
        events=(
            (-116, {"stage": "qualifiedtobuy"}),
            (-73, {"stage": "presentationscheduled"}),
            (-31, {"amount": 60000}),
            (-10, {"amount": 62000}),
        ),
        contacts=("Economic Buyer", "Champion"),
        methodology="sparse",
    ),
    Archetype(
        "silent",
        ("no_recent_activity",),
        -52,
        "appointmentscheduled",
        24000,
        63,
        events=((-19, {"stage": "qualifiedtobuy"}),),
        contacts=("Influencer", None),
        last_contacted=-35,
    ),
    Archetype(
        "no_next_step",
        ("next_step_missing",),
        -37,
        "appointmentscheduled",
        18500,
        56,
        events=((-16, {"stage": "qualifiedtobuy"}),),
        contacts=(None,),
        next_step=None,
        last_contacted=-7,
        methodology="none",
    ),
    Archetype(
        "single",
        ("single_threaded",),
        -94,
        "appointmentscheduled",
        265000,
        98,
        events=(
            (-73, {"stage": "qualifiedtobuy"}),
            (-45, {"stage": "presentationscheduled"}),
            (-15, {"stage": "decisionmakerboughtin"}),
        ),
        contacts=("Economic Buyer",),
        next_activity=6,
        methodology="sparse",
    ),
    Archetype(
        "no_buyer",
        ("no_economic_buyer",),
        -109,
        "appointmentscheduled",
        145000,
        41,
        events=(
            (-81, {"stage": "qualifiedtobuy"}),
            (-39, {"stage": "presentationscheduled"}),
            (-17, {"stage": "decisionmakerboughtin"}),
        ),
        contacts=("Technical Buyer", "Evaluator", None),
        forecast="BEST_CASE",
    ),
    Archetype(
        "shrinking",
        ("amount_decreased",),
        -123,
        "appointmentscheduled",
        240000,
        20,
        events=(
            (-102, {"stage": "qualifiedtobuy"}),
            (-66, {"amount": 310000}),
            (-52, {"stage": "presentationscheduled"}),
            (-25, {"stage": "decisionmakerboughtin"}),
            (-11, {"amount": 190000, "close": 32}),
        ),
        contacts=("Economic Buyer", "Decision Maker", "Champion"),
        next_activity=3,
        forecast="BEST_CASE",
    ),
    Archetype(
        "regressed",
        ("stage_regressed",),
        -88,
        "appointmentscheduled",
        96000,
        84,
        events=(
            (-67, {"stage": "qualifiedtobuy"}),
            (-53, {"stage": "presentationscheduled"}),
            (-39, {"stage": "contractsent"}),
            (-10, {"stage": "presentationscheduled"}),
        ),
        methodology="sparse",
    ),
    Archetype(
        "unrealistic",
        ("close_date_unrealistic",),
        -29,
        "appointmentscheduled",
        27500,
        14,
        contacts=("Champion", "Evaluator"),
        last_contacted=-6,
        methodology="sparse",
    ),
    Archetype(
        "mismatch",
        ("forecast_mismatch",),
        -80,
        "appointmentscheduled",
        175000,
        40,
        events=((-59, {"stage": "qualifiedtobuy", "forecast": "COMMIT"}),),
        contacts=("Decision Maker", "Economic Buyer", "Technical Buyer"),
    ),
    Archetype(
        "new_owner",
        ("owner_changed",),
        -66,
        "appointmentscheduled",
        88000,
        131,
        events=((-23, {"stage": "qualifiedtobuy"}), (-16, {"owner": 1})),
        contacts=("Evaluator", None),
        next_step="Intro call with the new account owner",
        methodology="sparse",
    ),
    Archetype(
        "aging",
        ("deal_aging",),
        -213,
        "appointmentscheduled",
        380000,
        28,
        events=(
            (-192, {"stage": "qualifiedtobuy"}),
            (-164, {"stage": "presentationscheduled"}),
            (-101, {"stage": "decisionmakerboughtin", "amount": 410000}),
            (-24, {"stage": "contractsent", "forecast": "COMMIT"}),
        ),
        contacts=("Economic Buyer", "Decision Maker", "Technical Buyer", "Influencer"),
        next_activity=13,
    ),
    Archetype(
        "healthy",
        (),
        -86,
        "appointmentscheduled",
        68000,
        28,
        events=(
            (-72, {"stage": "qualifiedtobuy"}),
            (-51, {"stage": "presentationscheduled"}),
            (-13, {"stage": "decisionmakerboughtin", "forecast": "BEST_CASE"}),
        ),
        contacts=("Economic Buyer", "Decision Maker", "Champion"),
        next_step="Follow-up call booked for Thursday with the CFO",
        last_contacted=-1,
        next_activity=5,
    ),
    Archetype(
        "renewal",
        (),
        -40,
        "2917350",
        48000,
        35,
        events=((-12, {"stage": "2917351"}),),
        contacts=("Champion", "Economic Buyer"),
        next_step="Follow-up call booked to review usage",
        last_contacted=-2,
        next_activity=7,
        pipeline=_RENEWALS,
        dealtype="existingbusiness",
    ),
    Archetype(
        "renewal_at_risk",
        ("amount_decreased", "stalled_in_stage"),
        -120,
        "2917350",
        150000,
        20,
        events=((-95, {"stage": "2917351"}), (-45, {"amount": 96000})),
        contacts=("Champion", None),
        next_step=None,
        last_contacted=-21,
        pipeline=_RENEWALS,
        dealtype="existingbusiness",
        methodology="sparse",
    ),
    Archetype(
        "won",
        (),
        -193,
        "appointmentscheduled",
        300000,
        -21,
        events=(
            (-172, {"stage": "qualifiedtobuy"}),
            (-144, {"stage": "presentationscheduled"}),
            (-88, {"stage": "decisionmakerboughtin", "amount": 320000}),
            (-53, {"stage": "contractsent"}),
            (-21, {"stage": "closedwon", "forecast": "CLOSED"}),
        ),
        contacts=("Economic Buyer", "Technical Buyer", "Decision Maker"),
        last_contacted=-21,
        extra={"closed_won_reason": "Best integration story"},
    ),
    Archetype(
        "lost",
        (),
        -171,
        "qualifiedtobuy",
        54000,
        -81,
        events=(
            (-150, {"stage": "presentationscheduled"}),
            (-60, {"close": -36}),
            (-36, {"stage": "closedlost"}),
        ),
        contacts=("Evaluator",),
        next_step=None,
        last_contacted=-36,
        methodology="none",
        extra={"closed_lost_reason": "Lost to an in-house build."},
    ),
)


def _at(as_of: datetime, days: int, rng: random.Random) -> datetime:
    """A working-hours moment ``days`` from ``as_of`` (never after it)."""
    day = (as_of + timedelta(days=days)).date()
    moment = datetime(day.year, day.month, day.day, 8, 0, tzinfo=UTC) + timedelta(
        seconds=rng.randrange(0, 9 * 3600), milliseconds=rng.randrange(0, 1000)
    )
    return min(moment, as_of - timedelta(seconds=1))


def _day(as_of: datetime, days: int) -> str:
    day = (as_of + timedelta(days=days)).date()
    return f"{day.isoformat()}T00:00:00.000Z"


def _user(owner: tuple[int, int, str, str, str]) -> Source:
    return Source("CRM_UI", f"userId:{owner[1]}", None, owner[1])


def seed_deals(
    portal: Portal,
    count: int,
    *,
    as_of: datetime,
    rng: random.Random,
    start: int = 0,
    owners: Sequence[tuple[int, int, str, str, str]] = OWNERS,
) -> list[str]:
    """Create ``count`` deals (with contacts, labels, activity dates); their ids."""
    as_of = as_of.astimezone(UTC).replace(microsecond=0)
    known = portal.properties["deals"]
    ids: list[str] = []
    for number in range(start, start + count):
        shape = ARCHETYPES[number % len(ARCHETYPES)]
        cycle = number // len(ARCHETYPES)
        jitter = 0 if cycle == 0 else rng.randint(0, 2)
        scale = 1.0 if cycle == 0 else rng.uniform(0.8, 1.25)
        owner_index = number % len(owners)
        company = _COMPANIES[number % len(_COMPANIES)]
        if number >= len(_COMPANIES):
            company = f"{company} {number // len(_COMPANIES) + 1}"
        product = _PRODUCTS[(number * 7 + cycle) % len(_PRODUCTS)]

        def amount(value: float, scale: float = scale) -> str:
            scaled = round(value * scale, -2)
            if (value >= 50000) != (scaled >= 50000):
                scaled = value
            return str(int(scaled))

        created = _at(as_of, shape.created - jitter, rng)
        values: dict[str, Any] = {
            "dealname": f"{company} - {product}"
            + (" renewal" if shape.dealtype == "existingbusiness" else ""),
            "pipeline": shape.pipeline,
            "dealstage": shape.stage,
            "amount": amount(shape.amount),
            "closedate": _day(as_of, shape.close),
            "hubspot_owner_id": str(owners[owner_index][0]),
            "dealtype": shape.dealtype,
            "description": f"{product} for {company}.",
            "deal_currency_code": "USD",
            **shape.extra,
        }
        if shape.next_step:
            values["hs_next_step"] = shape.next_step
        if shape.methodology != "none":
            for name, text in _METHODOLOGY_FULL.items():
                if name not in known:
                    continue
                if shape.methodology == "full":
                    values[name] = text
                elif name in {"dealcoach_metrics", "dealcoach_identify_pain"}:
                    values[name] = "TBD" if name == "dealcoach_metrics" else text
        values = {name: value for name, value in values.items() if name in known}
        deal = portal.create("deals", values, _user(owners[owner_index]), at=created)
        current = owner_index
        if shape.forecast:
            portal.update(
                deal,
                {"hs_manual_forecast_category": shape.forecast},
                _user(owners[current]),
                at=created + timedelta(minutes=5),
            )
        for day, change in shape.events:
            at = _at(as_of, day - (jitter if day < -40 else 0), rng)
            if at <= created:
                at = created + timedelta(hours=1)
            update: dict[str, Any] = {}
            if "stage" in change:
                update["dealstage"] = change["stage"]
            if "amount" in change:
                update["amount"] = amount(float(change["amount"]))
            if "close" in change:
                update["closedate"] = _day(as_of, int(change["close"]))
            if "forecast" in change:
                update["hs_manual_forecast_category"] = change["forecast"]
            if "owner" in change:
                current = (current + int(change["owner"])) % len(owners)
                update["hubspot_owner_id"] = str(owners[current][0])
            portal.update(deal, update, _user(owners[current]), at=at)
        for index, label in enumerate(shape.contacts):
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            domain = "".join(c for c in company.lower() if c.isalnum())[:20] + ".example"
            contact = portal.create(
                "contacts",
                {
                    "firstname": first,
                    "lastname": last,
                    "email": f"{first}.{last}@{domain}".lower().replace("'", ""),
                    "jobtitle": _TITLES.get(label, "Manager"),
                    "company": company,
                },
                _user(owners[owner_index]),
                at=created,
            )
            types = [3]
            if label is not None:
                types.append(37 + 2 * CONTACT_LABELS.index(label))
            portal.associate(
                "deals",
                deal.id,
                "contacts",
                contact.id,
                types,
                at=created + timedelta(minutes=10 + index),
            )
        rollups: dict[str, str] = {}
        stamp = created + timedelta(hours=2)
        if shape.last_contacted is not None:
            contacted = _at(as_of, shape.last_contacted, rng)
            stamp = max(stamp, contacted)
            rollups["notes_last_contacted"] = format_datetime(contacted)
            rollups["notes_last_updated"] = format_datetime(contacted)
        if shape.next_activity is not None:
            due = _day(as_of, shape.next_activity)
            rollups["notes_next_activity_date"] = due.replace("T00:00:00", "T15:00:00")
        if rollups:
            stamp = min(stamp, as_of - timedelta(seconds=1))
            portal.update(deal, rollups, CALCULATED, at=stamp, checked=True)
        ids.append(deal.id)
    return ids
