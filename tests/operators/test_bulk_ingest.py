"""SalesforceBulkIngestOperator against the emulator: exact values, upsert idempotence, splitting, failures,
lock retries, exactly-once across crashes, abort on kill, and every preflight error."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from airflow_provider_sfint.client.bulk2 import Bulk2
from airflow_provider_sfint.client.errors import SalesforceError
from airflow_provider_sfint.compat import AirflowFailException
from airflow_provider_sfint.emulator.datagen import HOSTILE_VALUES
from airflow_provider_sfint.emulator.dml import sf_trim
from airflow_provider_sfint.operators.bulk_ingest import STATE_KEY, SalesforceBulkIngestOperator

from ..emulator.helpers import Admin, SalesforceHttp
from .conftest import StateStore, WorkerDied, make_context

TEXT_FIELDS = ["Description", "Site", "BillingStreet"]


def _op(conn: str, source: Any, **kw: Any) -> SalesforceBulkIngestOperator:
    kw.setdefault("poll_interval", 0.05)
    kw.setdefault("object", "Account")
    kw.setdefault("operation", "upsert")
    kw.setdefault("external_id_field", "External_Id__c" if kw["operation"] == "upsert" else None)
    return SalesforceBulkIngestOperator(task_id="load", source=source, sfint_conn_id=conn, **kw)


def _accounts(n: int, prefix: str = "ING", seed: int = 3) -> pa.Table:
    rng = random.Random(seed)
    values = [v for v in HOSTILE_VALUES if v and len(v) <= 80 and v != "#N/A"]
    rows = {
        "External_Id__c": [f"{prefix}-{i:05d}" for i in range(n)],
        "Name": [f"Account {prefix} {i}" for i in range(n)],
        "Description": [values[i % len(values)] if i % 7 else None for i in range(n)],
        "Site": [rng.choice(values)[:80] for _ in range(n)],
        "BillingStreet": ["1 Main St\r\nSuite 2" if i % 3 == 0 else "line\nbreak\rcr" for i in range(n)],
        "AnnualRevenue": [round(rng.uniform(0, 1e9), 2) if i % 5 else None for i in range(n)],
        "NumberOfEmployees": [rng.randint(1, 100000) for _ in range(n)],
        "Is_Strategic__c": [i % 2 == 0 for i in range(n)],
    }
    return pa.table(rows)


def _stored(admin: Admin, prefix: str) -> dict[str, dict[str, Any]]:
    return {r["External_Id__c"]: r for r in admin.records("Account") if str(r.get("External_Id__c")).startswith(prefix)}


def _expect_text(value: Any) -> Any:
    if value is None:
        return None
    text = sf_trim(str(value).replace("\x00", ""))
    return text or None


@pytest.mark.parametrize("operation", ["upsert", "insert"])
def test_hostile_rows_land_exactly_from_parquet(conn: str, fresh_org: Admin, tmp_path: Path, operation: str) -> None:
    table = _accounts(600)
    pq.write_table(table, tmp_path / "accounts.parquet")
    summary = _op(conn, str(tmp_path / "accounts.parquet"), operation=operation).execute(make_context(StateStore()))
    assert (summary["records"], summary["failed"], summary["succeeded"]) == (600, 0, 600)
    stored = _stored(fresh_org, "ING-")
    assert len(stored) == 600
    for row in table.to_pylist():
        got = stored[row["External_Id__c"]]
        for f in [*TEXT_FIELDS, "Name"]:
            assert got[f] == _expect_text(row[f]), (row["External_Id__c"], f, row[f], got[f])
        assert got["NumberOfEmployees"] == row["NumberOfEmployees"]
        assert bool(got["Is_Strategic__c"]) == row["Is_Strategic__c"]
        if row["AnnualRevenue"] is not None:  # a currency field of scale 0: Salesforce rounds to whole units
            assert got["AnnualRevenue"] == round(row["AnnualRevenue"])


def test_upsert_twice_creates_nothing_the_second_time(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    table = _accounts(300, prefix="TWICE")
    first = _op(conn, table).execute(make_context())
    before = _stored(fresh_org, "TWICE-")
    second = _op(conn, table).execute(make_context())
    after = _stored(fresh_org, "TWICE-")
    assert first["failed"] == second["failed"] == 0
    assert len(after) == 300
    assert {k: v["Id"] for k, v in before.items()} == {k: v["Id"] for k, v in after.items()}
    assert {k: v["Description"] for k, v in before.items()} == {k: v["Description"] for k, v in after.items()}


def test_null_policy_set_null_clears_and_leave_unchanged_keeps(conn: str, fresh_org: Admin) -> None:
    base = pa.table({"External_Id__c": ["NP-1", "NP-2"], "Name": ["One", "Two"], "Site": ["keep", "keep"]})
    _op(conn, base).execute(make_context())
    nulls = pa.table({"External_Id__c": ["NP-1", "NP-2"], "Site": pa.array([None, ""], pa.string())})
    _op(conn, nulls).execute(make_context())
    assert {k: v["Site"] for k, v in _stored(fresh_org, "NP-").items()} == {"NP-1": "keep", "NP-2": "keep"}
    _op(conn, nulls, null_policy="set_null").execute(make_context())
    stored = _stored(fresh_org, "NP-")
    assert stored["NP-1"]["Site"] is None  # None -> #N/A -> cleared
    assert stored["NP-1"]["Name"] == "One"  # a column not in the input is untouched


def test_split_into_several_jobs(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    table = _accounts(900, prefix="SPLIT")
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(table.slice(0, 450), folder / "a.parquet")
    pq.write_table(table.slice(450), folder / "b.parquet")
    summary = _op(conn, f"{folder}/", max_bytes_per_job=40_000, max_concurrent_jobs=2).execute(make_context())
    assert len(summary["jobs"]) >= 4
    assert summary["succeeded"] == 900 and len(_stored(fresh_org, "SPLIT-")) == 900
    assert summary["batches"] >= len(summary["jobs"])


def test_failed_rows_are_written_and_fail_the_task(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    rows = pa.table(
        {
            "External_Id__c": ["F-1", "F-2", "F-3"],
            "Name": ["ok", None, "ok too"],  # a null Name fails insert with REQUIRED_FIELD_MISSING
        }
    )
    pq.write_table(rows, tmp_path / "in.parquet")
    with pytest.raises(AirflowFailException, match=r"1 of 3 rows failed.*REQUIRED_FIELD_MISSING"):
        _op(conn, str(tmp_path / "in.parquet")).execute(make_context())
    failed = pacsv.read_csv(tmp_path / "in.parquet.failed.csv").to_pylist()
    assert [r["External_Id__c"] for r in failed] == ["F-2"]
    assert failed[0]["sf__ErrorCode"] == "REQUIRED_FIELD_MISSING"
    assert len(_stored(fresh_org, "F-")) == 2
    summary = _op(conn, str(tmp_path / "in.parquet"), max_failed_records=1).execute(make_context())
    assert summary["failed"] == 1 and summary["failed_output"].endswith("in.parquet.failed.csv")
    with pytest.raises(AirflowFailException, match=r"max_failed_ratio=0\.1"):
        _op(conn, str(tmp_path / "in.parquet"), max_failed_records=None, max_failed_ratio=0.1).execute(make_context())


def test_lock_failures_are_retried_once(conn: str, fresh_org: Admin) -> None:
    fresh_org.faults({"kind": "lock_row", "rate": 0.2, "path": "/jobs/ingest", "count": 40})
    summary = _op(conn, _accounts(400, prefix="LOCK")).execute(make_context())
    assert summary["retried"] > 0 and summary["failed"] == 0
    assert len(_stored(fresh_org, "LOCK-")) == 400


@pytest.mark.parametrize("crash_after", ["job", "uploaded", "upload-unrecorded", "closed"])
def test_a_crash_then_a_retry_loads_each_row_once(
    conn: str, fresh_org: Admin, tmp_path: Path, crash_after: str
) -> None:
    """Insert (no key to deduplicate on): after a crash at each step, the retry gives exactly one copy."""
    rows = pa.table({"Name": [f"Once {crash_after} {i}" for i in range(500)], "Site": ["x"] * 500})
    store = StateStore()
    step = "uploaded" if crash_after == "upload-unrecorded" else crash_after
    store.dies_after = lambda key, value: key == STATE_KEY and any(step in p for p in value["parts"].values())
    op = _op(conn, rows, operation="insert", max_bytes_per_job=6_000, max_concurrent_jobs=1)
    with pytest.raises(WorkerDied):
        op.execute(make_context(store))
    store.dies_after = None
    assert store.get(STATE_KEY)["parts"]
    if crash_after == "upload-unrecorded":  # the PUT arrived but the worker died before noting it
        for part in store.values[STATE_KEY]["parts"].values():
            part.pop("uploaded", None)
    summary = _op(conn, rows, operation="insert", max_bytes_per_job=6_000, max_concurrent_jobs=1).execute(
        make_context(store)
    )
    names = [r["Name"] for r in fresh_org.records("Account") if str(r["Name"]).startswith(f"Once {crash_after} ")]
    assert len(names) == len(set(names)) == 500
    assert summary["succeeded"] == 500 and store.get(STATE_KEY)["complete"] == summary


def test_a_kill_after_the_work_before_success_is_recorded_loads_nothing_again(
    conn: str, fresh_org: Admin, tmp_path: Path
) -> None:
    """Killed after every job completed but before Airflow recorded success: the retry returns the same summary
    and creates no job; only a new run of the task (its first try) starts afresh."""
    rows = pa.table({"Name": [f"Done {i}" for i in range(300)]})
    store = StateStore()
    first = _op(conn, rows, operation="insert").execute(make_context(store))
    jobs = fresh_org.counters()["bulk_jobs"]
    retry = make_context(store)
    retry["ti"].try_number, retry["ti"].max_tries = 2, 1  # the retry of a task with retries=1
    again = _op(conn, rows, operation="insert", retries=1).execute(retry)
    assert again == first and fresh_org.counters()["bulk_jobs"] == jobs
    assert len([r for r in fresh_org.records("Account") if str(r["Name"]).startswith("Done ")]) == 300
    rerun = make_context(store)
    rerun["ti"].try_number, rerun["ti"].max_tries = 3, 3  # cleared after that success: max_tries = 2 + retries
    fresh = _op(conn, rows, operation="insert", retries=1).execute(rerun)
    assert fresh["jobs"] != first["jobs"] and fresh_org.counters()["bulk_jobs"] == jobs + 1


def test_kill_aborts_running_jobs(conn: str, fresh_org: Admin) -> None:
    fresh_org.set("timing", ingest_startup_s=30)
    op = _op(conn, _accounts(50, prefix="KILL"), max_failed_records=None)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            op.execute(make_context())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 20
    while not op._state.get("parts", {}).get("0", {}).get("closed") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert op._state["parts"]["0"].get("closed"), "the job was not closed within 20 s"
    op.on_kill()
    thread.join(30)
    (job_id,) = [p["job"] for p in op._state["parts"].values()]
    assert Bulk2(op.hook.client).job_info("ingest", job_id).state == "Aborted"
    assert errors  # the task did not report success


@pytest.mark.parametrize(
    ("kw", "rows", "message"),
    [
        ({}, {"External_Id__c": ["a"], "Nmae": ["x"]}, r"no field 'Nmae'.*did you mean Name"),
        ({"operation": "insert"}, {"Site": ["x"]}, r"Account.Name is required for insert"),
        ({"operation": "insert"}, {"Name": ["x"], "CreatedDate": ["2024-01-01T00:00:00Z"]}, "not createable"),
        ({"external_id_field": "Name"}, {"Name": ["x"]}, "not an External ID or idLookup"),
        ({}, {"External_Id__c": ["d", "d"], "Name": ["x", "y"]}, r"row 2: External_Id__c 'd' repeats row 1"),
        ({}, {"External_Id__c": ["n"], "NumberOfEmployees": ["12x"]}, r"row 1, column 'NumberOfEmployees'.*valid int"),
        ({}, {"External_Id__c": ["t"], "Site": ["#N/A"]}, "literal text #N/A"),
        ({}, {"External_Id__c": ["l"], "Site": ["x" * 81]}, "81 characters, over the field's 80"),
        ({"operation": "delete", "external_id_field": None}, {"Id": ["001"], "Name": ["x"]}, "takes only the Id"),
        ({"column_mapping": {"nope": "Name"}}, {"External_Id__c": ["m"]}, "column_mapping names 'nope'"),
    ],
)
def test_preflight_errors_spend_nothing_beyond_describe(
    conn: str, fresh_org: Admin, kw: dict[str, Any], rows: dict[str, list[Any]], message: str
) -> None:
    fresh_org._call("POST", "counters/reset")
    with pytest.raises(AirflowFailException, match=message):
        _op(conn, pa.table(rows), **kw).execute(make_context())
    assert fresh_org.counters()["bulk_jobs"] == 0
    assert all("jobs" not in path for path in fresh_org.counters()["requests"])


def test_relationship_column_by_external_id(conn: str, fresh_org: Admin) -> None:
    _op(conn, pa.table({"External_Id__c": ["PARENT-1"], "Name": ["Parent"]})).execute(make_context())
    contacts = pa.table(
        {"External_Id__c": ["C-1", "C-2"], "LastName": ["A", "B"], "Account.External_Id__c": ["PARENT-1", "PARENT-1"]}
    )
    _op(conn, contacts, object="Contact").execute(make_context())
    parent = _stored(fresh_org, "PARENT-")["PARENT-1"]["Id"]
    linked = [r["AccountId"] for r in fresh_org.records("Contact") if str(r.get("External_Id__c")).startswith("C-")]
    assert linked == [parent, parent]


def test_csv_and_jsonl_sources_keep_text_as_written(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(b'External_Id__c,Name,Site\n"CSV-1","NA","null"\n"CSV-2","multi\r\nline","N/A"\n')
    _op(conn, str(tmp_path / "a.csv")).execute(make_context())
    (tmp_path / "b.jsonl").write_text('{"External_Id__c": "JS-1", "Name": "None", "NumberOfEmployees": 5}\n')
    _op(conn, str(tmp_path / "b.jsonl")).execute(make_context())
    stored = {**_stored(fresh_org, "CSV-"), **_stored(fresh_org, "JS-")}
    assert (stored["CSV-1"]["Name"], stored["CSV-1"]["Site"]) == ("NA", "null")
    assert (stored["CSV-2"]["Name"], stored["CSV-2"]["Site"]) == ("multi\r\nline", "N/A")
    assert (stored["JS-1"]["Name"], stored["JS-1"]["NumberOfEmployees"]) == ("None", 5)


def test_deferrable_ingest_hands_its_jobs_to_the_trigger_and_back(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    """Without task_state_store (Airflow 3.1/3.2) the jobs per part travel in the trigger's event."""
    import asyncio

    from airflow.providers.common.compat.sdk import TaskDeferred

    pq.write_table(_accounts(300, prefix="DEF"), tmp_path / "in.parquet")
    fresh_org.set("timing", ingest_startup_s=1.0)
    op = _op(conn, str(tmp_path / "in.parquet"), deferrable=True, max_bytes_per_job=9_000, max_concurrent_jobs=2)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(make_context())
    trigger = deferred.value.trigger
    assert len(trigger.job_ids) == 2

    async def wait() -> Any:
        return [e.payload async for e in trigger.run()]

    (event,) = asyncio.run(wait())
    assert event["status"] == "success" and event["echo"]["parts"]
    resumed = _op(conn, str(tmp_path / "in.parquet"), deferrable=True, max_bytes_per_job=9_000, max_concurrent_jobs=2)
    summary = None
    while summary is None:
        try:
            summary = resumed.execute_complete(make_context(), event)
        except TaskDeferred as again:
            (event,) = asyncio.run(_payloads(again.trigger))
    assert summary["succeeded"] == 300 and len(summary["jobs"]) >= 3
    assert len(_stored(fresh_org, "DEF-")) == 300


