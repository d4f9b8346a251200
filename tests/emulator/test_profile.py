"""The org's timing (issue 19 item 1, issue 17 item 6): profiles, latency, Bulk job durations, bandwidth, and a
query job's snapshot. Bounds here are lower bounds the emulator's pacing guarantees, never speed assertions."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from airflow_provider_sfint.emulator import EmulatorProcess

from .helpers import Admin, SalesforceHttp

CSV = {"Content-Type": "text/csv"}


def _info(sf: SalesforceHttp, kind: str, job_id: str) -> dict[str, Any]:
    return dict(sf.get(f"jobs/{kind}/{job_id}").json())


def _watch(sf: SalesforceHttp, kind: str, job_id: str, timeout: float = 60) -> list[dict[str, Any]]:
    """Every job info seen, polling every 0.1 s, until the job ends."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        seen.append(_info(sf, kind, job_id))
        if seen[-1]["state"] in ("JobComplete", "Failed", "Aborted"):
            return seen
        assert time.monotonic() < deadline, f"job {job_id} still {seen[-1]['state']}"
        time.sleep(0.1)


def _ingest_job(sf: SalesforceHttp, csv_body: str) -> str:
    job_id = str(sf.post("jobs/ingest", json={"object": "Account", "operation": "insert"}).json()["id"])
    assert sf.http.put(sf.path(f"jobs/ingest/{job_id}/batches"), content=csv_body, headers=CSV).status_code == 201
    assert sf.patch(f"jobs/ingest/{job_id}", json={"state": "UploadComplete"}).status_code == 200
    return job_id


def test_profiles_through_the_admin_api(admin: Admin, sf: SalesforceHttp) -> None:
    assert admin._call("GET", "profile")["profile"] == "instant"
    realistic = admin.set("profile", name="realistic")
    assert realistic["profile"] == "realistic" and realistic["daily_api_requests"] == 150_000
    assert realistic["timing"]["rest_latency_s"] > 0 and realistic["timing"]["query_rows_per_s"] > 0
    limits = sf.get("limits").json()
    assert limits["DailyApiRequests"]["Max"] == 150_000
    admin.reset("empty")  # a reset keeps the server's profile
    assert admin._call("GET", "timing")["profile"] == "realistic"
    bad = admin.http.put("/__emulator__/profile", json={"name": "fast"})
    assert bad.status_code == 400 and "instant, realistic" in bad.json()["error"]
    bad = admin.http.put("/__emulator__/timing", json={"rest_latency": 1})
    assert bad.status_code == 400 and "rest_latency_s" in bad.json()["error"]
    bad = admin.http.put("/__emulator__/timing", json={"query_rows_per_s": -1})
    assert bad.status_code == 400 and "query_rows_per_s" in bad.json()["error"]
    admin.set("profile", name="instant")
    assert admin._call("GET", "timing")["rest_latency_s"] == 0


def test_rest_latency_is_added_to_every_call(admin: Admin, sf: SalesforceHttp) -> None:
    admin.set("timing", rest_latency_s=0.3)
    started = time.monotonic()
    for _ in range(4):
        assert sf.get("limits").status_code == 200
    assert time.monotonic() - started >= 1.2


def test_a_query_job_stays_in_progress_for_its_size_and_reads_a_snapshot(admin: Admin, sf: SalesforceHttp) -> None:
    admin.load("Account", [{"Name": f"Before {i}"} for i in range(400)])
    before = admin.records("Account", include_deleted=False)
    first = before[0]
    admin.set("timing", query_startup_s=0.5, query_rows_per_s=len(before) / 2)  # 2 s InProgress
    created = sf.post("jobs/query", json={"operation": "query", "query": "SELECT Id, Name FROM Account"})
    job_id = str(created.json()["id"])
    while _info(sf, "query", job_id)["state"] == "UploadComplete":
        time.sleep(0.05)
    # written while the job runs: neither is in its result
    late = sf.post("sobjects/Account", json={"Name": "Written while the job ran"}).json()["id"]
    assert sf.patch(f"sobjects/Account/{first['Id']}", json={"Name": "Renamed while the job ran"}).status_code == 204
    seen = _watch(sf, "query", job_id)
    states = [i["state"] for i in seen]
    assert "InProgress" in states and states[-1] == "JobComplete"
    assert seen[-1]["totalProcessingTime"] >= 2000  # 0.5 s start-up + 2 s for its rows
    body = sf.get(f"jobs/query/{job_id}/results").text
    assert "Written while the job ran" not in body and late[:15] not in body
    assert "Renamed while the job ran" not in body and f'"{first["Id"]}","{first["Name"]}"' in body
    assert body.count("\n") == len(before) + 1
    # the late record's SystemModstamp is earlier than the job's completion
    stamp = sf.get(f"sobjects/Account/{late}", params={"fields": "SystemModstamp"}).json()["SystemModstamp"]
    assert stamp[:19] < seen[-1]["systemModstamp"][:19] or stamp[:19] == seen[-1]["systemModstamp"][:19]


def test_an_ingest_job_reports_progress_at_its_rate(admin: Admin, sf: SalesforceHttp) -> None:
    admin.set("timing", ingest_startup_s=0.2, ingest_rows_per_s=8_000)  # 20,000 rows: about 2.5 s, in 3 steps
    job_id = _ingest_job(sf, "Name\n" + "".join(f"Paced {i}\n" for i in range(20_000)))
    seen = _watch(sf, "ingest", job_id)
    assert seen[-1]["state"] == "JobComplete" and seen[-1]["numberRecordsProcessed"] == 20_000
    partial = {i["numberRecordsProcessed"] for i in seen if i["state"] == "InProgress"}
    assert partial & {10_000}, f"no progress seen between 0 and 20,000: {sorted(partial)}"
    assert seen[-1]["totalProcessingTime"] >= 2400


