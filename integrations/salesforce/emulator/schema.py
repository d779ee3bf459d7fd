"""The sObjects the emulator knows, with the fields an org has (what ``describe`` answers).

Field names are matched case-insensitively, as SOQL and the REST API do; answers
use the canonical API name. Which optional standard fields (``LastStageChangeDate``,
``PushCount``, ``CurrencyIsoCode``) and which custom fields an Opportunity has is
chosen per org, so an adapter can be tested against an org that lacks them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_CUSTOM_FIELDS",
    "DEFAULT_OPTIONAL_FIELDS",
    "DEFAULT_TRACKED_FIELDS",
    "METHODOLOGY_FIELDS",
    "OPTIONAL_FIELDS",
    "SUMMARY_FIELDS",
    "ChildRelationship",
    "CustomField",
    "FieldDef",
    "SObjectDef",
    "build_schema",
]

#: Types whose values are text in SOQL (quoted literals, LIKE allowed).
TEXT_TYPES = frozenset(
    {"string", "textarea", "picklist", "multipicklist", "combobox", "email", "phone", "url"}
)
ID_TYPES = frozenset({"id", "reference"})
NUMBER_TYPES = frozenset({"currency", "double", "percent", "int"})


@dataclass(frozen=True)
class FieldDef:
    name: str
    type: str
    label: str = ""
    custom: bool = False
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    filterable: bool = True
    sortable: bool = True
    length: int = 0
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    calculated: bool = False
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    external_id: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label or self.name,
            "type": self.type,
            "custom": self.custom,
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "filterable": self.filterable,
            "sortable": self.sortable,
            "groupable": self.filterable and self.type not in {"textarea", "double", "currency"},
            "length": self.length,
            "calculated": self.calculated,
            "externalId": self.external_id,
            "idLookup": self.type == "id",
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "restrictedPicklist": self.restricted,
            "picklistValues": [
                {
                    "active": True,
                    "defaultValue": False,
                    "label": value,
                    "validFor": None,
                    "value": value,
                }
                for value in self.picklist
            ],
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"),
        }


_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "currency": "xsd:double",
    "double": "xsd:double",
    "percent": "xsd:double",
    "int": "xsd:int",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "base64": "xsd:base64Binary",
    "anyType": "xsd:anyType",
}


@dataclass(frozen=True)
class ChildRelationship:
    name: str  # e.g. OpportunityHistories
    child: str  # e.g. OpportunityHistory
    field: str  # the child's reference field, e.g. OpportunityId


@dataclass
class SObjectDef:
    name: str
    key_prefix: str
    label: str
    fields: dict[str, FieldDef] = field(default_factory=dict)  # by lower-case name
    children: dict[str, ChildRelationship] = field(default_factory=dict)  # by lower-case name
    createable: bool = True
    updateable: bool = True
    deletable: bool = True

    def add(self, *defs: FieldDef) -> None:
        for definition in defs:
            self.fields[definition.name.lower()] = definition

    def field(self, name: str) -> FieldDef | None:
        return self.fields.get(name.lower())

    def relationship(self, name: str) -> FieldDef | None:
        """The reference field behind a parent relationship name (``Owner`` -> ``OwnerId``)."""
        lowered = name.lower()
        for definition in self.fields.values():
            if definition.relationship_name and definition.relationship_name.lower() == lowered:
                return definition
        return None

    def describe(self, version: str) -> dict[str, Any]:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            "name": self.name,
            "label": self.label,
            "labelPlural": self.label + "s",
            "keyPrefix": self.key_prefix,
            "custom": False,
            "queryable": True,
            "createable": self.createable,
            "updateable": self.updateable,
            "deletable": self.deletable,
            "retrieveable": True,
            "searchable": True,
            "fields": [definition.describe() for definition in self.fields.values()],
            "childRelationships": [
                {
                    "childSObject": child.child,
                    "field": child.field,
                    "relationshipName": child.name,
                    "cascadeDelete": True,
                }
                for child in self.children.values()
            ],
            "urls": {
                "sobject": base,
                "describe": f"{base}/describe",
                "rowTemplate": f"{base}/{{ID}}",
            },
        }

    def summary(self, version: str) -> dict[str, Any]:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            "name": self.name,
            "label": self.label,
            "keyPrefix": self.key_prefix,
            "custom": False,
            "queryable": True,
            "createable": self.createable,
            "updateable": self.updateable,
            "urls": {"sobject": base, "describe": f"{base}/describe"},
        }


@dataclass(frozen=True)
class CustomField:
    """A custom Opportunity field: ``name`` ends in ``__c``."""

    name: str
    type: str = "textarea"
    length: int = 255
    label: str = ""
    external_id: bool = False

    def definition(self) -> FieldDef:
        long_text = self.type == "textarea" and self.length > 255
        return FieldDef(
            self.name,
            self.type,
            label=self.label or self.name[:-3].replace("_", " "),
            custom=True,
            length=self.length if self.type in TEXT_TYPES else 0,
            filterable=not long_text,
            sortable=not long_text,
            external_id=self.external_id,
        )


METHODOLOGY_FIELDS: tuple[CustomField, ...] = tuple(
    CustomField(name)
    for name in (
        "Metrics__c",
        "Economic_Buyer__c",
        "Decision_Criteria__c",
        "Decision_Process__c",
        "Paper_Process__c",
        "Identify_Pain__c",
        "Champion__c",
        "Competition__c",
    )
)
#: Fields a dealcoach package would add for its own write-back (summary on the record).
SUMMARY_FIELDS: tuple[CustomField, ...] = (
    CustomField("Dealcoach_Summary__c", "textarea", 32768, "Dealcoach Summary"),
    CustomField("Dealcoach_Health__c", "double", 0, "Dealcoach Health"),
    CustomField("Dealcoach_Reviewed_At__c", "datetime", 0, "Dealcoach Reviewed At"),
    CustomField("Dealcoach_Marker__c", "string", 80, "Dealcoach Marker"),
)
DEFAULT_CUSTOM_FIELDS = METHODOLOGY_FIELDS + SUMMARY_FIELDS
#: Standard Opportunity fields that only some orgs have.
OPTIONAL_FIELDS = frozenset({"LastStageChangeDate", "PushCount", "CurrencyIsoCode"})
DEFAULT_OPTIONAL_FIELDS = OPTIONAL_FIELDS
#: Field history tracking (OpportunityFieldHistory) for these Opportunity fields.
DEFAULT_TRACKED_FIELDS = frozenset({"StageName", "Amount", "CloseDate", "OwnerId"})

FORECAST_CATEGORIES = ("Omitted", "Pipeline", "Best Case", "Commit", "Closed")
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
CONTACT_ROLES = (
    "Business User",
    "Decision Maker",
    "Economic Buyer",
    "Economic Decision Maker",
    "Evaluator",
    "Executive Sponsor",
    "Influencer",
    "Technical Buyer",
    "Other",
)


def _ro(name: str, type_: str, **kwargs: Any) -> FieldDef:
    """A read-only (system or formula) field."""
    return FieldDef(name, type_, createable=False, updateable=False, **kwargs)


def _audit(with_created: bool = True) -> list[FieldDef]:
    fields = [
        _ro("IsDeleted", "boolean", nillable=False),
        _ro("SystemModstamp", "datetime", nillable=False),
    ]
    if with_created:
        fields += [
            _ro("CreatedDate", "datetime", nillable=False),
            _ro("CreatedById", "reference", reference_to=("User",), relationship_name="CreatedBy"),
            _ro("LastModifiedDate", "datetime", nillable=False),
            _ro(
                "LastModifiedById",
                "reference",
                reference_to=("User",),
                relationship_name="LastModifiedBy",
            ),
        ]
    return fields


def _owner() -> FieldDef:
    return FieldDef("OwnerId", "reference", reference_to=("User",), relationship_name="Owner")


def build_schema(
    stages: Sequence[str],
    optional_fields: Iterable[str],
    custom_fields: Iterable[CustomField],
) -> dict[str, SObjectDef]:
    """All sObjects of an org, keyed by lower-case name."""
    optional = set(optional_fields)
    unknown = optional - OPTIONAL_FIELDS
    if unknown:
        raise ValueError(f"unknown optional Opportunity fields: {sorted(unknown)}")
    objects: list[SObjectDef] = []

    opp = SObjectDef("Opportunity", "006", "Opportunity")
    opp.add(
        _ro("Id", "id", nillable=False, length=18),
        FieldDef("Name", "string", length=120, nillable=False),
        FieldDef("AccountId", "reference", reference_to=("Account",), relationship_name="Account"),
        FieldDef("Description", "textarea", length=32000, filterable=False, sortable=False),
        FieldDef("StageName", "picklist", length=255, nillable=False, picklist=tuple(stages)),
        FieldDef("Amount", "currency"),
        FieldDef("Probability", "percent"),
        _ro("ExpectedRevenue", "currency", calculated=True),
        FieldDef("CloseDate", "date", nillable=False),
        FieldDef(
            "Type", "picklist", length=255, picklist=("New Customer", "Existing Customer - Upgrade")
        ),
        FieldDef("NextStep", "string", length=255),
        FieldDef("LeadSource", "picklist", length=255, picklist=("Web", "Partner", "Other")),
        _ro("IsClosed", "boolean", nillable=False),
        _ro("IsWon", "boolean", nillable=False),
        FieldDef("ForecastCategoryName", "picklist", length=255, picklist=FORECAST_CATEGORIES),
        _owner(),
        _ro("LastActivityDate", "date"),
        _ro("HasOpenActivity", "boolean", nillable=False),
        _ro("HasOverdueTask", "boolean", nillable=False),
        *_audit(),
    )
    if "CurrencyIsoCode" in optional:
        opp.add(FieldDef("CurrencyIsoCode", "picklist", length=3, picklist=("USD", "EUR", "GBP")))
    if "LastStageChangeDate" in optional:
        opp.add(_ro("LastStageChangeDate", "datetime"))
    if "PushCount" in optional:
        opp.add(_ro("PushCount", "int"))
    for custom in custom_fields:
        if not custom.name.endswith("__c"):
            raise ValueError(f"a custom field name ends in __c: {custom.name!r}")
        opp.add(custom.definition())
    opp.children = {
        child.name.lower(): child
        for child in (
            ChildRelationship("OpportunityHistories", "OpportunityHistory", "OpportunityId"),
            ChildRelationship("Histories", "OpportunityFieldHistory", "OpportunityId"),
            ChildRelationship("OpportunityContactRoles", "OpportunityContactRole", "OpportunityId"),
            ChildRelationship("Tasks", "Task", "WhatId"),
            ChildRelationship("ContentDocumentLinks", "ContentDocumentLink", "LinkedEntityId"),
        )
    }
    objects.append(opp)

    history = SObjectDef(
        "OpportunityHistory",
        "008",
        "Opportunity History",
        createable=False,
        updateable=False,
        deletable=False,
    )
    history.add(
        _ro("Id", "id", nillable=False, length=18),
        _ro(
            "OpportunityId",
            "reference",
            reference_to=("Opportunity",),
            relationship_name="Opportunity",
        ),
        _ro("StageName", "picklist", length=255),
        _ro("Amount", "currency"),
        _ro("ExpectedRevenue", "currency"),
        _ro("CloseDate", "date"),
        _ro("Probability", "percent"),
        _ro("ForecastCategory", "picklist", length=40),
        _ro("PrevAmount", "currency"),
        _ro("PrevCloseDate", "date"),
        _ro("CreatedById", "reference", reference_to=("User",), relationship_name="CreatedBy"),
        _ro("CreatedDate", "datetime", nillable=False),
        _ro("SystemModstamp", "datetime", nillable=False),
        _ro("IsDeleted", "boolean", nillable=False),
    )
    objects.append(history)

    field_history = SObjectDef(
        "OpportunityFieldHistory",
        "017",
        "Opportunity Field History",
        createable=False,
        updateable=False,
        deletable=False,
    )
    field_history.add(
        _ro("Id", "id", nillable=False, length=18),
        _ro(
            "OpportunityId",
            "reference",
            reference_to=("Opportunity",),
            relationship_name="Opportunity",
        ),
        _ro("Field", "picklist", length=255),
        _ro("DataType", "picklist", length=255),
        _ro("OldValue", "anyType", filterable=False, sortable=False),
        _ro("NewValue", "anyType", filterable=False, sortable=False),
        _ro("CreatedById", "reference", reference_to=("User",), relationship_name="CreatedBy"),
        _ro("CreatedDate", "datetime", nillable=False),
        _ro("IsDeleted", "boolean", nillable=False),
    )
    objects.append(field_history)

    role = SObjectDef("OpportunityContactRole", "00K", "Opportunity Contact Role")
    role.add(
        _ro("Id", "id", nillable=False, length=18),
        FieldDef(
            "OpportunityId",
            "reference",
            reference_to=("Opportunity",),
            relationship_name="Opportunity",
            nillable=False,
        ),
        FieldDef("ContactId", "reference", reference_to=("Contact",), relationship_name="Contact"),
        FieldDef("Role", "picklist", length=40, picklist=CONTACT_ROLES),
        FieldDef("IsPrimary", "boolean", nillable=False),
        *_audit(),
    )
    objects.append(role)

    stage = SObjectDef(
        "OpportunityStage",
        "01J",
        "Opportunity Stage",
        createable=False,
        updateable=False,
        deletable=False,
    )
    stage.add(
        _ro("Id", "id", nillable=False, length=18),
        _ro("MasterLabel", "string", length=255),
        _ro("ApiName", "string", length=255),
        _ro("IsActive", "boolean", nillable=False),
        _ro("SortOrder", "int"),
        _ro("IsClosed", "boolean", nillable=False),
        _ro("IsWon", "boolean", nillable=False),
        _ro("ForecastCategory", "picklist", length=40),
        _ro("ForecastCategoryName", "picklist", length=40, picklist=FORECAST_CATEGORIES),
        _ro("DefaultProbability", "percent"),
        _ro("Description", "string", length=255),
        *_audit(),
    )
    objects.append(stage)

    task = SObjectDef("Task", "00T", "Task")
    task.add(
        _ro("Id", "id", nillable=False, length=18),
        FieldDef(
            "WhatId", "reference", reference_to=("Opportunity", "Account"), relationship_name="What"
        ),
        FieldDef("WhoId", "reference", reference_to=("Contact",), relationship_name="Who"),
        FieldDef("Subject", "combobox", length=255),
        FieldDef("ActivityDate", "date"),
        FieldDef(
            "Status", "picklist", length=40, nillable=False, picklist=TASK_STATUSES, restricted=True
        ),
        FieldDef(
            "Priority", "picklist", length=40, nillable=False, picklist=("High", "Normal", "Low")
        ),
        FieldDef("Description", "textarea", length=32000, filterable=False, sortable=False),
        _owner(),
        _ro("IsClosed", "boolean", nillable=False),
        FieldDef("TaskSubtype", "picklist", length=40, picklist=("Task", "Email", "Call")),
        *_audit(),
    )
    objects.append(task)

    note = SObjectDef("ContentNote", "069", "Note")
    note.add(
        _ro("Id", "id", nillable=False, length=18),
        FieldDef("Title", "string", length=255, nillable=False),
        FieldDef("Content", "base64", filterable=False, sortable=False),
        _ro("TextPreview", "string", length=300),
        _ro("FileType", "string", length=20),
        _ro("FileExtension", "string", length=40),
        _ro("ContentSize", "int"),
        _ro("LatestPublishedVersionId", "reference", reference_to=("ContentVersion",)),
        FieldDef("SharingPrivacy", "picklist", length=40, picklist=("N", "P")),
        _owner(),
        *_audit(),
    )
    objects.append(note)

    link = SObjectDef("ContentDocumentLink", "06A", "Content Document Link")
    link.add(
        _ro("Id", "id", nillable=False, length=18),
        FieldDef(
            "ContentDocumentId",
            "reference",
            reference_to=("ContentDocument",),
            relationship_name="ContentDocument",
            nillable=False,
            updateable=False,
        ),
        FieldDef(
            "LinkedEntityId",
            "reference",
            reference_to=("Opportunity", "Account", "User"),
            relationship_name="LinkedEntity",
            nillable=False,
            updateable=False,
        ),
        FieldDef("ShareType", "picklist", length=40, picklist=("V", "C", "I"), restricted=True),
        FieldDef(
            "Visibility",
            "picklist",
            length=40,
            picklist=("AllUsers", "InternalUsers", "SharedUsers"),
            restricted=True,
        ),
        *_audit(with_created=False),
    )
    objects.append(link)

    user = SObjectDef("User", "005", "User", createable=False, deletable=False)
    user.add(
        _ro("Id", "id", nillable=False, length=18),
        FieldDef("Username", "string", length=80),
        FieldDef("Name", "string", length=121, createable=False, updateable=False),
        FieldDef("FirstName", "string", length=40),
        FieldDef("LastName", "string", length=80),
        FieldDef("Email", "email", length=128),
        FieldDef("IsActive", "boolean", nillable=False),
        FieldDef("Title", "string", length=80),
        *_audit(),
    )
    objects.append(user)

    account = SObjectDef("Account", "001", "Account")
    account.add(
        _ro("Id", "id", nillable=False, length=18),
        FieldDef("Name", "string", length=255, nillable=False),
        FieldDef("Industry", "picklist", length=255),
        _owner(),
        *_audit(),
    )
    account.children = {
        "opportunities": ChildRelationship("Opportunities", "Opportunity", "AccountId"),
        "contacts": ChildRelationship("Contacts", "Contact", "AccountId"),
    }
    objects.append(account)

    contact = SObjectDef("Contact", "003", "Contact")
    contact.add(
        _ro("Id", "id", nillable=False, length=18),
        FieldDef("AccountId", "reference", reference_to=("Account",), relationship_name="Account"),
        FieldDef("FirstName", "string", length=40),
        FieldDef("LastName", "string", length=80, nillable=False),
        _ro("Name", "string", length=121),
        FieldDef("Title", "string", length=128),
        FieldDef("Email", "email", length=80),
        _owner(),
        *_audit(),
    )
    objects.append(contact)

    organization = SObjectDef(
        "Organization", "00D", "Organization", createable=False, updateable=False, deletable=False
    )
    organization.add(
        _ro("Id", "id", nillable=False, length=18),
        _ro("Name", "string", length=80),
        _ro("IsSandbox", "boolean", nillable=False),
        _ro("OrganizationType", "picklist", length=40),
        _ro("InstanceName", "string", length=5),
    )
    objects.append(organization)
    return {definition.name.lower(): definition for definition in objects}
