"""The main job: Salesforce -> lake (Parquet) -> DuckDB warehouse -> account scores back into Salesforce.

Every day, on Airflow 3's default timetable for ``"@daily"`` (zero-length data intervals):

1. Bulk API 2.0 queries of Account, Contact and Opportunity for the records changed since the previous
   successful run (``SystemModstamp``, up to this run's logical date), deleted ones included
   (``queryAll``), written as typed Parquet into the lake; the DAG's first run (or a run with
   ``full_refresh``) loads the whole history instead.
2. Each extract merged into the DuckDB warehouse: changed rows replace their previous version, deleted
   rows are removed.
3. An account score computed in DuckDB from the warehouse's opportunities and contacts.
4. Changed scores written back to ``Account.Account_Score__c`` by ``External_Id__c`` with the Composite
   upsert operator (sObject Collections; Bulk API 2.0 above 2,000 records).
5. A ``Warehouse_Sync__e`` platform event published with the run's counts.

Waits are deferrable. Settings come from the environment, read when the DAG is parsed:

- ``SFINT_LAKE``: the lake's root (any ObjectStoragePath URL, default ``file://$AIRFLOW_HOME/sfint/lake``)
- ``SFINT_WAREHOUSE``: the DuckDB file (default ``$AIRFLOW_HOME/sfint/warehouse.duckdb``)
- ``SFINT_CONN_ID``: the Salesforce connection (default ``sfint_default``)
- ``SFINT_START_DATE``: the DAG's start date (ISO date, default 2026-01-01)
- ``SFINT_RETRIES``: task retries (default 2); ``SFINT_RETRY_DELAY``: seconds between them (default 60)
- ``SFINT_DEFERRABLE``: wait for Bulk jobs in the triggerer (default true; needs a running triggerer)
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, ObjectStoragePath, Param, task

from airflow_provider_sfint.operators.bulk_query import SalesforceBulkQueryOperator
from airflow_provider_sfint.operators.composite import SalesforceCompositeUpsertOperator
from airflow_provider_sfint.operators.events import SalesforcePublishEventOperator

HOME = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))
LAKE = os.environ.get("SFINT_LAKE", f"file://{HOME / 'sfint' / 'lake'}").rstrip("/")
WAREHOUSE = os.environ.get("SFINT_WAREHOUSE", str(HOME / "sfint" / "warehouse.duckdb"))
CONN_ID = os.environ.get("SFINT_CONN_ID", "sfint_default")
RETRIES = int(os.environ.get("SFINT_RETRIES", "2"))
RETRY_DELAY = timedelta(seconds=float(os.environ.get("SFINT_RETRY_DELAY", "60")))
DEFERRABLE = os.environ.get("SFINT_DEFERRABLE", "true").lower() in ("1", "true", "yes")
START = datetime.fromisoformat(os.environ.get("SFINT_START_DATE", "2026-01-01")).replace(tzinfo=UTC)

# What the warehouse keeps of each object (deleted rows are read to be removed, never kept).
EXTRACTS = {
    "Account": "SELECT Id, Name, External_Id__c, Industry, AnnualRevenue, NumberOfEmployees, Account_Score__c, "
    "IsDeleted, SystemModstamp FROM Account",
    "Contact": "SELECT Id, AccountId, FirstName, LastName, Email, IsDeleted, SystemModstamp FROM Contact",
    "Opportunity": "SELECT Id, AccountId, Name, StageName, Amount, CloseDate, IsClosed, IsWon, IsDeleted, "
    "SystemModstamp FROM Opportunity",
}

# Each run reads what changed since the previous successful run (the operator derives that window on
# Airflow 3's default timetable, whose data intervals are zero-length); the first run, or a full refresh,
# reads everything changed before the run's logical date.
WINDOW_START = "{{ params.history_start if params.full_refresh else '' }}"
HISTORY_START = "{{ params.history_start }}"
# Runs without a logical date (a manual trigger may leave it empty) are named by when they ran.
INTERVAL = "{{ (dag_run.logical_date or dag_run.run_after).strftime('%Y%m%dT%H%M%SZ') }}"

SCORE_SQL = """
WITH opp AS (
    SELECT AccountId,
           SUM(CASE WHEN IsWon THEN COALESCE(Amount, 0) ELSE 0 END) AS won,
           COUNT(*) FILTER (WHERE NOT IsClosed) AS open_opps
    FROM opportunity GROUP BY AccountId
), con AS (
    SELECT AccountId, COUNT(*) AS contacts FROM contact GROUP BY AccountId
)
SELECT a.External_Id__c,
       CAST(LEAST(999.99, ROUND(LN(1 + COALESCE(o.won, 0)) * 5 + COALESCE(o.open_opps, 0) * 3
                                 + COALESCE(c.contacts, 0), 2)) AS DECIMAL(5, 2)) AS Account_Score__c
FROM account a
LEFT JOIN opp o ON o.AccountId = a.Id
LEFT JOIN con c ON c.AccountId = a.Id
WHERE a.External_Id__c IS NOT NULL
"""


def _stage(db: Any, name: str, url: str) -> None:
    """Copy an extract from the lake into a temporary DuckDB table, streamed batch by batch through the lake's
    ObjectStoragePath: the Airflow connection in an ``s3://conn_id@bucket/...`` URL gives the credentials and
    endpoint, so no DuckDB extension or separate secret is needed, and any store Airflow reads works."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with ObjectStoragePath(url).open("rb") as f:
        parquet = pq.ParquetFile(f)
        reader = pa.RecordBatchReader.from_batches(parquet.schema_arrow, parquet.iter_batches(batch_size=65_536))
        db.register("sfint_extract", reader)
        db.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM sfint_extract")
        db.unregister("sfint_extract")


