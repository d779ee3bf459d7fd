"""The in-CRM card packages are well-formed and agree with the service.

Salesforce: every metadata XML of the SFDX package parses, has the Metadata API root its
file suffix names, and the pieces refer to each other by the right names (the fields the
service writes, the permission set, the External Credential principal, the Flow's Outbound
Message). HubSpot: every JSON file of the 2025.2 project parses and has the shape the
developer platform reads. Their JavaScript tests run with `make cards-test`.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from setuptools import find_namespace_packages

from app.coaching.snapshot import SUMMARY_KEYS
from app.connections.oauth import HUBSPOT_SCOPES
from integrations.salesforce.adapter import SUMMARY_FIELDS

ROOT = Path(__file__).resolve().parents[2]
SALESFORCE = ROOT / "integrations" / "salesforce"
DEFAULT = SALESFORCE / "force-app" / "main" / "default"
HUBSPOT = ROOT / "integrations" / "hubspot" / "project"
CARDS = HUBSPOT / "src" / "app" / "cards"
MD = "{http://soap.sforce.com/2006/04/metadata}"

# file suffix -> Metadata API type of the root element
ROOTS = {
    ".field-meta.xml": "CustomField",
    ".permissionset-meta.xml": "PermissionSet",
    ".namedCredential-meta.xml": "NamedCredential",
    ".externalCredential-meta.xml": "ExternalCredential",
    ".flow-meta.xml": "Flow",
    ".workflow-meta.xml": "Workflow",
    ".cls-meta.xml": "ApexClass",
    ".js-meta.xml": "LightningComponentBundle",
}


def _files(root: Path, pattern: str) -> list[Path]:
    return sorted(p for p in root.rglob(pattern) if "node_modules" not in p.parts)


def _xml(path: Path) -> ElementTree.Element:
    return ElementTree.parse(path).getroot()


def _texts(element: ElementTree.Element, path: str) -> list[str]:
    return [(e.text or "").strip() for e in element.findall(path)]


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------ Salesforce


def test_every_metadata_file_is_well_formed_with_its_root_type() -> None:
    files = _files(SALESFORCE / "force-app", "*.xml")
    assert len(files) >= 13
    for path in files:
        suffix = next((s for s in ROOTS if path.name.endswith(s)), None)
        assert suffix, f"unexpected metadata file {path.name}"
        root = _xml(path)
        assert root.tag == MD + ROOTS[suffix], path.name


def test_custom_fields_are_exactly_the_ones_the_service_writes() -> None:
    fields = {
        p.name.removesuffix(".field-meta.xml"): _xml(p)
        for p in (DEFAULT / "objects" / "Opportunity" / "fields").glob("*.field-meta.xml")
    }
    assert set(fields) == set(SUMMARY_FIELDS.values())
    # and every one of them is a key the service's summary carries
    assert {name.removesuffix("__c").lower() for name in fields} == set(SUMMARY_KEYS)
    for name, root in fields.items():
        assert root.findtext(MD + "fullName") == name
    types = {name: root.findtext(MD + "type") for name, root in fields.items()}
    assert types == {
        "Dealcoach_Health__c": "Number",
        "Dealcoach_Band__c": "Text",
        "Dealcoach_Summary__c": "LongTextArea",
        "Dealcoach_Prompts__c": "LongTextArea",
        "Dealcoach_Marker__c": "Text",
    }
    # long enough for what the service writes (app.reviews.pipeline.summary_fields)
    assert int(fields["Dealcoach_Summary__c"].findtext(MD + "length") or 0) >= 1000
    assert int(fields["Dealcoach_Prompts__c"].findtext(MD + "length") or 0) >= 4000
    assert int(fields["Dealcoach_Band__c"].findtext(MD + "length") or 0) >= len("critical")


def test_card_permission_set_grants_the_controller_fields_and_principal() -> None:
    card = _xml(DEFAULT / "permissionsets" / "Dealcoach_Card.permissionset-meta.xml")
    assert _texts(card, f"{MD}classAccesses/{MD}apexClass") == ["DealCoachController"]
    readable = {
        fp.findtext(MD + "field"): (fp.findtext(MD + "readable"), fp.findtext(MD + "editable"))
        for fp in card.findall(MD + "fieldPermissions")
    }
    assert readable == {
        f"Opportunity.{name}": ("true", "false") for name in SUMMARY_FIELDS.values()
    }

    external = _xml(DEFAULT / "externalCredentials" / "Dealcoach.externalCredential-meta.xml")
    principals = [
        p.findtext(MD + "parameterName")
        for p in external.findall(MD + "externalCredentialParameters")
        if p.findtext(MD + "parameterType") == "NamedPrincipal"
    ]
    assert principals == ["Card_Key_Principal"]
    granted = _texts(
        card, f"{MD}externalCredentialPrincipalAccesses/{MD}externalCredentialPrincipal"
    )
    assert granted == [f"Dealcoach-{principals[0]}"]

    integration = _xml(DEFAULT / "permissionsets" / "Dealcoach_Integration.permissionset-meta.xml")
    editable = {
        fp.findtext(MD + "field")
        for fp in integration.findall(MD + "fieldPermissions")
        if fp.findtext(MD + "editable") == "true"
    }
    assert editable == {f"Opportunity.{name}" for name in SUMMARY_FIELDS.values()}


def test_named_credential_sends_the_card_key_header_without_a_secret() -> None:
    named = _xml(DEFAULT / "namedCredentials" / "Dealcoach.namedCredential-meta.xml")
    assert named.findtext(MD + "namedCredentialType") == "SecuredEndpoint"
    params = {
        p.findtext(MD + "parameterType"): p for p in named.findall(MD + "namedCredentialParameters")
    }
    assert params["Url"].findtext(MD + "parameterValue") == "https://dealcoach.example.com"
    assert params["Authentication"].findtext(MD + "externalCredential") == "Dealcoach"

    external = _xml(DEFAULT / "externalCredentials" / "Dealcoach.externalCredential-meta.xml")
    assert external.findtext(MD + "authenticationProtocol") == "Custom"
    headers = {
        p.findtext(MD + "parameterName"): p.findtext(MD + "parameterValue")
        for p in external.findall(MD + "externalCredentialParameters")
        if p.findtext(MD + "parameterType") == "AuthHeader"
    }
    # the value is a reference to the principal's parameter, set in Setup: never a key
    assert headers == {"X-Dealcoach-Card-Key": "{!$Credential.Dealcoach.CardKey}"}


def test_apex_calls_the_card_api_through_the_named_credential() -> None:
    source = (DEFAULT / "classes" / "DealCoachController.cls").read_text(encoding="utf-8")
    assert "'callout:Dealcoach/cards/v1/salesforce/opportunities/'" in source
    assert "'/review?user_id='" in source
    assert "'/feedback'" in source
    assert "@AuraEnabled" in source
    test = (DEFAULT / "classes" / "DealCoachControllerTest.cls").read_text(encoding="utf-8")
    assert "implements HttpCalloutMock" in test
    assert len(re.findall(r"@IsTest\s+static void", test)) >= 8
    for status in ("200", "404", "401", "503", "201", "422", "500"):
        assert f"({status}," in test or f"CardApiMock({status}" in test, status


def test_flow_sends_the_outbound_message_on_a_stage_change() -> None:
    workflow = _xml(DEFAULT / "workflows" / "Opportunity.workflow-meta.xml")
    (message,) = workflow.findall(MD + "outboundMessages")
    name = message.findtext(MD + "fullName")
    assert {"Id", "StageName"} <= set(_texts(message, MD + "fields"))
    assert message.findtext(MD + "includeSessionId") == "false"

    flow = _xml(DEFAULT / "flows" / "Dealcoach_Stage_Change.flow-meta.xml")
    (action,) = flow.findall(MD + "actionCalls")
    assert action.findtext(MD + "actionType") == "outboundMessage"
    assert action.findtext(MD + "actionName") == f"Opportunity.{name}"
    start = flow.find(MD + "start")
    assert start is not None
    assert start.findtext(MD + "object") == "Opportunity"
    assert start.findtext(MD + "triggerType") == "RecordAfterSave"
    assert start.findtext(f"{MD}connector/{MD}targetReference") == action.findtext(MD + "name")
    (condition,) = start.findall(MD + "filters")
    assert condition.findtext(MD + "field") == "StageName"
    assert condition.findtext(MD + "operator") == "IsChanged"


def test_deploy_time_replacements_point_at_real_strings() -> None:
    project = _json(SALESFORCE / "sfdx-project.json")
    assert project["packageDirectories"][0]["path"] == "force-app"
    replacements = project["replacements"]
    assert {r["replaceWithEnv"] for r in replacements} == {
        "DEALCOACH_URL",
        "DEALCOACH_OUTBOUND_MESSAGE_URL",
        "DEALCOACH_INTEGRATION_USERNAME",
    }
    for replacement in replacements:
        text = (SALESFORCE / replacement["filename"]).read_text(encoding="utf-8")
        assert replacement["stringToReplace"] in text


def test_lwc_is_on_the_opportunity_record_page_and_reads_only_package_fields() -> None:
    bundle = DEFAULT / "lwc" / "dealCoach"
    meta = _xml(bundle / "dealCoach.js-meta.xml")
    assert meta.findtext(MD + "isExposed") == "true"
    assert _texts(meta, f"{MD}targets/{MD}target") == ["lightning__RecordPage"]
    assert _texts(meta, f"{MD}targetConfigs/{MD}targetConfig/{MD}objects/{MD}object") == [
        "Opportunity"
    ]
    source = (bundle / "dealCoach.js").read_text(encoding="utf-8")
    imported = set(re.findall(r"@salesforce/schema/Opportunity\.(\w+)", source))
    assert imported and imported <= set(SUMMARY_FIELDS.values())
    assert set(re.findall(r"@salesforce/apex/DealCoachController\.(\w+)", source)) == {
        "getReview",
        "sendFeedback",
    }


# ------------------------------------------------------------------ HubSpot


def test_every_json_file_parses() -> None:
    files = _files(SALESFORCE, "*.json") + _files(HUBSPOT, "*.json")
    assert len(files) >= 10
    for path in files:
        assert isinstance(_json(path), dict), path


def test_hubspot_project_is_a_2025_2_app_with_its_scopes_and_urls() -> None:
    assert _json(HUBSPOT / "hsproject.json") == {
        "name": "dealcoach",
        "srcDir": "src",
        "platformVersion": "2025.2",
    }
    app = _json(HUBSPOT / "src" / "app" / "app-hsmeta.json")
    assert app["type"] == "app"
    auth = app["config"]["auth"]
    assert auth["type"] == "oauth"
    # exactly the scopes the service's OAuth flow asks for (HubSpot refuses an install
    # whose authorize URL lacks one of the app's required scopes)
    assert set(auth["requiredScopes"]) == set(HUBSPOT_SCOPES)
    assert {"crm.objects.deals.read", "crm.objects.deals.write", "oauth"} <= set(HUBSPOT_SCOPES)
    assert auth["redirectUrls"] == ["https://dealcoach.example.com/oauth/callback/hubspot"]
    assert app["config"]["permittedUrls"]["fetch"] == ["https://dealcoach.example.com"]


def test_hubspot_webhooks_subscribe_to_deal_stage_changes_and_creations() -> None:
    hooks = _json(HUBSPOT / "src" / "app" / "webhooks" / "webhooks-hsmeta.json")
    assert hooks["type"] == "webhooks"
    assert hooks["config"]["settings"]["targetUrl"] == (
        "https://dealcoach.example.com/webhooks/hubspot"
    )
    subscriptions = {
        (s["subscriptionType"], s["objectType"], s.get("propertyName"), s["active"])
        for s in hooks["config"]["subscriptions"]["crmObjects"]
    }
    assert subscriptions == {
        ("object.propertyChange", "deal", "dealstage", True),
        ("object.creation", "deal", None, True),
    }


def test_hubspot_cards_are_on_the_deal_tab_and_sidebar() -> None:
    metas = [_json(p) for p in sorted(CARDS.glob("*-hsmeta.json"))]
    assert sorted(m["config"]["location"] for m in metas) == [
        "crm.record.sidebar",
        "crm.record.tab",
    ]
    uids = [m["uid"] for m in metas]
    assert len(set(uids)) == len(uids)
    for meta in metas:
        assert meta["type"] == "card"
        assert meta["config"]["objectTypes"] == ["deals"]
        entry = meta["config"]["entrypoint"]
        assert entry.startswith("/app/cards/")
        assert (HUBSPOT / "src" / entry.removeprefix("/")).is_file(), entry
    package = _json(CARDS / "package.json")
    assert "@hubspot/ui-extensions" in package["dependencies"]
    assert (CARDS / "package-lock.json").is_file()


def test_hubspot_fallback_reads_the_summary_properties_the_service_writes() -> None:
    config = (CARDS / "config.js").read_text(encoding="utf-8")
    block = config.split("SUMMARY_PROPERTIES = [", 1)[1].split("]", 1)[0]
    properties = set(re.findall(r"'([a-z_]+)'", block))
    assert properties and properties <= set(SUMMARY_KEYS)


# ------------------------------------------------------------------ packaging


@pytest.mark.parametrize("needle", ["node_modules", "force-app", "project"])
def test_card_projects_are_not_python_packages(needle: str) -> None:
    find = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]["packages"]["find"]
    packages = find_namespace_packages(
        where=str(ROOT), include=find["include"], exclude=find["exclude"]
    )
    assert "integrations.salesforce" in packages
    assert not [p for p in packages if needle in p.split(".")]