async def _payloads(trigger: Any) -> list[Any]:
    return [e.payload async for e in trigger.run()]


def test_a_failure_leaves_no_job_open(conn: str, fresh_org: Admin) -> None:
    """A part's upload is refused (the emulator's size cap): the job created for it is aborted, not left Open."""
    fresh_org.set("bulk", max_upload_bytes=30_000)
    op = _op(conn, _accounts(300, prefix="OPEN"), max_bytes_per_job=60_000, max_concurrent_jobs=1)
    with pytest.raises(SalesforceError, match="EXCEEDED_MAX_SIZE_REQUEST"):
        op.execute(make_context(StateStore()))
    states = [Bulk2(op.hook.client).job_info("ingest", j).state for j in _all_ingest_jobs(op)]
    assert states and "Open" not in states, states


def _all_ingest_jobs(op: SalesforceBulkIngestOperator) -> list[str]:
    page = op.hook.client.request("GET", "jobs/ingest")
    return [j["id"] for j in page["records"]]


def test_a_retry_with_changed_input_stops_before_touching_the_earlier_job(conn: str, fresh_org: Admin) -> None:
    store = StateStore()
    store.dies_after = lambda key, value: bool(value.get("parts"))  # dies right after the intent of a job
    rows = pa.table({"Name": ["Before A", "Before B"]})
    with pytest.raises(WorkerDied):
        _op(conn, rows, operation="insert").execute(make_context(store))
    store.dies_after = None
    changed = pa.table({"Name": ["After A", "After B"]})
    with pytest.raises(AirflowFailException, match="the input changed since an earlier try"):
        _op(conn, changed, operation="insert").execute(make_context(store))
    assert not [r for r in fresh_org.records("Account") if str(r["Name"]).startswith(("Before", "After"))]


def test_a_lost_create_answer_adopts_the_job_it_made(conn: str, fresh_org: Admin, emulator_url: str) -> None:
    """The connection is cut after Salesforce created the job but before its answer arrived: the job is found
    (created by this user, on this object and operation, since the recorded intent, Open) and used, not left
    Open beside a second one."""
    fresh_org.faults({"kind": "drop", "path": "/jobs/ingest$", "method": "POST", "count": 1})
    summary = _op(conn, _accounts(80, prefix="LOST"), operation="insert").execute(make_context())
    assert fresh_org._call("GET", "faults")["rules"][0]["fired"] == 1
    with SalesforceHttp.login(emulator_url) as sf:
        jobs = sf.get("jobs/ingest").json()["records"]
    assert [j["state"] for j in jobs] == ["JobComplete"] and summary["adopted_jobs"] == [jobs[0]["id"]]
    assert len([r for r in fresh_org.records("Account") if str(r.get("External_Id__c")).startswith("LOST-")]) == 80
