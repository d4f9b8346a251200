"""The main job and the event-driven DAG on Airflow's CeleryExecutor: PostgreSQL metadata database, Redis
broker, a separate scheduler, triggerer and DAG processor, two Celery workers in separate directories, and the
lake on an S3-compatible store (moto's server) through ObjectStoragePath. Nothing passes between tasks through
a local disk (the workers share no directory; the DuckDB warehouse stands for a warehouse server and sits at
one path both reach). The end state is the single-machine run's: the warehouse equals a fresh Bulk extract of
the org, field by field.

Run by ``make test-distributed`` (which installs PostgreSQL and Redis from the Debian packages when missing);
deselected from the default run by its marker."""

from __future__ import annotations

import json
import re
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sfint.emulator import EmulatorProcess
from airflow_provider_sfint.emulator.pytest_plugin import connection_to

from ..emulator.helpers import SalesforceHttp
from ..examples.conftest import EXAMPLES
from ..examples.test_salesforce_cdc_to_warehouse import _bulk_extract, _columns, _differences, _warehouse
from .cluster import CeleryCluster, MotoS3, Postgres, Redis

MAIN, CDC = "salesforce_to_warehouse", "salesforce_cdc_to_warehouse"
BUCKET = "lake"


def _runs(postgres: Postgres, dag_id: str) -> list[dict[str, Any]]:
    import psycopg2
    import psycopg2.extras

    with psycopg2.connect(host="127.0.0.1", port=postgres.port, user="postgres", dbname="airflow") as conn:
        cur = conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
        try:
            cur.execute(
                "SELECT run_id, run_type, state, start_date, end_date FROM dag_run WHERE dag_id = %s ORDER BY id",
                (dag_id,),
            )
        except psycopg2.errors.UndefinedTable:
            return []
        return [dict(r) for r in cur.fetchall()]


