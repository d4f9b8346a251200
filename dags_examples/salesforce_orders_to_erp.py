"""The mirror of ``erp_orders_to_salesforce``: deals won in Salesforce become sales orders in the ERP, started
by platform events.

Salesforce publishes an ``Order_Event__e`` when an Opportunity becomes Closed Won (in a real org, an Apex
trigger or a flow; in the bundled emulator org, its ``Opportunity_Won`` event rule). Publisher and subscriber
share nothing but the channel. An ``AssetWatcher`` on ``SalesforceChannelTrigger`` rings when events wait on
``/event/Order_Event__e``, and each run

1. reads the waiting events from its checkpoint with ``SalesforceReadEventsOperator`` into Parquet parts under
   ``$SFINT_LAKE/events/Order_Event__e/`` (exactly once: a killed read rewrites the same part);
2. delivers every order of every part not delivered yet to the ERP, **with the event's replay id as the
   idempotency key**: ``POST`` JSON to ``SFINT_ERP_ORDERS_URL`` with an ``Idempotency-Key`` header (2xx, or 409
   for a key the ERP already has, count as delivered), or, without a URL, one ``<replay id>.json`` per order in
   the ``SFINT_ERP_OUTBOX`` folder, written whole (a retry rewrites the same name). A part is marked delivered
   (``$SFINT_LAKE/events/_delivered/``) only once all its orders were accepted, so an order that failed is sent
   again by the task's retries or, after those, by the next run: never skipped, and never doubled at an ERP
   that honours the key. The run's summary goes to ``$SFINT_LAKE/_runs/orders_latest.json``.

Settings (environment, read when the DAG is parsed): ``SFINT_LAKE``, ``SFINT_CONN_ID`` as in the main job;
``SFINT_ERP_ORDERS_URL`` or ``SFINT_ERP_OUTBOX`` (default ``$AIRFLOW_HOME/sfint/erp/outbox``);
``SFINT_ORDERS_MIN_INTERVAL`` (seconds between two runs started by events, default 10); ``SFINT_ORDERS_IDLE``
(seconds without an event that end a read, default 3); ``SFINT_RETRIES``, ``SFINT_RETRY_DELAY``.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, ObjectStoragePath, task

from airflow_provider_sfint.operators.change_events import SalesforceReadEventsOperator
from airflow_provider_sfint.triggers.channel import SalesforceChannelTrigger

HOME = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))
LAKE = os.environ.get("SFINT_LAKE", f"file://{HOME / 'sfint' / 'lake'}").rstrip("/")
CONN_ID = os.environ.get("SFINT_CONN_ID", "sfint_default")
ERP_URL = os.environ.get("SFINT_ERP_ORDERS_URL", "")
OUTBOX = os.environ.get("SFINT_ERP_OUTBOX", f"file://{HOME / 'sfint' / 'erp' / 'outbox'}").rstrip("/")
if "://" not in OUTBOX:
    OUTBOX = f"file://{OUTBOX}"
RETRIES = int(os.environ.get("SFINT_RETRIES", "2"))
RETRY_DELAY = timedelta(seconds=float(os.environ.get("SFINT_RETRY_DELAY", "30")))
MIN_INTERVAL = float(os.environ.get("SFINT_ORDERS_MIN_INTERVAL", "10"))
IDLE = float(os.environ.get("SFINT_ORDERS_IDLE", "3"))

EVENT = "Order_Event__e"
CHANNEL = f"/event/{EVENT}"
PART = re.compile(r"part-(\d+)\.parquet$")
#: Salesforce's event fields -> the ERP's order fields
ERP_FIELDS = {
    "Opportunity_Id__c": "crm_deal_id",
    "Account_Id__c": "crm_customer_id",
    "Order_Name__c": "description",
    "Amount__c": "amount",
    "Close_Date__c": "order_date",
}

orders = Asset(
    "salesforce_order_events",
    watchers=[
        AssetWatcher(
            name="salesforce_order_events",
            # EARLIEST: events already waiting when the watcher first starts (published before the DAG was
            # unpaused or the triggerer came up) ring at once; the run reads from its own checkpoint
            trigger=SalesforceChannelTrigger(
                channel=CHANNEL, sfint_conn_id=CONN_ID, min_interval=MIN_INTERVAL, start="EARLIEST"
            ),
        )
    ],
)


def erp_order(row: dict[str, Any]) -> dict[str, Any]:
    """One event row as the ERP's order document; ``source_event`` is the idempotency key."""
    order: dict[str, Any] = {"source_event": row["replay_id"], "event_uuid": row["event_uuid"]}
    for field, name in ERP_FIELDS.items():
        value = row.get(field)
        order[name] = value.isoformat() if isinstance(value, date | datetime) else value
    created = row.get("created_date")
    order["won_at"] = created.isoformat() if isinstance(created, datetime) else created
    return order


