"""simple-salesforce, unchanged, against the emulator over HTTPS: its parsers accept our responses."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceMalformedRequest

from airflow_provider_sfint.emulator import CLIENT_ID, CLIENT_SECRET, EmulatorServer


@pytest.fixture(scope="module")
def ssf(tls_server: EmulatorServer) -> Iterator[Salesforce]:
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


def test_query_all_follows_several_pages(ssf: Salesforce, tls_server: EmulatorServer) -> None:
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


def test_limits_and_expired_session(ssf: Salesforce, tls_server: EmulatorServer) -> None:
    limits = ssf.limits()
    assert limits["DailyApiRequests"]["Max"] >= limits["DailyApiRequests"]["Remaining"]
    assert ssf.api_usage["api-usage"].used >= 1
    stale = Salesforce(instance_url=tls_server.url, session_id="00DHx!expired", version="60.0", session=ssf.session)
    with pytest.raises(SalesforceExpiredSession):
        stale.query("SELECT Id FROM Account")
