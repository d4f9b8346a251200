"""Org rules that run on their own (issue 17 item 4): validation rules, duplicate rules and formula fields declared
in the org definition, on every write path (REST, Collections, Composite, Bulk), with Salesforce's error codes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sfint.emulator import EmulatorProcess
from airflow_provider_sfint.emulator.schema import Org

from .helpers import Admin, SalesforceHttp, demo_org_spec, org_file

RULES = {
    "validationRules": {
        "Revenue_Not_Negative": {
            "object": "Account",
            "condition": "AnnualRevenue < 0",
            "message": "Annual revenue cannot be negative",
            "field": "AnnualRevenue",
        },
        "Customers_Need_A_Phone": {
            "object": "Account",
            "condition": "AND(ISPICKVAL(Type, 'Customer - Direct'), ISBLANK(Phone))",
            "message": "A customer needs a phone number",
        },
        "Renames_Keep_The_Prefix": {
            "object": "Account",
            "condition": "AND(NOT(ISNEW()), ISCHANGED(Name), LEFT_PREFIX__c = 'KEEP' && LEN(Name) < 3)",
            "message": "too short",
            "active": False,
        },
    },
    "duplicateRules": {"Same_Name_And_City": {"object": "Account", "match": ["Name", "BillingCity"]}},
}
FORMULAS = {
    "Revenue_Per_Employee__c": {
        "type": "formula",
        "returnType": "currency",
        "formula": "IF(NumberOfEmployees > 0, AnnualRevenue / NumberOfEmployees, NULL)",
    },
    "Name_Shout__c": {"type": "formula", "returnType": "text", "formula": "UPPER(Name) & '!'"},
    "Big__c": {"type": "formula", "returnType": "checkbox", "formula": "AnnualRevenue >= 1000000"},
    "LEFT_PREFIX__c": {"type": "string", "length": 10},
}


def _org_file(folder: Path) -> Path:
    spec = demo_org_spec()
    spec.update(RULES)
    spec["objects"]["Account"]["fields"].update(FORMULAS)
    return org_file(folder, spec)


@pytest.fixture(scope="module")
def ruled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(seed="empty", org=_org_file(tmp_path_factory.mktemp("org"))) as server:
        yield server


@pytest.fixture()
def sf_rules(ruled: EmulatorProcess) -> Iterator[SalesforceHttp]:
    with Admin(ruled.url) as admin:
        admin.reset(seed="empty")
    with SalesforceHttp.login(ruled.url) as client:
        yield client


def _error(response: Any) -> dict[str, Any]:
    body = response.json()
    return dict(body[0] if isinstance(body, list) else body)


def test_validation_rules_on_rest(sf_rules: SalesforceHttp) -> None:
    bad = sf_rules.post("sobjects/Account", json={"Name": "Minus", "AnnualRevenue": -5})
    assert bad.status_code == 400
    assert _error(bad) == {
        "message": "Annual revenue cannot be negative",
        "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "fields": ["AnnualRevenue"],
    }
    customer = sf_rules.post("sobjects/Account", json={"Name": "Cust", "Type": "Customer - Direct"})
    assert customer.status_code == 400 and _error(customer)["fields"] == []
    ok = sf_rules.post("sobjects/Account", json={"Name": "Cust", "Type": "Customer - Direct", "Phone": "1"})
    assert ok.status_code == 201
    # an update that leaves the record breaking a rule fails too (the rule sees the merged record)
    cleared = sf_rules.patch(f"sobjects/Account/{ok.json()['id']}", json={"Phone": None})
    assert cleared.status_code == 400 and _error(cleared)["message"] == "A customer needs a phone number"
    # the inactive rule does not run
    assert sf_rules.patch(f"sobjects/Account/{ok.json()['id']}", json={"Name": "Ab"}).status_code == 204


def test_validation_rules_fail_rows_on_collections_and_bulk(sf_rules: SalesforceHttp) -> None:
    records = [
        {"attributes": {"type": "Account"}, "Name": "Good", "AnnualRevenue": 5},
        {"attributes": {"type": "Account"}, "Name": "Bad", "AnnualRevenue": -1},
    ]
    answer = sf_rules.post("composite/sobjects", json={"allOrNone": False, "records": records}).json()
    assert answer[0]["success"] is True and answer[1]["success"] is False
    assert answer[1]["errors"][0]["statusCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    job = sf_rules.post("jobs/ingest", json={"object": "Account", "operation": "insert"}).json()["id"]
    csv = "Name,AnnualRevenue\nBulk good,10\nBulk bad,-10\n"
    sf_rules.http.put(sf_rules.path(f"jobs/ingest/{job}/batches"), content=csv, headers={"Content-Type": "text/csv"})
    sf_rules.patch(f"jobs/ingest/{job}", json={"state": "UploadComplete"})
    deadline = time.monotonic() + 30
    while sf_rules.get(f"jobs/ingest/{job}").json()["state"] != "JobComplete":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    failed = sf_rules.get(f"jobs/ingest/{job}/failedResults").text.splitlines()
    assert len(failed) == 2
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION:Annual revenue cannot be negative:AnnualRevenue --" in failed[1]


def test_duplicate_rules_block_a_second_record(sf_rules: SalesforceHttp) -> None:
    first = sf_rules.post("sobjects/Account", json={"Name": "Acme", "BillingCity": "Paris"})
    assert first.status_code == 201
    again = sf_rules.post("sobjects/Account", json={"Name": "ACME", "BillingCity": "Paris"})
    assert again.status_code == 400
    assert _error(again) == {"message": "Use one of these records?", "errorCode": "DUPLICATES_DETECTED", "fields": []}
    other_city = sf_rules.post("sobjects/Account", json={"Name": "Acme", "BillingCity": "Lyon"})
    assert other_city.status_code == 201
    moved = sf_rules.patch(f"sobjects/Account/{other_city.json()['id']}", json={"BillingCity": "Paris"})
    assert moved.status_code == 400 and _error(moved)["errorCode"] == "DUPLICATES_DETECTED"
    # saving the record itself is not a duplicate of itself
    assert sf_rules.patch(f"sobjects/Account/{first.json()['id']}", json={"Phone": "1"}).status_code == 204


def test_formula_fields_are_computed_and_never_writable(sf_rules: SalesforceHttp) -> None:
    created = sf_rules.post(
        "sobjects/Account", json={"Name": "Calc", "AnnualRevenue": 2_000_000, "NumberOfEmployees": 8}
    )
    record_id = created.json()["id"]
    fields = "Revenue_Per_Employee__c,Name_Shout__c,Big__c"
    got = sf_rules.get(f"sobjects/Account/{record_id}", params={"fields": fields}).json()
    assert got["Revenue_Per_Employee__c"] == 250000.0 and got["Name_Shout__c"] == "CALC!" and got["Big__c"] is True
    sf_rules.patch(f"sobjects/Account/{record_id}", json={"NumberOfEmployees": 0, "AnnualRevenue": 10})
    got = sf_rules.get(f"sobjects/Account/{record_id}", params={"fields": fields}).json()
    assert got["Revenue_Per_Employee__c"] is None and got["Big__c"] is False
    refused = sf_rules.patch(f"sobjects/Account/{record_id}", json={"Name_Shout__c": "x"})
    assert refused.status_code == 400 and _error(refused)["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    described = {f["name"]: f for f in sf_rules.get("sobjects/Account/describe").json()["fields"]}
    shout = described["Name_Shout__c"]
    assert shout["calculated"] is True and shout["calculatedFormula"] == "UPPER(Name) & '!'"
    assert shout["type"] == "string" and shout["createable"] is False and shout["updateable"] is False
    assert described["Revenue_Per_Employee__c"]["type"] == "currency"
    rows = sf_rules.query("SELECT Name_Shout__c FROM Account WHERE Big__c = false").json()["records"]
    assert [r["Name_Shout__c"] for r in rows] == ["CALC!"]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"validationRules": {"R": {"object": "Account", "condition": "Nope__c > 1", "message": "m"}}}, "no field"),
        ({"validationRules": {"R": {"object": "Account", "condition": "AND(", "message": "m"}}}, "expected"),
        ({"validationRules": {"R": {"object": "Account", "condition": "FOO(Name)", "message": "m"}}}, "unknown"),
        ({"validationRules": {"R": {"object": "Nope", "condition": "TRUE", "message": "m"}}}, "not an object"),
        ({"duplicateRules": {"D": {"object": "Account", "match": ["Nope"]}}}, "match must list fields"),
    ],
)
def test_bad_rules_are_refused_at_load_naming_them(rules: dict[str, Any], message: str) -> None:
    spec = demo_org_spec()
    spec.update(rules)
    with pytest.raises(ValueError, match=message):
        Org(spec)
