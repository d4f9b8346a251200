"""SalesforceBulkQueryOperator against the emulator: exact values, schemas, integrity faults, resume, windows."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_sfint.client.errors import ResultIntegrityError
from airflow_provider_sfint.compat import AirflowFailException
from airflow_provider_sfint.engines.query import PROGRESS_KEY
from airflow_provider_sfint.operators.bulk_query import SalesforceBulkQueryOperator

from ..emulator.helpers import Admin
from .conftest import StateStore, WorkerDied, make_context

COLUMNS = [
    "Id",
    "Name",
    "Description",
    "Site",
    "BillingStreet",
    "Long_Notes__c",
    "AnnualRevenue",
    "NumberOfEmployees",
    "Account_Score__c",
    "Is_Strategic__c",
    "Regions__c",
    "CreatedDate",
    "SystemModstamp",
    "Owner.Name",
]
SOQL = f"SELECT {', '.join(COLUMNS)} FROM Account"


def _op(conn: str, output: Any, **kw: Any) -> SalesforceBulkQueryOperator:
    kw.setdefault("poll_interval", 0.05)
    kw.setdefault("api", "bulk")  # the Bulk path's mechanics (the org here is small: "auto" would read via REST)
    return SalesforceBulkQueryOperator(
        task_id="q", soql=kw.pop("soql", SOQL), output=str(output), sfint_conn_id=conn, **kw
    )


def _canon(value: Any, sf_type: str, scale: int = 0) -> str | None:
    """One comparable text for a value, whichever format carried it."""
    if value is None or value == "":
        return None
    if sf_type == "boolean":
        if isinstance(value, str):
            return value
        return "true" if value else "false"
    if sf_type in ("int", "double", "percent", "currency"):
        number = Decimal(str(value))
        return str(number.quantize(Decimal(1).scaleb(-scale))) if sf_type == "currency" else str(number.normalize())
    if sf_type == "datetime":
        if isinstance(value, datetime):
            return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _store_rows(admin: Admin, types: dict[str, tuple[str, int]], deleted: bool = False) -> dict[str, dict[str, Any]]:
    owners = {u["Id"]: u["Name"] for u in admin.records("User")}
    out = {}
    for r in admin.records("Account", include_deleted=deleted):
        r["Owner.Name"] = owners.get(r["OwnerId"])
        out[r["Id"]] = {c: _canon(r.get(c), *types[c]) for c in COLUMNS}
    return out


def _read(path: Path, fmt: str, schema: pa.Schema) -> list[dict[str, Any]]:
    files = sorted(path.glob(f"part-*.{fmt}")) if path.is_dir() else [path]
    rows: list[dict[str, Any]] = []
    for f in files:
        if fmt == "parquet":
            rows += pq.read_table(f).to_pylist()
        elif fmt == "jsonl":
            with open(f, encoding="utf-8", newline="") as handle:
                rows += [json.loads(line, parse_float=Decimal) for line in handle.read().split("\n") if line]
        else:
            with open(f, encoding="utf-8", newline="") as handle:
                reader = csv.DictReader(handle)
                assert reader.fieldnames == schema.names
                rows += list(reader)
    return rows


def _types(schema: pa.Schema) -> dict[str, tuple[str, int]]:
    out = {}
    for f in schema:
        sf_type = f.metadata[b"salesforce_type"].decode()
        out[f.name] = (sf_type, f.type.scale if pa.types.is_decimal(f.type) else 0)
    return out


@pytest.mark.parametrize(("fmt", "directory"), [("parquet", False), ("csv", True), ("jsonl", False)])
def test_hostile_rows_arrive_exactly(conn: str, fresh_org: Admin, tmp_path: Path, fmt: str, directory: bool) -> None:
    fresh_org._call("POST", "seed", json={"counts": {"Account": 700}, "hostile": True, "seed": 5})
    target = tmp_path / ("out/" if directory else f"accounts.{fmt}")
    op = _op(conn, f"{target}/" if directory else target, format=fmt, page_size=97, parallel_pages=3, part_size=250)
    if not directory:
        op.part_size = None
    summary = op.execute(make_context(StateStore()))
    schema = op._schema(SOQL)
    types = _types(schema)
    expected = _store_rows(fresh_org, types)
    got = _read(target, fmt, schema)
    assert summary["records"] == len(got) == len(expected) > 700
    by_id = {}
    for row in got:
        by_id[row["Id"]] = {c: _canon(row[c], *types[c]) for c in COLUMNS}
    assert by_id.keys() == expected.keys()
    mismatches = [(i, c) for i, row in expected.items() for c in COLUMNS if by_id[i][c] != row[c]]
    assert not mismatches, mismatches[:5]
    texts = [v for row in expected.values() for v in row.values() if isinstance(v, str)]
    for hostile in ("NA", "null", "#N/A", "\r\n", "\u2028", "\x85", '"'):
        assert any(hostile in t for t in texts), f"the seed lost its {hostile!r} values"
    if directory:
        manifest = json.loads((target / "_SUCCESS").read_text())
        assert manifest["rows"] == summary["records"] and len(manifest["files"]) == len(summary["files"]) > 1
        assert not [p for p in target.iterdir() if p.name.startswith("_sfint_staging_")]
    assert summary["schema"][0] == {"name": "Id", "type": "string"}
    assert summary["api_calls"] > 0 and summary["job_id"].startswith("750")


def test_schema_is_the_same_for_zero_rows_and_all_null_columns(conn: str, tmp_path: Path) -> None:
    full = _op(conn, tmp_path / "full.parquet")
    full.execute(make_context())
    none = _op(conn, tmp_path / "none.parquet", soql=f"{SOQL} WHERE Name = 'no such account'")
    summary = none.execute(make_context())
    assert summary["records"] == 0
    assert (
        pq.read_schema(tmp_path / "none.parquet").remove_metadata()
        == pq.read_schema(tmp_path / "full.parquet").remove_metadata()
    )
    table = pq.read_table(tmp_path / "full.parquet")
    assert table.schema.field("AnnualRevenue").type == pa.decimal128(18, 0)
    assert table.schema.field("CreatedDate").type == pa.timestamp("ms", tz="UTC")
    assert table.schema.field("Is_Strategic__c").type == pa.bool_()
    for fmt in ("csv", "jsonl"):
        _op(conn, tmp_path / f"none.{fmt}", format=fmt, soql=f"{SOQL} WHERE Name = 'none'").execute(make_context())
    assert (tmp_path / "none.csv").read_text().strip() == ",".join(f'"{c}"' for c in table.schema.names)
    assert (tmp_path / "none.jsonl").read_bytes() == b""


def test_untyped_output_keeps_text(conn: str, tmp_path: Path) -> None:
    _op(conn, tmp_path / "t.parquet", typed=False).execute(make_context())
    schema = pq.read_schema(tmp_path / "t.parquet")
    assert all(f.type == pa.string() for f in schema)


@pytest.mark.parametrize("fault", ["result_no_locator", "result_repeat_locator"])
def test_locator_faults_fail_and_leave_no_output(old_api: str, fresh_org: Admin, tmp_path: Path, fault: str) -> None:
    """API 57: no resultPages, so pages follow the locator chain, where a missing or repeated locator matters."""
    fresh_org.faults({"kind": fault, "path": "/results", "after": 1, "count": 1})
    op = _op(old_api, tmp_path / "x.parquet", page_size=50, parallel_pages=2)
    with pytest.raises(ResultIntegrityError):
        op.execute(make_context())
    assert list(tmp_path.iterdir()) == []


def test_missing_locator_header_fails_through_result_pages_too(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    fresh_org.faults({"kind": "result_no_locator", "path": "/results", "count": 1})
    with pytest.raises(ResultIntegrityError, match="Sforce-Locator"):
        _op(conn, tmp_path / "x.csv", format="csv", page_size=50).execute(make_context())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fault", ["result_short_page", "drop"])
def test_short_or_cut_pages_are_fetched_again(conn: str, fresh_org: Admin, tmp_path: Path, fault: str) -> None:
    fresh_org.faults({"kind": fault, "path": "/results", "after": 2, "count": 2})
    summary = _op(conn, tmp_path / "x.parquet", page_size=40).execute(make_context())
    assert summary["records"] == len(fresh_org.records("Account", include_deleted=False))
    assert pq.read_table(tmp_path / "x.parquet").num_rows == summary["records"]
    assert fresh_org._call("GET", "faults")["rules"][0]["fired"] == 2


def test_a_page_that_stays_short_fails_without_output(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    fresh_org.faults({"kind": "result_short_page", "path": "/results", "after": 1})
    with pytest.raises(ResultIntegrityError, match="Sforce-NumberOfRecords"):
        _op(conn, tmp_path / "x.parquet", page_size=40).execute(make_context())
    assert list(tmp_path.iterdir()) == []


def test_locator_walk_below_api_58_gives_the_same_rows(conn: str, old_api: str, tmp_path: Path) -> None:
    pages = _op(conn, tmp_path / "p.parquet", page_size=33)
    pages.execute(make_context())
    walk = _op(old_api, tmp_path / "w.parquet", page_size=33)
    walk.execute(make_context())
    assert pq.read_table(tmp_path / "p.parquet").equals(pq.read_table(tmp_path / "w.parquet"))


def test_result_pages_without_a_list_fall_back_to_the_locator_walk(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    """A resultPages answer without its list of pages (a proxy, an org without it) is not an empty result: the
    operator follows the locator chain and gets every row."""
    _op(conn, tmp_path / "pages.parquet", page_size=33).execute(make_context())
    fresh_org.faults({"kind": "result_pages_no_list", "path": "/resultPages"})
    summary = _op(conn, tmp_path / "walk.parquet", page_size=33).execute(make_context())
    assert fresh_org._call("GET", "faults")["rules"][0]["fired"] == 1
    assert summary["records"] == len(fresh_org.records("Account", include_deleted=False))
    assert pq.read_table(tmp_path / "walk.parquet").equals(pq.read_table(tmp_path / "pages.parquet"))


def test_resume_after_the_worker_died_mid_download(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    """The first try dies after two parts; the retry re-attaches to the same job, keeps the two parts and
    fetches only the pages after them."""
    store = StateStore()
    out = tmp_path / "parts"
    first = _op(conn, f"{out}/", page_size=20, part_size=40, parallel_pages=1)
    context = make_context(store)
    store.dies_after = lambda key, value: key == PROGRESS_KEY and len(value["parts"]) == 2
    with pytest.raises(WorkerDied):
        first.execute(context)
    store.dies_after = None
    job_id = store.get("sfint_bulk_query_job")
    assert job_id and store.get(PROGRESS_KEY)["job_id"] == job_id
    assert not (out / "_SUCCESS").exists() and not list(out.glob("part-*"))
    jobs_before = fresh_org.counters()["bulk_jobs"]
    fresh_org._call("POST", "counters/reset")
    retry = _op(conn, f"{out}/", page_size=20, part_size=40, parallel_pages=1)
    summary = retry.execute(make_context(store))
    assert summary["job_id"] == job_id
    assert fresh_org.counters()["bulk_jobs"] == jobs_before  # no second job
    result_gets = sum(n for k, n in fresh_org.counters()["requests"].items() if "/results" in k)
    total_pages = -(-summary["records"] // 20)
    assert result_gets == total_pages - 4  # the four pages in the two kept parts were not fetched again
    ids = [r["Id"] for r in _read(out, "parquet", retry._schema(SOQL))]
    assert len(ids) == len(set(ids)) == summary["records"] == len(fresh_org.records("Account", include_deleted=False))
    assert store.get(PROGRESS_KEY) is None


def test_incremental_window_at_a_shared_timestamp(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    """Many records share the boundary's SystemModstamp: consecutive windows give each record exactly once."""
    boundary = datetime(2026, 6, 1, tzinfo=UTC)
    stamps = [boundary - timedelta(milliseconds=1), boundary, boundary, boundary, boundary + timedelta(seconds=1)]
    rows = []
    for i in range(60):
        stamp = stamps[i % len(stamps)].strftime("%Y-%m-%dT%H:%M:%S.") + f"{(stamps[i % 5].microsecond // 1000):03d}Z"
        rows.append({"Name": f"Window {i}", "SystemModstamp": stamp})
    ids = fresh_org.load("Account", rows)
    windows = [(boundary - timedelta(hours=1), boundary), (boundary, boundary + timedelta(hours=1))]
    seen: list[str] = []
    for n, (start, end) in enumerate(windows):
        op = _op(
            conn,
            tmp_path / f"w{n}.parquet",
            incremental_field="SystemModstamp",
            soql="SELECT Id FROM Account WHERE Name LIKE 'Window%'",
        )
        op.execute(make_context(start=start, end=end))
        seen += pq.read_table(tmp_path / f"w{n}.parquet").column("Id").to_pylist()
    assert sorted(seen) == sorted(ids)
    first = set(pq.read_table(tmp_path / "w0.parquet").column("Id").to_pylist())
    assert len(first) == 12  # only the records one millisecond before the boundary


