"""REST for small reads (issue 19 item 2): ``api="auto" | "bulk" | "rest"`` on the query operator.

Both paths must write the same typed output for the same query: the REST answer (JSON, parents nested, numbers
as JSON numbers, datetimes with ``+0000``) and the Bulk answer (CSV text) are compared here, file against file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_sfint.operators.bulk_query import SalesforceBulkQueryOperator

from ..emulator.helpers import Admin, SalesforceHttp
from .conftest import StateStore, make_context
from .test_bulk_query import SOQL

CONTACTS = (
    "SELECT Id, LastName, Email, Birthdate, Account.Name, Account.AnnualRevenue, Account.Owner.Name, "
    "Account.Is_Strategic__c, CreatedDate FROM Contact"
)


def _op(conn: str, output: Path | str, **kw: Any) -> SalesforceBulkQueryOperator:
    kw.setdefault("poll_interval", 0.05)
    return SalesforceBulkQueryOperator(
        task_id="q", soql=kw.pop("soql", SOQL), output=str(output), sfint_conn_id=conn, **kw
    )


def _jobs(url: str) -> int:
    with SalesforceHttp.login(url) as sf:
        return len(sf.get("jobs/query").json()["records"])


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by("Id")


@pytest.mark.parametrize("soql", [SOQL, CONTACTS], ids=["accounts", "contacts-with-parents"])
def test_rest_and_bulk_write_the_same_typed_output(conn: str, fresh_org: Admin, tmp_path: Path, soql: str) -> None:
    fresh_org._call("POST", "seed", json={"counts": {"Account": 300, "Contact": 300}, "hostile": True, "seed": 9})
    # contacts without an account (null parents)
    fresh_org.load("Contact", [{"LastName": f"Orphan {i}", "Email": f"o{i}@example.com"} for i in range(3)])
    bulk = _op(conn, tmp_path / "bulk.parquet", soql=soql, api="bulk").execute(make_context())
    rest = _op(conn, tmp_path / "rest.parquet", soql=soql, api="rest").execute(make_context())
    assert (bulk["api"], rest["api"]) == ("bulk", "rest") and rest["job_id"] is None and rest["job_ids"] == []
    assert bulk["records"] == rest["records"] > 300 and bulk["schema"] == rest["schema"]
    from_bulk = pq.read_table(tmp_path / "bulk.parquet")
    from_rest = pq.read_table(tmp_path / "rest.parquet")
    assert from_rest.schema == from_bulk.schema  # the same names, types and describe metadata
    assert _sorted(from_rest).equals(_sorted(from_bulk))
    values = _sorted(from_rest).to_pylist()
    if soql == SOQL:
        assert sum(r["AnnualRevenue"] is not None for r in values) > 100
        texts = [v for r in values for v in r.values() if isinstance(v, str)]
        for hostile in ("\r\n", "\u2028", '"', "NA", "#N/A"):
            assert any(hostile in t for t in texts), hostile
    else:
        orphans = [r for r in values if str(r["LastName"]).startswith("Orphan")]
        assert len(orphans) == 3 and all(r["Account.Name"] is None and r["Account.Owner.Name"] is None for r in orphans)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_formats_are_the_same_bytes(conn: str, fresh_org: Admin, tmp_path: Path, fmt: str) -> None:
    fresh_org._call("POST", "seed", json={"counts": {"Account": 200}, "hostile": True, "seed": 3})
    soql = f"{SOQL} ORDER BY Id"
    _op(conn, tmp_path / f"bulk.{fmt}", soql=soql, api="bulk", format=fmt).execute(make_context())
    _op(conn, tmp_path / f"rest.{fmt}", soql=soql, api="rest", format=fmt).execute(make_context())
    assert (tmp_path / f"rest.{fmt}").read_bytes() == (tmp_path / f"bulk.{fmt}").read_bytes()


def test_auto_reads_a_small_query_through_rest_in_two_calls(
    conn: str, fresh_org: Admin, emulator_url: str, tmp_path: Path
) -> None:
    soql = "SELECT Id, Name, AnnualRevenue, SystemModstamp FROM Account"
    summary = _op(conn, tmp_path / "small.parquet", soql=soql).execute(make_context())
    assert summary["api"] == "rest" and summary["records"] == len(fresh_org.records("Account", include_deleted=False))
    assert summary["api_calls"] <= 2  # describe and one query page
    assert _jobs(emulator_url) == 0


def test_auto_runs_a_bulk_job_above_the_threshold(
    conn: str, fresh_org: Admin, emulator_url: str, tmp_path: Path
) -> None:
    live = len(fresh_org.records("Account", include_deleted=False))
    summary = _op(conn, tmp_path / "big.parquet", rest_threshold=live - 1).execute(make_context())
    assert summary["api"] == "bulk" and summary["job_id"].startswith("750") and summary["records"] == live
    assert _jobs(emulator_url) == 1
    at = _op(conn, tmp_path / "at.parquet", rest_threshold=live).execute(make_context())
    assert at["api"] == "rest" and _jobs(emulator_url) == 1  # at the threshold: REST


def test_rest_follows_next_records_url_across_pages(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    fresh_org._call("POST", "seed", json={"counts": {"Account": 4_500}, "seed": 11})
    live = len(fresh_org.records("Account", include_deleted=False))
    rest = _op(conn, tmp_path / "out/", api="rest", part_size=1_000).execute(make_context())
    assert rest["records"] == live > 4_000 and rest["api_calls"] >= 3  # pages of at most 2,000
    manifest = json.loads((tmp_path / "out" / "_SUCCESS").read_text())
    ids = [i for f in manifest["files"] for i in pq.read_table(tmp_path / "out" / f["name"]).column("Id").to_pylist()]
    assert len(ids) == len(set(ids)) == live


def test_rest_keeps_the_window_and_include_deleted(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    records = fresh_org.records("Account")
    stamps = sorted(r["SystemModstamp"] for r in records)
    start, end = stamps[len(stamps) // 3], stamps[2 * len(stamps) // 3]
    expected = {r["Id"] for r in records if start <= r["SystemModstamp"] < end}
    store = StateStore()
    summary = _op(
        conn,
        tmp_path / "w.parquet",
        soql="SELECT Id, Name, SystemModstamp FROM Account",
        include_deleted=True,
        incremental_field="SystemModstamp",
        window_start=start.replace("Z", "+00:00"),
        window_end=end.replace("Z", "+00:00"),
    ).execute(make_context(store))
    assert summary["api"] == "rest" and summary["window"]["start"].startswith(start[:19])
    got = set(pq.read_table(tmp_path / "w.parquet").column("Id").to_pylist())
    assert got == expected and any(r["IsDeleted"] for r in records if r["Id"] in got)


def test_bad_api_settings_name_the_setting() -> None:
    with pytest.raises(ValueError, match="api must be one of auto, bulk, rest"):
        SalesforceBulkQueryOperator(task_id="q", soql=SOQL, output="/tmp/x.parquet", api="soap")
    with pytest.raises(ValueError, match="rest_threshold"):
        SalesforceBulkQueryOperator(task_id="q", soql=SOQL, output="/tmp/x.parquet", rest_threshold=-1)


def test_clauses_bulk_refuses_are_found_outside_literals() -> None:
    from airflow_provider_sfint.client.soql import bulk_refuses

    assert bulk_refuses("SELECT Industry FROM Account GROUP BY Industry") == "GROUP BY"
    assert bulk_refuses("SELECT Id FROM Account LIMIT 5 OFFSET 2") == "OFFSET"
    assert bulk_refuses("SELECT TYPEOF What WHEN Account THEN Name END FROM Event") == "TYPEOF"
    assert bulk_refuses("SELECT Id FROM Account WHERE Name = 'GROUP BY OFFSET'") is None
    assert bulk_refuses("SELECT Id, (SELECT Id FROM Contacts OFFSET 1) FROM Account") is None  # a subquery's own


def test_auto_fails_a_group_by_as_bulk_does_even_when_small(conn: str, tmp_path: Path) -> None:
    from airflow_provider_sfint.compat import AirflowFailException

    soql = "SELECT Industry FROM Account GROUP BY Industry"
    with pytest.raises(AirflowFailException, match="GROUP BY"):
        _op(conn, tmp_path / "g.parquet", soql=soql).execute(make_context())
    assert not list(tmp_path.iterdir())
