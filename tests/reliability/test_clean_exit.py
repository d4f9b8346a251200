"""Every operator, run in a fresh interpreter many times, two at a time (CPU contention), exits with status 0
and without a C++ runtime abort (``terminate called without an active exception``: a native thread, such as one
of Arrow's pools or a reader's, still running when the interpreter tears down)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_provider_sfint.emulator import CLIENT_ID, CLIENT_SECRET

from ..emulator.helpers import Admin

CHILD = """
import os, sys
import pyarrow as pa
kind, folder = sys.argv[1], sys.argv[2]
conn = "sfint_exit"
if kind == "query_dir":
    from airflow_provider_sfint.operators.bulk_query import SalesforceBulkQueryOperator
    op = SalesforceBulkQueryOperator(task_id="t", soql="SELECT Id, Name, AnnualRevenue FROM Account",
                                     output=folder + "/q/", page_size=50, part_size=60, sfint_conn_id=conn,
                                     poll_interval=0.1)
elif kind == "query_csv":
    from airflow_provider_sfint.operators.bulk_query import SalesforceBulkQueryOperator
    op = SalesforceBulkQueryOperator(task_id="t", soql="SELECT Id, Name FROM Contact", output=folder + "/q.csv",
                                     format="csv", sfint_conn_id=conn, poll_interval=0.1)
elif kind in ("ingest_parquet", "ingest_csv"):
    from airflow_provider_sfint.operators.bulk_ingest import SalesforceBulkIngestOperator
    source = folder + ("/in.parquet" if kind == "ingest_parquet" else "/in.csv")
    op = SalesforceBulkIngestOperator(task_id="t", object="Account", operation="upsert",
                                      external_id_field="External_Id__c", source=source, max_bytes_per_job=4000,
                                      poll_interval=0.1, sfint_conn_id=conn)
elif kind in ("composite_bulk", "composite"):
    from airflow_provider_sfint.operators.composite import SalesforceCompositeUpsertOperator
    rows = pa.table({"External_Id__c": [f"EXIT-{i}" for i in range(300)], "Name": [f"n {i}" for i in range(300)]})
    op = SalesforceCompositeUpsertOperator(task_id="t", object="Account", external_id_field="External_Id__c",
                                           records=rows, bulk_threshold=100 if kind == "composite_bulk" else 1000,
                                           sfint_conn_id=conn)
else:
    from airflow_provider_sfint.operators.events import SalesforcePublishEventOperator
    op = SalesforcePublishEventOperator(task_id="t", event="Warehouse_Sync__e",
                                        events=[{"Pipeline__c": "exit", "Records__c": i} for i in range(250)],
                                        sfint_conn_id=conn)
op.execute({})
print("DONE", kind)
"""
KINDS = ("query_dir", "query_csv", "ingest_parquet", "ingest_csv", "composite_bulk", "composite", "events")
RUNS = 4


def test_every_operator_exits_cleanly_in_a_fresh_process(emulator_url: str, fresh_org: Admin, tmp_path: Path) -> None:
    rows = pa.table({"External_Id__c": [f"EXIT-IN-{i}" for i in range(200)], "Name": [f"in {i}" for i in range(200)]})
    pq.write_table(rows, tmp_path / "in.parquet")
    (tmp_path / "in.csv").write_text(
        "External_Id__c,Name\n" + "".join(f'EXIT-CSV-{i},"csv, {i}"\n' for i in range(200)), encoding="utf-8"
    )
    (tmp_path / "child.py").write_text(CHILD, encoding="utf-8")
    extra = {"auth_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    env = {
        **os.environ,
        "AIRFLOW_CONN_SFINT_EXIT": json.dumps({"conn_type": "sfint", "host": emulator_url, "extra": extra}),
    }

    def run(job: tuple[str, int]) -> tuple[str, int, int, str]:
        kind, n = job
        folder = tmp_path / f"{kind}-{n}"
        folder.mkdir()
        for name in ("in.parquet", "in.csv"):
            (folder / name).write_bytes((tmp_path / name).read_bytes())
        done = subprocess.run(
            [sys.executable, str(tmp_path / "child.py"), kind, str(folder)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        return kind, n, done.returncode, done.stdout[-300:] + done.stderr[-1500:]

    with ThreadPoolExecutor(2) as pool:  # two interpreters at once on a two-core machine: contention
        results = list(pool.map(run, [(kind, n) for n in range(RUNS) for kind in KINDS]))
    failed = [f"{kind} run {n}: exit {code}\n{out}" for kind, n, code, out in results if code != 0]
    assert not failed, "\n\n".join(failed)
    aborted = [f"{kind} run {n}" for kind, n, _, out in results if "terminate called" in out]
    assert not aborted, aborted
    assert all(f"DONE {kind}" in out for kind, _, _, out in results)
