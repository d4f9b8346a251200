"""Composite (25 subrequests, references) and Composite Graph builders, against the emulator."""

from __future__ import annotations

import pytest

from airflow_provider_sfint.client import SalesforceClient
from airflow_provider_sfint.client.composite import (
    CompositeBuilder,
    CompositeError,
    GraphBuilder,
    send_composite,
    send_graph,
)

from ..emulator.helpers import Admin


def test_references_chain_a_contact_to_the_account_created_before_it(
    client: SalesforceClient, fresh_org: Admin
) -> None:
    builder = CompositeBuilder(client.config.version, all_or_none=True)
    acct = builder.create("Account", {"Name": "Composite Co", "External_Id__c": "CMP-1"}, "acct")
    contact = builder.create("Contact", {"LastName": "Ref", "AccountId": acct.id}, "contact")
    read = builder.get("Contact", contact.id, ["AccountId", "LastName"], "readBack")
    client.login()
    before = client.api_calls
    result = send_composite(client, builder).raise_for_errors()
    assert client.api_calls - before == 1  # three subrequests, one API call
    assert result[acct].status == 201 and result[contact].status == 201
    assert result[read].body["AccountId"] == result[acct].body["id"]
    stored = [c for c in fresh_org.records("Contact") if c["Id"] == result[contact].body["id"]]
    assert stored and stored[0]["AccountId"] == result[acct].body["id"]


def test_all_or_none_rolls_back_and_names_the_failing_subrequest(client: SalesforceClient, fresh_org: Admin) -> None:
    before = len(fresh_org.records("Account", include_deleted=False))
    builder = CompositeBuilder(client.config.version, all_or_none=True)
    builder.create("Account", {"Name": "Rolled back"}, "good")
    builder.create("Account", {"NoSuchField__c": 1}, "bad")
    result = send_composite(client, builder)
    assert not result.ok
    assert result["bad"].status == 400
    assert result["good"].body[0]["errorCode"] == "PROCESSING_HALTED"
    with pytest.raises(CompositeError, match=r"bad \(HTTP 400\).*NoSuchField__c"):
        result.raise_for_errors()
    assert len(fresh_org.records("Account", include_deleted=False)) == before


def test_upsert_and_query_subrequests(client: SalesforceClient, fresh_org: Admin) -> None:
    builder = CompositeBuilder(client.config.version)
    up = builder.upsert("Account", "External_Id__c", "CMP 2 & x?", {"Name": "Slash & space"}, "up")
    q = builder.query("SELECT Id, Name FROM Account WHERE External_Id__c = 'CMP 2 & x?'", "q")
    result = send_composite(client, builder).raise_for_errors()
    assert result[up].status == 201
    assert result[q].body["totalSize"] == 1 and result[q].body["records"][0]["Name"] == "Slash & space"
    with pytest.raises(ValueError, match=r"Account.External_Id__c value 'A/B' contains '/'.*Collections.upsert"):
        builder.upsert("Account", "External_Id__c", "A/B", {})


def test_limits_are_checked_before_anything_is_sent(client: SalesforceClient) -> None:
    builder = CompositeBuilder(client.config.version)
    for i in range(25):
        builder.add("GET", "limits", reference_id=f"r{i}")
    with pytest.raises(ValueError, match="at most 25 subrequests"):
        builder.add("GET", "limits")
    queries = CompositeBuilder(client.config.version)
    for i in range(5):
        queries.query("SELECT Id FROM Account LIMIT 1", f"q{i}")
    with pytest.raises(ValueError, match="at most 5 query"):
        queries.query("SELECT Id FROM Account LIMIT 1")
    with pytest.raises(ValueError, match="used twice"):
        queries.add("GET", "limits", reference_id="q1")
    with pytest.raises(ValueError, match="must start with a letter"):
        queries.add("GET", "limits", reference_id="bad-ref")
    with pytest.raises(ValueError, match="at least one subrequest"):
        CompositeBuilder(client.config.version).request()


def test_graphs_commit_independently(client: SalesforceClient, fresh_org: Admin) -> None:
    builder = GraphBuilder(client.config.version)
    ok = builder.graph("ok")
    parent = ok.create("Account", {"Name": "Graph parent"}, "parent")
    ok.create("Contact", {"LastName": "Graph child", "AccountId": parent.id}, "child")
    bad = builder.graph("bad")
    bad.create("Account", {"Name": "Never kept"}, "kept")
    bad.create("Contact", {"AccountId": "001000000000000AAA"}, "broken")  # no LastName: required
    client.login()
    before = client.api_calls
    results = send_graph(client, builder)
    assert client.api_calls - before == 1
    assert results["ok"].successful and results["ok"].result.ok
    assert not results["bad"].successful
    with pytest.raises(CompositeError, match="broken"):
        results["bad"].result.raise_for_errors("graph bad")
    names = {a["Name"] for a in fresh_org.records("Account", include_deleted=False)}
    assert "Graph parent" in names and "Never kept" not in names
    with pytest.raises(ValueError, match="used twice"):
        builder.graph("ok")
