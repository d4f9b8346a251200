"""Object-store failures of issue 21 against moto's S3 server, outside the crash harness:

- a run that failed with its staging kept (pages that stay short) does not poison the next run: the next run
  commits every row, and neither run leaves a staging object behind nor deletes the committed version first;
- a retry after a failed commit finishes it (the kills at each commit step are in test_crash_points.py);
- the write check never creates a bucket, and names a missing one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sfint.client.errors import ResultIntegrityError
from airflow_provider_sfint.compat import AirflowFailException
from airflow_provider_sfint.operators.bulk_query import SalesforceBulkQueryOperator

from ..conftest import BUCKET, S3_CONN
from ..emulator.helpers import Admin
from ..operators.conftest import make_context


def _query(conn: str, output: str, **kw: Any) -> SalesforceBulkQueryOperator:
    return SalesforceBulkQueryOperator(
        task_id="s3",
        soql="SELECT Id, Name FROM Account",
        output=output,
        page_size=40,
        part_size=50,
        poll_interval=0.05,
        sfint_conn_id=conn,
        **{"api": "bulk", **kw},
    )


def test_a_failed_run_does_not_poison_the_next(conn: str, fresh_org: Admin, s3_lake: Any, tmp_path: Path) -> None:
    prefix = f"{BUCKET}/{tmp_path.name}/accounts"
    output = f"s3://{S3_CONN}@{prefix}/"
    first = _query(conn, output).execute(make_context())
    assert first["records"] == len(fresh_org.records("Account", include_deleted=False))
    fresh_org.faults({"kind": "result_short_page", "path": "/results", "after": 1})
    with pytest.raises(ResultIntegrityError):
        _query(conn, output).execute(make_context())
    s3_lake.invalidate_cache()
    manifest = json.loads(s3_lake.cat(f"{prefix}/_SUCCESS"))
    assert [f["name"] for f in manifest["files"]] == [p.rsplit("/", 1)[1] for p in first["files"]]  # still whole
    fresh_org.faults()
    fresh_org.load("Account", [{"Name": "Added between runs"}])
    second = _query(conn, output).execute(make_context())
    s3_lake.invalidate_cache()
    names = sorted(p.rsplit("/", 1)[1] for p in s3_lake.find(prefix))
    manifest = json.loads(s3_lake.cat(f"{prefix}/_SUCCESS"))
    assert names == sorted([*(f["name"] for f in manifest["files"]), "_SUCCESS"])  # no staging, no old parts
    assert manifest["rows"] == second["records"] == first["records"] + 1


def test_the_write_check_never_creates_a_bucket(conn: str, fresh_org: Admin, s3_lake: Any) -> None:
    jobs = fresh_org.counters()["bulk_jobs"]
    with pytest.raises(AirflowFailException, match="lake-typo"):
        _query(conn, f"s3://{S3_CONN}@lake-typo/raw/accounts/").execute(make_context())
    s3_lake.invalidate_cache()
    assert "lake-typo" not in [b.rstrip("/") for b in s3_lake.ls("")]
    assert fresh_org.counters()["bulk_jobs"] == jobs  # refused before any job
