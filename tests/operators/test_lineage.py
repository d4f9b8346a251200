"""OpenLineage facets from the query, ingest, composite and publish operators, read through the
OpenLineage provider's own extractor (as its listener does when a task succeeds)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_sfint.lineage import file_dataset, salesforce_dataset, to_operator_lineage
from airflow_provider_sfint.operators.bulk_ingest import SalesforceBulkIngestOperator
from airflow_provider_sfint.operators.bulk_query import SalesforceBulkQueryOperator
from airflow_provider_sfint.operators.composite import SalesforceCompositeUpsertOperator
from airflow_provider_sfint.operators.events import SalesforcePublishEventOperator

from ..emulator.helpers import Admin
from .conftest import make_context

pytest.importorskip("airflow.providers.openlineage")


def _extract(op: Any) -> Any:
    from airflow.providers.openlineage.extractors.manager import ExtractorManager
    from airflow.utils.state import TaskInstanceState

    dagrun = SimpleNamespace(run_id="manual__lineage", dag_id="lineage")
    ti = SimpleNamespace(task_id=op.task_id, dag_id="lineage", run_id="manual__lineage", try_number=1)
    return ExtractorManager().extract_metadata(dagrun, op, TaskInstanceState.SUCCESS, ti)


def _schema(dataset: Any) -> list[tuple[str, str | None]]:
    return [(f.name, f.type) for f in dataset.facets["schema"].fields]


def test_query_lineage_reads_the_object_and_writes_the_file(conn: str, tmp_path: Path, fresh_org: Admin) -> None:
    out = tmp_path / "accounts.parquet"
    op = SalesforceBulkQueryOperator(
        task_id="q",
        soql="SELECT Id, Name, AnnualRevenue, Owner.Name FROM Account",
        output=f"file://{out}",
        sfint_conn_id=conn,
    )
    op.execute(make_context())
    lineage = _extract(op)
    (source,) = lineage.inputs
    assert source.namespace.startswith("salesforce://127.0.0.1:") and source.name == "Account"
    assert _schema(source) == [
        ("Id", "id"),
        ("Name", "string"),
        ("AnnualRevenue", "currency"),
        ("Owner.Name", "string"),
    ]
    (target,) = lineage.outputs
    assert (target.namespace, target.name) == ("file", str(out))
    assert _schema(target)[2] == ("AnnualRevenue", str(pq.read_schema(out).field("AnnualRevenue").type))


def test_ingest_lineage_names_the_written_fields(conn: str, tmp_path: Path, fresh_org: Admin) -> None:
    source = tmp_path / "contacts.parquet"
    pq.write_table(pa.table({"LastName": ["Lin"], "Email": ["lin@example.com"]}), source)
    op = SalesforceBulkIngestOperator(
        task_id="i", object="Contact", operation="insert", source=f"file://{source}", sfint_conn_id=conn
    )
    op.execute(make_context())
    lineage = _extract(op)
    (read,) = lineage.inputs
    assert (read.namespace, read.name) == ("file", str(source)) and _schema(read)[0] == ("LastName", "string")
    (written,) = lineage.outputs
    assert written.name == "Contact" and _schema(written) == [("LastName", "string"), ("Email", "email")]


def test_composite_and_publish_lineage_type_fields_from_describe(conn: str, fresh_org: Admin) -> None:
    up = SalesforceCompositeUpsertOperator(
        task_id="c",
        object="Account",
        external_id_field="External_Id__c",
        records=[{"External_Id__c": "OL-1", "Name": "Lineage", "Account_Score__c": 4.5}],
        sfint_conn_id=conn,
    )
    up.execute(make_context())
    lineage = _extract(up)
    assert lineage.inputs == []  # records passed in memory have no dataset
    assert _schema(lineage.outputs[0]) == [
        ("External_Id__c", "string"),
        ("Name", "string"),
        ("Account_Score__c", "double"),
    ]
    pub = SalesforcePublishEventOperator(
        task_id="e", event="Warehouse_Sync__e", events={"Pipeline__c": "p", "Records__c": 3}, sfint_conn_id=conn
    )
    pub.execute(make_context())
    out = _extract(pub).outputs[0]
    assert out.name == "Warehouse_Sync__e" and _schema(out) == [("Pipeline__c", "string"), ("Records__c", "double")]


def test_composite_routed_to_bulk_reports_the_bulk_lineage(conn: str, tmp_path: Path, fresh_org: Admin) -> None:
    source = tmp_path / "many.parquet"
    pq.write_table(pa.table({"External_Id__c": [f"OLB-{i}" for i in range(30)], "Name": ["x"] * 30}), source)
    op = SalesforceCompositeUpsertOperator(
        task_id="c",
        object="Account",
        external_id_field="External_Id__c",
        records=str(source),
        bulk_threshold=10,
        sfint_conn_id=conn,
    )
    assert op.execute(make_context())["path"] == "bulk"
    lineage = _extract(op)
    assert lineage.inputs[0].name == str(source) and lineage.outputs[0].name == "Account"


def test_dataset_naming_and_no_lineage_before_a_run() -> None:
    ref = file_dataset("s3://lake/raw/accounts.parquet")
    assert (ref.namespace, ref.name) == ("s3://lake", "raw/accounts.parquet")
    assert (
        salesforce_dataset("https://acme.my.salesforce.com", "Account").namespace
        == "salesforce://acme.my.salesforce.com"
    )
    op = SalesforcePublishEventOperator(task_id="e", event="X__e", events={})
    assert op.get_openlineage_facets_on_complete(None) is None


def test_without_openlineage_the_operators_return_none(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("airflow.providers.openlineage")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage", None)  # import now fails
    assert to_operator_lineage([salesforce_dataset("https://x.my.salesforce.com", "Account")], []) is None