with DAG(
    dag_id="salesforce_to_warehouse",
    description="Salesforce -> Parquet lake -> DuckDB warehouse -> account scores back to Salesforce",
    # Airflow 3's default (trigger) timetable: zero-length data intervals; each extract's window runs from the
    # previous successful run's logical date to this one's, so no interval is needed (docs/incremental.md).
    schedule="@daily",
    start_date=START,
    catchup=False,
    max_active_runs=1,  # windows follow each other, and merge into one warehouse, in order
    default_args={"retries": RETRIES, "retry_delay": RETRY_DELAY},
    params={
        "full_refresh": Param(False, type="boolean", description="reload the whole history in this run"),
        "history_start": Param("2000-01-01T00:00:00+00:00", type="string", description="where history begins"),
    },
    tags=["salesforce", "example"],
    render_template_as_native_obj=True,  # XCom numbers stay numbers in the event payload
    doc_md=__doc__,
) as dag:
    extracts = {
        obj: SalesforceBulkQueryOperator(
            task_id=f"extract_{obj.lower()}",
            soql=soql,
            include_deleted=True,
            incremental_field="SystemModstamp",
            window_start=WINDOW_START,
            initial_window_start=HISTORY_START,
            output=f"{LAKE}/raw/{obj.lower()}/{INTERVAL}.parquet",
            deferrable=DEFERRABLE,
            poll_interval=1,
            sfint_conn_id=CONN_ID,
        )
        for obj, soql in EXTRACTS.items()
    }

    @task
    def merge(summaries: dict[str, dict[str, Any]], params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Apply each extract to the warehouse in one transaction: new versions in, deletions out."""
        import duckdb

        Path(WAREHOUSE).parent.mkdir(parents=True, exist_ok=True)
        counts: dict[str, Any] = {}
        with duckdb.connect(WAREHOUSE) as db:
            db.execute("BEGIN")
            for obj, summary in summaries.items():
                table = obj.lower()
                (path,) = summary["files"]
                src = f"extract_{table}"
                _stage(db, src, path)
                if params and params.get("full_refresh"):
                    db.execute(f"DROP TABLE IF EXISTS {table}")
                db.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * EXCLUDE (IsDeleted) FROM {src} LIMIT 0")
                db.execute(f"DELETE FROM {table} WHERE Id IN (SELECT Id FROM {src})")
                db.execute(f"INSERT INTO {table} BY NAME SELECT * EXCLUDE (IsDeleted) FROM {src} WHERE NOT IsDeleted")
                # fetchall: a result left unfinished blocks DuckDB's next register() on this connection
                ((deleted,),) = db.execute(f"SELECT COUNT(*) FROM {src} WHERE IsDeleted").fetchall()
                ((rows,),) = db.execute(f"SELECT COUNT(*) FROM {table}").fetchall()
                counts[obj] = {
                    "extracted": summary["records"],
                    "deleted": deleted,
                    "warehouse_rows": rows,
                    "retries": summary.get("retries", 0),
                }
            db.execute("COMMIT")
        return counts

    @task
    def score(dag_run: Any = None) -> dict[str, Any]:
        """Scores in DuckDB; only those that differ from Salesforce's current value are written back."""
        import duckdb
        import pyarrow.parquet as pq

        when: datetime = dag_run.logical_date or dag_run.run_after
        out = ObjectStoragePath(f"{LAKE}/scores/{when.strftime('%Y%m%dT%H%M%SZ')}.parquet")
        out.parent.mkdir(parents=True, exist_ok=True)
        with duckdb.connect(WAREHOUSE) as db:
            changed = (
                f"SELECT s.* FROM ({SCORE_SQL}) s JOIN account a ON a.External_Id__c = s.External_Id__c "
                "WHERE a.Account_Score__c IS DISTINCT FROM s.Account_Score__c ORDER BY s.External_Id__c"
            )
            table = db.sql(changed).to_arrow_table()
        with out.open("wb") as f:
            pq.write_table(table, f)
        return {"path": str(out), "changed": table.num_rows}

    write_back = SalesforceCompositeUpsertOperator(
        task_id="write_scores",
        object="Account",
        external_id_field="External_Id__c",
        records="{{ ti.xcom_pull(task_ids='score')['path'] }}",
        max_failed_ratio=0.01,
        sfint_conn_id=CONN_ID,
    )

    publish = SalesforcePublishEventOperator(
        task_id="publish_sync_event",
        event="Warehouse_Sync__e",
        events={
            "Pipeline__c": "salesforce_to_warehouse",
            "Run_Id__c": "{{ run_id }}",
            "Records__c": "{{ ti.xcom_pull(task_ids='write_scores')['records'] }}",
            "Status__c": "success",
        },
        sfint_conn_id=CONN_ID,
    )

    @task
    def report(
        merged: dict[str, Any], scores: dict[str, Any], written: dict[str, Any], published: dict[str, Any]
    ) -> dict[str, Any]:
        """The run's summary, also kept in the lake next to the data it describes."""
        retries = sum(c["retries"] for c in merged.values()) + written.get("retries", 0) + published["retries"]
        summary = {
            "retries": retries,  # requests the tasks retried (503, 429, cut connections, expired sessions)
            "objects": merged,
            "scores_changed": scores["changed"],
            "written_back": written,
            "event_ids": published["ids"],
        }
        target = ObjectStoragePath(f"{LAKE}/_runs/latest.json")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(summary, default=str, indent=2))
        print(json.dumps(summary, default=str, indent=2))
        return summary

    merged = merge({obj: op.output for obj, op in extracts.items()})
    scored = score()
    merged >> scored >> write_back >> publish
    report(merged, scored, write_back.output, publish.output)