def _task_states(postgres: Postgres, dag_id: str, run_id: str) -> dict[str, str]:
    import psycopg2

    with psycopg2.connect(host="127.0.0.1", port=postgres.port, user="postgres", dbname="airflow") as conn:
        cur = conn.cursor()
        cur.execute("SELECT task_id, state FROM task_instance WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
        return dict(cur.fetchall())


def _parsed(postgres: Postgres, dag_ids: set[str]) -> bool:
    import psycopg2

    with psycopg2.connect(host="127.0.0.1", port=postgres.port, user="postgres", dbname="airflow") as conn:
        cur = conn.cursor()
        try:
            cur.execute("SELECT dag_id FROM serialized_dag")
        except psycopg2.errors.UndefinedTable:
            return False
        return dag_ids <= {r[0] for r in cur.fetchall()}


@pytest.mark.distributed
@pytest.mark.timeout(1800)
def test_main_job_and_change_events_on_celery_with_the_lake_on_s3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    for name in (MAIN, CDC):
        shutil.copy(EXAMPLES / f"{name}.py", dags / f"{name}.py")
    shared = tmp_path / "warehouse"
    shared.mkdir()
    warehouse = shared / "warehouse.duckdb"
    postgres = Postgres()
    redis = Redis(tmp_path)
    s3 = MotoS3(tmp_path, BUCKET)
    emulator = EmulatorProcess(seed="demo", demo_records=400)
    cluster: CeleryCluster | None = None
    try:
        postgres.start()
        redis.start()
        s3.start()
        emulator.start()
        sfint = json.dumps(connection_to(emulator))
        aws = json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": s3.endpoint, "region_name": "us-east-1"},
            }
        )
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        env = {
            "AIRFLOW_CONN_SFINT_DEFAULT": sfint,
            "AIRFLOW_CONN_AWS_MOTO": aws,
            "SFINT_LAKE": f"s3://aws_moto@{BUCKET}/sfint",
            "SFINT_WAREHOUSE": str(warehouse),
            "SFINT_START_DATE": (today - timedelta(days=1)).date().isoformat(),
            "SFINT_RETRIES": "3",
            "SFINT_RETRY_DELAY": "5",
            "SFINT_CDC_MIN_INTERVAL": "2",
            "SFINT_CDC_IDLE": "2",
        }
        cluster = CeleryCluster(tmp_path / "airflow", dags, postgres, redis, env)
        cluster.start()  # assigned first: a start that fails half-way still stops what it started
        cluster.wait("both DAGs parsed", lambda: _parsed(postgres, {MAIN, CDC}), 300)

        # 1. the main job's scheduled run: Bulk extracts to S3, merged into the warehouse, scores written back
        cluster.cli("dags", "unpause", MAIN)
        (main,) = cluster.wait(
            "a finished main-job run",
            lambda: [r for r in _runs(postgres, MAIN) if r["state"] in ("success", "failed")],
            600,
        )
        assert main["state"] == "success", (_task_states(postgres, MAIN, main["run_id"]), cluster.tails())
        assert main["run_type"] == "scheduled"

        # 2. the event-driven DAG: its watcher (in the triggerer) starts runs while changes wait
        cluster.cli("dags", "unpause", CDC)
        with SalesforceHttp.login(emulator.url) as sf:
            accounts = sf.query("SELECT Id FROM Account WHERE External_Id__c != null LIMIT 40").json()["records"]
            records = [
                {"attributes": {"type": "Account"}, "id": a["Id"], "Industry": "Energy", "AnnualRevenue": 1000 + i}
                for i, a in enumerate(accounts)
            ]
            assert all(r["success"] for r in sf.patch("composite/sobjects", json={"records": records}).json())
            new = sf.post("sobjects/Account", json={"Name": "Born on Celery", "External_Id__c": "CEL-1"}).json()
            contact = sf.query("SELECT Id FROM Contact LIMIT 1").json()["records"][0]["Id"]
            assert sf.delete(f"sobjects/Contact/{contact}").status_code == 204
        changed = datetime.now(UTC)

        def settled() -> list[dict[str, Any]]:
            runs = _runs(postgres, CDC)
            if any(r["state"] not in ("success", "failed") for r in runs):
                return []
            return [r for r in runs if r["state"] == "success" and r["start_date"] > changed]

        cluster.wait("a successful event-driven run after the changes", settled, 600)
        time.sleep(5)  # a ring for events committed during that run would start one more: let it show itself
        cluster.wait("no event-driven run in flight", settled, 600)
        failed = [r for r in _runs(postgres, CDC) if r["state"] == "failed"]
        assert not failed, [(r["run_id"], _task_states(postgres, CDC, r["run_id"])) for r in failed]
        assert {r["run_type"] for r in _runs(postgres, CDC)} == {"asset_triggered"}

        # the end state: the warehouse equals a fresh Bulk extract of the org, as on one machine
        monkeypatch.setenv("AIRFLOW_CONN_SFINT_DISTRIBUTED", sfint)
        columns = _columns()
        got = _warehouse(warehouse, columns)
        assert new["id"] in got["Account"] and contact not in got["Contact"]
        assert not _differences(got, _bulk_extract("sfint_distributed", columns, tmp_path / "reference"))

        # the lake is in the object store only: extracts, change parts, checkpoints and run summaries
        fs = s3.fs()
        keys = [k for k in fs.find(f"{BUCKET}/sfint")]
        for pattern in (r"/raw/account/.+\.parquet$", r"/changes/Account/part-\d+\.parquet$",
                        r"/changes/_sfint_checkpoint\.json$", r"/_runs/latest\.json$", r"/_runs/cdc_latest\.json$",
                        r"/scores/.+\.parquet$"):  # fmt: skip
            assert any(re.search(pattern, k) for k in keys), f"nothing like {pattern} in the lake: {keys[:20]}"
        homes = [tmp_path / "airflow" / n for n in ("control", "worker1", "worker2")]
        assert not [p for h in homes for p in h.rglob("*.parquet")], "a Parquet file on a local disk"
        # both workers ran tasks (each logs the workloads Celery hands it)
        received = {
            n: len(re.findall(r"execute_workload\[[^\]]+\] received", (h / "worker.log").read_text(errors="replace")))
            for n, h in zip(("worker1", "worker2"), homes[1:], strict=True)
        }
        assert all(received.values()), f"tasks per worker: {received}"
        print(f"tasks per worker: {received}; event-driven runs: {len(_runs(postgres, CDC))}")
    finally:
        if cluster is not None:
            cluster.stop()
        emulator.stop()
        s3.stop()
        redis.stop()
        postgres.stop()
