"""Strict Salesforce id validation: what may ever reach a SOQL query from a webhook."""

from __future__ import annotations

import pytest

from integrations.salesforce.webhooks import (
    is_opportunity_id,
    is_salesforce_id,
    same_org,
)

from .conftest import OPP_1, ORG_15, ORG_ID, sfid


@pytest.mark.parametrize(
    ("id15", "id18"),
    [
        # Published examples of the case-safe suffix.
        ("001A0000006Vm9r", "001A0000006Vm9rIAC"),
        ("0015000000Gv7qJ", "0015000000Gv7qJAAR"),
        ("006000000000000", "006000000000000AAA"),
        ("ABCDEFGHIJKLMNO", "ABCDEFGHIJKLMNO555"),
    ],
)
def test_the_18_character_checksum_matches_salesforce(id15: str, id18: str) -> None:
    assert sfid(id15) == id18
    assert is_salesforce_id(id15)
    assert is_salesforce_id(id18)


def test_an_18_character_id_with_a_wrong_checksum_is_refused() -> None:
    assert is_salesforce_id("001A0000006Vm9rIAC")
    for wrong in ("001A0000006Vm9rIAD", "001A0000006Vm9rAAC", "001A0000006Vm9riac"):
        assert not is_salesforce_id(wrong)
    # The case-insensitive spelling of an id is not its canonical form.
    assert not is_salesforce_id("001a0000006vm9riac")
    assert not is_salesforce_id("001A0000006VM9RIAC")


@pytest.mark.parametrize(
    "value",
    [
        "006' OR Name != '",
        "006'OR'1'='1'--",  # 15 characters
        "0065g00000AbCdE' OR ''='",
        "0065g00000AbCdE\n",
        "0065g00000AbCdE ",
        " 0065g00000AbCdE",
        "0065g00000AbCdE%27",
        "0065g00000AbC;E",
        "0065g00000AbC-E",
        "0065g00000AbC_E",
        "006５g00000AbCdE",  # a full-width digit
        "0065g00000AbCdé",
        "0065g00000AbCd",  # 14
        "0065g00000AbCdEx",  # 16
        "0065g00000AbCdEAA",  # 17
        OPP_1 + "A",  # 19
        "",
        "'",
        "null",
    ],
)
def test_anything_but_a_strict_id_is_refused(value: str) -> None:
    assert not is_salesforce_id(value)
    assert not is_opportunity_id(value)


@pytest.mark.parametrize("value", [None, 6, 6.0, b"0065g00000AbCdE", ["0065g00000AbCdE"]])
def test_non_strings_are_refused(value: object) -> None:
    assert not is_salesforce_id(value)


def test_opportunity_ids_start_with_006() -> None:
    assert is_opportunity_id(OPP_1)
    assert is_opportunity_id(OPP_1[:15])
    assert is_salesforce_id(ORG_ID) and not is_opportunity_id(ORG_ID)
    assert not is_opportunity_id(sfid("0015g00000AcCnT"))
    assert is_salesforce_id(ORG_ID, "00D")


def test_org_ids_compare_on_their_first_15_characters() -> None:
    assert same_org(ORG_15, ORG_ID)
    assert same_org(ORG_ID, ORG_15)
    assert same_org(ORG_ID, ORG_ID)
    assert not same_org(ORG_15.lower(), ORG_ID)  # 15-character ids are case-sensitive
    assert not same_org(sfid("00D5g000009OtHr"), ORG_ID)
    assert not same_org("", ORG_ID)
    assert not same_org(ORG_ID + "'", ORG_ID)
