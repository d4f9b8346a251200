"""Fault soak: the main pipeline under Salesforce's bad days (503s, 429s with Retry-After, connections cut
mid-body, sessions expiring, row locks on writes, latency) ends exactly where a fault-free run ends:
same lake files, same warehouse, same Salesforce state, no duplicate record, and the retries reported.
The faults are seeded, so a failure replays identically."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from ..emulator.helpers import Admin
from ..operators.conftest import load_dag

EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"
OBJECTS = ("Account", "Contact", "Opportunity")

FAULTS = [
    {"kind": "503", "rate": 0.05},
    {"kind": "429", "rate": 0.02, "retry_after": 1},
    {"kind": "drop", "rate": 0.01},
    {"kind": "lock_row", "rate": 0.01},
    {"kind": "latency", "latency_ms": 30, "rate": 0.2},
    # Each kind at least once, whatever the rates draw on a run this short:
    # ("/query": the REST query of a small read and the Bulk query job alike)
    {"kind": "503", "path": "/query", "after": 1, "count": 1},
    {"kind": "429", "path": "/query", "after": 3, "count": 1, "retry_after": 1},
    {"kind": "drop", "path": "/query", "method": "GET", "count": 1},
    {"kind": "lock_row", "path": "/composite/sobjects", "count": 1},
]


def _run(org: Admin, tmp: Path, monkeypatch: pytest.MonkeyPatch, conn: str) -> dict[str, Any]:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for key, value in {
        "SFINT_LAKE": f"file://{tmp / 'lake'}",
        "SFINT_WAREHOUSE": str(tmp / "warehouse.duckdb"),
        "SFINT_CONN_ID": conn,
        "SFINT_RETRIES": "3",  # Airflow's own retries, for a create whose answer was cut off
        "SFINT_RETRY_DELAY": "1",
        "SFINT_START_DATE": (today - timedelta(days=1)).date().isoformat(),
    }.items():
        monkeypatch.setenv(key, value)
    dag = load_dag("salesforce_to_warehouse", (EXAMPLES / "salesforce_to_warehouse.py").read_text())
    run = dag.test(logical_date=today)
    assert {t.state for t in run.get_task_instances()} == {"success"}
    report = next(t for t in run.get_task_instances() if t.task_id == "report").xcom_pull(task_ids="report")
    lake = {
        obj: pq.read_table(next((tmp / "lake" / "raw" / obj.lower()).glob("*.parquet"))).sort_by("Id")
        for obj in OBJECTS
    }
    with duckdb.connect(str(tmp / "warehouse.duckdb"), read_only=True) as db:
        warehouse = {obj: db.execute(f"SELECT * FROM {obj.lower()} ORDER BY Id").fetchall() for obj in OBJECTS}
    state = {
        obj: sorted(
            (r["Id"], r.get("External_Id__c"), r.get("Account_Score__c"), r.get("IsDeleted"))
            for r in org.records(obj, include_deleted=True)
        )
        for obj in OBJECTS
    }
    return {"report": report, "lake": lake, "warehouse": warehouse, "state": state, "events": org.events()}


def test_pipeline_under_faults_ends_where_a_clean_run_ends(
    conn: str, airflow_db: None, fresh_org: Admin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = _run(fresh_org, tmp_path / "clean", monkeypatch, conn)
    assert clean["report"]["retries"] == 0

    fresh_org.reset(seed="demo", records=200)  # the same seeded org again
    fresh_org.settings(token_expire_after_requests=25)  # sessions expire every 25 requests
    fresh_org.faults(*FAULTS, seed=11)
    faulty = _run(fresh_org, tmp_path / "faulty", monkeypatch, conn)
    fired = {r["kind"]: 0 for r in FAULTS}
    for rule in fresh_org._call("GET", "faults")["rules"]:
        fired[rule["kind"]] += rule["fired"]
    fresh_org.faults()
    fresh_org.settings(token_expire_after_requests=None)

    assert faulty["report"]["retries"] >= 3, faulty["report"]  # the summary reports what was retried
    for obj in OBJECTS:
        assert faulty["lake"][obj].equals(clean["lake"][obj]), f"lake file of {obj} differs"
        assert faulty["warehouse"][obj] == clean["warehouse"][obj], f"warehouse table {obj} differs"
        assert faulty["state"][obj] == clean["state"][obj], f"Salesforce {obj} differs (duplicates or misses)"
    assert len(faulty["events"]) == len(clean["events"]) == 1
    assert faulty["report"]["written_back"]["succeeded"] == clean["report"]["written_back"]["succeeded"]
    assert all(n >= 1 for n in fired.values()), fired  # every kind of fault really happened
