"""REST core resources (spec section 2; checklist items 13-32)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from airflow_provider_sfint.emulator.ids import checksum, to18

from .helpers import Admin, SalesforceHttp

DESCRIBE_FIELD_KEYS = {
    "name",
    "type",
    "length",
    "byteLength",
    "soapType",
    "nillable",
    "createable",
    "updateable",
    "externalId",
    "idLookup",
    "unique",
    "referenceTo",
    "relationshipName",
}


def test_item13_versions_need_no_auth_and_carry_no_limit_header(emulator_url: str) -> None:
    r = httpx.get(f"{emulator_url}/services/data/")
    assert r.status_code == 200
    assert "sforce-limit-info" not in r.headers
    versions = r.json()
    assert [v["version"] for v in versions] == sorted((v["version"] for v in versions), key=float)
    by_version = {v["version"]: v for v in versions}
    assert by_version["59.0"]["label"] == "Winter '24"
    assert by_version["60.0"]["label"] == "Spring '24"
    assert by_version["61.0"]["label"] == "Summer '24"
    assert by_version["62.0"]["label"] == "Winter '25"
    assert by_version["63.0"] == {"label": "Spring '25", "url": "/services/data/v63.0", "version": "63.0"}


def test_item14_limit_header_counts_calls_and_matches_limits(sf: SalesforceHttp) -> None:
    first = sf.get("sobjects/Account/describe")
    second = sf.query("SELECT Id FROM Account LIMIT 1")
    used_first, used_second = sf.api_usage(first), sf.api_usage(second)
    assert used_second == used_first + 1
    limits = sf.get("limits")
    assert sf.api_usage(limits) == used_second + 1
    daily = limits.json()["DailyApiRequests"]
    assert daily["Max"] - daily["Remaining"] == sf.api_usage(limits)
    assert limits.headers["Sforce-Limit-Info"] == f"api-usage={sf.api_usage(limits)}/{daily['Max']}"


def test_item15_unknown_version_is_404_json(sf: SalesforceHttp) -> None:
    """A version that never existed (5.0; retired ones answer 410: test_retired_api_versions_answer_gone)."""
    r = sf.get("/services/data/v5.0/limits")
    assert r.status_code == 404
    assert r.json() == [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
    assert sf.get("/services/data/v99.0/query?q=SELECT+Id+FROM+Account").status_code == 404


def test_resources_list_names_the_main_resources(sf: SalesforceHttp) -> None:
    body = sf.get("").json()
    for name in ("sobjects", "query", "queryAll", "limits", "composite", "jobs"):
        assert body[name] == f"/services/data/v60.0/{name}"


def test_item16_query_pages_follow_next_records_url(sf: SalesforceHttp) -> None:
    soql = "SELECT Id, Name FROM Contact ORDER BY Name"
    headers = {"Sforce-Query-Options": "batchSize=200"}
    first = sf.query(soql, headers=headers).json()
    assert first["done"] is False
    assert first["nextRecordsUrl"].startswith("/services/data/v60.0/query/01g")
    seen = list(first["records"])
    page = first
    while not page["done"]:
        page = sf.get(page["nextRecordsUrl"], headers=headers).json()
        assert page["totalSize"] == first["totalSize"]
        seen.extend(page["records"])
    assert "nextRecordsUrl" not in page
    assert len(seen) == first["totalSize"] == len({r["Id"] for r in seen})
    record = seen[0]
    assert record["attributes"] == {"type": "Contact", "url": f"/services/data/v60.0/sobjects/Contact/{record['Id']}"}


def test_item17_batch_size_is_clamped(sf: SalesforceHttp) -> None:
    def page_size(value: str | None) -> int:
        headers = {"Sforce-Query-Options": f"batchSize={value}"} if value else {}
        return len(sf.query("SELECT Id FROM Contact", headers=headers).json()["records"])

    total = sf.query("SELECT COUNT() FROM Contact").json()["totalSize"]
    assert total > 300
    assert page_size("250") == 250
    assert page_size("50") == 200
    assert page_size("5000") == min(2000, total)
    assert page_size(None) == min(2000, total)


def test_item18_parent_and_child_relationships_nest(sf: SalesforceHttp) -> None:
    acct = sf.post("sobjects/Account", json={"Name": "Nesting Co"}).json()["id"]
    sf.post("sobjects/Contact", json={"LastName": "Child", "AccountId": acct})
    orphan = sf.post("sobjects/Contact", json={"LastName": "Orphan"}).json()["id"]
    rows = sf.query(f"SELECT Id, Account.Name, Account.Owner.Username FROM Contact WHERE Id = '{orphan}'").json()
    assert rows["records"][0]["Account"] is None
    child = sf.query("SELECT Id, Account.Name, Account.Owner.Username FROM Contact WHERE LastName = 'Child'").json()
    parent = child["records"][0]["Account"]
    assert parent["attributes"]["type"] == "Account" and parent["Name"] == "Nesting Co"
    assert parent["Owner"]["attributes"]["type"] == "User"
    nested = sf.query(f"SELECT Name, (SELECT LastName FROM Contacts) FROM Account WHERE Id = '{acct}'").json()
    contacts = nested["records"][0]["Contacts"]
    assert contacts["totalSize"] == 1 and contacts["done"] is True
    assert contacts["records"][0]["LastName"] == "Child"
    empty = sf.post("sobjects/Account", json={"Name": "No Kids"}).json()["id"]
    none = sf.query(f"SELECT Name, (SELECT LastName FROM Contacts) FROM Account WHERE Id = '{empty}'").json()
    assert none["records"][0]["Contacts"] is None


def test_item19_query_all_includes_soft_deleted(sf: SalesforceHttp) -> None:
    record_id = sf.post("sobjects/Account", json={"Name": "Doomed"}).json()["id"]
    assert sf.delete(f"sobjects/Account/{record_id}").status_code == 204
    soql = f"SELECT Id, IsDeleted FROM Account WHERE Id = '{record_id}'"
    assert sf.query(soql).json()["totalSize"] == 0
    all_rows = sf.query(soql, all_rows=True).json()
    assert all_rows["totalSize"] == 1 and all_rows["records"][0]["IsDeleted"] is True


@pytest.mark.parametrize(
    ("soql", "code", "fragment"),
    [
        ("SELECT Id FRM Account", "MALFORMED_QUERY", "unexpected token: 'FRM'"),
        ("SELECT Bogus__c FROM Account", "INVALID_FIELD", "No such column 'Bogus__c' on entity 'Account'"),
        ("SELECT Id FROM Accout", "INVALID_TYPE", "sObject type 'Accout' is not supported"),
    ],
)
def test_item20_query_errors(sf: SalesforceHttp, soql: str, code: str, fragment: str) -> None:
    r = sf.query(soql)
    assert r.status_code == 400
    (error,) = r.json()
    assert error["errorCode"] == code
    assert fragment in error["message"]
    assert "ERROR at Row:1:Column:" in error["message"]
    assert error["message"].startswith("\n")


def test_item21_count_and_aggregates(sf: SalesforceHttp, admin: Admin) -> None:
    live = [r for r in admin.records("Opportunity") if not r["IsDeleted"]]
    count = sf.query("SELECT COUNT() FROM Opportunity").json()
    assert count == {"totalSize": len(live), "done": True, "records": []}
    agg = sf.query("SELECT StageName, COUNT(Id), SUM(Amount) total FROM Opportunity GROUP BY StageName").json()
    rows = {r["StageName"]: r for r in agg["records"]}
    for row in agg["records"]:
        assert row["attributes"] == {"type": "AggregateResult"}
        assert set(row) == {"attributes", "StageName", "expr0", "total"}
    for stage, row in rows.items():
        expected = [r for r in live if r["StageName"] == stage]
        assert row["expr0"] == len(expected)
        assert row["total"] == pytest.approx(sum(r["Amount"] or 0 for r in expected))


def test_item22_describe_key_sets_and_cache_headers(sf: SalesforceHttp, recorded: object) -> None:
    r = sf.get("sobjects/Account/describe")
    assert r.status_code == 200
    body = r.json()
    assert {"fields", "childRelationships", "keyPrefix", "urls", "createable", "queryable"} <= set(body)
    by_name = {f["name"]: f for f in body["fields"]}
    for f in body["fields"]:
        assert set(f) >= DESCRIBE_FIELD_KEYS
    assert by_name["Id"]["type"] == "id" and by_name["Id"]["idLookup"] is True
    assert by_name["Name"]["byteLength"] == 3 * by_name["Name"]["length"]
    assert by_name["OwnerId"]["referenceTo"] == ["User"] and by_name["OwnerId"]["relationshipName"] == "Owner"
    assert by_name["External_Id__c"]["externalId"] is True
    assert by_name["AnnualRevenue"]["soapType"] == "xsd:double"
    etag, modified = r.headers["ETag"], r.headers["Last-Modified"]
    assert sf.get("sobjects/Account/describe", headers={"If-None-Match": etag}).status_code == 304
    assert sf.get("sobjects/Account/describe", headers={"If-Modified-Since": modified}).status_code == 304
    # a stale ETag wins over a fresh date: with If-None-Match present, If-Modified-Since is not evaluated
    stale = {"If-None-Match": '"stale"', "If-Modified-Since": modified}
    assert sf.get("sobjects/Account/describe", headers=stale).status_code == 200
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert sf.get("sobjects/Account/describe", headers={"If-Modified-Since": old}).status_code == 200
    glob = sf.get("sobjects").json()
    assert glob["encoding"] == "UTF-8" and glob["maxBatchSize"] == 200
    assert {"Account", "ERP_Order__c", "Warehouse_Sync__e"} <= {s["name"] for s in glob["sobjects"]}


def test_item23_describe_unknown_object_is_404(sf: SalesforceHttp) -> None:
    r = sf.get("sobjects/Nope__c/describe")
    assert r.status_code == 404
    assert r.json() == [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]


def test_item24_create_returns_18_char_id_with_key_prefix(sf: SalesforceHttp) -> None:
    r = sf.post("sobjects/Contact", json={"LastName": "Okafor"})
    assert r.status_code == 201
    body = r.json()
    assert body["success"] is True and body["errors"] == []
    assert len(body["id"]) == 18 and body["id"].startswith("003")
    assert checksum(body["id"][:15]) == body["id"][15:]
    assert to18(body["id"][:15]) == body["id"]


def test_item25_update_delete_and_delete_again(sf: SalesforceHttp) -> None:
    record_id = sf.post("sobjects/Account", json={"Name": "Before"}).json()["id"]
    r = sf.patch(f"sobjects/Account/{record_id}", json={"Name": "After"})
    assert r.status_code == 204 and r.content == b""
    assert sf.get(f"sobjects/Account/{record_id}").json()["Name"] == "After"
    assert sf.delete(f"sobjects/Account/{record_id}").status_code == 204
    again = sf.delete(f"sobjects/Account/{record_id}")
    assert again.status_code == 404
    assert again.json() == [{"message": "entity is deleted", "errorCode": "ENTITY_IS_DELETED", "fields": []}]


def test_item26_required_field_missing(sf: SalesforceHttp) -> None:
    r = sf.post("sobjects/Opportunity", json={"Name": "No stage"})
    assert r.status_code == 400
    assert r.json() == [
        {
            "message": "Required fields are missing: [StageName, CloseDate]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["StageName", "CloseDate"],
        }
    ]


def test_item27_duplicate_external_id_on_create(sf: SalesforceHttp) -> None:
    first = sf.post("sobjects/Account", json={"Name": "A", "External_Id__c": "DUP-1"}).json()["id"]
    r = sf.post("sobjects/Account", json={"Name": "B", "External_Id__c": "dup-1"})
    assert r.status_code == 400
    (error,) = r.json()
    assert error["errorCode"] == "DUPLICATE_VALUE"
    assert error["message"] == f"duplicate value found: External_Id__c duplicates value on record with id: {first}"


def test_item28_upsert_by_external_id(sf: SalesforceHttp, admin: Admin) -> None:
    created = sf.patch("sobjects/Account/External_Id__c/UP-1", json={"Name": "Up"})
    assert created.status_code == 201
    assert created.json()["created"] is True and created.json()["success"] is True
    updated = sf.patch("sobjects/Account/External_Id__c/UP-1", json={"Name": "Up 2"})
    assert updated.status_code == 200
    assert updated.json() == {"id": created.json()["id"], "success": True, "errors": [], "created": False}
    admin.settings(upsert_update_204=True)
    try:
        assert sf.patch("sobjects/Account/External_Id__c/UP-1", json={"Name": "Up 3"}).status_code == 204
    finally:
        admin.settings(upsert_update_204=False)
    with SalesforceHttp(sf.url, sf.token, version="45.0") as old:
        assert old.patch("sobjects/Account/External_Id__c/UP-1", json={"Name": "Up 4"}).status_code == 204
    admin.load(
        "Contact",
        [{"LastName": "Twin", "Email": "twin@example.com"}, {"LastName": "Twin", "Email": "twin@example.com"}],
    )
    multiple = sf.patch("sobjects/Contact/Email/twin@example.com", json={"LastName": "X"})
    assert multiple.status_code == 300
    assert all(isinstance(u, str) and u.startswith("/services/data/v60.0/sobjects/Contact/") for u in multiple.json())
    missing = sf.patch("sobjects/Account/Ext_Idz__c/1", json={"Name": "x"})
    assert missing.status_code == 404
    assert missing.json() == [
        {
            "errorCode": "NOT_FOUND",
            "message": "Provided external ID field does not exist or is not accessible: Ext_Idz__c",
        }
    ]
    garbage = sf.get("sobjects/Account/garbage")
    assert garbage.status_code == 404 and "garbage" in garbage.json()[0]["message"]
    got = sf.get("sobjects/Account/External_Id__c/UP-1").json()
    assert got["Name"] == "Up 4"


def test_item29_limits_resource(sf: SalesforceHttp) -> None:
    body = sf.get("limits").json()
    for key in (
        "DailyApiRequests",
        "DailyBulkApiBatches",
        "DailyBulkApiRequests",
        "DailyBulkV2QueryJobs",
        "DailyBulkV2QueryFileStorageMB",
    ):
        assert set(body[key]) == {"Max", "Remaining"}
        assert isinstance(body[key]["Max"], int) and isinstance(body[key]["Remaining"], int)


def test_item30_daily_limit_exhaustion_is_403(sf: SalesforceHttp, admin: Admin) -> None:
    used = sf.api_usage(sf.get("limits"))
    admin.limits(api_max=used + 2)
    assert sf.get("limits").status_code == 200
    assert sf.get("limits").status_code == 200
    r = sf.get("limits")
    assert r.status_code == 403
    assert r.json() == [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}]
    assert sf.api_usage(r) == used + 2
    admin.limits(api_max=used + 2, bursts_max=5)
    bursting = sf.get("limits")
    assert bursting.status_code == 200
    assert bursting.headers["Sforce-Limit-Info"] == f"api-usage={used + 3}/{used + 2}; api-bursts=1/5"


def test_item31_concurrent_long_running_limit(sf: SalesforceHttp, admin: Admin) -> None:
    admin.limits(long_running_seconds=0, concurrent_long_running_max=2)  # every request in flight counts
    admin.faults({"kind": "latency", "latency_ms": 1500, "path": "/limits$"})
    results: list[int] = []

    def slow() -> None:
        with SalesforceHttp(sf.url, sf.token) as client:
            results.append(client.get("limits").status_code)

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while admin.counters()["requests_in_flight"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert admin.counters()["requests_in_flight"] == 2, "the two slow requests never were in flight together"
    r = sf.query("SELECT Id FROM Account LIMIT 1")
    for t in threads:
        t.join()
    assert r.status_code == 403
    assert r.json() == [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "ConcurrentPerOrgLongTxn Limit exceeded."}]
    assert results == [200, 200]
    assert sf.query("SELECT Id FROM Account LIMIT 1").status_code == 200


def test_item32_fault_injection(sf: SalesforceHttp, admin: Admin) -> None:
    assert sf.get("limits").status_code == 200  # off by default
    admin.faults({"kind": "503", "path": "/limits$", "count": 1})
    r = sf.get("limits")
    assert r.status_code == 503 and r.json()[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert sf.get("limits").status_code == 200
    admin.faults({"kind": "429", "path": "/limits$", "count": 1, "retry_after": 2})
    r = sf.get("limits")
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    admin.faults({"kind": "500", "path": "/limits$", "count": 1})
    assert sf.get("limits").status_code == 500
    admin.faults({"kind": "lock_row", "path": "/sobjects/Account", "count": 1})
    locked = sf.post("sobjects/Account", json={"Name": "Locked"})
    assert locked.status_code == 400 and locked.json()[0]["errorCode"] == "UNABLE_TO_LOCK_ROW"
    assert sf.post("sobjects/Account", json={"Name": "Free"}).status_code == 201
    admin.faults({"kind": "drop", "path": "/query", "count": 1})
    with pytest.raises(httpx.RemoteProtocolError):
        sf.query("SELECT Id, Name, Description FROM Account")
    assert sf.query("SELECT Id FROM Account LIMIT 1").status_code == 200
    admin.faults({"kind": "request_limit", "path": ".*", "after": 1})
    assert sf.get("limits").status_code == 200
    assert sf.get("limits").json()[0]["message"] == "TotalRequests Limit exceeded."


def test_faults_are_deterministic_under_a_seed(sf: SalesforceHttp, admin: Admin) -> None:
    def run() -> list[int]:
        admin.faults({"kind": "503", "rate": 0.3, "path": "/limits$"}, seed=7)
        return [sf.get("limits").status_code for _ in range(30)]

    first, second = run(), run()
    assert first == second
    assert 503 in first and 200 in first


def test_read_with_fields_and_bad_id(sf: SalesforceHttp) -> None:
    record_id = sf.post("sobjects/Account", json={"Name": "Fields", "AnnualRevenue": 35000000}).json()["id"]
    r = sf.get(f"sobjects/Account/{record_id}", params={"fields": "Name,AnnualRevenue"})
    assert set(r.json()) == {"attributes", "Name", "AnnualRevenue"}
    assert '"AnnualRevenue":3.5E7' in r.text  # Java Double.toString, as the real API renders doubles
    queried = sf.query(f"SELECT AnnualRevenue, Name FROM Account WHERE Id = '{record_id}'")
    assert '"AnnualRevenue":3.5E7,"Name":"Fields"' in queried.text
    assert sf.get(f"sobjects/Account/{record_id[:15]}").json()["Id"] == record_id
    bad = sf.get(f"sobjects/Account/{record_id}", params={"fields": "Nope"})
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_FIELD"


def test_bad_requests_get_salesforce_json_errors(sf: SalesforceHttp) -> None:
    for r in (
        sf.post("sobjects/Account", content=b"{not json", headers={"Content-Type": "application/json"}),
        sf.post("sobjects/Account", json=[1, 2]),
        sf.http.put(sf.path("sobjects/Account"), json={}),
        sf.get("no/such/resource"),
        sf.post("sobjects/Account", json={"Name": "x", "NumberOfEmployees": "many"}),
    ):
        assert r.status_code in (400, 404, 405)
        assert r.headers["content-type"].startswith("application/json")
        body = r.json()
        assert isinstance(body, list) and {"message", "errorCode"} <= set(body[0])


def test_rest_refuses_a_datetime_outside_the_documented_forms(sf: SalesforceHttp) -> None:
    bad = sf.post("sobjects/ERP_Order__c", json={"External_Id__c": "R-DT", "Shipped_At__c": "2026-01-02 10:00:00"})
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "JSON_PARSER_ERROR"
    assert "dateTime" in bad.json()[0]["message"]
    body = {"External_Id__c": "R-DT", "Shipped_At__c": "2026-01-02T10:00:00.250Z"}
    good = sf.post("sobjects/ERP_Order__c", json=body)
    assert good.status_code == 201
    stored = sf.get(f"sobjects/ERP_Order__c/{good.json()['id']}").json()["Shipped_At__c"]
    assert stored == "2026-01-02T10:00:00.000+0000"


def test_an_eleventh_open_cursor_closes_the_least_recently_used(sf: SalesforceHttp, admin: Admin) -> None:
    """At most 10 query cursors per user: the 11th query with more pages closes the oldest, whose locator then
    answers INVALID_QUERY_LOCATOR; another user's cursors are not touched."""
    headers = {"Sforce-Query-Options": "batchSize=200"}
    with SalesforceHttp(sf.url, admin.token("admin@sfint.emulator")) as other:  # sf runs as the integration user
        theirs = other.query("SELECT Id FROM Contact", headers=headers).json()["nextRecordsUrl"]
        first = [sf.query("SELECT Id FROM Contact", headers=headers).json()["nextRecordsUrl"] for _ in range(10)]
        assert sf.http.get(sf.url + first[0]).status_code == 200  # used: now the most recent
        sf.query("SELECT Id FROM Contact", headers=headers)  # the 11th
        closed = sf.http.get(sf.url + first[1])
        assert closed.status_code == 400 and closed.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"
        assert all(sf.http.get(sf.url + url).status_code == 200 for url in [first[0], *first[2:]])
        assert other.http.get(other.url + theirs).status_code == 200


