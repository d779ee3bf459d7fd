"""What a portal is made of: deal pipelines, property definitions, association types.

A new HubSpot portal has the ``default`` deal pipeline (stage ids such as
``appointmentscheduled``); pipelines created later get numeric ids, and so do
their stages. Each stage has a ``hs_date_entered_<stageId>`` and a
``hs_v2_date_entered_<stageId>`` property (read-only, calculated from the
``dealstage`` history). Custom properties (``dealcoach_*``) are chosen per
portal so an adapter can be tested against a portal that lacks them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ASSOCIATION_TYPES",
    "CONTACT_LABELS",
    "DEFAULT_CUSTOM_PROPERTIES",
    "DEFAULT_PIPELINES",
    "METHODOLOGY_PROPERTIES",
    "SUMMARY_PROPERTIES",
    "AssociationType",
    "PipelineDef",
    "PropertyDef",
    "StageDef",
    "deal_properties",
]

#: Every pipeline, stage and HubSpot-defined property was created at this moment.
CREATED_AT = "2024-03-11T15:02:44.182Z"


@dataclass(frozen=True)
class StageDef:
    id: str
    label: str
    probability: float
    is_closed: bool = False

    @property
    def is_won(self) -> bool:
        return self.is_closed and self.probability == 1.0


@dataclass(frozen=True)
class PipelineDef:
    id: str
    label: str
    stages: tuple[StageDef, ...]

    def stage(self, stage_id: str) -> StageDef | None:
        return next((stage for stage in self.stages if stage.id == stage_id), None)

    def order(self, stage_id: str) -> int:
        return next(i for i, stage in enumerate(self.stages) if stage.id == stage_id)

    def wire(self, display_order: int) -> dict[str, Any]:
        """The pipeline as ``GET /crm/v3/pipelines/deals`` returns it."""
        return {
            "label": self.label,
            "displayOrder": display_order,
            "id": self.id,
            "stages": [
                {
                    "label": stage.label,
                    "displayOrder": order,
                    "metadata": {
                        "isClosed": "true" if stage.is_closed else "false",
                        "probability": repr(stage.probability),
                    },
                    "id": stage.id,
                    "createdAt": CREATED_AT,
                    "updatedAt": CREATED_AT,
                    "archived": False,
                    "writePermissions": "CRUD_ALL",
                }
                for order, stage in enumerate(self.stages)
            ],
            "createdAt": CREATED_AT,
            "updatedAt": CREATED_AT,
            "archived": False,
        }


DEFAULT_PIPELINES: tuple[PipelineDef, ...] = (
    PipelineDef(
        "default",
        "Sales Pipeline",
        (
            StageDef("appointmentscheduled", "Appointment Scheduled", 0.2),
            StageDef("qualifiedtobuy", "Qualified To Buy", 0.4),
            StageDef("presentationscheduled", "Presentation Scheduled", 0.6),
            StageDef("decisionmakerboughtin", "Decision Maker Bought-In", 0.8),
            StageDef("contractsent", "Contract Sent", 0.9),
            StageDef("closedwon", "Closed Won", 1.0, is_closed=True),
            StageDef("closedlost", "Closed Lost", 0.0, is_closed=True),
        ),
    ),
    PipelineDef(
        "1467325",
        "Renewals",
        (
            StageDef("2917350", "Renewal Upcoming", 0.3),
            StageDef("2917351", "Usage Review", 0.5),
            StageDef("2917352", "Renewal Quote Sent", 0.8),
            StageDef("2917353", "Renewed", 1.0, is_closed=True),
            StageDef("2917354", "Churned", 0.0, is_closed=True),
        ),
    ),
)


@dataclass(frozen=True)
class PropertyDef:
    """One deal property as ``GET /crm/v3/properties/deals`` describes it.

    ``type``: string, number, date, datetime, enumeration, bool; ``field_type``:
    text, textarea, number, date, select, booleancheckbox, calculation_equation.
    """

    name: str
    label: str
    type: str = "string"
    field_type: str = "text"
    group_name: str = "dealinformation"
    description: str = ""
    options: tuple[tuple[str, str], ...] = ()  # (value, label)
    hubspot_defined: bool = True
    calculated: bool = False
    read_only: bool = False
    created_at: str = CREATED_AT

    def wire(self, display_order: int = -1) -> dict[str, Any]:
        body: dict[str, Any] = {
            "updatedAt": self.created_at,
            "createdAt": self.created_at,
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "description": self.description,
            "groupName": self.group_name,
            "options": [
                {"label": label, "value": value, "displayOrder": i, "hidden": False}
                for i, (value, label) in enumerate(self.options)
            ],
            "displayOrder": display_order,
            "calculated": self.calculated,
            "externalOptions": False,
            "hasUniqueValue": False,
            "hidden": False,
            "modificationMetadata": {
                "archivable": not self.hubspot_defined,
                "readOnlyDefinition": self.hubspot_defined,
                "readOnlyValue": self.read_only,
            },
            "formField": not self.read_only,
            "archived": False,
        }
        if self.hubspot_defined:
            body["hubspotDefined"] = True
        return body


def _prop(
    name: str, label: str, kind: str = "string", field: str = "text", **extra: Any
) -> PropertyDef:
    return PropertyDef(name, label, kind, field, **extra)


_STANDARD: tuple[PropertyDef, ...] = (
    _prop("dealname", "Deal Name"),
    _prop("amount", "Amount", "number", "number"),
    _prop("closedate", "Close Date", "datetime", "date"),
    _prop("createdate", "Create Date", "datetime", "date"),
    _prop("dealstage", "Deal Stage", "enumeration", "radio"),
    _prop("pipeline", "Pipeline", "enumeration", "select"),
    _prop(
        "dealtype",
        "Deal Type",
        "enumeration",
        "radio",
        options=(("newbusiness", "New Business"), ("existingbusiness", "Existing Business")),
    ),
    _prop("description", "Deal Description", "string", "textarea"),
    _prop("hubspot_owner_id", "Deal owner", "enumeration", "select"),
    _prop("hs_next_step", "Next step", "string", "textarea"),
    _prop("deal_currency_code", "Currency", "enumeration", "select", options=(("USD", "USD"),)),
    _prop(
        "hs_manual_forecast_category",
        "Forecast category",
        "enumeration",
        "select",
        options=(
            ("OMIT", "Not forecasted"),
            ("PIPELINE", "Pipeline"),
            ("BEST_CASE", "Best case"),
            ("COMMIT", "Commit"),
            ("CLOSED", "Closed won"),
        ),
    ),
    _prop("closed_lost_reason", "Closed Lost Reason", "string", "textarea"),
    _prop("closed_won_reason", "Closed Won Reason", "string", "textarea"),
    _prop("hs_object_id", "Record ID", "number", "number", read_only=True),
    _prop("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", read_only=True),
    _prop(
        "hs_is_closed",
        "Is Deal Closed?",
        "bool",
        "booleancheckbox",
        calculated=True,
        read_only=True,
    ),
    _prop(
        "hs_is_closed_won",
        "Is closed won",
        "bool",
        "booleancheckbox",
        calculated=True,
        read_only=True,
    ),
    _prop(
        "hs_deal_stage_probability",
        "Deal probability",
        "number",
        "number",
        calculated=True,
        read_only=True,
    ),
    _prop(
        "notes_last_contacted",
        "Last Contacted",
        "datetime",
        "date",
        group_name="deal_activity",
        read_only=True,
    ),
    _prop(
        "notes_last_updated",
        "Last Activity Date",
        "datetime",
        "date",
        group_name="deal_activity",
        read_only=True,
    ),
    _prop(
        "notes_next_activity_date",
        "Next Activity Date",
        "datetime",
        "date",
        group_name="deal_activity",
        read_only=True,
    ),
    _prop(
        "num_notes",
        "Number of Sales Activities",
        "number",
        "number",
        group_name="deal_activity",
        read_only=True,
    ),
    _prop(
        "num_associated_contacts",
        "Number of Associated Contacts",
        "number",
        "number",
        read_only=True,
    ),
    _prop(
        "hs_v2_date_entered_current_stage",
        "Date entered current stage",
        "datetime",
        "date",
        calculated=True,
        read_only=True,
    ),
)

METHODOLOGY_PROPERTIES: tuple[PropertyDef, ...] = tuple(
    PropertyDef(name, label, "string", "textarea", "dealcoach", hubspot_defined=False)
    for name, label in (
        ("dealcoach_metrics", "Metrics"),
        ("dealcoach_economic_buyer", "Economic Buyer"),
        ("dealcoach_decision_criteria", "Decision Criteria"),
        ("dealcoach_decision_process", "Decision Process"),
        ("dealcoach_paper_process", "Paper Process"),
        ("dealcoach_identify_pain", "Identify Pain"),
        ("dealcoach_champion", "Champion"),
        ("dealcoach_competition", "Competition"),
    )
)
#: The rolling summary properties the service writes (``app/reviews/pipeline.py``).
SUMMARY_PROPERTIES: tuple[PropertyDef, ...] = (
    PropertyDef(
        "dealcoach_summary",
        "Dealcoach summary",
        "string",
        "textarea",
        "dealcoach",
        hubspot_defined=False,
    ),
    PropertyDef(
        "dealcoach_health",
        "Dealcoach health",
        "number",
        "number",
        "dealcoach",
        hubspot_defined=False,
    ),
    PropertyDef(
        "dealcoach_band", "Dealcoach band", "string", "text", "dealcoach", hubspot_defined=False
    ),
    PropertyDef(
        "dealcoach_prompts",
        "Dealcoach prompts",
        "string",
        "textarea",
        "dealcoach",
        hubspot_defined=False,
    ),
    PropertyDef(
        "dealcoach_marker", "Dealcoach marker", "string", "text", "dealcoach", hubspot_defined=False
    ),
)
DEFAULT_CUSTOM_PROPERTIES = METHODOLOGY_PROPERTIES + SUMMARY_PROPERTIES


def deal_properties(
    pipelines: Sequence[PipelineDef], custom: Iterable[PropertyDef]
) -> dict[str, PropertyDef]:
    """Every deal property of a portal by name: standard, per-stage timing, custom."""
    found = {prop.name: prop for prop in _STANDARD}
    for pipeline in pipelines:
        for stage in pipeline.stages:
            label = f"{stage.label} ({pipeline.label})"
            for prefix, what in (
                ("hs_date_entered_", "Date entered"),
                ("hs_v2_date_entered_", "Date entered"),
                ("hs_date_exited_", "Date exited"),
            ):
                name = f"{prefix}{stage.id}"
                found[name] = PropertyDef(
                    name,
                    f"{what} {label!r}",
                    "datetime",
                    "date",
                    calculated=True,
                    read_only=True,
                )
    for prop in custom:
        found[prop.name] = prop
    return found


NOTE_PROPERTIES: dict[str, PropertyDef] = {
    prop.name: prop
    for prop in (
        _prop("hs_note_body", "Note body", "string", "html", group_name="engagement"),
        _prop("hs_timestamp", "Activity date", "datetime", "date", group_name="engagement"),
        _prop("hubspot_owner_id", "Activity assigned to", "enumeration", "select"),
        _prop("hs_attachment_ids", "Attachment IDs", "enumeration", "checkbox"),
        _prop("hs_object_id", "Record ID", "number", "number", read_only=True),
        _prop("hs_createdate", "Object create date/time", "datetime", "date", read_only=True),
        _prop(
            "hs_lastmodifieddate",
            "Object last modified date/time",
            "datetime",
            "date",
            read_only=True,
        ),
    )
}

CONTACT_PROPERTIES: dict[str, PropertyDef] = {
    prop.name: prop
    for prop in (
        _prop("firstname", "First Name"),
        _prop("lastname", "Last Name"),
        _prop("email", "Email"),
        _prop("jobtitle", "Job Title"),
        _prop("company", "Company Name"),
        _prop("hs_object_id", "Record ID", "number", "number", read_only=True),
        _prop("createdate", "Create Date", "datetime", "date", read_only=True),
        _prop("lastmodifieddate", "Last Modified Date", "datetime", "date", read_only=True),
    )
}


@dataclass(frozen=True)
class AssociationType:
    """One association type between two object types (v4: category, typeId, label)."""

    from_type: str
    to_type: str
    type_id: int
    category: str = "HUBSPOT_DEFINED"
    label: str | None = None
    #: The v3 ``type`` name (``deal_to_contact``) of an unlabelled HubSpot-defined type.
    v3_name: str | None = None

    def wire(self) -> dict[str, Any]:
        return {"category": self.category, "typeId": self.type_id, "label": self.label}


#: Deal-to-contact labels defined in the portal (user-defined association types).
CONTACT_LABELS: tuple[str, ...] = (
    "Decision Maker",
    "Economic Buyer",
    "Champion",
    "Technical Buyer",
    "Influencer",
    "Evaluator",
)

ASSOCIATION_TYPES: tuple[AssociationType, ...] = (
    AssociationType("deals", "contacts", 3, v3_name="deal_to_contact"),
    AssociationType("contacts", "deals", 4, v3_name="contact_to_deal"),
    AssociationType("deals", "notes", 213, v3_name="deal_to_note"),
    AssociationType("notes", "deals", 214, v3_name="note_to_deal"),
    AssociationType("contacts", "notes", 201, v3_name="contact_to_note"),
    AssociationType("notes", "contacts", 202, v3_name="note_to_contact"),
    *(
        AssociationType("deals", "contacts", 37 + 2 * i, "USER_DEFINED", label)
        for i, label in enumerate(CONTACT_LABELS)
    ),
    *(
        AssociationType("contacts", "deals", 38 + 2 * i, "USER_DEFINED", label)
        for i, label in enumerate(CONTACT_LABELS)
    ),
)