def test_timed_out_window_is_split_in_halves(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    total = len(fresh_org.records("Account", include_deleted=False))
    fresh_org.set("bulk", query_timeout_rows=total // 3)
    stamps = sorted(r["CreatedDate"] for r in fresh_org.records("Account", include_deleted=False))
    start = datetime.fromisoformat(stamps[0].replace("Z", "+00:00")).replace(microsecond=0)
    end = datetime.fromisoformat(stamps[-1].replace("Z", "+00:00")).replace(microsecond=0) + timedelta(seconds=1)
    op = _op(conn, tmp_path / "split.parquet", incremental_field="CreatedDate", max_split_depth=6)
    summary = op.execute(make_context(start=start, end=end))
    assert summary["splits"] >= 1 and len(summary["job_ids"]) >= 3
    ids = pq.read_table(tmp_path / "split.parquet").column("Id").to_pylist()
    assert len(ids) == len(set(ids)) == total


def test_bad_input_fails_before_any_job(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    jobs = fresh_org.counters()["bulk_jobs"]
    with pytest.raises(AirflowFailException, match=r"Account has no field 'Nmae'.*did you mean Name"):
        _op(conn, tmp_path / "x.parquet", soql="SELECT Id, Nmae FROM Account").execute(make_context())
    with pytest.raises(AirflowFailException, match=r"object 'Acount' does not exist.*did you mean Account"):
        _op(conn, tmp_path / "x.parquet", soql="SELECT Id FROM Acount").execute(make_context())
    # Every misspelled column at once, each with its closest names.
    with pytest.raises(AirflowFailException) as caught:
        _op(conn, tmp_path / "x.parquet", soql="SELECT Id, Nmae, Industy, Ownr.Name FROM Account").execute(
            make_context()
        )
    message = str(caught.value)
    assert message.startswith("soql: 3 unknown columns: ")
    assert "Account has no field 'Nmae' (column 'Nmae'); did you mean Name" in message
    assert "Account has no field 'Industy' (column 'Industy'); did you mean Industry" in message
    assert "Account has no relationship 'Ownr' (column 'Ownr.Name'); did you mean Owner" in message
    with pytest.raises(AirflowFailException, match="aggregate"):
        _op(conn, tmp_path / "x.parquet", soql="SELECT COUNT(Id) FROM Account").execute(make_context())
    with pytest.raises(AirflowFailException, match="MALFORMED_QUERY"):
        _op(conn, tmp_path / "x.parquet", soql="SELECT Id FROM Account WHERE Name = ").execute(make_context())
    with pytest.raises(AirflowFailException, match="OFFSET"):
        _op(conn, tmp_path / "x.parquet", soql="SELECT Id FROM Account LIMIT 5 OFFSET 2").execute(make_context())
    assert fresh_org.counters()["bulk_jobs"] == jobs
    fresh_org._call("POST", "counters/reset")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a directory must be")
    with pytest.raises(AirflowFailException, match="not writable"):
        _op(conn, f"{blocked}/out/", soql=SOQL).execute(make_context())
    assert fresh_org.counters()["requests"] == {}  # not a single API call spent


def test_window_overrides_replace_the_data_interval(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    """window_start loads history before the interval (a first run, a full refresh); bad values name the setting."""
    ids = fresh_org.load(
        "Account",
        [
            {"Name": "Old", "SystemModstamp": "2020-03-01T10:00:00.000Z"},
            {"Name": "In", "SystemModstamp": "2026-06-01T10:00:00.000Z"},
        ],
    )
    interval = make_context(start=datetime(2026, 6, 1, tzinfo=UTC), end=datetime(2026, 6, 2, tzinfo=UTC))
    soql = "SELECT Id FROM Account WHERE Name IN ('Old', 'In')"
    only = _op(conn, tmp_path / "a.parquet", soql=soql, incremental_field="SystemModstamp")
    only.execute(interval)
    assert pq.read_table(tmp_path / "a.parquet").column("Id").to_pylist() == ids[1:]
    history = _op(
        conn, tmp_path / "b.parquet", soql=soql, incremental_field="SystemModstamp", window_start="2000-01-01T00:00:00Z"
    )
    history.execute(interval)
    assert sorted(pq.read_table(tmp_path / "b.parquet").column("Id").to_pylist()) == sorted(ids)
    with pytest.raises(AirflowFailException, match=r"window_start='yesterday' is not an ISO 8601"):
        _op(conn, tmp_path / "c.parquet", incremental_field="SystemModstamp", window_start="yesterday").execute(
            interval
        )
    with pytest.raises(AirflowFailException, match="window_end='2026-06-02' has no UTC offset"):
        _op(conn, tmp_path / "c.parquet", incremental_field="SystemModstamp", window_end="2026-06-02").execute(interval)
    with pytest.raises(AirflowFailException, match="window_start is set but incremental_field is not"):
        _op(conn, tmp_path / "c.parquet", window_start="2000-01-01T00:00:00Z").execute(interval)


def test_incremental_without_interval_names_the_setting(conn: str, tmp_path: Path) -> None:
    op = _op(conn, tmp_path / "x.parquet", incremental_field="SystemModstamp")
    context = make_context()
    context["data_interval_start"] = None
    with pytest.raises(AirflowFailException, match=r"incremental_field=.SystemModstamp.*initial_window_start"):
        op.execute(context)


def _zero_length(day: datetime, previous: datetime | None = None) -> dict[str, Any]:
    """The context Airflow 3's default timetable gives a '@daily' run: start == end == the logical date."""
    context = make_context(start=day, end=day)
    context["logical_date"] = day
    context["prev_data_interval_end_success"] = previous
    return context


def test_zero_length_interval_continues_from_the_previous_successful_run(
    conn: str, fresh_org: Admin, tmp_path: Path
) -> None:
    ids = fresh_org.load(
        "Account",
        [
            {"Name": f"Zero {n}", "SystemModstamp": stamp}
            for n, stamp in enumerate(
                ["2020-03-01T10:00:00.000Z", "2026-06-01T10:00:00.000Z", "2026-06-03T00:00:00.000Z"]
            )
        ],
    )
    soql = "SELECT Id FROM Account WHERE Name LIKE 'Zero%'"
    day = datetime(2026, 6, 3, tzinfo=UTC)

    def run(name: str, context: dict[str, Any], **kw: Any) -> list[str]:
        summary = _op(conn, tmp_path / name, soql=soql, incremental_field="SystemModstamp", **kw).execute(context)
        assert summary["window"]["end"] == day.isoformat()
        return sorted(pq.read_table(tmp_path / name).column("Id").to_pylist())

    # The first run: no earlier success, so the history from initial_window_start up to the logical date.
    assert run("first.parquet", _zero_length(day), initial_window_start="2000-01-01T00:00:00Z") == sorted(ids[:2])
    # A later run (its previous success ended on June 1st) reads from there, initial_window_start unused.
    later = _zero_length(day, previous=datetime(2026, 6, 1, tzinfo=UTC))
    assert run("next.parquet", later, initial_window_start="2000-01-01T00:00:00Z") == [ids[1]]
    assert run("same.parquet", later) == [ids[1]]
    # A data interval that is not empty (CronDataIntervalTimetable) is used as it is.
    interval = make_context(start=datetime(2026, 6, 2, tzinfo=UTC), end=day)
    interval["prev_data_interval_end_success"] = datetime(2026, 6, 2, tzinfo=UTC)
    assert run("interval.parquet", interval, initial_window_start="2000-01-01T00:00:00Z") == []
    # A previous success at (or after) this logical date leaves nothing to load: said, not a silent empty file.
    with pytest.raises(AirflowFailException, match=r"the window is empty.*previous successful run"):
        run("empty.parquet", _zero_length(day, previous=day))


def test_a_run_without_logical_date_ends_at_run_after(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    """A manual or asset-triggered run may have no logical date and no data interval: the window ends when the
    run was due (run_after) and needs window_start or initial_window_start."""

    class DagRun:
        run_after = datetime(2026, 6, 3, 12, tzinfo=UTC)
        logical_date = None

    context = {"ti": make_context()["ti"], "dag_run": DagRun(), "task_state_store": None}
    op = _op(conn, tmp_path / "m.parquet", incremental_field="SystemModstamp", initial_window_start="2026-06-03T00:00Z")
    summary = op.execute(context)
    assert summary["window"] == {
        "start": "2026-06-03T00:00:00+00:00",
        "end": "2026-06-03T12:00:00+00:00",
        "source": "initial_window_start (first run)",
    }
    with pytest.raises(AirflowFailException, match="no earlier successful run"):
        _op(conn, tmp_path / "n.parquet", incremental_field="SystemModstamp").execute(context)


def test_a_split_window_keeps_the_window_override(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    """A history load (window_start before the interval) that times out is split on the window it queried, not
    on the data interval: every record of the history arrives."""
    total = len(fresh_org.records("Account", include_deleted=False))
    fresh_org.set("bulk", query_timeout_rows=total // 3)
    late = datetime(2099, 1, 1, tzinfo=UTC)
    op = _op(
        conn,
        tmp_path / "history.parquet",
        incremental_field="CreatedDate",
        window_start="2000-01-01T00:00:00Z",
        max_split_depth=10,
    )
    summary = op.execute(make_context(start=late, end=late + timedelta(days=1)))
    assert summary["splits"] >= 1
    ids = pq.read_table(tmp_path / "history.parquet").column("Id").to_pylist()
    assert len(ids) == len(set(ids)) == total


def test_include_deleted_reads_deleted_rows(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    summary = _op(
        conn, tmp_path / "all.parquet", soql="SELECT Id, IsDeleted FROM Account", include_deleted=True
    ).execute(make_context())
    live = len(fresh_org.records("Account", include_deleted=False))
    everything = len(fresh_org.records("Account", include_deleted=True))
    assert summary["records"] == everything
    assert pq.read_table(tmp_path / "all.parquet").column("IsDeleted").to_pylist().count(True) == everything - live


def test_delete_job_on_success_and_link(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    context = make_context()
    summary = _op(conn, tmp_path / "x.jsonl", format="jsonl", delete_job_on_success=True).execute(context)
    assert context["ti"].xcom["sfint_job_id"] == summary["job_id"]
    assert context["ti"].xcom["sfint_job_url"].endswith(f"AsyncApiJobStatus/page?address=%2F{summary['job_id']}")
    assert fresh_org.counters()["bulk_jobs"] == 0
    first = json.loads(io.StringIO((tmp_path / "x.jsonl").read_text()).readline())
    assert list(first) == COLUMNS


def test_directory_is_explicit_for_an_object_storage_path(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    """``str(ObjectStoragePath(".../dir/"))`` loses the trailing slash; ``directory=True`` says what is meant."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    target = ObjectStoragePath(f"file://{tmp_path}/lake/accounts/")
    summary = SalesforceBulkQueryOperator(
        task_id="q", soql="SELECT Id FROM Account", output=target, directory=True, sfint_conn_id=conn
    ).execute(make_context())
    manifest = json.loads((tmp_path / "lake" / "accounts" / "_SUCCESS").read_text())
    assert [Path(f).name for f in summary["files"]] == [f["name"] for f in manifest["files"]]
    assert manifest["rows"] == len(fresh_org.records("Account", include_deleted=False))
    with pytest.raises(ValueError, match="cannot go with directory=False"):
        SalesforceBulkQueryOperator(
            task_id="q2", soql="SELECT Id FROM Account", output=target, directory=False, part_size=5
        )
