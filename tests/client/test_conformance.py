"""Our client and simple-salesforce read the same records; the headers we send."""

from __future__ import annotations

from typing import Any

import httpx
import requests
from simple_salesforce import Salesforce

from airflow_provider_sfint import __version__
from airflow_provider_sfint.client import ClientConfig, SalesforceClient
from airflow_provider_sfint.emulator import CLIENT_ID, CLIENT_SECRET

QUERIES = (
    "SELECT Id, Name, AnnualRevenue, CreatedDate, Owner.Name, (SELECT LastName FROM Contacts) FROM Account",
    "SELECT Id, LastName, Email, Birthdate, Account.Name, Account.AnnualRevenue FROM Contact",  # > 1 page
)


def test_same_records_as_simple_salesforce(tls_server: Any) -> None:
    config = ClientConfig(
        auth_type="client_credentials",
        login_url=tls_server.url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        verify=str(tls_server.cert_path),
        cache_key="conformance",
    )
    http = requests.Session()
    http.trust_env = False
    http.verify = str(tls_server.cert_path)
    with SalesforceClient(config) as ours:
        session = ours.transport.session()
        ssf = Salesforce(
            instance_url=session.instance_url, session_id=session.access_token, version="62.0", session=http
        )
        for soql in QUERIES:
            mine = ours.query_all(soql, batch_size=200)
            theirs = ssf.query_all(soql)["records"]
            assert len(mine) == len(theirs) > 150
            assert mine == theirs
        assert len(list(ours.query_pages(QUERIES[1], batch_size=200))) > 1


def test_request_headers(emulator_url: str, fresh_org: Any) -> None:
    seen: list[httpx.Request] = []
    http = httpx.Client(event_hooks={"request": [seen.append]})
    config = ClientConfig(
        auth_type="client_credentials",
        login_url=emulator_url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        cache_key="headers",
    )
    with SalesforceClient(config, http=http) as client:
        client.query_all("SELECT Id FROM Account LIMIT 1")
    token_call, query_call = seen
    assert "Authorization" not in token_call.headers
    assert token_call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    headers = query_call.headers
    assert headers["User-Agent"] == f"airflow-provider-sfint/{__version__}"
    assert headers["Sforce-Call-Options"] == "client=airflow-provider-sfint"
    assert "gzip" in headers["Accept-Encoding"]
    assert headers["Authorization"].startswith("Bearer ")
    http.close()
