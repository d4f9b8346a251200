"""REST client against the emulator: pagination, describe cache, CRUD and upsert, limits, budget."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from airflow_provider_sfint.client import (
    AsyncSalesforceClient,
    BudgetExhaustedError,
    ClientConfig,
    MultipleMatchesError,
    NotFoundError,
    RecordValidationError,
    SalesforceClient,
    UpsertResult,
    flatten_record,
)

from ..emulator.helpers import Admin


def test_query_pages_and_flattening(client: SalesforceClient, fresh_org: Admin) -> None:
    live = [r for r in fresh_org.records("Contact") if not r["IsDeleted"]]
    pages = list(
        client.query_pages("SELECT Id, LastName, Account.Name, Account.Owner.Name FROM Contact", batch_size=200)
    )
    assert len(pages) == -(-len(live) // 200)
    records = [r for p in pages for r in p.records]
    assert {r["Id"] for r in records} == {r["Id"] for r in live}
    flat = client.query_all("SELECT Id, Account.Owner.Name FROM Contact WHERE AccountId != null LIMIT 1", flatten=True)[
        0
    ]
    assert set(flat) == {"Id", "Account.Owner.Name"}
    assert client.count("SELECT COUNT() FROM Contact") == len(live)
    deleted = [r for r in fresh_org.records("Contact") if r["IsDeleted"]]
    assert client.count("SELECT COUNT() FROM Contact", include_deleted=True) == len(live) + len(deleted)


def test_flatten_keeps_children_and_drops_attributes() -> None:
    record = {
        "attributes": {"type": "Account"},
        "Id": "1",
        "Owner": {"attributes": {}, "Name": "A", "Manager": {"attributes": {}, "Name": "B"}},
        "Parent": None,
        "Contacts": {"totalSize": 1, "done": True, "records": [{"attributes": {}, "LastName": "C"}]},
    }
    assert flatten_record(record) == {
        "Id": "1",
        "Owner.Name": "A",
        "Owner.Manager.Name": "B",
        "Parent": None,
        "Contacts": [{"LastName": "C"}],
    }


def test_describe_is_cached_and_revalidated(client: SalesforceClient) -> None:
    first = client.describe("Account")
    second = client.describe("account")
    assert first == second and first["name"] == "Account"
    assert client.describe_cache_hits == 1
    with pytest.raises(NotFoundError):
        client.describe("Nope__c")


def test_crud_and_upsert(client: SalesforceClient, fresh_org: Admin) -> None:
    record_id = client.create("Account", {"Name": "Crud"})
    client.update("Account", record_id, {"Name": "Crud 2"})
    assert client.get("Account", record_id, fields=["Name"])["Name"] == "Crud 2"
    client.delete("Account", record_id)
    with pytest.raises(NotFoundError) as exc:
        client.delete("Account", record_id)
    assert exc.value.error_code == "ENTITY_IS_DELETED"
    created = client.upsert("Account", "External_Id__c", "UP-1 #x?", {"Name": "spaces and marks"})
    assert created.created and created.id
    assert client.upsert("Account", "External_Id__c", "UP-1 #x?", {"Name": "again"}) == UpsertResult(created.id, False)
    fresh_org.settings(upsert_update_204=True)
    assert client.upsert("Account", "External_Id__c", "UP-1 #x?", {"Name": "204"}) == UpsertResult(None, False)
    slash = client.upsert("Account", "External_Id__c", "ERP/2024/7", {"Name": "slash"})  # via Collections
    assert slash.created and slash.id
    assert client.upsert("Account", "External_Id__c", "ERP/2024/7", {"Name": "slash 2"}) == UpsertResult(
        slash.id, False
    )
    assert client.get("Account", slash.id, ["Name", "External_Id__c"])["External_Id__c"] == "ERP/2024/7"
    with pytest.raises(RecordValidationError) as bad_slash:
        client.upsert("Opportunity", "External_Id__c", "OPP/1", {"Name": "no stage"})
    assert bad_slash.value.error_code == "REQUIRED_FIELD_MISSING"
    fresh_org.load(
        "Contact", [{"LastName": "T", "Email": "t@example.com"}, {"LastName": "T", "Email": "t@example.com"}]
    )
    with pytest.raises(MultipleMatchesError) as multiple:
        client.upsert("Contact", "Email", "t@example.com", {"LastName": "x"})
    assert len(multiple.value.urls) == 2
    with pytest.raises(RecordValidationError) as invalid:
        client.create("Opportunity", {"Name": "no stage"})
    assert invalid.value.error_code == "REQUIRED_FIELD_MISSING" and invalid.value.fields == ["StageName", "CloseDate"]
    assert invalid.value.method == "POST" and invalid.value.path == "/services/data/v62.0/sobjects/Opportunity"


def test_limits_usage_and_budget(config: ClientConfig, fresh_org: Admin) -> None:
    with SalesforceClient(config) as client:
        limits = client.limits()
        assert {"DailyApiRequests", "DailyBulkApiBatches", "DailyBulkV2QueryJobs"} <= set(limits)
        assert client.usage is not None and client.usage.used == limits["DailyApiRequests"].used
        fresh_org.limits(api_max=1000, api_used=950)
        with pytest.raises(BudgetExhaustedError) as exc:
            client.check_budget(10, purpose="the Account extract")
        text = str(exc.value)
        assert "the Account extract" in text and "of 1000 daily API calls remain" in text and "10%" in text
        assert client.check_budget(1).remaining < 50
    strict = dataclasses.replace(config, min_remaining_api_percent=20, cache_key="strict")
    with SalesforceClient(strict) as client, pytest.raises(BudgetExhaustedError):
        client.check_budget()


def test_async_client_reads(config: ClientConfig) -> None:
    async def run() -> None:
        async with AsyncSalesforceClient(config) as client:
            rows = [r async for r in client.query("SELECT Id FROM Account", batch_size=200)]
            assert len(rows) > 0
            assert (await client.describe("Account"))["name"] == "Account"
            assert (await client.get("Account", rows[0]["Id"]))["Id"] == rows[0]["Id"]

    asyncio.run(run())


def test_paged_child_results_are_completed(client: SalesforceClient, config: ClientConfig, fresh_org: Admin) -> None:
    """A parent's children beyond Salesforce's first child page are fetched, not dropped (sync and async)."""
    ids = fresh_org.load("Account", [{"Name": f"Large family {i}"} for i in range(3)])
    fresh_org.load("Contact", [{"LastName": f"Kid {n}", "AccountId": a} for a in ids for n in range(450)])
    quoted = ",".join(f"'{i}'" for i in ids)
    soql = f"SELECT Id, (SELECT Id FROM Contacts) FROM Account WHERE Id IN ({quoted})"
    records = client.query_all(soql, batch_size=500)  # two parents fit a page of 500 with their first 200 each
    assert len(records) == 3
    for record in records:
        contacts = record["Contacts"]
        assert contacts["done"] is True and contacts["totalSize"] == len(contacts["records"]) == 450
        assert len({c["Id"] for c in contacts["records"]}) == 450
    flat = client.query_all(soql, flatten=True)
    assert [len(r["Contacts"]) for r in flat] == [450, 450, 450]

    async def run() -> list[int]:
        async with AsyncSalesforceClient(config) as aclient:
            return [len(r["Contacts"]["records"]) async for r in aclient.query(soql, batch_size=500)]

    assert asyncio.run(run()) == [450, 450, 450]
