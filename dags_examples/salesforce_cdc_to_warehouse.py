"""The event-driven half of the main job: Salesforce change events -> lake -> the same DuckDB warehouse.

No schedule and no polling: an ``AssetWatcher`` on ``SalesforceChannelTrigger`` rings when change events wait
on ``/data/ChangeEvents``, and each run

1. reads the waiting events from its checkpoint with ``SalesforceChangeEventsOperator`` into typed Parquet
   parts under ``$SFINT_LAKE/changes/<Entity>/`` (a first run, with no checkpoint, takes a Bulk snapshot of
   Account, Contact and Opportunity and replays every retained event on top of it; gaps, overflows and an
   expired checkpoint are healed the same way);
2. applies every part not applied yet to the main job's warehouse, in part order and, inside a part, by
   commit number and sequence: creates, undeletes, gap rows and snapshots as whole rows, updates field by
   field (only the changed fields are written; nulled fields become null), deletes remove the row. A snapshot
   part replaces the entity's rows. Each part is applied once: the warehouse records it in the same
   transaction (``_sfint_applied_parts``), so a retry or a second run never applies a part twice. The run's
   summary is also written to ``$SFINT_LAKE/_runs/cdc_latest.json``.

Settings (environment, read when the DAG is parsed): ``SFINT_LAKE``, ``SFINT_WAREHOUSE``, ``SFINT_CONN_ID`` as
in the main job; ``SFINT_CDC_MIN_INTERVAL`` (seconds between two runs started by events, default 30);
``SFINT_CDC_IDLE`` (seconds without an event that end a read, default 5); ``SFINT_RETRIES``,
``SFINT_RETRY_DELAY``.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, ObjectStoragePath, task

from airflow_provider_sfint.operators.change_events import SalesforceChangeEventsOperator
from airflow_provider_sfint.triggers.channel import SalesforceChannelTrigger

HOME = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))
LAKE = os.environ.get("SFINT_LAKE", f"file://{HOME / 'sfint' / 'lake'}").rstrip("/")
WAREHOUSE = os.environ.get("SFINT_WAREHOUSE", str(HOME / "sfint" / "warehouse.duckdb"))
CONN_ID = os.environ.get("SFINT_CONN_ID", "sfint_default")
RETRIES = int(os.environ.get("SFINT_RETRIES", "2"))
RETRY_DELAY = timedelta(seconds=float(os.environ.get("SFINT_RETRY_DELAY", "60")))
MIN_INTERVAL = float(os.environ.get("SFINT_CDC_MIN_INTERVAL", "30"))
IDLE = float(os.environ.get("SFINT_CDC_IDLE", "5"))

CHANNEL = "/data/ChangeEvents"
#: The main job's warehouse tables and their columns (its extracts' fields, without IsDeleted).
COLUMNS = {
    "Account": [
        "Id", "Name", "External_Id__c", "Industry", "AnnualRevenue", "NumberOfEmployees", "Account_Score__c",
        "SystemModstamp",
    ],
    "Contact": ["Id", "AccountId", "FirstName", "LastName", "Email", "SystemModstamp"],
    "Opportunity": [
        "Id", "AccountId", "Name", "StageName", "Amount", "CloseDate", "IsClosed", "IsWon", "SystemModstamp",
    ],
}  # fmt: skip
#: Rows that carry every value of the record (the others: UPDATE carries changed fields, deletes none).
WHOLE = frozenset({"CREATE", "UNDELETE", "GAP_CREATE", "GAP_UPDATE", "GAP_UNDELETE", "SNAPSHOT"})
GONE = frozenset({"DELETE", "GAP_DELETE"})
PART = re.compile(r"part-(\d+)\.parquet$")
#: the warehouse's record of the parts applied (in the transaction that applies each)
APPLIED = "_sfint_applied_parts"

changes = Asset(
    "salesforce_change_events",
    watchers=[
        AssetWatcher(
            name="salesforce_change_events",
            # EARLIEST: events already waiting when the watcher first starts (published before the DAG was
            # unpaused or the triggerer came up) ring at once; the run reads from its own checkpoint
            trigger=SalesforceChannelTrigger(
                channel=CHANNEL, sfint_conn_id=CONN_ID, min_interval=MIN_INTERVAL, start="EARLIEST"
            ),
        )
    ],
)


def _arrow(result: Any) -> Any:
    """A DuckDB result as an Arrow table (``to_arrow_table`` in newer DuckDB, ``fetch_arrow_table`` in older)."""
    convert = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table
    return convert()


def apply_part(db: Any, entity: str, rows: list[dict[str, Any]], snapshot: bool) -> dict[str, int]:
    """Apply one part's change rows of ``entity`` to its warehouse table (inside the caller's transaction)."""
    import pyarrow as pa

    table = entity.lower()
    columns = COLUMNS[entity]
    if snapshot:  # the entity as a Bulk query read it: its rows replace the table's
        db.execute(f"DELETE FROM {table}")
        current: dict[str, dict[str, Any]] = {}
    else:
        ids = sorted({r["record_id"] for r in rows})
        found = _arrow(db.execute(f"SELECT * FROM {table} WHERE Id IN (SELECT UNNEST(?))", [ids]))
        current = {r["Id"]: r for r in found.to_pylist()}
    counts = {"upserted": 0, "deleted": 0, "unknown_updates": 0}
    for row in sorted(rows, key=lambda r: (r["commit_number"], r["sequence_number"])):
        rid, kind = row["record_id"], row["change_type"]
        stamp = {"SystemModstamp": row["commit_timestamp"]}
        if kind in GONE:
            current[rid] = None  # type: ignore[assignment]
        elif kind in WHOLE:
            current[rid] = {c: row.get(c) for c in columns if c != "Id"} | {"Id": rid} | stamp
        elif kind == "UPDATE":
            record = current.get(rid)
            if record is None:  # a record the warehouse never saw: nothing to merge the changed fields into
                counts["unknown_updates"] += 1
                continue
            for name in set(row["changed_fields"]) & set(columns):
                record[name] = None if name in row["nulled_fields"] else row.get(name)
            record.update(stamp)
    kept = [r for r in current.values() if r is not None]
    gone = [rid for rid, r in current.items() if r is None]
    if not snapshot and current:
        db.execute(f"DELETE FROM {table} WHERE Id IN (SELECT UNNEST(?))", [sorted(current)])
    if kept:
        schema = _arrow(db.execute(f"SELECT * FROM {table} LIMIT 0")).schema
        batch = pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in kept], schema=schema)
        db.register("sfint_batch", batch)
        db.execute(f"INSERT INTO {table} BY NAME SELECT * FROM sfint_batch")
        db.unregister("sfint_batch")
    counts["upserted"], counts["deleted"] = len(kept), len(gone)
    return counts


def _count(db: Any, table: str) -> int:
    # fetchall: a result left unfinished blocks DuckDB's next register() on this connection
    ((found,),) = db.execute(f"SELECT COUNT(*) FROM {table}").fetchall()
    return int(found)


def _ensure_table(db: Any, entity: str, part_schema: Any) -> None:
    """A warehouse without the main job's table (the CDC DAG ran first): create it with the part's types."""
    import pyarrow as pa

    table = entity.lower()
    if _count_tables(db, table):
        return
    stamp = pa.field("SystemModstamp", pa.timestamp("us", tz="UTC"))
    fields = [
        stamp if c == "SystemModstamp" else part_schema.field("record_id" if c == "Id" else c).with_name(c)
        for c in COLUMNS[entity]
    ]
    db.register("sfint_shape", pa.schema(fields).empty_table())
    db.execute(f"CREATE TABLE {table} AS SELECT * FROM sfint_shape")
    db.unregister("sfint_shape")


def _count_tables(db: Any, table: str) -> int:
    ((found,),) = db.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = ?", [table]).fetchall()
    return int(found)


with DAG(
    dag_id="salesforce_cdc_to_warehouse",
    description="Salesforce change events -> Parquet lake -> the main job's DuckDB warehouse, started by events",
    schedule=[changes],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,  # parts are applied in order, one run at a time
    default_args={"retries": RETRIES, "retry_delay": RETRY_DELAY},
    tags=["salesforce", "example", "events"],
    doc_md=__doc__,
) as dag:
    read = SalesforceChangeEventsOperator(
        task_id="read_changes",
        channel=CHANNEL,
        destination=f"{LAKE}/changes",
        entities=list(COLUMNS),
        start="SNAPSHOT",  # the first run: a snapshot of the entities, then every retained event on top
        idle_seconds=IDLE,
        sfint_conn_id=CONN_ID,
    )

    @task
    def apply(summary: dict[str, Any]) -> dict[str, Any]:
        """Every part not applied yet, in part order, each in the transaction that records it."""
        import duckdb
        import pyarrow.parquet as pq

        root = ObjectStoragePath(f"{LAKE}/changes")
        parts = sorted(
            (int(m.group(1)), entity, path)
            for entity in COLUMNS
            for path in (root / entity).glob("part-*.parquet")
            if (m := PART.search(path.name))
        )
        Path(WAREHOUSE).parent.mkdir(parents=True, exist_ok=True)
        totals: dict[str, dict[str, int]] = {}
        applied = 0
        with duckdb.connect(WAREHOUSE) as db:
            db.execute(f"CREATE TABLE IF NOT EXISTS {APPLIED} (part VARCHAR PRIMARY KEY, applied TIMESTAMPTZ)")
            done = {r[0] for r in db.execute(f"SELECT part FROM {APPLIED}").fetchall()}
            for _, entity, path in parts:
                key = f"{entity}/{path.name}"
                if key in done:
                    continue
                with path.open("rb") as f:
                    part = pq.read_table(f)
                rows = part.to_pylist()
                db.execute("BEGIN")
                _ensure_table(db, entity, part.schema)
                snapshot = (part.schema.metadata or {}).get(b"sfint_part_kind") == b"snapshot"
                counts = apply_part(db, entity, rows, snapshot)
                db.execute(f"INSERT INTO {APPLIED} VALUES (?, now())", [key])
                db.execute("COMMIT")
                applied += 1
                for k, v in counts.items():
                    totals.setdefault(entity, {}).setdefault(k, 0)
                    totals[entity][k] += v
            rows_now = {e: _count(db, e.lower()) for e in totals}
        result = {
            "events": summary["events"],
            "rows": summary["rows"],
            "snapshots": summary["snapshots"],
            "gaps_healed": summary["gaps_healed"],
            "api_calls": summary.get("api_calls", 0),
            "parts_applied": applied,
            "changes": totals,
            "warehouse_rows": rows_now,
        }
        target = ObjectStoragePath(f"{LAKE}/_runs/cdc_latest.json")  # the run's summary next to the data
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(result, default=str, indent=2))
        return result

    apply(read.output)