def test_concurrent_ingest_jobs_share_the_orgs_capacity(admin: Admin, sf: SalesforceHttp) -> None:
    # one job alone: 10,000 rows at 20,000 rows/s (0.5 s); the org processes 5,000 rows/s for all jobs together
    admin.set("timing", ingest_rows_per_s=20_000, ingest_org_rows_per_s=5_000)
    body = "Name\n" + "".join(f"Shared {i}\n" for i in range(10_000))
    jobs = [_ingest_job(sf, body) for _ in range(2)]
    infos = [_watch(sf, "ingest", j)[-1] for j in jobs]
    assert all(i["state"] == "JobComplete" for i in infos)
    assert max(i["totalProcessingTime"] for i in infos) >= 3500  # 20,000 rows at the org's 5,000 rows/s


def test_upload_and_download_bandwidth(admin: Admin, sf: SalesforceHttp) -> None:
    admin.set("timing", upload_bytes_per_s=200_000, download_bytes_per_s=100_000)
    job_id = str(sf.post("jobs/ingest", json={"object": "Account", "operation": "insert"}).json()["id"])
    body = "Name\n" + "".join(f"Uploaded slowly {i:08d}\n" for i in range(16_000))  # ~400 KB
    started = time.monotonic()
    assert sf.http.put(sf.path(f"jobs/ingest/{job_id}/batches"), content=body, headers=CSV).status_code == 201
    assert time.monotonic() - started >= len(body) / 200_000 * 0.9
    started = time.monotonic()
    described = sf.get("sobjects/Account/describe", headers={"Accept-Encoding": "identity"})
    assert described.status_code == 200 and described.json()["name"] == "Account"  # a JSON body, paced too
    assert time.monotonic() - started >= len(described.content) / 100_000 * 0.9


@pytest.mark.timeout(120)
def test_an_emulator_process_starts_with_a_profile() -> None:
    with EmulatorProcess(seed="empty", profile="realistic") as server:
        profile = httpx.get(f"{server.url}/__emulator__/profile").json()
        assert profile["profile"] == "realistic" and profile["timing"]["download_bytes_per_s"] == 8_000_000


def test_job_timings_give_the_notice_delay(admin: Admin, sf: SalesforceHttp) -> None:
    admin.set("timing", query_startup_s=0.3)
    job_id = str(sf.post("jobs/query", json={"operation": "query", "query": "SELECT Id FROM Account"}).json()["id"])
    (timing,) = [t for t in admin._call("GET", "bulk/jobs") if t["id"] == job_id]
    assert timing["ended"] is None and timing["noticed"] is None
    time.sleep(1.0)
    assert _info(sf, "query", job_id)["state"] == "JobComplete"
    (timing,) = [t for t in admin._call("GET", "bulk/jobs") if t["id"] == job_id]
    assert timing["created"] <= timing["running"] <= timing["ended"] <= timing["noticed"]
    assert 0.3 <= timing["notice_delay_s"] <= 1.0  # looked at about 1 s after creation; it ended after 0.3 s


def _contacts_job(sf: SalesforceHttp, account: str, rows: int, tag: str) -> str:
    job_id = str(sf.post("jobs/ingest", json={"object": "Contact", "operation": "insert"}).json()["id"])
    body = "LastName,AccountId\n" + "".join(f"{tag} {i},{account}\n" for i in range(rows))
    assert sf.http.put(sf.path(f"jobs/ingest/{job_id}/batches"), content=body, headers=CSV).status_code == 201
    return job_id


def test_concurrent_jobs_on_children_of_one_parent_lock_it(admin: Admin, sf: SalesforceHttp) -> None:
    """Issue 17 item 4: row locks arise by themselves. A batch locks the parents its rows refer to while it is
    processed; another job's rows on those parents wait (here 0.3 s, 10 s by default) and then fail."""
    (account,) = admin.load("Account", [{"Name": "Busy parent"}])
    (other,) = admin.load("Account", [{"Name": "Quiet parent"}])
    admin.set("timing", ingest_rows_per_s=1_000)  # a batch of 2,000 rows is processed for 2 s
    admin.set("bulk", lock_wait_s=0.3)
    first, second = _contacts_job(sf, account, 2_000, "First"), _contacts_job(sf, account, 2_000, "Second")
    elsewhere = _contacts_job(sf, other, 100, "Elsewhere")
    for job_id in (first, second, elsewhere):
        assert sf.patch(f"jobs/ingest/{job_id}", json={"state": "UploadComplete"}).status_code == 200
    infos = {j: _watch(sf, "ingest", j)[-1] for j in (first, second, elsewhere)}
    failed = sorted(infos[j]["numberRecordsFailed"] for j in (first, second))
    assert failed == [0, 2_000], infos  # one job held the parent for 2 s; the other's rows could not wait
    assert infos[elsewhere]["numberRecordsFailed"] == 0  # another parent: no contention
    loser = first if infos[first]["numberRecordsFailed"] else second
    rows = sf.get(f"jobs/ingest/{loser}/failedResults").text.splitlines()
    assert (
        len(rows) == 2_001
        and f"UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record or 1 records: {account}:--" in rows[1]
    )
    # with Salesforce's 10 s wait, the same contention resolves by waiting
    admin.set("bulk", lock_wait_s=10)
    again = [_contacts_job(sf, account, 2_000, f"Again{n}") for n in range(2)]
    for job_id in again:
        sf.patch(f"jobs/ingest/{job_id}", json={"state": "UploadComplete"})
    assert [_watch(sf, "ingest", j)[-1]["numberRecordsFailed"] for j in again] == [0, 0]
