"""Deal reviews as a sales manager judges them, on deals exported from standard orgs.

Each scenario is a named deal with its CRM facts, built through the real export
mapping (Salesforce or HubSpot), reviewed under the default playbook. It names
the question that must come first and the ones that must not appear: every
number right, the deal's own facts in the question, real risks first, the
question the stage needs, nothing generic, nothing about fields the org never had.
"""

from __future__ import annotations

from datetime import UTC, datetime

from app.coaching.engine import review_deal
from app.coaching.results import DealReview

from .crm import hubspot, salesforce
from .factories import playbook

AS_OF = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

#: Questions that must never reach a manager on a standard org's deal: the
#: six fixed sentences of methodology fields the org does not have.
BOILERPLATE = (
    "What problem is the customer solving, and why must they solve it this quarter",
    "How will the customer measure success, in their numbers?",
    "What will they compare us on, and who wrote those criteria?",
    "Who else are they considering, including doing nothing?",
    "is absent",
)


def _review(deal: object) -> DealReview:
    return review_deal(deal, playbook(), AS_OF)  # type: ignore[arg-type]


def _texts(result: DealReview) -> list[str]:
    return [p.text for p in result.prompts]


def _assert_no_boilerplate(result: DealReview) -> None:
    asked = " ".join(p.text + " " + p.why for p in (*result.prompts, *result.rep_prompts))
    for sentence in BOILERPLATE:
        assert sentence not in asked


# --------------------------------------------------------------------------- Salesforce


def test_commit_forecast_in_an_early_stage_closing_in_25_days() -> None:
    """COACHING_EXAMPLES 2: Commit, Value Proposition (50%), closes 22 December, 15 days
    in the stage (LastStageChangeDate), created 87 days ago, next step 'Follow-up call
    booked'."""
    deal = salesforce(
        name="A. Datum - Analytics Platform",
        stage="Value Proposition",
        amount=150_000,
        close="2026-12-22",
        created="2026-09-01 10:00",
        history=[
            ("2026-09-01 10:00", "Prospecting", 150_000, "2026-12-22"),
            ("2026-11-12 14:00", "Value Proposition", 150_000, "2026-12-22"),
        ],
        contacts=[("Rita Gomez", "Decision Maker"), ("Paul Nguyen", "Technical Buyer")],
        next_step="Follow-up call booked",
        last_activity="2026-11-24",
        open_activity=True,
        forecast="Commit",
        extra={"LastStageChangeDate": "2026-11-12T14:00:00.000+0000"},
    )

    result = _review(deal)

    assert result.prompts[0].text.startswith(
        "It is forecast as Commit but still in Value Proposition, 25 days from its close "
        "date. Walk me through those 25 days"
    )
    assert (
        "'Follow-up call booked': what is that for, and who on their side accepted it?"
        in " ".join(_texts(result))
    )
    assert not any("87 days" in text for text in _texts(result))  # the created date's count
    assert "stalled_in_stage" not in {s.code for s in result.signals}
    assert result.health.band == "at_risk"
    _assert_no_boilerplate(result)


def test_renewal_past_its_date_in_negotiation() -> None:
    """COACHING_EXAMPLES 3: Type Renewal, Negotiation/Review at 90%, close date 15
    November passed 12 days ago, last activity 7 days ago."""
    deal = salesforce(
        name="Lamna Healthcare - Platform",
        stage="Negotiation/Review",
        amount=96_000,
        close="2026-11-15",
        created="2026-10-01 09:00",
        history=[
            ("2026-10-01 09:00", "Proposal/Price Quote", 96_000, "2026-11-15"),
            ("2026-11-02 11:00", "Negotiation/Review", 96_000, "2026-11-15"),
        ],
        contacts=[("Owen Park", "Economic Buyer"), ("Sara Ali", "Business User")],
        next_step="Order form with their procurement",
        last_activity="2026-11-20",
        forecast="Commit",
        extra={"Type": "Renewal"},
    )

    result = _review(deal)

    assert result.prompts[0].text == (
        "The renewal date, 15 November, passed 12 days ago. What are they running on now, "
        "no contract or an extension, and who on their side is holding the signature?"
    )
    assert (
        "What value did they get from us this term, in their numbers, and what else are "
        "they looking at before they renew?" in _texts(result)
    )
    assert not any("Who sells for us" in text for text in _texts(result))
    assert result.health.band == "at_risk"


