"""simple-salesforce, unchanged, against the emulator over HTTPS: its parsers accept our responses."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceMalformedRequest

from airflow_provider_sfint.emulator import CLIENT_ID, CLIENT_SECRET, EmulatorProcess


@pytest.fixture(scope="module")
def ssf(tls_server: EmulatorProcess) -> Iterator[Salesforce]:
    """simple-salesforce with a session id and instance URL from the emulator's token endpoint."""
    assert tls_server.cert_path is not None
    token = httpx.post(
        f"{tls_server.url}/services/oauth2/token",
        verify=str(tls_server.cert_path),
        data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    ).json()
    assert token["instance_url"] == tls_server.url
    session = requests.Session()
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override session.verify; verification stays on,
    # against the emulator's own certificate.
    session.trust_env = False
    session.verify = str(tls_server.cert_path)
    yield Salesforce(
        instance_url=token["instance_url"], session_id=token["access_token"], version="60.0", session=session
    )
    session.close()


def test_query_all_follows_several_pages(ssf: Salesforce, tls_server: EmulatorProcess) -> None:
    httpx.post(
        f"{tls_server.url}/__emulator__/seed",
        verify=str(tls_server.cert_path),
        json={"counts": {"Lead": 4500}, "seed": 3},
        timeout=60,
    )
    first = ssf.query("SELECT Id FROM Lead")
    assert first["done"] is False and "nextRecordsUrl" in first
    result = ssf.query_all("SELECT Id, LastName, Company, CreatedDate FROM Lead")
    assert result["done"] is True
    assert len(result["records"]) == result["totalSize"] > 4000
    assert len({r["Id"] for r in result["records"]}) == result["totalSize"]
    listed = list(ssf.query_all_iter("SELECT Id FROM Lead WHERE IsDeleted = false"))
    assert len(listed) == result["totalSize"]


def test_describe_and_global(ssf: Salesforce) -> None:
    describe = ssf.Account.describe()
    assert describe["name"] == "Account" and any(f["name"] == "External_Id__c" for f in describe["fields"])
    names = {o["name"] for o in ssf.describe()["sobjects"]}
    assert {"Account", "Contact", "ERP_Order__c"} <= names


def test_crud_and_upsert(ssf: Salesforce) -> None:
    created = ssf.Account.create({"Name": "Via simple-salesforce"})
    assert created["success"] is True
    record_id = created["id"]
    assert ssf.Account.update(record_id, {"Name": "Renamed"}) == 204
    assert ssf.Account.get(record_id)["Name"] == "Renamed"
    assert ssf.Account.upsert("External_Id__c/SSF-1", {"Name": "Upserted"}) == 201
    assert ssf.Account.upsert("External_Id__c/SSF-1", {"Name": "Upserted again"}) == 200
    assert ssf.Account.get_by_custom_id("External_Id__c", "SSF-1")["Name"] == "Upserted again"
    assert ssf.Account.delete(record_id) == 204
    with pytest.raises(SalesforceMalformedRequest) as exc:
        ssf.Contact.create({"FirstName": "NoLastName"})
    assert exc.value.content[0]["errorCode"] == "REQUIRED_FIELD_MISSING"


def test_collections_and_composite_through_restful(ssf: Salesforce) -> None:
    results = ssf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Contact"}, "LastName": "Rest One"},
                {"attributes": {"type": "Contact"}, "LastName": "Rest Two"},
            ],
        },
    )
    assert [r["success"] for r in results] == [True, True]
    upserts = ssf.restful(
        "composite/sobjects/Account/External_Id__c",
        method="PATCH",
        json={"records": [{"attributes": {"type": "Account"}, "External_Id__c": "SSF-C1", "Name": "c1"}]},
    )
    assert upserts[0]["created"] is True
    composite = ssf.restful(
        "composite",
        method="POST",
        json={
            "allOrNone": True,
            "compositeRequest": [
                {
                    "method": "POST",
                    "url": "/services/data/v60.0/sobjects/Account",
                    "referenceId": "a",
                    "body": {"Name": "C"},
                },
                {
                    "method": "GET",
                    "url": "/services/data/v60.0/sobjects/Account/@{a.id}?fields=Name",
                    "referenceId": "r",
                },
            ],
        },
    )
    assert composite["compositeResponse"][1]["body"]["Name"] == "C"