def deliver(order: dict[str, Any], client: Any) -> str:
    """Send one order; returns how the ERP took it (``created``, ``duplicate``, or ``written``)."""
    key = order["source_event"]
    if client is None:  # the outbox: one file per order, named by its key, written whole
        target = ObjectStoragePath(f"{OUTBOX}/{key}.json")
        target.write_text(json.dumps(order, sort_keys=True))
        return "written"
    response = client.post(ERP_URL, json=order, headers={"Idempotency-Key": key})
    if response.status_code == 409:
        return "duplicate"
    if response.is_success:
        return "duplicate" if response.headers.get("Idempotent-Replayed") == "true" else "created"
    raise RuntimeError(
        f"the ERP refused order {key} (Opportunity {order.get('crm_deal_id')}): HTTP {response.status_code} "
        f"{response.text[:300]}; the part stays undelivered and is sent again by the retry or the next run"
    )


with DAG(
    dag_id="salesforce_orders_to_erp",
    description="Order_Event__e (an Opportunity won) -> lake -> ERP sales orders, started by platform events",
    schedule=[orders],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,  # parts are delivered in order, one run at a time
    default_args={"retries": RETRIES, "retry_delay": RETRY_DELAY},
    tags=["salesforce", "example", "events", "erp"],
    doc_md=__doc__,
) as dag:
    read = SalesforceReadEventsOperator(
        task_id="read_order_events",
        channel=CHANNEL,
        destination=f"{LAKE}/events",
        idle_seconds=IDLE,
        sfint_conn_id=CONN_ID,
    )

    @task
    def deliver_to_erp(summary: dict[str, Any]) -> dict[str, Any]:
        """Every order of every undelivered part, in part order; a part is marked only when all went through."""
        import httpx
        import pyarrow.parquet as pq

        root = ObjectStoragePath(f"{LAKE}/events")
        marks = root / "_delivered" / EVENT
        parts = sorted(
            (int(m.group(1)), path) for path in (root / EVENT).glob("part-*.parquet") if (m := PART.search(path.name))
        )
        outcomes: dict[str, int] = {}
        delivered_parts = []
        client = httpx.Client(timeout=30) if ERP_URL else None
        if client is None:
            ObjectStoragePath(OUTBOX).mkdir(parents=True, exist_ok=True)
        try:
            for _, path in parts:
                mark = marks / f"{path.name}.done"
                if mark.exists():
                    continue
                with path.open("rb") as f:
                    rows = pq.read_table(f).to_pylist()
                for row in rows:
                    how = deliver(erp_order(row), client)
                    outcomes[how] = outcomes.get(how, 0) + 1
                mark.parent.mkdir(parents=True, exist_ok=True)
                mark.write_text(json.dumps({"orders": len(rows), "at": datetime.now(UTC).isoformat()}))
                delivered_parts.append(path.name)
        finally:
            if client is not None:
                client.close()
        result = {
            "events_read": summary["events"],
            "last_replay_id": summary["last_replay_id"],
            "parts_delivered": delivered_parts,
            "orders": outcomes,
            "api_calls": summary.get("api_calls", 0),
        }
        target = ObjectStoragePath(f"{LAKE}/_runs/orders_latest.json")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(result, indent=2))
        return result

    deliver_to_erp(read.output)