def test_clean_deal_in_a_standard_org_is_healthy_with_one_question_for_its_stage() -> None:
    """COACHING_EXAMPLES 4: Proposal/Price Quote, closes in 3 weeks, Economic Buyer and
    Technical Buyer on the deal, next step 'Security review with their CISO on 12/2',
    no MEDDPICC fields in the org."""
    deal = salesforce(
        name="Trey Research - Lab Data Platform",
        stage="Proposal/Price Quote",
        amount=88_000,
        close="2026-12-18",
        created="2026-10-05 13:00",
        history=[
            ("2026-10-05 13:00", "Value Proposition", 88_000, "2026-12-18"),
            ("2026-11-16 11:00", "Proposal/Price Quote", 88_000, "2026-12-18"),
        ],
        contacts=[("Helen Zhou", "Economic Buyer"), ("Raj Mehta", "Technical Buyer")],
        next_step="Security review with their CISO on 12/2",
        last_activity="2026-11-25",
        open_activity=True,
        forecast="Best Case",
    )

    result = _review(deal)

    assert (result.health.band, result.health.score) == ("healthy", 100)
    assert [s.code for s in result.signals] == ["methodology_gap"]
    assert result.signals[0].status == "not_recorded"
    (prompt,) = result.prompts
    assert prompt.text.startswith(
        "The next step is 'Security review with their CISO on 12/2'. What should the customer "
        "have decided once it is done"
    )
    assert "not recorded in the CRM" in prompt.why
    _assert_no_boilerplate(result)


def test_history_that_starts_inside_the_current_stage_counts_at_least_from_its_first_row() -> None:
    """Created 200 days ago; the org's OpportunityHistory starts 45 days ago with the deal
    already in Id. Decision Makers (history switched on later). The created date would
    say 200 days; the truth is 'at least 45'."""
    deal = salesforce(
        name="Consolidated Messenger - Courier Dispatch",
        stage="Id. Decision Makers",
        amount=72_000,
        close="2027-02-26",
        created="2026-05-11 09:00",
        history=[
            ("2026-10-13 15:00", "Id. Decision Makers", 72_000, "2027-01-29"),
            ("2026-11-01 10:00", "Id. Decision Makers", 72_000, "2027-02-26"),
        ],
        contacts=[("Nina Olsen", "Economic Buyer"), ("Tom Reyes", "Evaluator")],
        next_step="Reference call with a courier firm in Leeds",
        last_activity="2026-11-24",
    )

    result = _review(deal)

    stalled = next(p for p in result.prompts if p.signal == "stalled_in_stage")
    assert stalled.text.startswith(
        "It has been in Id. Decision Makers for at least 45 days (since 13 October)."
    )
    assert stalled.why.startswith("At least 45 days in Id. Decision Makers")
    assert "200 days" not in stalled.text + stalled.why  # the created date's count
    aging = next(p for p in result.prompts if p.signal == "deal_aging")
    assert aging.text.startswith("This deal was opened on 11 May, 200 days ago.")


def test_a_history_that_starts_at_creation_in_the_current_stage_counts_from_creation() -> None:
    deal = salesforce(
        name="Fourth Coffee - POS Refresh",
        stage="Needs Analysis",
        amount=27_500,
        close="2027-02-26",
        created="2026-09-28 09:00",
        history=[("2026-09-28 09:00", "Needs Analysis", 27_500, "2027-02-26")],
        contacts=[("Aaron Feld", "Business User"), ("Megan Shaw", "Evaluator")],
        next_step="Site survey at the flagship store",
        last_activity="2026-11-24",
    )

    result = _review(deal)

    stalled = next(s for s in result.signals if s.code == "stalled_in_stage")
    assert stalled.facts["stage_days"] == "60 days"  # exact: created in this stage


def test_last_stage_change_date_wins_over_a_stale_history() -> None:
    deal = salesforce(
        name="Woodgrove - Treasury",
        stage="Id. Decision Makers",
        amount=60_000,
        close="2027-02-26",
        created="2026-05-01 09:00",
        history=[("2026-05-01 09:00", "Id. Decision Makers", 60_000, "2027-02-26")],
        contacts=[("Marcus Hale", "Economic Buyer"), ("Ann Ray", "Evaluator")],
        next_step="Workshop with the treasury team on 3 Dec",
        last_activity="2026-11-24",
        # Moved back and forth since; the record's own stage date says 10 days.
        extra={"LastStageChangeDate": "2026-11-17T08:00:00.000+0000"},
    )

    result = _review(deal)

    assert "stalled_in_stage" not in {s.code for s in result.signals}


