"""An ERP's daily order drop, upserted into Salesforce.

The ERP writes ``orders_<YYYYMMDD>.csv`` into a drop folder each day, in its own column names. This DAG
upserts the day's file into ``ERP_Order__c`` by ``External_Id__c`` with Bulk API 2.0, linking each order
to its Account by the Account's external id (``Account__r.External_Id__c``): no Id lookups, no extra
queries. Every row is checked against describe before a job exists; rows Salesforce refuses (an unknown
customer, a status the picklist does not allow) are written with their errors to
``failed/orders_<YYYYMMDD>.failed.csv`` beside the drop, and the task fails only when more than
``SFINT_ERP_MAX_FAILED_RATIO`` of the rows failed (default 5 %).

Settings (environment, read when the DAG is parsed): ``SFINT_ERP_DROP`` (the drop folder, any
ObjectStoragePath URL; default ``file://$AIRFLOW_HOME/sfint/erp``), ``SFINT_CONN_ID``,
``SFINT_ERP_MAX_FAILED_RATIO``, ``SFINT_START_DATE``, ``SFINT_RETRIES``, ``SFINT_DEFERRABLE`` (wait in
the triggerer, default true).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG

from airflow_provider_sfint.operators.bulk_ingest import SalesforceBulkIngestOperator

HOME = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))
DROP = os.environ.get("SFINT_ERP_DROP", f"file://{HOME / 'sfint' / 'erp'}").rstrip("/")
if "://" not in DROP:
    DROP = f"file://{DROP}"
CONN_ID = os.environ.get("SFINT_CONN_ID", "sfint_default")
MAX_FAILED_RATIO = float(os.environ.get("SFINT_ERP_MAX_FAILED_RATIO", "0.05"))
START = datetime.fromisoformat(os.environ.get("SFINT_START_DATE", "2026-01-01")).replace(tzinfo=UTC)
RETRIES = int(os.environ.get("SFINT_RETRIES", "2"))
DEFERRABLE = os.environ.get("SFINT_DEFERRABLE", "true").lower() in ("1", "true", "yes")

# The ERP's column names -> Salesforce field API names.
ERP_COLUMNS = {
    "order_no": "External_Id__c",
    "customer_no": "Account__r.External_Id__c",
    "amount": "Amount__c",
    "quantity": "Quantity__c",
    "order_date": "Order_Date__c",
    "shipped_at": "Shipped_At__c",
    "status": "Status__c",
    "buyer_email": "Contact_Email__c",
    "notes": "Notes__c",
}

with DAG(
    dag_id="erp_orders_to_salesforce",
    description="ERP order CSV -> ERP_Order__c (upsert by external id, lookups by Account external id)",
    schedule="@daily",  # Airflow 3's default (trigger) timetable: one drop file per logical date, no interval needed
    start_date=START,
    catchup=False,
    default_args={"retries": RETRIES, "retry_delay": timedelta(minutes=1)},
    tags=["salesforce", "example"],
    doc_md=__doc__,
) as dag:
    SalesforceBulkIngestOperator(
        task_id="upsert_orders",
        object="ERP_Order__c",
        operation="upsert",
        external_id_field="External_Id__c",
        source=f"{DROP}/orders_{{{{ ds_nodash }}}}.csv",
        column_mapping=ERP_COLUMNS,
        failed_output=f"{DROP}/failed/orders_{{{{ ds_nodash }}}}.failed.csv",
        max_failed_records=None,
        max_failed_ratio=MAX_FAILED_RATIO,
        deferrable=DEFERRABLE,
        poll_interval=1,
        sfint_conn_id=CONN_ID,
    )
