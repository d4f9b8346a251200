"""The deferrable path end to end through ``dag.test()``, and the trigger's contract."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from airflow_provider_sfint.client.bulk2 import BulkJobError
from airflow_provider_sfint.client.errors import SalesforceError
from airflow_provider_sfint.operators.bulk_query import SalesforceBulkQueryOperator
from airflow_provider_sfint.triggers.bulk import SalesforceBulkJobTrigger

from ..emulator.helpers import Admin
from .conftest import load_dag, make_context

DAG_FILE = """
import os
from datetime import datetime, timezone

from airflow.sdk import DAG

from airflow_provider_sfint.operators.bulk_query import SalesforceBulkQueryOperator

with DAG("sfint_bulk_query_deferrable", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    SalesforceBulkQueryOperator(
        task_id="accounts",
        soql="SELECT Id, Name, SystemModstamp FROM Account",
        output=os.environ.get("SFINT_TEST_OUTPUT", "/tmp/unused.parquet"),
        deferrable=True,
        poll_interval=0.2,
        api="bulk",  # a small org: "auto" would read it through REST, with no job to wait for
        sfint_conn_id=os.environ.get("SFINT_TEST_CONN", "sfint_default"),
    )
"""


def test_deferrable_query_through_dag_test(
    conn: str, fresh_org: Admin, airflow_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh_org.set("timing", query_startup_s=1.5)  # the job is still running at the first poll: the task defers
    monkeypatch.setenv("SFINT_TEST_OUTPUT", str(tmp_path / "accounts.parquet"))
    monkeypatch.setenv("SFINT_TEST_CONN", conn)
    dag = load_dag("sfint_bulk_query_deferrable", DAG_FILE)
    run = dag.test()
    ti = next(t for t in run.get_task_instances() if t.task_id == "accounts")
    assert ti.state == "success", ti.state
    summary = ti.xcom_pull(task_ids="accounts")
    live = len(fresh_org.records("Account", include_deleted=False))
    assert summary["records"] == live == pq.read_table(tmp_path / "accounts.parquet").num_rows
    assert ti.xcom_pull(task_ids="accounts", key="sfint_job_id") == summary["job_id"]
    assert fresh_org.counters()["requests"]


def test_trigger_serialises_and_validates() -> None:
    trigger = SalesforceBulkJobTrigger("c", ["750Hx0000000001IAA"], "query", poll_interval=1, end_time=5.0)
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_sfint.triggers.bulk.SalesforceBulkJobTrigger"
    assert SalesforceBulkJobTrigger(**kwargs).serialize() == (path, kwargs)
    for bad in ({"job_ids": []}, {"job_ids": ["../x"]}, {"kind": "other"}, {"poll_interval": 0}):
        with pytest.raises(ValueError):
            SalesforceBulkJobTrigger(**{**kwargs, **bad})


def _events(trigger: SalesforceBulkJobTrigger) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [e.payload async for e in trigger.run()]

    return asyncio.run(collect())


def test_trigger_reports_success_failure_and_timeout(conn: str, fresh_org: Admin) -> None:
    from airflow_provider_sfint.hooks.salesforce import SalesforceHook

    bulk_client = SalesforceHook(sfint_conn_id=conn).client
    from airflow_provider_sfint.client.bulk2 import Bulk2

    bulk = Bulk2(bulk_client)
    ok = bulk.create_query_job("SELECT Id FROM Account").id
    assert _events(SalesforceBulkJobTrigger(conn, [ok], "query", poll_interval=0.05)) == [
        {"status": "success", "jobs": {ok: "JobComplete"}}
    ]
    fresh_org.set("bulk", query_timeout_rows=1)
    failed = bulk.create_query_job("SELECT Id FROM Account").id
    (event,) = _events(SalesforceBulkJobTrigger(conn, [ok, failed], "query", poll_interval=0.05))
    assert (event["status"], event["job_id"], event["state"]) == ("error", failed, "Failed")
    assert "QUERY_TIMEOUT" in event["message"]
    fresh_org.set("bulk", query_timeout_rows=None)
    fresh_org.set("timing", query_startup_s=30)
    slow = bulk.create_query_job("SELECT Id FROM Account").id
    (event,) = _events(SalesforceBulkJobTrigger(conn, [slow], "query", poll_interval=0.05, end_time=0))
    assert event["status"] == "timeout" and event["jobs"][slow] in ("UploadComplete", "InProgress")

    async def kill() -> None:
        await SalesforceBulkJobTrigger(conn, [slow], "query").on_kill()

    asyncio.run(kill())
    assert bulk.job_info("query", slow).state == "Aborted"


@pytest.mark.parametrize("event", [None, {"status": "odd"}, {"status": "timeout"}, {"status": "error", "message": "x"}])
def test_execute_complete_refuses_bad_events(conn: str, tmp_path: Path, event: Any) -> None:
    op = SalesforceBulkQueryOperator(task_id="q", soql="SELECT Id FROM Account", output=str(tmp_path / "x.parquet"))
    with pytest.raises((SalesforceError, BulkJobError)):
        op.execute_complete(make_context(), event, job_id="750Hx0000000001IAA")
    assert not list(tmp_path.iterdir())


def test_a_deferred_split_never_blocks_a_worker(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    """Deferrable, a window whose job times out is split without waiting on the worker: the halves' jobs are
    created and the task defers on them (again for halves that time out in turn); once every piece has ended,
    the output holds each record once. The trigger's event alone (no defer kwargs) says which job and window."""
    from datetime import UTC, datetime, timedelta

    from airflow.providers.common.compat.sdk import TaskDeferred

    live = fresh_org.records("Account", include_deleted=False)
    fresh_org.set("bulk", query_timeout_rows=len(live) // 3)
    fresh_org.set("timing", query_startup_s=0.3)
    stamps = sorted(r["CreatedDate"] for r in live)
    start = datetime.fromisoformat(stamps[0][:19] + "+00:00")
    end = datetime.fromisoformat(stamps[-1][:19] + "+00:00") + timedelta(seconds=1)

    def operator() -> SalesforceBulkQueryOperator:
        return SalesforceBulkQueryOperator(
            task_id="split",
            soql="SELECT Id, Name FROM Account",
            output=str(tmp_path / "split.parquet"),
            incremental_field="CreatedDate",
            window_start=start.isoformat(),
            window_end=end.isoformat(),
            max_split_depth=6,
            api="bulk",
            deferrable=True,
            poll_interval=0.1,
            sfint_conn_id=conn,
        )

    deferrals = []
    with pytest.raises(TaskDeferred) as deferred:
        operator().execute(make_context(end=datetime(2099, 1, 1, tzinfo=UTC)))
    summary = None
    while summary is None:
        deferrals.append(list(deferred.value.trigger.job_ids))
        (event,) = _events(deferred.value.trigger)
        try:
            summary = operator().execute_complete(make_context(), event)  # no kwargs: the event says it all
        except TaskDeferred as again:
            deferred = pytest.ExceptionInfo.from_exc_info((type(again), again, again.__traceback__))
    assert len(deferrals) >= 2 and any(len(jobs) >= 2 for jobs in deferrals)  # deferred on the halves
    assert summary["splits"] >= 1 and summary["window"]["start"] == start.isoformat()
    ids = pq.read_table(tmp_path / "split.parquet").column("Id").to_pylist()
    assert sorted(ids) == sorted(r["Id"] for r in live)
