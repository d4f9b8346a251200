"""Bulk API 2.0 ingest and query (spec sections 4 and 5; checklist items 46-65)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from .helpers import Admin, SalesforceHttp

CSV = {"Content-Type": "text/csv"}


def _wait(sf: SalesforceHttp, kind: str, job_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        info = sf.get(f"jobs/{kind}/{job_id}").json()
        if info["state"] in ("JobComplete", "Failed", "Aborted"):
            return dict(info)
        assert time.monotonic() < deadline, f"job {job_id} still {info['state']} after {timeout} s"
        time.sleep(0.05)


def _ingest(sf: SalesforceHttp, body: str | bytes, **job: Any) -> tuple[str, dict[str, Any]]:
    created = sf.post("jobs/ingest", json={"object": "Account", "operation": "insert", **job})
    assert created.status_code == 200, created.text
    job_id = created.json()["id"]
    data = body.encode("utf-8") if isinstance(body, str) else body
    assert sf.http.put(sf.path(f"jobs/ingest/{job_id}/batches"), content=data, headers=CSV).status_code == 201
    assert sf.patch(f"jobs/ingest/{job_id}", json={"state": "UploadComplete"}).status_code == 200
    return job_id, _wait(sf, "ingest", job_id)


def _rows(text: str, delimiter: str = ",") -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


def _query_job(sf: SalesforceHttp, soql: str, **kw: Any) -> tuple[str, dict[str, Any]]:
    created = sf.post("jobs/query", json={"operation": "query", "query": soql, **kw})
    assert created.status_code == 200, created.text
    return created.json()["id"], _wait(sf, "query", created.json()["id"])


def test_item46_create_ingest_job(sf: SalesforceHttp, recorded: Path) -> None:
    r = sf.post(
        "jobs/ingest", json={"object": "Opportunity", "operation": "upsert", "externalIdFieldName": "External_Id__c"}
    )
    assert r.status_code == 200
    body = r.json()
    expected = json.loads((recorded / "bulk/write/launch-job-opportunity.json").read_text())
    assert list(body) == list(expected)
    assert body["state"] == "Open" and body["apiVersion"] == 60.0 and isinstance(body["apiVersion"], float)
    assert body["contentUrl"] == f"services/data/v60.0/jobs/ingest/{body['id']}/batches"
    assert (body["concurrencyMode"], body["contentType"], body["lineEnding"], body["columnDelimiter"]) == (
        "Parallel",
        "CSV",
        "LF",
        "COMMA",
    )
    assert body["id"].startswith("750") and len(body["id"]) == 18


def test_item47_job_validation(sf: SalesforceHttp) -> None:
    for job in (
        {"object": "Account", "operation": "upsert"},
        {"object": "Account", "operation": "insert", "columnDelimiter": "COLON"},
        {"object": "Account", "operation": "insert", "lineEnding": "CR"},
        {"object": "Account", "operation": "merge"},
        {"object": "Nope__c", "operation": "insert"},
        {"object": "Account", "operation": "upsert", "externalIdFieldName": "Name"},
    ):
        r = sf.post("jobs/ingest", json=job)
        assert r.status_code == 400, job
        assert "InvalidJob" in r.json()[0]["message"]


def test_item48_one_upload_per_open_job(sf: SalesforceHttp) -> None:
    job_id = sf.post("jobs/ingest", json={"object": "Account", "operation": "insert"}).json()["id"]
    first = sf.http.put(sf.path(f"jobs/ingest/{job_id}/batches"), content=b"Name\nA\n", headers=CSV)
    assert first.status_code == 201 and first.content == b""
    second = sf.http.put(sf.path(f"jobs/ingest/{job_id}/batches"), content=b"Name\nB\n", headers=CSV)
    assert second.status_code == 400 and "Found multiple contents for job" in second.json()[0]["message"]
    sf.patch(f"jobs/ingest/{job_id}", json={"state": "Aborted"})
    other = sf.post("jobs/ingest", json={"object": "Account", "operation": "insert"}).json()["id"]
    sf.patch(f"jobs/ingest/{other}", json={"state": "Aborted"})
    late = sf.http.put(sf.path(f"jobs/ingest/{other}/batches"), content=b"Name\nC\n", headers=CSV)
    assert late.status_code == 400


def test_items49_50_51_lifecycle_counters_and_results(sf: SalesforceHttp, recorded: Path) -> None:
    body = "Name,StageName,External_Id__c,CloseDate\nOk,Prospecting,E-1,2024-01-01\nBad,Prospecting,E-2,2003-04-99\n"
    job_id, info = _ingest(sf, body, object="Opportunity", operation="upsert", externalIdFieldName="External_Id__c")
    assert info["state"] == "JobComplete"
    expected = json.loads((recorded / "bulk/info/partial-failure.json").read_text())
    assert list(info) == list(expected)
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (2, 1)
    for key in ("retries", "totalProcessingTime", "apiActiveProcessingTime", "apexProcessingTime"):
        assert isinstance(info[key], int)
    ok = sf.get(f"jobs/ingest/{job_id}/successfulResults/")
    assert ok.headers["content-type"].startswith("text/csv")
    assert ok.text.splitlines()[0] == '"sf__Id","sf__Created",Name,StageName,External_Id__c,CloseDate'
    (row,) = _rows(ok.text)[1:]
    assert row[0].startswith("006") and row[1] == "true" and row[2:] == ["Ok", "Prospecting", "E-1", "2024-01-01"]
    failed = sf.get(f"jobs/ingest/{job_id}/failedResults/").text
    recorded_failed = (recorded / "bulk/info/partial-failure.csv").read_text()
    assert failed.splitlines()[0] == recorded_failed.splitlines()[0].replace("external_id__c", "External_Id__c")
    (bad,) = _rows(failed)[1:]
    assert bad[0] == "" and bad[1] == (
        "INVALID_FIELD:Failed to deserialize field at col 3. Due to, '2003-04-99' is "
        "not a valid value for the type xsd:date:CloseDate --"
    )
    unprocessed = sf.get(f"jobs/ingest/{job_id}/unprocessedrecords/").text
    assert unprocessed.splitlines() == ["Name,StageName,External_Id__c,CloseDate"]  # header only: nothing left


def test_item51_unprocessed_records_path_is_case_insensitive(sf: SalesforceHttp) -> None:
    job_id = sf.post("jobs/ingest", json={"object": "Account", "operation": "insert"}).json()["id"]
    sf.http.put(sf.path(f"jobs/ingest/{job_id}/batches"), content=b"Name\nA\nB\n", headers=CSV)
    sf.patch(f"jobs/ingest/{job_id}", json={"state": "Aborted"})
    for path in ("unprocessedrecords", "unprocessedRecords", "UNPROCESSEDRECORDS"):
        assert sf.get(f"jobs/ingest/{job_id}/{path}/").status_code == 200


def test_item52_unknown_header_field_fails_the_job(sf: SalesforceHttp, recorded: Path) -> None:
    _, info = _ingest(
        sf,
        "Name,Bogus__c,External_Id__c\nA,1,X\n",
        object="Opportunity",
        operation="upsert",
        externalIdFieldName="External_Id__c",
    )
    assert info["state"] == "Failed" and info["numberRecordsProcessed"] == 0
    assert info["errorMessage"] == "InvalidBatch : Field name not found : Bogus__c"
    expected = json.loads((recorded / "bulk/info/complete-failure.json").read_text())
    assert set(info) == set(expected)


def test_item53_csv_semantics(sf: SalesforceHttp, admin: Admin) -> None:
    parent = sf.post("sobjects/Account", json={"Name": "Parent", "External_Id__c": "P-1"}).json()["id"]
    body = (
        "Name,External_Id__c,Description,Phone,Parent.External_Id__c\r\n"
        '"Multi","M-1","line one\r\nline two ""quoted"", and, commas","555","P-1"\r\n'
    )
    _, info = _ingest(sf, body, lineEnding="CRLF")
    assert info["state"] == "JobComplete" and info["numberRecordsFailed"] == 0
    row = next(r for r in admin.records("Account") if r["External_Id__c"] == "M-1")
    assert row["Description"] == 'line one\r\nline two "quoted", and, commas'
    assert row["ParentId"] == parent and row["Phone"] == "555"
    record_id = row["Id"]
    _, info = _ingest(sf, f"Id,Phone,Description\n{record_id},#N/A,\n", operation="update")
    assert info["numberRecordsFailed"] == 0
    row = next(r for r in admin.records("Account") if r["Id"] == record_id)
    assert row["Phone"] is None  # #N/A sets null
    assert row["Description"] == 'line one\r\nline two "quoted", and, commas'  # empty leaves it unchanged
    for name, char in (("TAB", "\t"), ("PIPE", "|"), ("SEMICOLON", ";"), ("CARET", "^"), ("BACKQUOTE", "`")):
        _, info = _ingest(sf, f"Name{char}Site\nD-{name}{char}x\n".encode("utf-8-sig"), columnDelimiter=name)
        assert info["state"] == "JobComplete" and info["numberRecordsFailed"] == 0, name
    names = {r["Name"] for r in admin.records("Account")}
    assert {"D-TAB", "D-PIPE", "D-SEMICOLON", "D-CARET", "D-BACKQUOTE"} <= names


def test_item53b_bulk_strings_are_trimmed(sf: SalesforceHttp, admin: Admin) -> None:
    _, info = _ingest(sf, 'Name,Site\n"  Padded  ","   "\n')
    assert info["numberRecordsFailed"] == 0
    row = next(r for r in admin.records("Account") if r["Name"] == "Padded")
    assert row["Site"] is None


def test_item54_invalid_date_row_error(sf: SalesforceHttp) -> None:
    job_id, _ = _ingest(sf, "LastName,Birthdate\nX,2003-04-99\n", object="Contact")
    (row,) = _rows(sf.get(f"jobs/ingest/{job_id}/failedResults/").text)[1:]
    assert row[1] == (
        "INVALID_FIELD:Failed to deserialize field at col 1. Due to, '2003-04-99' is not a valid value "
        "for the type xsd:date:Birthdate --"
    )


def test_item55_upload_over_the_cap_is_refused(sf: SalesforceHttp, admin: Admin) -> None:
    admin.set("bulk", max_upload_bytes=1000)
    job_id = sf.post("jobs/ingest", json={"object": "Account", "operation": "insert"}).json()["id"]
    r = sf.http.put(sf.path(f"jobs/ingest/{job_id}/batches"), content=b"Name\n" + b"x\n" * 400, headers=CSV)
    assert r.status_code == 413 and "base64" in r.json()[0]["message"]


def test_item56_abort_and_illegal_transitions(sf: SalesforceHttp) -> None:
    job_id = sf.post("jobs/ingest", json={"object": "Account", "operation": "insert"}).json()["id"]
    assert sf.patch(f"jobs/ingest/{job_id}", json={"state": "Aborted"}).json()["state"] == "Aborted"
    assert sf.patch(f"jobs/ingest/{job_id}", json={"state": "UploadComplete"}).status_code == 400
    assert sf.patch(f"jobs/ingest/{job_id}", json={"state": "Aborted"}).status_code == 400
    done_id, _ = _ingest(sf, "Name\nA\n")
    assert sf.patch(f"jobs/ingest/{done_id}", json={"state": "Aborted"}).status_code == 400
    assert sf.patch(f"jobs/ingest/{done_id}", json={"state": "Open"}).status_code == 400


def test_item57_delete_job(sf: SalesforceHttp) -> None:
    job_id, _ = _ingest(sf, "Name\nA\n")
    r = sf.delete(f"jobs/ingest/{job_id}")
    assert r.status_code == 204 and r.content == b""
    assert sf.get(f"jobs/ingest/{job_id}").status_code == 404
    open_id = sf.post("jobs/ingest", json={"object": "Account", "operation": "insert"}).json()["id"]
    assert sf.delete(f"jobs/ingest/{open_id}").status_code == 400  # Open: close or abort it first


def test_a_job_in_upload_complete_can_be_deleted_and_is_never_processed(sf: SalesforceHttp, admin: Admin) -> None:
    admin.set("timing", ingest_startup_s=5)
    job_id = sf.post("jobs/ingest", json={"object": "Account", "operation": "insert"}).json()["id"]
    body = b"Name\nDeleted before it ran\n"
    assert sf.http.put(sf.path(f"jobs/ingest/{job_id}/batches"), content=body, headers=CSV).status_code == 201
    assert sf.patch(f"jobs/ingest/{job_id}", json={"state": "UploadComplete"}).json()["state"] == "UploadComplete"
    assert sf.delete(f"jobs/ingest/{job_id}").status_code == 204
    assert sf.get(f"jobs/ingest/{job_id}").status_code == 404
    time.sleep(6)
    assert not [r for r in admin.records("Account") if r["Name"] == "Deleted before it ran"]


def test_upload_complete_answers_upload_complete_however_fast_the_job_runs(sf: SalesforceHttp) -> None:
    """The answer is the state the call set, never a later one (processing starts at once here)."""
    for i in range(20):
        job_id = sf.post("jobs/ingest", json={"object": "Account", "operation": "insert"}).json()["id"]
        assert sf.http.put(sf.path(f"jobs/ingest/{job_id}/batches"), content=f"Name\nFast {i}\n".encode(),
                           headers=CSV).status_code == 201  # fmt: skip
        assert sf.patch(f"jobs/ingest/{job_id}", json={"state": "UploadComplete"}).json()["state"] == "UploadComplete"


def test_a_row_error_without_fields_ends_in_colon_dashes(sf: SalesforceHttp) -> None:
    """``CODE:message:--`` when Salesforce names no field (``CODE:message:Field --`` when it does)."""
    created = sf.post("sobjects/Account", json={"Name": "Soon deleted"}).json()["id"]
    assert sf.delete(f"sobjects/Account/{created}").status_code == 204
    job_id, info = _ingest(sf, f"Id,Name\n{created},Renamed\n", operation="update")
    assert info["numberRecordsFailed"] == 1
    (row,) = _rows(sf.get(f"jobs/ingest/{job_id}/failedResults").text)[1:]
    assert row[1] == "ENTITY_IS_DELETED:entity is deleted:--", row
    job_id, _ = _ingest(sf, "Name,Industry\n,Energy\n")
    (row,) = _rows(sf.get(f"jobs/ingest/{job_id}/failedResults").text)[1:]
    assert row[1].startswith("REQUIRED_FIELD_MISSING:") and row[1].endswith(":Name --"), row


def test_item58_list_jobs_pages_and_filters(sf: SalesforceHttp) -> None:
    for _ in range(3):
        sf.post("jobs/ingest", json={"object": "Account", "operation": "insert"})
    query_id, _ = _query_job(sf, "SELECT Id FROM Account")
    ingest = sf.get("jobs/ingest").json()
    assert ingest["done"] is True and len(ingest["records"]) == 3
    assert all(j["jobType"] == "V2Ingest" for j in ingest["records"])
    queries = sf.get("jobs/query", params={"jobType": "V2Query"}).json()
    assert [j["id"] for j in queries["records"]] == [query_id]


def test_item59_batches_and_daily_record_limit(sf: SalesforceHttp, admin: Admin) -> None:
    before = sf.get("limits").json()["DailyBulkApiBatches"]["Remaining"]
    rows = "".join(f"N{i}\n" for i in range(25_000))
    _, info = _ingest(sf, "Name\n" + rows)
    assert info["numberRecordsProcessed"] == 25_000
    assert before - sf.get("limits").json()["DailyBulkApiBatches"]["Remaining"] == 3
    admin.limits(ingest_records_max=10)
    _, info = _ingest(sf, "Name\n" + "".join(f"M{i}\n" for i in range(20)))
    assert info["state"] == "Failed" and "24 hours" in info["errorMessage"]


def test_item60_query_job_create_and_unsupported_soql(sf: SalesforceHttp, recorded: Path) -> None:
    r = sf.post("jobs/query", json={"operation": "query", "query": "SELECT Id, Name FROM Account"})
    body = r.json()
    expected = json.loads((recorded / "bulk/read-launch-job-account.json").read_text())
    assert r.status_code == 200 and list(body) == list(expected)
    assert body["object"] == "Account" and body["state"] == "UploadComplete"
    for soql, what in (
        ("SELECT Industry, COUNT(Id) FROM Account GROUP BY Industry", "GROUP BY"),
        ("SELECT COUNT() FROM Account", "aggregate"),
        ("SELECT Id FROM Account LIMIT 5 OFFSET 5", "OFFSET"),
        ("SELECT FIELDS(ALL) FROM Account LIMIT 10", "FIELDS()"),
        ("SELECT Id, (SELECT Id FROM Contacts) FROM Account", "subquery"),
    ):
        bad = sf.post("jobs/query", json={"operation": "query", "query": soql})
        assert bad.status_code == 400 and what in bad.json()[0]["message"], soql
    syntax = sf.post("jobs/query", json={"operation": "query", "query": "SELECT Id FRM Account"})
    assert syntax.status_code == 400 and syntax.json()[0]["errorCode"] == "MALFORMED_QUERY"


def test_items61_62_results_pages_locators_and_columns(sf: SalesforceHttp, admin: Admin) -> None:
    created = sf.post(
        "jobs/query", json={"operation": "query", "query": "SELECT Id, Account.Name, LastName FROM Contact"}
    ).json()
    early = sf.get(f"jobs/query/{created['id']}/results")
    if early.status_code != 200:  # the job may already have finished on a fast machine
        assert early.status_code == 412 and early.json()[0]["errorCode"] == "JOB_NOT_COMPLETE"
    info = _wait(sf, "query", created["id"])
    live = [r for r in admin.records("Contact") if not r["IsDeleted"]]
    assert info["numberRecordsProcessed"] == len(live)
    rows: list[list[str]] = []
    locator = None
    pages = 0
    while True:
        params = {"maxRecords": 100, **({"locator": locator} if locator else {})}
        page = sf.get(f"jobs/query/{created['id']}/results", params=params)
        parsed = _rows(page.text)
        assert parsed[0] == ["Id", "Account.Name", "LastName"]
        assert int(page.headers["Sforce-NumberOfRecords"]) == len(parsed) - 1 <= 100
        rows.extend(parsed[1:])
        pages += 1
        locator = page.headers["Sforce-Locator"]
        if locator == "null":
            break
    assert pages == -(-len(live) // 100)
    assert sorted(r[0] for r in rows) == sorted(r["Id"] for r in live)
    again = sf.get(f"jobs/query/{created['id']}/results", params={"maxRecords": 100, "locator": "MTAw"})
    assert _rows(again.text)[1:] == rows[100:200]  # locators are stable and re-fetchable


def test_item63_results_need_the_jobs_api_version(sf: SalesforceHttp) -> None:
    job_id, _ = _query_job(sf, "SELECT Id FROM Account")
    with SalesforceHttp(sf.url, sf.token, version="61.0") as other:
        assert other.get(f"jobs/query/{job_id}/results").status_code == 409


def test_item64_result_pages(sf: SalesforceHttp) -> None:
    job_id, info = _query_job(sf, "SELECT Id FROM Contact")
    body = sf.get(f"jobs/query/{job_id}/resultPages", params={"maxRecords": 50}).json()
    assert len(body["resultPages"]) == 5 and body["done"] is False and body["nextRecordsUrl"]
    ids: list[str] = []
    while True:
        for page in body["resultPages"]:
            ids.extend(r[0] for r in _rows(sf.get(page["resultUrl"]).text)[1:])
        if body["done"]:
            break
        body = sf.get(body["nextRecordsUrl"]).json()
    assert len(ids) == len(set(ids)) == info["numberRecordsProcessed"]
    with SalesforceHttp(sf.url, sf.token, version="57.0") as old:
        old_job = old.post("jobs/query", json={"operation": "query", "query": "SELECT Id FROM Account"}).json()["id"]
        _wait(old, "query", old_job)
        assert old.get(f"jobs/query/{old_job}/resultPages").status_code == 404


def test_item65_query_all_gzip_and_job_accounting(sf: SalesforceHttp, admin: Admin) -> None:
    before = sf.get("limits").json()["DailyBulkV2QueryJobs"]["Remaining"]
    job_id, info = _query_job(sf, "SELECT Id, IsDeleted FROM Account", operation="queryAll")
    assert before - sf.get("limits").json()["DailyBulkV2QueryJobs"]["Remaining"] == 1
    assert info["numberRecordsProcessed"] == len(admin.records("Account"))
    raw = httpx.get(
        f"{sf.url}/services/data/v60.0/jobs/query/{job_id}/results",
        headers={"Authorization": f"Bearer {sf.token}", "Accept-Encoding": "gzip"},
    )
    assert raw.headers["content-encoding"] == "gzip"
    assert any(r[1] == "true" for r in _rows(raw.text)[1:])
    with httpx.stream(
        "GET",
        f"{sf.url}/services/data/v60.0/jobs/query/{job_id}/results",
        headers={"Authorization": f"Bearer {sf.token}", "Accept-Encoding": "gzip"},
    ) as stream:
        compressed = b"".join(stream.iter_raw())
    assert gzip.decompress(compressed).decode() == raw.text


def test_query_timeout_fault_and_truncated_body(sf: SalesforceHttp, admin: Admin) -> None:
    admin.set("bulk", query_timeout_rows=10)
    _, info = _query_job(sf, "SELECT Id FROM Account")
    assert info["state"] == "Failed" and info["errorMessage"].startswith("QUERY_TIMEOUT")
    admin.set("bulk", query_timeout_rows=None)
    job_id, _ = _query_job(sf, "SELECT Id, Name FROM Account")
    for encoding in ("identity", "gzip"):
        admin.faults({"kind": "drop", "path": "/results", "count": 1})
        with pytest.raises(httpx.RemoteProtocolError):
            sf.get(f"jobs/query/{job_id}/results", headers={"Accept-Encoding": encoding})
    assert sf.get(f"jobs/query/{job_id}/results").status_code == 200


def test_ingest_row_lock_faults(sf: SalesforceHttp, admin: Admin) -> None:
    admin.faults({"kind": "lock_row", "path": "/jobs/ingest", "rate": 0.5}, seed=3)
    job_id, info = _ingest(sf, "Name\n" + "".join(f"L{i}\n" for i in range(40)))
    failed = _rows(sf.get(f"jobs/ingest/{job_id}/failedResults/").text)[1:]
    assert 0 < len(failed) == info["numberRecordsFailed"] < 40
    assert all(r[1].startswith("UNABLE_TO_LOCK_ROW:") for r in failed)


def test_results_are_not_in_input_order_but_complete(sf: SalesforceHttp) -> None:
    names = [f"Order-{i:03d}" for i in range(200)]
    job_id, _ = _ingest(sf, "Name\n" + "\n".join(names) + "\n")
    got = [r[2] for r in _rows(sf.get(f"jobs/ingest/{job_id}/successfulResults/").text)[1:]]
    assert sorted(got) == names and got != names


def test_bandwidth_cap_paces_each_download(sf: SalesforceHttp, admin: Admin) -> None:
    job_id, _ = _query_job(sf, "SELECT Id, Name, Description FROM Account")
    size = len(sf.get(f"jobs/query/{job_id}/results", headers={"Accept-Encoding": "identity"}).content)
    admin.set("timing", download_bytes_per_s=size)  # one second per full download
    started = time.monotonic()
    body = sf.get(f"jobs/query/{job_id}/results", headers={"Accept-Encoding": "identity"}).content
    assert len(body) == size
    assert time.monotonic() - started >= 0.8  # a lower bound the pacing guarantees, not a speed assertion


def test_lock_contention_on_a_shared_parent(sf: SalesforceHttp, admin: Admin) -> None:
    parents = [sf.post("sobjects/Account", json={"Name": f"Busy {i}"}).json()["id"] for i in range(5)]
    admin.set("bulk", lock_parent_field="AccountId")
    admin.faults({"kind": "lock_row", "path": "/jobs/ingest", "rate": 0.2}, seed=11)
    rows = "".join(f"C{i},{parents[i % 5]}\n" for i in range(100))
    job_id, info = _ingest(sf, "LastName,AccountId\n" + rows, object="Contact")
    failed = _rows(sf.get(f"jobs/ingest/{job_id}/failedResults/").text)[1:]
    assert info["numberRecordsFailed"] == len(failed) > 0
    by_parent: dict[str, list[int]] = {}
    for row in failed:
        assert row[1].startswith("UNABLE_TO_LOCK_ROW:")
        by_parent.setdefault(row[3], []).append(int(row[2][1:]))
    for parent, numbers in by_parent.items():
        first = min(numbers)
        later = [i for i in range(first, 100, 5)]  # every later child of a locked parent fails as well
        assert sorted(numbers) == later, parent


def test_rows_may_refer_to_rows_created_earlier_in_the_same_job(sf: SalesforceHttp, admin: Admin) -> None:
    body = "Name,External_Id__c,Parent.External_Id__c\nRoot,ROOT-1,\nChild,CHILD-1,ROOT-1\nDup,ROOT-1,\n"
    job_id, info = _ingest(sf, body)
    assert info["numberRecordsFailed"] == 1
    (failed,) = _rows(sf.get(f"jobs/ingest/{job_id}/failedResults/").text)[1:]
    assert failed[1].startswith("DUPLICATE_VALUE:duplicate value found: External_Id__c")
    rows = {r["External_Id__c"]: r for r in admin.records("Account") if r["External_Id__c"] in ("ROOT-1", "CHILD-1")}
    assert rows["CHILD-1"]["ParentId"] == rows["ROOT-1"]["Id"]


def test_custom_lookup_by_external_id_and_case_numbers(sf: SalesforceHttp, admin: Admin) -> None:
    sf.post("sobjects/Account", json={"Name": "ERP parent", "External_Id__c": "ERP-P"})
    _, info = _ingest(
        sf,
        "Name,External_Id__c,Account__r.External_Id__c,Amount__c\nO-1,ORD-1,ERP-P,12.5\nO-2,ORD-2,NOPE,1\n",
        object="ERP_Order__c",
    )
    assert info["numberRecordsFailed"] == 1
    order = next(r for r in admin.records("ERP_Order__c") if r["External_Id__c"] == "ORD-1")
    assert order["Account__c"] is not None and order["Amount__c"] == 12.5
    _, info = _ingest(sf, "Subject\n" + "".join(f"Case {i}\n" for i in range(30)), object="Case")
    numbers = [r["CaseNumber"] for r in admin.records("Case")]
    assert len(numbers) == len(set(numbers))


def test_upsert_batches_match_like_row_by_row_upserts(sf: SalesforceHttp, admin: Admin) -> None:
    """A batch's external ids are looked up together: case-insensitive matches update, new ones create; an id
    repeated within one batch (in any case) fails every row that carries it, and none of them is applied."""
    (existing,) = admin.load("Account", [{"Name": "Before", "External_Id__c": "UPB-1"}])
    body = "External_Id__c,Name\nupb-1,Matched case-insensitively\nUPB-2,Created\nUPB-3,First\n"
    job, info = _ingest(sf, body, object="Account", operation="upsert", externalIdFieldName="External_Id__c")
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (3, 0)
    results = {r[3]: r for r in _rows(sf.get(f"jobs/ingest/{job}/successfulResults/").text)[1:]}
    assert results["Matched case-insensitively"][:2] == [existing, "false"]
    assert results["Created"][1] == results["First"][1] == "true"
    job, info = _ingest(
        sf,
        "External_Id__c,Name\nUPB-4,One\nupb-4,Two\nUPB-5,Alone\n",
        object="Account",
        operation="upsert",
        externalIdFieldName="External_Id__c",
    )
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (3, 2)
    failed = _rows(sf.get(f"jobs/ingest/{job}/failedResults").text)[1:]
    assert sorted(r[1] for r in failed) == [
        "DUPLICATE_EXTERNAL_ID:Duplicate external id specified: UPB-4:External_Id__c --",
        "DUPLICATE_EXTERNAL_ID:Duplicate external id specified: upb-4:External_Id__c --",
    ]
    assert not [r for r in admin.records("Account") if str(r.get("External_Id__c")).lower() == "upb-4"]
    assert [r["Name"] for r in admin.records("Account") if r.get("External_Id__c") == "UPB-5"] == ["Alone"]


def test_an_id_repeated_in_an_update_or_delete_batch_fails_every_copy(sf: SalesforceHttp, admin: Admin) -> None:
    a, b = admin.load("Account", [{"Name": "Repeated"}, {"Name": "Once"}])
    body = f"Id,Name\n{a},First\n{a[:15]},Second\n{b},Renamed\n"  # the 15-character form is the same record
    job, info = _ingest(sf, body, operation="update")
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (3, 2)
    failed = _rows(sf.get(f"jobs/ingest/{job}/failedResults").text)[1:]
    assert sorted(r[1] for r in failed) == sorted(f"DUPLICATE_VALUE:Duplicate id in list: {i}:--" for i in (a, a[:15]))
    names = {r["Id"]: r["Name"] for r in admin.records("Account")}
    assert names[a] == "Repeated" and names[b] == "Renamed"
    _, info = _ingest(sf, f"Id\n{a}\n{a}\n", operation="delete")
    assert info["numberRecordsFailed"] == 2
    assert not next(r for r in admin.records("Account") if r["Id"] == a)["IsDeleted"]


def test_an_external_id_two_records_share_fails_the_upsert_on_bulk_and_collections(
    sf: SalesforceHttp, admin: Admin
) -> None:
    """Email is an idLookup field but not unique: two Contacts may share one, and an upsert on it then fails with
    Salesforce's "more than one record found" (REST answers 300 with the records' URLs: test_rest.py)."""
    twins = admin.load("Contact", [{"LastName": "Twin", "Email": "pair@example.com"}] * 2)
    job, info = _ingest(
        sf, "Email,LastName\npair@example.com,Upserted\n", object="Contact", operation="upsert",
        externalIdFieldName="Email",
    )  # fmt: skip
    assert info["numberRecordsFailed"] == 1
    (row,) = _rows(sf.get(f"jobs/ingest/{job}/failedResults").text)[1:]
    assert row[1].startswith("DUPLICATE_EXTERNAL_ID:Email: more than one record found for external id field: ")
    assert all(t in row[1] for t in twins) and row[1].endswith(":Email --")
    records = [{"attributes": {"type": "Contact"}, "Email": "pair@example.com", "LastName": "Again"}]
    (result,) = sf.patch("composite/sobjects/Contact/Email", json={"records": records}).json()
    assert not result["success"] and result["errors"][0]["statusCode"] == "DUPLICATE_EXTERNAL_ID"
    assert {r["LastName"] for r in admin.records("Contact") if r["Id"] in twins} == {"Twin"}


@pytest.mark.parametrize(
    ("column", "value", "soap_type"),
    [
        ("Shipped_At__c", "2026-01-02 10:00:00Z", "xsd:dateTime"),  # a space, not a T
        ("Shipped_At__c", "2026-01-02", "xsd:dateTime"),  # a date for a datetime
        ("Shipped_At__c", "2026-01-02T10:00:00", "xsd:dateTime"),  # no zone
        ("Order_Date__c", "2026-01-02T10:00:00Z", "xsd:date"),  # a datetime for a date
        ("Amount__c", "1,250.00", "xsd:double"),  # a thousands separator
    ],
)
def test_values_in_forms_salesforce_refuses_fail_the_row(
    sf: SalesforceHttp, admin: Admin, column: str, value: str, soap_type: str
) -> None:
    body = f'External_Id__c,{column}\nSTRICT-1,"{value}"\n'
    job, info = _ingest(sf, body, object="ERP_Order__c")
    assert info["numberRecordsFailed"] == 1
    (row,) = _rows(sf.get(f"jobs/ingest/{job}/failedResults").text)[1:]
    assert row[1] == (
        f"INVALID_FIELD:Failed to deserialize field at col 1. Due to, '{value}' is not a valid value for the type "
        f"{soap_type}:{column} --"
    ), row[1]
    assert not [r for r in admin.records("ERP_Order__c") if r["External_Id__c"] == "STRICT-1"]


def test_datetimes_in_the_documented_forms_are_stored_in_whole_seconds(sf: SalesforceHttp) -> None:
    body = (
        "External_Id__c,Shipped_At__c\nDT-1,2026-01-02T10:00:00.789Z\nDT-2,2026-01-02T12:00:00+02:00\n"
        "DT-3,2026-01-02T10:00:00.5-0130\n"
    )
    _, info = _ingest(sf, body, object="ERP_Order__c")
    assert info["numberRecordsFailed"] == 0
    rows = sf.query("SELECT External_Id__c, Shipped_At__c FROM ERP_Order__c WHERE External_Id__c LIKE 'DT-%'")
    got = {r["External_Id__c"]: r["Shipped_At__c"] for r in rows.json()["records"]}
    assert got == {
        "DT-1": "2026-01-02T10:00:00.000+0000",
        "DT-2": "2026-01-02T10:00:00.000+0000",
        "DT-3": "2026-01-02T11:30:00.000+0000",
    }