def test_retired_api_versions_answer_gone(sf: SalesforceHttp, emulator_url: str) -> None:
    """Issue 17 item 5: versions 7.0-30.0 are retired (Summer '22 and Summer '25): REST and Bulk 2.0 answer 410
    GONE, not 404; 31.0 is the oldest that works, and the versions list starts there."""
    headers = {"Authorization": f"Bearer {sf.token}"}
    for path in ("/services/data/v30.0/sobjects/Account/describe", "/services/data/v20.0/jobs/query"):
        r = httpx.get(f"{emulator_url}{path}", headers=headers)
        assert r.status_code == 410, path
        assert r.json()[0]["errorCode"] == "GONE" and "31.0 or later" in r.json()[0]["message"]
    assert httpx.get(f"{emulator_url}/services/data/v31.0/limits", headers=headers).status_code == 200
    assert httpx.get(f"{emulator_url}/services/data/v99.0/limits", headers=headers).status_code == 404
    assert httpx.get(f"{emulator_url}/services/data/").json()[0]["version"] == "31.0"


def test_an_upsert_body_repeating_the_key_of_its_url(sf: SalesforceHttp, emulator_url: str) -> None:
    """Issue 17 item 7: "Do not specify Id or an external ID field in the request body" (REST guide to v55.0)."""
    path = "sobjects/Account/External_Id__c/UPS-1"
    with SalesforceHttp(sf.url, sf.token, version="55.0") as old:
        r = old.patch(path, json={"Name": "Old API", "External_Id__c": "UPS-1"})
        assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
        assert r.json()[0]["fields"] == ["External_Id__c"]
    same = sf.patch(path, json={"Name": "New API", "External_Id__c": "UPS-1"})  # v56+: the same value passes
    assert same.status_code == 201
    other = sf.patch(path, json={"Name": "Contradicts", "External_Id__c": "UPS-2"})
    assert other.status_code == 400 and "UPS-1" in other.json()[0]["message"]
    with_id = sf.patch(path, json={"Name": "With Id", "Id": same.json()["id"]})
    assert with_id.status_code == 400 and with_id.json()[0]["fields"] == ["Id"]


def test_required_fields_stay_required_on_update(sf: SalesforceHttp) -> None:
    """Issue 17 item 4: an update that blanks a required field fails (REST null, Bulk #N/A), naming it."""
    record_id = sf.post("sobjects/Account", json={"Name": "Keeps its name"}).json()["id"]
    r = sf.patch(f"sobjects/Account/{record_id}", json={"Name": None})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert r.json()[0]["fields"] == ["Name"]
    from .test_bulk import _ingest

    job_id, info = _ingest(sf, f"Id,Name\n{record_id},#N/A\n", operation="update")
    assert info["numberRecordsFailed"] == 1
    failed = sf.get(f"jobs/ingest/{job_id}/failedResults").text.splitlines()[1]
    assert "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --" in failed
    assert sf.get(f"sobjects/Account/{record_id}").json()["Name"] == "Keeps its name"
