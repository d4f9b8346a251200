"""Load: 20 mapped tasks (10 Bulk queries, 10 Composite upserts) at once against one org under a real
executor. Each task process signs in once; the org's concurrent long-running request limit is hit and
respected (refused requests wait and retry); every task finishes."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ..emulator.helpers import Admin
from ..operators.conftest import load_dag

DAG_FILE = """
import os
from datetime import datetime, timezone

from airflow.sdk import DAG

from airflow_provider_sfint.operators.bulk_query import SalesforceBulkQueryOperator
from airflow_provider_sfint.operators.composite import SalesforceCompositeUpsertOperator

conn, folder = os.environ["SFINT_CONN_ID"], os.environ["SFINT_LOAD_DIR"]
with DAG("sfint_load", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc), max_active_tasks=20) as dag:
    SalesforceBulkQueryOperator.partial(
        task_id="query", soql="SELECT Id, Name FROM Account", poll_interval=0.2, sfint_conn_id=conn
    ).expand(output=[f"{folder}/q{i}.parquet" for i in range(10)])
    SalesforceCompositeUpsertOperator.partial(
        task_id="upsert", object="Account", external_id_field="External_Id__c", batch_size=25, sfint_conn_id=conn
    ).expand(records=[[{"External_Id__c": f"LOAD-{i}-{n}", "Name": f"Load {i} {n}"} for n in range(100)]
                      for i in range(10)])
"""


def test_twenty_mapped_tasks_share_the_org_within_its_limits(
    conn: str, execution_api: str, fresh_org: Admin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SFINT_CONN_ID", conn)
    monkeypatch.setenv("SFINT_LOAD_DIR", str(tmp_path))
    # Every request counts as long-running (each takes 150 ms), and only 4 may run at once.
    fresh_org.limits(long_running_seconds=0.05, concurrent_long_running_max=4)
    fresh_org.faults({"kind": "latency", "latency_ms": 150})
    fresh_org._call("POST", "counters/reset")
    tokens_before = fresh_org.counters()["token_calls"]
    run = load_dag("sfint_load", DAG_FILE).test(use_executor=True)
    fresh_org.faults()
    fresh_org.limits(long_running_seconds=20, concurrent_long_running_max=25)
    states = [t.state for t in run.get_task_instances()]
    assert len(states) == 20 and set(states) == {"success"}, states
    counters = fresh_org.counters()
    refused = sum(
        n for key, n in counters["requests"].items() if "ConcurrentPerOrgLongTxn" in key or "concurrent" in key
    )
    assert refused >= 1, counters["requests"]  # the limit was really reached ...
    # ... and respected: no task failed; each task process signed in once at most
    assert counters["token_calls"] - tokens_before <= 20
    live = len(fresh_org.records("Account", include_deleted=False))
    for i in range(10):
        assert pq.read_table(tmp_path / f"q{i}.parquet").num_rows >= live - 1000  # each query saw the org
    stored = [r for r in fresh_org.records("Account") if str(r.get("External_Id__c")).startswith("LOAD-")]
    assert len(stored) == len({r["External_Id__c"] for r in stored}) == 1000