def test_past_its_date_late_in_the_cycle_and_silent_is_critical() -> None:
    deal = salesforce(
        name="Northwind - Fleet Telematics",
        stage="Negotiation/Review",
        amount=84_000,
        close="2026-11-13",
        created="2026-07-14 10:00",
        history=[
            ("2026-07-14 10:00", "Prospecting", 84_000, "2026-11-13"),
            ("2026-11-02 17:00", "Negotiation/Review", 84_000, "2026-11-13"),
        ],
        contacts=[("Hannah Reid", "Economic Buyer"), ("Tom Alvarez", "Technical Buyer")],
        next_step="Awaiting signed order form from the Ops Director",
        last_activity="2026-10-27",
    )

    result = _review(deal)

    assert result.health.band == "critical"
    assert result.prompts[0].text.startswith(
        "The close date, 13 November, passed 14 days ago with the deal in Negotiation/Review."
    )
    assert result.prompts[1].signal == "no_recent_activity"
    assert result.prompts[1].text.startswith("The last logged activity was on 27 October, 31 days")
    # The late phase asks how they will sign, with the close plan.
    assert any("how they will sign" in text and "close plan" in text for text in _texts(result))


def test_a_deal_with_one_medium_risk_is_at_risk_and_a_clean_one_healthy() -> None:
    common = {
        "name": "Coho - ERP",
        "stage": "Value Proposition",
        "amount": 40_000,
        "created": "2026-11-05 09:00",
        "contacts": [("Isabel Ortiz", "Economic Buyer"), ("Luke Chambers", "Business User")],
        "next_step": "Inventory workshop with the CFO on 2 Dec",
        "last_activity": "2026-11-25",
    }
    history = [("2026-11-05 09:00", "Value Proposition", 40_000, "2027-02-12")]
    clean = _review(salesforce(close="2027-02-12", history=history, **common))  # type: ignore[arg-type]
    passed = _review(salesforce(close="2026-11-20", history=history, **common))  # type: ignore[arg-type]

    assert clean.health.band == "healthy"
    assert passed.health.band == "at_risk"
    assert passed.prompts[0].text.startswith("The close date, 20 November, passed 7 days ago.")


# --------------------------------------------------------------------------- HubSpot


def test_contract_sent_then_the_amount_falls_and_a_pricing_call_appears() -> None:
    """COACHING_EXAMPLES 1: 420,000 -> 260,000 on 18 November, four days after the stage
    moved to Contract Sent; next step 'Pricing call 12/4'; closes 31 January; three
    contacts, one labelled Economic Buyer."""
    deal = hubspot(
        name="Vertex Foods - Supply Chain Suite",
        stage="contractsent",
        amount=260_000,
        close="2027-01-31",
        created="2026-08-03 11:00",
        stages=[
            ("2026-08-03 11:00", "appointmentscheduled"),
            ("2026-10-19 14:00", "decisionmakerboughtin"),
            ("2026-11-14 09:40", "contractsent"),
        ],
        amounts=[("2026-08-03 11:00", 420_000), ("2026-11-18 16:20", 260_000)],
        contacts=["Economic Buyer", "Champion", None],
        next_step="Pricing call 12/4",
        last_activity="2026-11-25 10:30",
        next_activity="2026-12-04 15:00",
        properties={"hs_v2_date_entered_current_stage": "2026-11-14T09:40:00.000Z"},
    )

    result = _review(deal)

    first = result.prompts[0]
    assert first.text.startswith(
        "The amount fell from 420,000 to 260,000 4 days after the deal reached Contract Sent, "
        "and the next step is 'Pricing call 12/4'."
    )
    assert "sign at 260,000 by 31 January 2027" in first.text
    assert "Pricing call 12/4" in first.why  # the pricing call folded into the same question
    assert len(result.prompts) == 2
    assert "legal, procurement and security" in result.prompts[1].text
    assert not any("Who owns the budget" in text for text in _texts(result))
    _assert_no_boilerplate(result)


