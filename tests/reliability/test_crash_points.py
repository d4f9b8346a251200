"""Exactly once at every instant: a real task (LocalExecutor, its own process) is killed with SIGKILL at each
named crash point of the engines (``client/crashpoints.py``), once and for some twice in a row; Airflow retries
it; the end state must be what an uninterrupted run gives: every row exactly once in the org or in the output,
the output complete, no job left open, and the task a success. Every ``crash_point("...")`` in the package
must be covered here: a new transition fails this module until it is.

Then the other half of the rule: a deliberate re-run after a recorded success (a clear, a backfill
re-processing) starts afresh: it queries again and sees changes, and a changed query re-runs cleanly."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from ..conftest import BUCKET, DEMO_RECORDS, S3_CONN
from ..emulator.helpers import Admin, SalesforceHttp
from ..operators.conftest import load_dag
from .test_crash_resume import DURABLE

PACKAGE = Path(__file__).resolve().parents[2] / "airflow_provider_sfint"

DAG_FILE = """
import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG

from airflow_provider_sfint.operators.bulk_ingest import SalesforceBulkIngestOperator
from airflow_provider_sfint.operators.bulk_query import SalesforceBulkQueryOperator
from airflow_provider_sfint.operators.change_events import SalesforceChangeEventsOperator, SalesforceReadEventsOperator
from airflow_provider_sfint.operators.composite import SalesforceCompositeUpsertOperator

conn, folder, kind = os.environ["SFINT_CONN_ID"], os.environ["SFINT_CRASH_DIR"], "KIND"
args = {"retries": int(os.environ.get("SFINT_CRASH_RETRIES", "2")), "retry_delay": timedelta(seconds=1)}
start = datetime(2026, 1, 1, tzinfo=timezone.utc)
with DAG("sfint_points_KIND", schedule="@daily", start_date=start, default_args=args) as dag:
    if kind == "query_split":  # a history load whose job times out: the window is queried in halves
        SalesforceBulkQueryOperator(task_id="work", soql="SELECT Id, Name FROM Account", output=f"{folder}/out.parquet",
                                    incremental_field="CreatedDate", window_start=os.environ["SFINT_CRASH_START"],
                                    window_end=os.environ["SFINT_CRASH_END"], max_split_depth=6, page_size=20,
                                    parallel_pages=1, poll_interval=0.2, api="bulk", sfint_conn_id=conn)
    elif kind.startswith("query"):
        soql = os.environ.get("SFINT_CRASH_SOQL", "SELECT Id, Name FROM Account")
        folders = kind in ("query_dir", "query_rest")
        SalesforceBulkQueryOperator(task_id="work", soql=soql,
                                    output=f"{folder}/out/" if folders else f"{folder}/out.parquet",
                                    page_size=20, parallel_pages=1, part_size=40 if folders else None,
                                    poll_interval=0.2, api="rest" if kind == "query_rest" else "bulk",
                                    sfint_conn_id=conn)
    elif kind in ("insert", "upsert", "insert_locks"):
        SalesforceBulkIngestOperator(task_id="work", object="Account", operation=kind.split("_")[0],
                                     external_id_field="External_Id__c" if kind == "upsert" else None,
                                     source=f"{folder}/in.parquet", max_bytes_per_job=4000, max_concurrent_jobs=1,
                                     max_failed_records=None, poll_interval=0.2, sfint_conn_id=conn)
    elif kind == "changes":
        SalesforceChangeEventsOperator(task_id="work", channel="/data/AccountChangeEvent", destination=f"{folder}/lake",
                                       idle_seconds=1, batch_size=10, sfint_conn_id=conn)
    elif kind == "events":
        SalesforceReadEventsOperator(task_id="work", channel="/event/Order_Event__e", destination=f"{folder}/lake",
                                     idle_seconds=1, batch_size=10, sfint_conn_id=conn)
    else:
        SalesforceCompositeUpsertOperator(task_id="work", object="Account", external_id_field="External_Id__c",
                                          records=f"{folder}/in.parquet", bulk_threshold=10, sfint_conn_id=conn)