def test_limits_and_expired_session(ssf: Salesforce, tls_server: EmulatorProcess) -> None:
    limits = ssf.limits()
    assert limits["DailyApiRequests"]["Max"] >= limits["DailyApiRequests"]["Remaining"]
    assert ssf.api_usage["api-usage"].used >= 1
    stale = Salesforce(instance_url=tls_server.url, session_id="00DHx!expired", version="60.0", session=ssf.session)
    with pytest.raises(SalesforceExpiredSession):
        stale.query("SELECT Id FROM Account")


def _admin(tls_server: EmulatorProcess) -> httpx.Client:
    return httpx.Client(base_url=tls_server.url, verify=str(tls_server.cert_path), timeout=60)


def test_bulk2_query_and_download(ssf: Salesforce, tls_server: EmulatorProcess, tmp_path: Path) -> None:
    with _admin(tls_server) as admin:
        stored = [r for r in admin.get("/__emulator__/records/Contact").json() if not r["IsDeleted"]]
    soql = "SELECT Id, LastName, Email FROM Contact"
    chunks = list(ssf.bulk2.Contact.query(soql, max_records=100, wait=1))
    rows = [r for chunk in chunks for r in csv.DictReader(io.StringIO(chunk, newline=""))]
    assert len(chunks) > 1 and len(rows) == len(stored)
    by_id = {r["Id"]: r for r in stored}
    for row in rows:
        assert row["LastName"] == by_id[row["Id"]]["LastName"]
        assert row["Email"] == (by_id[row["Id"]]["Email"] or "")
    results = ssf.bulk2.Contact.download(soql, path=str(tmp_path), max_records=150, wait=1)
    assert sum(r["number_of_records"] for r in results) == len(stored)


def test_bulk2_insert_upsert_and_results(ssf: Salesforce, tls_server: EmulatorProcess, tmp_path: Path) -> None:
    records = [{"Name": f"ssf bulk {i}", "External_Id__c": f"SSFB-{i}", "Description": 'a,"b"\nc'} for i in range(50)]
    (inserted,) = ssf.bulk2.Account.insert(records=records, wait=1)
    assert inserted["numberRecordsProcessed"] == 50 and inserted["numberRecordsFailed"] == 0
    success = ssf.bulk2.Account.get_successful_records(inserted["job_id"])
    assert len(list(csv.DictReader(io.StringIO(success, newline="")))) == 50
    updates = [{"External_Id__c": f"SSFB-{i}", "Name": f"ssf bulk {i} v2"} for i in range(50)]
    updates.append({"External_Id__c": "SSFB-bad", "Name": ""})  # Name required: fails
    (upserted,) = ssf.bulk2.Account.upsert(records=updates, external_id_field="External_Id__c", wait=1)
    assert upserted["numberRecordsProcessed"] == 51 and upserted["numberRecordsFailed"] == 1
    failed = list(csv.DictReader(io.StringIO(ssf.bulk2.Account.get_failed_records(upserted["job_id"]), newline="")))
    assert failed[0]["External_Id__c"] == "SSFB-bad" and failed[0]["sf__Error"].startswith("REQUIRED_FIELD_MISSING")
    with _admin(tls_server) as admin:
        stored = {
            r["External_Id__c"]: r
            for r in admin.get("/__emulator__/records/Account").json()
            if (r["External_Id__c"] or "").startswith("SSFB-")
        }
    assert len(stored) == 50
    assert all(r["Name"].endswith("v2") and r["Description"] == 'a,"b"\nc' for r in stored.values())
