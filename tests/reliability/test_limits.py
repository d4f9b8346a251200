"""The daily API allowance: work refuses to start with the figures when too little remains; exhaustion
mid-run stops at the first refusal (never a retry loop), commits nothing, and a retry once the allowance
is back re-uses the job it left instead of loading twice."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_sfint.client.errors import LimitExceededError
from airflow_provider_sfint.compat import AirflowFailException
from airflow_provider_sfint.operators.bulk_ingest import SalesforceBulkIngestOperator
from airflow_provider_sfint.operators.bulk_query import SalesforceBulkQueryOperator

from ..emulator.helpers import Admin
from ..operators.conftest import StateStore, make_context


def _calls(org: Admin) -> int:
    return int(org.limits()["api_used"])


def test_exhaustion_mid_download_stops_at_once_and_commits_nothing(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    out = tmp_path / "accounts.parquet"
    op = SalesforceBulkQueryOperator(
        task_id="q",
        soql="SELECT Id, Name FROM Account",
        output=str(out),
        page_size=10,
        parallel_pages=1,
        api="bulk",  # the Bulk path's result pages
        sfint_conn_id=conn,
    )
    used = _calls(fresh_org)
    fresh_org.limits(api_max=used + 8)  # enough to start and fetch a few pages, not all 20
    with pytest.raises(LimitExceededError, match=r"TotalRequests.*\(API usage \d+/\d+\)"):
        op.execute(make_context())
    assert _calls(fresh_org) <= used + 9  # the refused call is the last one: no retry loop burns the rest
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing committed, no staging left


def test_exhaustion_mid_ingest_then_retry_reuses_the_job(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    source = tmp_path / "accounts.parquet"
    ids = [f"LIM-{i}" for i in range(50)]
    pq.write_table(pa.table({"External_Id__c": ids, "Name": [f"Limit {i}" for i in range(50)]}), source)
    store = StateStore()

    def op() -> SalesforceBulkIngestOperator:
        return SalesforceBulkIngestOperator(
            task_id="i", object="Account", operation="insert", source=str(source), sfint_conn_id=conn
        )

    used = _calls(fresh_org)
    fresh_org.limits(api_max=used + 3)  # describe, token-free create: the upload is refused
    with pytest.raises((LimitExceededError, AirflowFailException), match="TotalRequests"):
        op().execute(make_context(store))
    assert _calls(fresh_org) <= used + 5  # stopped: at most the refused upload and a refused abort
    fresh_org.limits(api_max=1_000_000)  # the next day, or the allowance raised
    summary = op().execute(make_context(store))  # Airflow's retry, same task_state_store
    assert summary["succeeded"] == 50
    stored = [r for r in fresh_org.records("Account") if str(r.get("External_Id__c")).startswith("LIM-")]
    assert sorted(r["External_Id__c"] for r in stored) == sorted(ids)  # each row exactly once
