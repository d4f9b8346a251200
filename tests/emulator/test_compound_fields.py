"""Compound and less common field types (issue 17 item 3): addresses and geolocations as nested objects, Bulk
query refusing them, and the base64, combobox, encryptedstring and anyType types in describe and on the wire.
The recorded ``read-list-leads.json`` is the contract for the shape of an address."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sfint.emulator import EmulatorProcess

from .helpers import SalesforceHttp, demo_org_spec, org_file

TYPES = {
    "Site_Location__c": {"type": "location", "scale": 6, "label": "Site Location"},
    "Logo__c": {"type": "base64"},
    "Channel__c": {"type": "combobox", "values": ["Web", "Phone"]},
    "Tax_Number__c": {"type": "encryptedstring", "length": 20},
    "Raw_Value__c": {"type": "anyType"},
}


def test_an_address_is_a_nested_object_as_recorded(sf: SalesforceHttp, recorded: Path) -> None:
    """The emulator's answer to the recorded query has the recording's keys, in its order, with its types."""
    expected = json.loads((recorded / "read-list-leads.json").read_text())
    sf.post("sobjects/Lead", json={"LastName": "Bertha", "Company": "FSU", "City": "Tallahassee", "Country": "USA"})
    sf.post("sobjects/Lead", json={"LastName": "Empty", "Company": "None"})
    got = sf.query("SELECT Address, City, CleanStatus, FirstName FROM Lead ORDER BY CreatedDate DESC LIMIT 2").json()
    with_address, without = got["records"][1], got["records"][0]
    sample = next(r for r in expected["records"] if r["Address"] is not None)
    assert list(with_address) == list(sample)
    assert list(with_address["Address"]) == list(sample["Address"])
    assert with_address["Address"]["city"] == "Tallahassee" and with_address["Address"]["latitude"] is None
    assert without["Address"] is None  # every component null: the compound is null


def test_compound_fields_in_describe_rest_and_bulk(sf: SalesforceHttp) -> None:
    described = {f["name"]: f for f in sf.get("sobjects/Account/describe").json()["fields"]}
    billing = described["BillingAddress"]
    assert (billing["type"], billing["soapType"], billing["createable"], billing["filterable"]) == (
        "address",
        "urn:address",
        False,
        False,
    )
    assert described["BillingCity"]["compoundFieldName"] == "BillingAddress"
    assert described["Name"]["compoundFieldName"] is None
    record_id = sf.post(
        "sobjects/Account", json={"Name": "Addr", "BillingCity": "Lyon", "BillingStreet": "1 rue"}
    ).json()["id"]
    record = sf.get(f"sobjects/Account/{record_id}").json()
    assert record["BillingAddress"]["city"] == "Lyon" and record["BillingAddress"]["street"] == "1 rue"
    assert record["ShippingAddress"] is None
    refused = sf.patch(f"sobjects/Account/{record_id}", json={"BillingAddress": {"city": "Paris"}})
    assert refused.status_code == 400 and refused.json()[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    where = sf.query("SELECT Id FROM Account WHERE BillingAddress != null")
    assert where.status_code == 400 and "can not be filtered" in where.json()[0]["message"]
    bulk = sf.post("jobs/query", json={"operation": "query", "query": "SELECT Id, BillingAddress FROM Account"})
    assert bulk.status_code == 400 and "compound field BillingAddress" in bulk.json()[0]["message"]
    parent = sf.query(f"SELECT Id, (SELECT MailingAddress FROM Contacts) FROM Account WHERE Id = '{record_id}'")
    assert parent.status_code == 200


def _org_file(folder: Path) -> Path:
    spec = demo_org_spec()
    spec["objects"]["Account"]["fields"].update(TYPES)
    return org_file(folder, spec)


@pytest.fixture(scope="module")
def typed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesforceHttp]:
    org = _org_file(tmp_path_factory.mktemp("org"))
    with EmulatorProcess(seed="empty", org=org) as server, SalesforceHttp.login(server.url) as client:
        yield client


def test_a_geolocation_and_the_other_types(typed: SalesforceHttp) -> None:
    described = {f["name"]: f for f in typed.get("sobjects/Account/describe").json()["fields"]}
    assert described["Site_Location__c"]["type"] == "location"
    assert described["Site_Location__Latitude__s"]["compoundFieldName"] == "Site_Location__c"
    assert {n: described[n]["soapType"] for n in ("Logo__c", "Channel__c", "Tax_Number__c", "Raw_Value__c")} == {
        "Logo__c": "xsd:base64Binary",
        "Channel__c": "xsd:string",
        "Tax_Number__c": "xsd:string",
        "Raw_Value__c": "xsd:anyType",
    }
    assert described["Tax_Number__c"]["encrypted"] is True and described["Tax_Number__c"]["filterable"] is False
    logo = base64.b64encode(b"\x89PNG not really").decode()
    body = {
        "Name": "Typed",
        "Site_Location__Latitude__s": 48.8566,
        "Site_Location__Longitude__s": 2.3522,
        "Logo__c": logo,
        "Channel__c": "Partner portal",  # a combobox takes values outside its list
        "Tax_Number__c": "FR123",
        "Raw_Value__c": 42,
    }
    created = typed.post("sobjects/Account", json=body)
    assert created.status_code == 201, created.text
    record_id = created.json()["id"]
    columns = "Site_Location__c, Logo__c, Channel__c, Tax_Number__c, Raw_Value__c"
    soql = f"SELECT {columns} FROM Account WHERE Id = '{record_id}'"
    (row,) = typed.query(soql).json()["records"]
    assert row["Site_Location__c"] == {"latitude": 48.8566, "longitude": 2.3522}
    assert row["Logo__c"] == f"/services/data/v60.0/sobjects/Account/{record_id}/Logo__c"  # the URL, not the bytes
    assert (row["Channel__c"], row["Tax_Number__c"], row["Raw_Value__c"]) == ("Partner portal", "FR123", "42")
    bad = typed.post("sobjects/Account", json={"Name": "Bad blob", "Logo__c": "not base64!"})
    assert bad.status_code == 400
    bulk = typed.post("jobs/query", json={"operation": "query", "query": "SELECT Id, Logo__c FROM Account"})
    assert bulk.status_code == 400 and "base64 field Logo__c" in bulk.json()[0]["message"]


def test_unknown_field_type_is_refused_naming_it() -> None:
    spec: dict[str, Any] = demo_org_spec()
    spec["objects"]["Account"]["fields"]["Odd__c"] = {"type": "hologram"}
    from airflow_provider_sfint.emulator.schema import Org

    with pytest.raises(ValueError, match="unknown field type 'hologram' for field Odd__c"):
        Org(spec)
