"""Crash and resume under a real executor: the task's process is killed with SIGKILL mid-download,
mid-upload, after UploadComplete and mid-Composite; Airflow retries it, the retry re-attaches to what the
first try left (Airflow 3.3's task_state_store; on 3.1 and 3.2 the provider's state file, ``[sfint]
state_path``), and the end state is exactly once: no duplicate, no missing row, no second job while the first
was usable, no job left open."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ..emulator.helpers import Admin, SalesforceHttp
from ..operators.conftest import load_dag

try:
    from airflow.sdk import ResumableJobMixin  # noqa: F401

    DURABLE = True
except ImportError:  # Airflow < 3.3: a retried task starts over
    DURABLE = False

DAG_FILE = """
import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG

from airflow_provider_sfint.operators.bulk_ingest import SalesforceBulkIngestOperator
from airflow_provider_sfint.operators.bulk_query import SalesforceBulkQueryOperator
from airflow_provider_sfint.operators.composite import SalesforceCompositeUpsertOperator

conn, folder, kind = os.environ["SFINT_CONN_ID"], os.environ["SFINT_CRASH_DIR"], "KIND"
args = {"retries": 2, "retry_delay": timedelta(seconds=1)}
start = datetime(2026, 1, 1, tzinfo=timezone.utc)
with DAG("sfint_crash_KIND", schedule=None, start_date=start, default_args=args) as dag:
    if kind == "query":
        SalesforceBulkQueryOperator(task_id="work", soql="SELECT Id, Name FROM Account", output=f"{folder}/out/",
                                    page_size=20, parallel_pages=1, part_size=40, poll_interval=0.2, api="bulk",
                                    sfint_conn_id=conn)
    elif kind.startswith("ingest"):
        SalesforceBulkIngestOperator(task_id="work", object="Account", operation="insert",
                                     source=f"{folder}/in.parquet", poll_interval=0.2, sfint_conn_id=conn)
    else:
        SalesforceCompositeUpsertOperator(task_id="work", object="Account", external_id_field="External_Id__c",
                                          records=f"{folder}/in.parquet", batch_size=50, max_concurrency=1,
                                          sfint_conn_id=conn)
"""


def _running_pid(dag_id: str) -> int | None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=dag_id, task_id="work", state="running").one_or_none()
        return int(ti.pid) if ti is not None and ti.pid else None


def _kill_when(dag_id: str, ready: Callable[[], bool], killed: list[int]) -> threading.Thread:
    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pid = _running_pid(dag_id)
            if pid is not None and ready():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _fired(org: Admin, index: int = 0) -> int:
    return int(org._call("GET", "faults")["rules"][index]["fired"])


def _jobs(url: str, kind: str) -> list[dict[str, Any]]:
    with SalesforceHttp.login(url) as sf:
        return list(sf.get(f"jobs/{kind}").json()["records"])


def _run(kind: str, tmp: Path, monkeypatch: pytest.MonkeyPatch, conn: str, ready: Callable[[], bool]) -> Any:
    monkeypatch.setenv("SFINT_CONN_ID", conn)
    monkeypatch.setenv("SFINT_CRASH_DIR", str(tmp))
    if not DURABLE:  # Airflow 3.1/3.2: progress in the provider's state file
        monkeypatch.setenv("AIRFLOW__SFINT__STATE_PATH", f"file://{tmp}/state")
    dag = load_dag(f"sfint_crash_{kind}", DAG_FILE.replace("KIND", kind))
    killed: list[int] = []
    watcher = _kill_when(f"sfint_crash_{kind}", ready, killed)
    run = dag.test(use_executor=True)
    watcher.join(timeout=5)
    (ti,) = run.get_task_instances()
    assert killed, "the task finished before it could be killed: the test proved nothing"
    assert ti.state == "success" and ti.try_number >= 2, (ti.state, ti.try_number)
    return ti


def _input(tmp: Path, prefix: str, n: int) -> list[str]:
    ids = [f"{prefix}-{i:04d}" for i in range(n)]
    pq.write_table(pa.table({"External_Id__c": ids, "Name": [f"Crash {i}" for i in range(n)]}), tmp / "in.parquet")
    return ids


def _stored(org: Admin, prefix: str) -> list[str]:
    return sorted(
        r["External_Id__c"] for r in org.records("Account") if str(r.get("External_Id__c")).startswith(prefix)
    )


def test_killed_mid_download_resumes_the_same_job(
    conn: str, execution_api: str, fresh_org: Admin, emulator_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh_org.faults({"kind": "latency", "latency_ms": 400, "path": "/results", "method": "GET"})
    _run("query", tmp_path, monkeypatch, conn, lambda: _fired(fresh_org) >= 4)  # two parts committed
    fresh_org.faults()
    ids = [i for f in sorted((tmp_path / "out").glob("*.parquet")) for i in pq.read_table(f).column("Id").to_pylist()]
    live = [r["Id"] for r in fresh_org.records("Account", include_deleted=False)]
    assert sorted(ids) == sorted(live)  # every row, once
    assert len(_jobs(emulator_url, "query")) == 1  # the retry re-attached; no second job


def test_killed_mid_upload_uploads_once(
    conn: str, execution_api: str, fresh_org: Admin, emulator_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _input(tmp_path, "UP", 300)
    fresh_org.faults({"kind": "latency", "latency_ms": 3000, "path": "/batches", "method": "PUT", "count": 1})
    _run("ingest_upload", tmp_path, monkeypatch, conn, lambda: _fired(fresh_org) >= 1)
    fresh_org.faults()
    assert _stored(fresh_org, "UP-") == ids
    jobs = _jobs(emulator_url, "ingest")
    assert len(jobs) == 1 and jobs[0]["state"] == "JobComplete"  # the first job was re-used, none left open


def test_killed_after_upload_complete_collects_once(
    conn: str, execution_api: str, fresh_org: Admin, emulator_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _input(tmp_path, "UC", 300)
    fresh_org.set("timing", ingest_startup_s=3)

    def closed() -> bool:
        return any(j["state"] in ("UploadComplete", "InProgress") for j in _jobs(emulator_url, "ingest"))

    _run("ingest_closed", tmp_path, monkeypatch, conn, closed)
    fresh_org.set("timing", ingest_startup_s=0)
    assert _stored(fresh_org, "UC-") == ids
    assert [j["state"] for j in _jobs(emulator_url, "ingest")] == ["JobComplete"]


def test_killed_mid_composite_creates_nothing_twice(
    conn: str, execution_api: str, fresh_org: Admin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _input(tmp_path, "CM", 300)
    fresh_org.faults({"kind": "latency", "latency_ms": 700, "path": "/composite/sobjects"})
    _run("composite", tmp_path, monkeypatch, conn, lambda: _fired(fresh_org) >= 3)
    fresh_org.faults()
    assert _stored(fresh_org, "CM-") == ids  # upserts by external id: the retry updated, never duplicated