"""

QUERY = [
    "query.job_created",
    "query.job_recorded",
    "query.part_recorded",
    "query.downloaded",
    "commit.part_moved",
    "commit.manifest_written",
    "query.output_committed",
    "query.summary_recorded",
]
INGEST = [
    "ingest.job_created",
    "ingest.job_recorded",
    "ingest.upload_recorded",
    "ingest.job_closed",
    "ingest.job_done",
    "ingest.summary_recorded",
]
#: Rows that fail with UNABLE_TO_LOCK_ROW run again in follow-up jobs; those that fail again are written out.
FOLLOW_UP = [
    "ingest.follow_up_started",
    "ingest.follow_up_done",
    "files.failed_rows_staged",
    "ingest.failed_rows_written",
]
#: Killed between creating a job and recording it: the retry finds the job through the intent recorded before
#: the create. An ingest job (Open, empty) is adopted; a query job cannot be shown to be this query's (Bulk jobs
#: do not carry their SOQL), so while it runs it is aborted and a new one is created.
ORPHANED = "query.job_created"
POINTS: dict[str, list[str]] = {
    "query_dir": QUERY,
    "query_file": [
        p for p in QUERY if p not in ("query.part_recorded", "commit.part_moved", "commit.manifest_written")
    ],
    "insert": INGEST,
    "upsert": INGEST,
    "composite": INGEST,
    "insert_locks": FOLLOW_UP,
    "query_split": ["query.split_job_recorded", "query.split_downloaded"],
    # a small query read through the REST API: no job, the same commit
    "query_rest": [p for p in QUERY if p not in ("query.job_created", "query.job_recorded", "query.part_recorded")],
}
#: Killed again in the retry: the points a retry passes once more (not those it skips because the earlier try got
#: past them: a finished job is collected without waiting, a recorded summary is returned as it is).
REPEATED = ("query.job_created", "query.job_recorded", "query.summary_recorded", "ingest.summary_recorded")
TWICE = {kind: [p for p in POINTS[kind] if p not in REPEATED] for kind in ("query_dir", "insert")}
ROWS = 120


def _declared() -> set[str]:
    names: set[str] = set()
    for source in PACKAGE.rglob("*.py"):
        names |= set(re.findall(r'crash_point\("([a-z]+\.[a-z_]+)"\)', source.read_text(encoding="utf-8")))
    return names


#: The change-events operator in a real task: its stream points (the snapshot points are killed in a process
#: running the engine, tests/client/test_change_events_engine.py).
CHANGES = ["changes.run_recorded", "changes.part_written", "changes.parts_committed", "changes.checkpoint_moved"]


def test_every_crash_point_is_exercised() -> None:
    from ..client.test_change_events_engine import CRASH_POINTS as CHANGE_ENGINE

    covered = {p for points in POINTS.values() for p in points} | set(CHANGE_ENGINE) | set(CHANGES)
    declared = _declared()
    assert declared, "no crash points found in the package"
    assert declared == covered, f"not exercised: {sorted(declared - covered)}; gone: {sorted(covered - declared)}"


def _jobs(url: str, kind: str) -> list[dict[str, Any]]:
    with SalesforceHttp.login(url) as sf:
        return list(sf.get(f"jobs/{kind}").json()["records"])


def _run(
    kind: str,
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    conn: str,
    point: str | None,
    times: int = 1,
    store: str = "task_state_store" if DURABLE else "state_path",
    **env: str,
) -> Any:
    if store == "state_path":  # the provider's own store: one JSON document per task instance under this path
        monkeypatch.setenv("AIRFLOW__SFINT__STATE_PATH", f"file://{tmp}/state")
    elif store == "task_state_store":
        monkeypatch.delenv("AIRFLOW__SFINT__STATE_PATH", raising=False)
    monkeypatch.setenv("SFINT_CONN_ID", conn)
    monkeypatch.setenv("SFINT_CRASH_DIR", str(tmp))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ledger = tmp / "kills.log"
    if point is not None:
        monkeypatch.setenv("SFINT_CRASH_AT", point)
        monkeypatch.setenv("SFINT_CRASH_LEDGER", str(ledger))
        monkeypatch.setenv("SFINT_CRASH_TIMES", str(times))
    dag = load_dag(f"sfint_points_{kind}", DAG_FILE.replace("KIND", kind))
    run = dag.test(logical_date=datetime(2026, 11, 30, tzinfo=UTC), use_executor=True)
    monkeypatch.delenv("SFINT_CRASH_AT", raising=False)
    (ti,) = run.get_task_instances()
    if point is not None:
        kills = ledger.read_text().splitlines() if ledger.exists() else []
        assert kills == [point] * times, f"the task was not killed at {point} {times} time(s): {kills}"
    assert ti.state == "success", (ti.state, ti.try_number)
    return ti


def _check_query(kind: str, tmp: Path, org: Admin, url: str, orphaned: bool = False) -> None:
    live = sorted(r["Id"] for r in org.records("Account", include_deleted=False))
    if kind in ("query_dir", "query_rest"):
        out = tmp / "out"
        manifest = json.loads((out / "_SUCCESS").read_text())
        listed = [f["name"] for f in manifest["files"]]
        assert sorted(p.name for p in out.iterdir()) == sorted([*listed, "_SUCCESS"])  # no staging, no strays
        ids = [i for name in listed for i in pq.read_table(out / name).column("Id").to_pylist()]
        assert manifest["rows"] == len(ids)
    else:
        ids = pq.read_table(tmp / "out.parquet").column("Id").to_pylist()
        assert [p.name for p in tmp.iterdir() if p.name.startswith(".out.parquet")] == []  # no staged file left
    assert sorted(ids) == live  # every row, once
    states = sorted(j["state"] for j in _jobs(url, "query"))
    # the retries re-attached to the one job (or aborted the one they could not attribute; on a starved machine
    # the orphan may have finished by itself before the retry looked: then it is left complete, never open)
    if orphaned:
        assert states in (["Aborted", "JobComplete"], ["JobComplete", "JobComplete"]), states
    elif kind == "query_rest":
        assert states == [], states  # read through the REST API, every try
    else:
        assert states == ["JobComplete"], states


def _check_split(tmp: Path, org: Admin, url: str) -> None:
    """Every row once, though the window was queried in halves; the halves the killed try had created were used
    again (no job is still running, and there is no second copy of any half)."""
    live = sorted(r["Id"] for r in org.records("Account", include_deleted=False))
    ids = pq.read_table(tmp / "out.parquet").column("Id").to_pylist()
    assert sorted(ids) == live
    jobs = _jobs(url, "query")
    assert not [j for j in jobs if j["state"] in ("UploadComplete", "InProgress")], jobs
    complete = [j for j in jobs if j["state"] == "JobComplete"]
    assert len(jobs) - len(complete) >= 1 and len(complete) >= 2  # the timed-out job, and its halves


REFERENCES: dict[str, tuple[Any, int]] = {}
#: Against an S3-compatible server (moto's, started here): the commit's points for both query outputs, and the
#: follow-up and failed-row points of a load read from S3 whose failed rows go back to S3. State in S3 too.
S3_POINTS: dict[str, list[str]] = {
    "query_dir": QUERY,
    "query_file": POINTS["query_file"],
    "insert_locks": [p for p in FOLLOW_UP if not p.startswith("files.")],  # a PUT, not a staged local file
}


@pytest.mark.parametrize(
    ("kind", "point"), [pytest.param(k, p, id=f"s3-{k}-{p}") for k, points in S3_POINTS.items() for p in points]
)
def test_killed_at_a_crash_point_on_s3(
    kind: str,
    point: str,
    s3_lake: Any,
    conn: str,
    execution_api: str,
    fresh_org: Admin,
    emulator_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same kills with the output, the input, the failed rows and the task's state on an object store: no
    rename, folders that vanish with their last object. The prefix is copied down and checked like a folder."""
    reference = _reference(kind, tmp_path / "reference", monkeypatch, conn, fresh_org, emulator_url)
    prefix = f"{BUCKET}/{tmp_path.name}"
    local = tmp_path / "copy"
    local.mkdir()
    keys: list[str] = []
    if not kind.startswith("query"):
        keys = _input(local)
        s3_lake.put(str(local / "in.parquet"), f"{prefix}/in.parquet")
        (local / "in.parquet").unlink()
        fresh_org.faults({"kind": "lock_row", "rate": 0.3, "path": "/jobs/ingest"}, seed=5)
    if point == ORPHANED:
        fresh_org.set("timing", query_startup_s=12)  # the orphan still runs when the retry looks for it
    monkeypatch.setenv("AIRFLOW__SFINT__STATE_PATH", f"s3://{S3_CONN}@{prefix}/state")
    _run(kind, local, monkeypatch, conn, point, store="s3", SFINT_CRASH_DIR=f"s3://{S3_CONN}@{prefix}")
    s3_lake.invalidate_cache()
    for path in s3_lake.find(prefix):
        if "/state/" not in path:
            target = local / path[len(prefix) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3_lake.get(path, str(target))
    if kind.startswith("query"):
        _check_query(kind, local, fresh_org, emulator_url, orphaned=point == ORPHANED)
        assert _output(kind, local) == reference[0], "the output differs from an uninterrupted run's"
    else:
        _check_follow_ups(keys, fresh_org, emulator_url, local)
    (document,) = [p for p in s3_lake.find(f"{prefix}/state") if p.endswith(".json")]
    values = json.loads(s3_lake.cat(document))["values"]
    assert values.get("sfint_bulk_ingest", {}).get("complete") or values.get("sfint_bulk_query_complete")


def _output(kind: str, tmp: Path) -> Any:
    """A query's output as compared with an uninterrupted run: a single file's bytes, a directory's rows."""
    if kind not in ("query_dir", "query_rest"):
        return (tmp / "out.parquet").read_bytes()
    manifest = json.loads((tmp / "out" / "_SUCCESS").read_text())
    return pa.concat_tables([pq.read_table(tmp / "out" / f["name"]) for f in manifest["files"]]).to_pylist()


def _reference(
    kind: str, tmp: Path, monkeypatch: pytest.MonkeyPatch, conn: str, org: Admin, url: str
) -> tuple[Any, int]:
    """What an uninterrupted run of ``kind`` gives on the seeded org (once per kind): its output and its job
    count. The org is seeded again afterwards."""
    if kind not in REFERENCES:
        tmp.mkdir()
        env: dict[str, str] = {}
        if kind == "query_split":
            org.set("bulk", query_timeout_rows=len(org.records("Account", include_deleted=False)) // 3)
            env = _split_window(org)
        elif not kind.startswith("query"):
            _input(tmp)
        _run(kind, tmp, monkeypatch, conn, None, **env)
        jobs = len(_jobs(url, "query" if kind.startswith("query") else "ingest"))
        REFERENCES[kind] = (_output(kind, tmp) if kind.startswith("query") else None, jobs)
        org.reset(seed="demo", records=DEMO_RECORDS)
    return REFERENCES[kind]


def _split_window(org: Admin) -> dict[str, str]:
    stamps = sorted(r["CreatedDate"] for r in org.records("Account", include_deleted=False))
    last = datetime.fromisoformat(stamps[-1][:19] + "+00:00") + timedelta(seconds=1)
    return {"SFINT_CRASH_START": stamps[0][:19] + "Z", "SFINT_CRASH_END": last.isoformat()}


def _input(tmp: Path, n: int = ROWS) -> list[str]:
    keys = [f"CP-{i:04d}" for i in range(n)]
    names = [f"Crash point {i} " + "x" * 40 for i in range(n)]
    pq.write_table(pa.table({"External_Id__c": keys, "Name": names}), tmp / "in.parquet")
    return keys


def _check_ingest(keys: list[str], org: Admin, url: str) -> None:
    stored = sorted(
        r["External_Id__c"] for r in org.records("Account") if str(r.get("External_Id__c")).startswith("CP-")
    )
    assert stored == keys  # every row exactly once
    jobs = _jobs(url, "ingest")
    assert jobs and all(j["state"] == "JobComplete" for j in jobs), [j["state"] for j in jobs]  # none left open


def _check_follow_ups(keys: list[str], org: Admin, url: str, tmp: Path) -> None:
    """Every row is in the org once or in the failed-rows file once (it failed its follow-up too), never both."""
    stored = [r["External_Id__c"] for r in org.records("Account") if str(r.get("External_Id__c")).startswith("CP-")]
    failed = pacsv.read_csv(tmp / "in.parquet.failed.csv").column("External_Id__c").to_pylist()
    assert failed and len(set(stored)) == len(stored) and len(set(failed)) == len(failed)
    assert not set(stored) & set(failed) and sorted(stored + failed) == keys
    assert {r.split(":")[0] for r in pacsv.read_csv(tmp / "in.parquet.failed.csv").column("sf__Error").to_pylist()} == {
        "UNABLE_TO_LOCK_ROW"
    }
    assert [p.name for p in tmp.iterdir() if p.name.endswith(".sfint-tmp")] == []  # no staged file left
    jobs = _jobs(url, "ingest")
    assert len(jobs) > 3 and all(j["state"] == "JobComplete" for j in jobs), [j["state"] for j in jobs]


#: Where progress lives: Airflow 3.3's task_state_store, or the provider's state file (``[sfint] state_path``),
#: which gives Airflow 3.1 and 3.2 the same guarantees. On 3.3 the state file runs a kill at every point once.
STORES = ("task_state_store", "state_path") if DURABLE else ("state_path",)
CASES = [
    pytest.param(k, p, 1, store, id=f"{k}-{p}-x1-{store}")
    for store in STORES
    for k, points in POINTS.items()
    for p in points
    if store == STORES[0] or k in ("query_dir", "insert")
]
CASES += [pytest.param(k, p, 2, STORES[0], id=f"{k}-{p}-x2") for k, points in TWICE.items() for p in points]


@pytest.mark.parametrize(("kind", "point", "times", "store"), CASES)
def test_killed_at_a_crash_point(
    kind: str,
    point: str,
    times: int,
    store: str,
    conn: str,
    execution_api: str,
    fresh_org: Admin,
    emulator_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference = _reference(kind, tmp_path / "reference", monkeypatch, conn, fresh_org, emulator_url)
    keys = [] if kind.startswith("query") else _input(tmp_path)
    if point == ORPHANED:
        fresh_org.set("timing", query_startup_s=12)  # the orphan still runs when the retry looks for it
    env: dict[str, str] = {}
    if kind == "insert_locks":
        fresh_org.faults({"kind": "lock_row", "rate": 0.3, "path": "/jobs/ingest"}, seed=5)
    if kind == "query_split":
        fresh_org.set("bulk", query_timeout_rows=len(fresh_org.records("Account", include_deleted=False)) // 3)
        env = _split_window(fresh_org)
    _run(kind, tmp_path, monkeypatch, conn, point, times, store=store, **env)
    if kind == "query_split":
        _check_split(tmp_path, fresh_org, emulator_url)
    elif kind.startswith("query"):
        _check_query(kind, tmp_path, fresh_org, emulator_url, orphaned=point == ORPHANED)
    elif kind == "insert_locks":
        _check_follow_ups(keys, fresh_org, emulator_url, tmp_path)
    else:
        _check_ingest(keys, fresh_org, emulator_url)
    # identical to an uninterrupted run: the same bytes (a single file) or the same table (parts), in as many jobs
    if kind.startswith("query"):
        assert _output(kind, tmp_path) == reference[0], "the output differs from an uninterrupted run's"
    if kind != "insert_locks":
        assert len(_jobs(emulator_url, "query" if kind.startswith("query") else "ingest")) == reference[1] + (
            point == ORPHANED
        ), "more jobs than an uninterrupted run"
    if store == "state_path":  # the document of the task instance holds the summary a retry would return
        (document,) = (tmp_path / "state").rglob("*.json")
        values = json.loads(document.read_text())["values"]
        assert values.get("sfint_bulk_ingest", {}).get("complete") or values.get("sfint_bulk_query_complete")


def test_reattached_to_a_running_query_job_returns_its_result(
    conn: str, execution_api: str, fresh_org: Admin, emulator_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed while the job is still running; the only retry re-attaches and must return the job's rows (it used to
    fail with TypeError: Airflow 3.3's mixin returns nothing after re-attaching)."""
    fresh_org.set("timing", query_startup_s=4)
    ti = _run("query_dir", tmp_path, monkeypatch, conn, "query.job_recorded", SFINT_CRASH_RETRIES="1")
    assert ti.try_number == 2
    _check_query("query_dir", tmp_path, fresh_org, emulator_url)


def test_a_rerun_after_success_queries_again(
    conn: str, execution_api: str, fresh_org: Admin, emulator_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cleared task (here: the same logical date run again) creates a new job and sees what changed since; a
    changed query (a new column) re-runs cleanly instead of re-attaching to the old job."""
    _run("query_file", tmp_path, monkeypatch, conn, None)
    first = fresh_org.records("Account", include_deleted=False)[0]
    with SalesforceHttp.login(emulator_url) as sf:
        assert sf.patch(f"sobjects/Account/{first['Id']}", json={"Name": "Renamed after the first run"}).status_code
    _run("query_file", tmp_path, monkeypatch, conn, None)
    table = pq.read_table(tmp_path / "out.parquet")
    names = dict(zip(table.column("Id").to_pylist(), table.column("Name").to_pylist(), strict=True))
    assert names[first["Id"]] == "Renamed after the first run"
    assert len(_jobs(emulator_url, "query")) == 2
    _run("query_file", tmp_path, monkeypatch, conn, None, SFINT_CRASH_SOQL="SELECT Id, Name, Industry FROM Account")
    assert pq.read_table(tmp_path / "out.parquet").column_names == ["Id", "Name", "Industry"]
    assert len(_jobs(emulator_url, "query")) == 3


@pytest.mark.parametrize("kind", ["changes", "events"])
@pytest.mark.parametrize("point", CHANGES)
def test_event_readers_killed_at_a_crash_point(
    kind: str,
    point: str,
    execution_api: str,
    fresh_org: Admin,
    emulator_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The change-events task (Account changes) and the platform-event reader (Order_Event__e, published as 30
    deals are won) killed between writing a part and committing it, between the commit and the checkpoint, and
    after the checkpoint; Airflow's retry ends with every event in the lake exactly once, by its replay id (the
    key a delivery onward relies on), and the checkpoint at the last one."""
    from ..operators.conftest import set_connection

    grpc_target = emulator_server.grpc_target
    conn = set_connection(monkeypatch, "sfint_crash_events", emulator_server.url, pubsub_endpoint=grpc_target)
    with SalesforceHttp.login(emulator_server.url) as sf:
        if kind == "changes":
            records = [{"attributes": {"type": "Account"}, "Name": f"Killed {i}"} for i in range(30)]
            ids = [r["id"] for r in sf.post("composite/sobjects", json={"records": records}).json()]
        else:
            soql = "SELECT Id FROM Opportunity WHERE IsClosed = false LIMIT 30"
            ids = [o["Id"] for o in sf.query(soql).json()["records"]]
            won = [{"attributes": {"type": "Opportunity"}, "id": i, "StageName": "Closed Won"} for i in ids]
            assert all(r["success"] for r in sf.patch("composite/sobjects", json={"records": won}).json())
    _run(kind, tmp_path, monkeypatch, conn, point)
    lake = tmp_path / "lake"
    folder, key = ("Account", "record_id") if kind == "changes" else ("Order_Event__e", "Opportunity_Id__c")
    rows = [r for part in sorted(lake.glob(f"{folder}/part-*.parquet")) for r in pq.read_table(part).to_pylist()]
    assert sorted(r[key] for r in rows) == sorted(ids)  # every event once: none lost, none doubled
    assert len({r["replay_id"] for r in rows}) == 30
    assert not [p for p in lake.rglob("*") if p.is_file() and ".sfint-tmp" in p.name]  # no staging left behind
    checkpoint = json.loads((lake / "_sfint_checkpoint.json").read_text())["values"]["checkpoint"]
    assert checkpoint["replay_id"] == max((r["replay_id"] for r in rows), key=lambda h: int(h, 16))