def test_unlabelled_contacts_in_decision_maker_bought_in_make_the_buyer_unknown_not_absent() -> (
    None
):
    deal = hubspot(
        name="Northbeam Logistics - Yard Management",
        stage="decisionmakerboughtin",
        amount=98_000,
        close="2027-01-20",
        created="2026-09-02 13:45",
        stages=[
            ("2026-09-02 13:45", "appointmentscheduled"),
            ("2026-11-10 11:39", "decisionmakerboughtin"),
        ],
        contacts=[None, None, None],
        next_step="Site visit at the Rotterdam yard on 3 Dec",
        last_activity="2026-11-25 14:00",
    )

    result = _review(deal)

    buyer = next(s for s in result.signals if s.code == "no_economic_buyer")
    assert buyer.status == "not_recorded"
    assert buyer.to_dict()["status"] == "not_recorded"  # the agenda skips it
    assert buyer.message.startswith("Economic buyer unknown")
    assert "No economic buyer" not in " ".join(s.message for s in result.signals)
    assert (result.health.band, result.health.score) == ("healthy", 100)
    assert len(result.prompts) == 1  # one discovery question, the one the phase needs
    assert result.prompts[0].text.startswith("What do we know about how they will sign")


def test_hubspot_current_stage_entry_date_drives_the_stage_clock() -> None:
    deal = hubspot(
        name="Brightline Architects - Project Accounting",
        stage="presentationscheduled",
        amount=52_000,
        close="2027-01-29",
        created="2026-08-11 11:44",
        stages=[("2026-08-11 11:44", "presentationscheduled")],
        contacts=["Economic Buyer", None],
        next_step="Send the revised licence count",
        last_activity="2026-11-24 16:40",
        properties={"hs_v2_date_entered_current_stage": "2026-10-06T10:00:00.000Z"},
    )

    result = _review(deal)

    stalled = next(s for s in result.signals if s.code == "stalled_in_stage")
    assert (stalled.facts["days"], stalled.facts["stage_days"]) == (52, "52 days")
    assert stalled.evidence[0].field == "hs_v2_date_entered_current_stage"


def test_hubspot_existing_business_is_a_renewal() -> None:
    deal = hubspot(
        name="Harborview Hotels - Guest Messaging",
        stage="contractsent",
        amount=64_000,
        close="2026-11-15",
        created="2026-09-01 10:20",
        stages=[("2026-09-01 10:20", "appointmentscheduled"), ("2026-11-10 09:55", "contractsent")],
        contacts=["Economic Buyer", None],
        next_step="GM signature on the renewal order form",
        last_activity="2026-11-23 16:45",
        properties={"dealtype": "existingbusiness"},
    )

    result = _review(deal)

    assert result.prompts[0].text.startswith("The renewal date, 15 November, passed 12 days ago.")


def test_criteria_questions_stop_after_propose_and_late_phases_ask_how_they_sign() -> None:
    """An org that records the MEDDPICC fields, all empty, at Contract Sent: the gaps are
    real, but by contract the question is how they will sign, not what they compare."""
    fields = {
        name: ""
        for name in (
            "dealcoach_decision_criteria",
            "dealcoach_decision_process",
            "dealcoach_paper_process",
        )
    }
    deal = hubspot(
        name="Lakeside Hospitality - Guest WiFi",
        stage="contractsent",
        amount=95_000,
        close="2026-12-12",
        created="2026-08-17 09:52",
        stages=[("2026-08-17 09:52", "appointmentscheduled"), ("2026-11-20 16:09", "contractsent")],
        contacts=["Economic Buyer", "Champion"],
        next_step="Countersignature from their GM",
        last_activity="2026-11-25 12:00",
        properties=fields,
    )

    result = _review(deal)

    asked = " ".join(_texts(result))
    assert "compare us on" not in asked
    assert result.prompts[0].element == "paper_process"
    assert "close plan" in result.prompts[0].text
    assert {p.element for p in result.prompts} >= {"paper_process", "decision_process"}


def test_what_the_org_does_not_record_never_lowers_health() -> None:
    kwargs = {
        "name": "Quartz Media - Ad Ops",
        "stage": "presentationscheduled",
        "amount": 64_000,
        "close": "2027-03-15",
        "created": "2026-11-01 12:16",
        "stages": [("2026-11-01 12:16", "presentationscheduled")],
        "contacts": ["Economic Buyer", "Champion"],
        "next_step": "Trafficking workshop with the ad ops lead on 2 Dec",
        "last_activity": "2026-11-24 11:45",
    }
    unrecorded = _review(hubspot(**kwargs))  # type: ignore[arg-type]
    recorded_empty = _review(
        hubspot(**kwargs, properties={"dealcoach_decision_process": ""})  # type: ignore[arg-type]
    )

    assert unrecorded.health.score == 100
    assert recorded_empty.health.score < 100
    process = next(j for j in unrecorded.methodology if j.element == "decision_process")
    assert process.status == "not_recorded"
    assert next(
        j for j in recorded_empty.methodology if j.element == "decision_process"
    ).status == ("absent")
