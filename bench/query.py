"""Bulk query benchmark (issue 5): N Accounts x 30 columns to typed Parquet, side by side, in one run.

Run with ``make bench-query``; results go to ``bench/results/query.json``. Not part of the tests.

Every tool runs in its own process (its peak RSS is its own) against one emulator served over HTTPS
(simple-salesforce and the official provider only speak https), in its own process too:

- ``sfint``: SalesforceBulkQueryOperator.execute (create, wait, resultPages x4, typed Parquet, commit).
- ``simple-salesforce``: ``bulk2`` create/wait/``download_job_data`` page by page to CSV files (its
  ``download()`` loop), then the best conversion we know to the same typed Parquet (pyarrow's typed CSV
  reader, not pandas).
- ``official-provider``: apache-airflow-providers-salesforce ``SalesforceHook.make_query`` (REST
  ``query_all``, in memory) and ``write_object_to_file(fmt="csv")``, then the same typed conversion.
- ``floor``: raw streaming GETs of the same result pages plus pyarrow's typed parse, nothing else.
- ``sfint-locator-walk`` / ``sfint-parallel``: with the emulator's per-connection bandwidth cap on,
  one page at a time by locator (API 57) against four pages at once through resultPages.

``client_s`` runs from JobComplete to the committed output (for the REST path, which has no job, the
whole run); ``wall_s`` includes creating and waiting for the job.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import EmulatorProcess, machine, rss_mb, run_child, write_result
from common import token as client_token

FIELDS = [
    "Id", "IsDeleted", "Name", "Type", "ParentId", "BillingStreet", "BillingCity", "BillingState",
    "BillingPostalCode", "BillingCountry", "ShippingCity", "Phone", "Fax", "AccountNumber", "Website",
    "Industry", "AnnualRevenue", "NumberOfEmployees", "Ownership", "TickerSymbol", "Description", "Rating",
    "Site", "AccountSource", "OwnerId", "CreatedDate", "LastModifiedDate", "SystemModstamp", "External_Id__c",
    "Regions__c",
]  # fmt: skip
SOQL = f"SELECT {', '.join(FIELDS)} FROM Account"
PAGE = 50_000  # the peers' page size (simple-salesforce's default); sfint uses its own default


# --- the tools (each runs in a child process) --------------------------------------------------------------


def _config(url: str, cert: str, version: str = "62.0") -> Any:
    from airflow_provider_sfint.client import ClientConfig
    from airflow_provider_sfint.emulator import CLIENT_ID, CLIENT_SECRET

    return ClientConfig(
        auth_type="client_credentials",
        login_url=url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        verify=cert,
        api_version=version,
        read_timeout=600,
    )


def _schema(url: str, cert: str) -> Any:
    from airflow_provider_sfint.client import SalesforceClient
    from airflow_provider_sfint.client.arrowio import ColumnResolver

    with SalesforceClient(_config(url, cert)) as client:
        return ColumnResolver(client.describe).schema("Account", FIELDS)


def run_sfint(
    url: str, cert: str, out: Path, parallel: int = 4, version: str = "62.0", poll_interval: float | None = 0.5
) -> dict[str, Any]:
    home = tempfile.mkdtemp(prefix="sfint-bench-airflow-")
    os.environ.update(
        {
            "AIRFLOW_HOME": home,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",  # as deployments run: no example plugins loaded per task
            "AIRFLOW_CONN_SFINT_BENCH": json.dumps(
                {
                    "conn_type": "sfint",
                    "host": url,
                    "extra": {
                        "auth_type": "client_credentials",
                        "client_id": "sfint-emulator",
                        "client_secret": "sfint-emulator-secret",
                        "verify_tls": cert,
                        "api_version": version,
                    },
                }
            ),
        }
    )
    from airflow_provider_sfint.operators.bulk_query import SalesforceBulkQueryOperator

    op = SalesforceBulkQueryOperator(
        task_id="bench",
        soql=SOQL,
        output=str(out / "sfint.parquet"),
        parallel_pages=parallel,
        sfint_conn_id="sfint_bench",
        **({} if poll_interval is None else {"poll_interval": poll_interval}),
    )
    started = time.perf_counter()
    summary = op.execute({"ti": None, "task_state_store": None})
    return {
        "wall_s": time.perf_counter() - started,
        "client_s": summary["download_seconds"],
        "records": summary["records"],
        "output": str(out / "sfint.parquet"),
    }


def _typed_parquet(csv_files: list[str], schema: Any, target: Path, lenient: bool = False) -> int:
    """The peers' conversion to the same typed Parquet, file by file: pyarrow's typed CSV parse, the
    fastest we know. ``lenient`` reads text first and coerces what pandas wrote (``True``, ``+0000``,
    ``5.0`` for integers) for the official provider's CSV."""
    import pyarrow.parquet as pq

    from airflow_provider_sfint.client.arrowio import CsvParser

    parser = CsvParser(schema)
    rows = 0
    with pq.ParquetWriter(target, schema) as writer:
        for name in csv_files:
            data = Path(name).read_bytes()
            table = _coerce(data, schema) if lenient else parser.parse(data)
            rows += table.num_rows
            writer.write_table(table)
    return rows


def _pandas_parquet(csv_files: list[str], schema: Any, target: Path) -> int:
    """What a simple-salesforce user typically writes: pandas reads each file (text kept as text, only the
    empty field as null), Arrow takes the frame and casts it to the typed schema."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 0
    with pq.ParquetWriter(target, schema) as writer:
        for name in csv_files:
            frame = pd.read_csv(name, dtype=str, keep_default_na=False, na_values=[""])
            text = pa.Table.from_pandas(frame, preserve_index=False)
            table = _cast_text(text, schema)
            rows += table.num_rows
            writer.write_table(table)
    return rows


def _coerce(data: bytes, schema: Any) -> Any:
    """pandas' CSV from the official hook (lower-cased headers, ``True``, ``+0000``) as the typed schema."""
    import csv
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv

    header = next(csv.reader(io.StringIO(data[: data.find(b"\n")].decode("utf-8"))))
    text = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=header, skip_rows=1),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )
    by_lower = {name.lower(): name for name in header}
    text = pa.Table.from_arrays([text.column(by_lower[f.name.lower()]) for f in schema], names=schema.names)
    return _cast_text(text, schema)


def _cast_text(text: Any, schema: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = []
    for f in schema:
        col = text.column(f.name)
        if pa.types.is_boolean(f.type):
            col = pc.equal(pc.utf8_lower(col), "true")
        elif pa.types.is_integer(f.type) or pa.types.is_decimal(f.type):
            col = pc.cast(pc.cast(col, pa.float64()), f.type)
        elif pa.types.is_timestamp(f.type):
            col = pc.cast(pc.replace_substring_regex(col, r"\+0000$", "Z"), f.type)
        elif f.type != pa.string():
            col = pc.cast(col, f.type)
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=schema)


def run_simple_salesforce(url: str, cert: str, out: Path, pandas: bool = False) -> dict[str, Any]:
    import requests
    from simple_salesforce import Salesforce
    from simple_salesforce.bulk2 import Operation

    os.environ["REQUESTS_CA_BUNDLE"] = cert  # simple-salesforce's bulk2 builds its own requests calls
    started = time.perf_counter()  # the typed conversion needs describe: its call is part of the run
    schema = _schema(url, cert)
    token = client_token(url, cert)
    session = requests.Session()
    session.verify = cert
    sf = Salesforce(
        instance_url=token["instance_url"], session_id=token["access_token"], version="62.0", session=session
    )
    client = sf.bulk2.Account._client
    job = client.create_job(Operation.query, SOQL)
    client.wait_for_job(job["id"], True, 1)
    complete = time.perf_counter()
    folder = out / "ssf"
    folder.mkdir()
    files, locator = [], "INIT"
    while locator:  # the loop of SFBulk2Type.download()
        result = client.download_job_data(str(folder), job["id"], "" if locator == "INIT" else locator, PAGE)
        locator = result["locator"]
        files.append(result["file"])
    rows = (
        _pandas_parquet(files, schema, out / "ssf.parquet")
        if pandas
        else _typed_parquet(files, schema, out / "ssf.parquet")
    )
    end = time.perf_counter()
    return {"wall_s": end - started, "client_s": end - complete, "records": rows, "output": str(out / "ssf.parquet")}


def run_official_provider(url: str, cert: str, out: Path) -> dict[str, Any]:
    started = time.perf_counter()  # the typed conversion needs describe: its call is part of the run
    schema = _schema(url, cert)
    token = client_token(url, cert)
    home = tempfile.mkdtemp(prefix="sfint-bench-airflow-")
    os.environ.update(
        {
            "AIRFLOW_HOME": home,
            "REQUESTS_CA_BUNDLE": cert,
            "AIRFLOW_CONN_SALESFORCE_BENCH": json.dumps(
                {"conn_type": "salesforce", "extra": {"instance_url": token["instance_url"], "version": "62.0"}}
            ),
        }
    )
    from airflow.providers.salesforce.hooks.salesforce import SalesforceHook

    hook = SalesforceHook(salesforce_conn_id="salesforce_bench", session_id=token["access_token"])
    result = hook.make_query(SOQL)
    hook.write_object_to_file(result["records"], str(out / "official.csv"), fmt="csv")
    del result
    rows = _typed_parquet([str(out / "official.csv")], schema, out / "official.parquet", lenient=True)
    end = time.perf_counter()
    return {
        "wall_s": end - started,
        "client_s": end - started,
        "records": rows,
        "output": str(out / "official.parquet"),
    }


def run_floor(url: str, cert: str, out: Path) -> dict[str, Any]:
    """Raw streaming GETs of the result pages, one after another, and pyarrow's typed parse."""
    import httpx

    from airflow_provider_sfint.client.arrowio import CsvParser

    schema = _schema(url, cert)
    parser = CsvParser(schema)
    token = client_token(url, cert)["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    with httpx.Client(base_url=url, verify=cert, headers=headers, timeout=600) as http:
        job = http.post("/services/data/v62.0/jobs/query", json={"operation": "query", "query": SOQL}).json()["id"]
        while http.get(f"/services/data/v62.0/jobs/query/{job}").json()["state"] != "JobComplete":
            time.sleep(0.5)
        complete = time.perf_counter()
        rows, locator = 0, None
        while locator != "null":
            params = {"maxRecords": PAGE, **({"locator": locator} if locator else {})}
            with http.stream("GET", f"/services/data/v62.0/jobs/query/{job}/results", params=params) as response:
                body = b"".join(response.iter_bytes(1 << 20))
                locator = response.headers["Sforce-Locator"]
            rows += parser.parse(body).num_rows
    end = time.perf_counter()
    return {"wall_s": end - started, "client_s": end - complete, "records": rows, "output": None}


PEERS = ("simple-salesforce", "simple-salesforce-pandas", "official-provider")
TOOLS = {
    "sfint": lambda url, cert, out: run_sfint(url, cert, out),
    "simple-salesforce": run_simple_salesforce,
    "simple-salesforce-pandas": lambda url, cert, out: run_simple_salesforce(url, cert, out, pandas=True),
    "official-provider": run_official_provider,
    "floor": run_floor,
    "sfint-locator-walk": lambda url, cert, out: run_sfint(url, cert, out, parallel=1, version="57.0"),
    "sfint-parallel": lambda url, cert, out: run_sfint(url, cert, out, parallel=4),
}


def child(tool: str, url: str, cert: str) -> None:
    with tempfile.TemporaryDirectory(prefix="sfint-bench-") as folder:
        result = TOOLS[tool](url, cert, Path(folder))
        if result.get("output"):
            import pyarrow.parquet as pq

            result["parquet_rows"] = pq.read_metadata(result["output"]).num_rows
        result["peak_rss_mb"] = rss_mb()
    print("RESULT " + json.dumps(result), flush=True)


# --- the parent --------------------------------------------------------------------------------------------


def measure(server: EmulatorProcess, tool: str, workload: str) -> dict[str, Any]:
    server.admin("POST", "counters/reset")
    result = run_child([sys.executable, __file__, "--child", tool, "--url", server.url, "--cert", str(server.verify)])
    if "error" in result:
        return {"tool": tool, "workload": workload, "error": result["error"]}
    counters = server.admin("GET", "counters")
    row = {
        "tool": tool,
        "workload": workload,
        "wall_s": round(result["wall_s"], 2),
        "client_s": round(result["client_s"], 2),
        "peak_rss_mb": result["peak_rss_mb"],
        "api_calls": counters["requests"].get("api calls", 0),
        "records": result["records"],
    }
    print(json.dumps(row), flush=True)
    return row


def seed(server: EmulatorProcess, rows: int) -> None:
    server.admin("POST", "reset", json={"seed": "empty"})
    started = time.perf_counter()
    server.admin("POST", "seed", json={"counts": {"Account": rows}, "seed": 1, "deleted_share": 0.0})
    print(f"seeded {rows:,} Accounts in {time.perf_counter() - started:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--large-rows", type=int, default=5_000_000, help="sfint's memory at this size (0: skip)")
    parser.add_argument("--cap-mb", type=float, default=10.0, help="per-connection bandwidth cap, MB/s")
    parser.add_argument("--cap-rows", type=int, default=500_000)
    parser.add_argument("--tools", default="sfint,simple-salesforce,simple-salesforce-pandas,official-provider,floor")
    parser.add_argument("--out", default="bench/results/query.json")
    parser.add_argument("--merge", action="store_true", help="keep the other rows already in --out")
    parser.add_argument("--child")
    parser.add_argument("--url")
    parser.add_argument("--cert")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.cert)
        return
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="sfint-bench-cert-") as certs,
        EmulatorProcess(tls=True, cert_dir=Path(certs)) as server,
    ):
        workload = f"{args.rows:,} Accounts x {len(FIELDS)} columns to typed Parquet"
        tools = [t for t in args.tools.split(",") if t]
        if tools:
            seed(server, args.rows)
        for tool in tools:
            rows.append(measure(server, tool, workload))
        if args.cap_mb:
            if args.cap_rows != args.rows:
                seed(server, args.cap_rows)
            server.admin("PUT", "timing", json={"download_bytes_per_s": int(args.cap_mb * 1e6)})
            capped = f"{args.cap_rows:,} Accounts, {args.cap_mb:g} MB/s per connection"
            for tool in ("sfint-locator-walk", "sfint-parallel"):
                rows.append(measure(server, tool, capped))
            server.admin("PUT", "timing", json={"download_bytes_per_s": None})
        if args.large_rows:
            seed(server, args.large_rows)
            rows.append(measure(server, "sfint", f"{args.large_rows:,} Accounts x {len(FIELDS)} columns"))
    if args.merge and Path(args.out).exists():
        measured = {(r["tool"], r.get("workload")) for r in rows}
        earlier = json.loads(Path(args.out).read_text())["rows"]
        rows = [r for r in earlier if (r["tool"], r.get("workload")) not in measured] + rows
    by = {(r["tool"], r["workload"]): r for r in rows if "error" not in r}
    main_workload = f"{args.rows:,} Accounts x {len(FIELDS)} columns to typed Parquet"
    ours = by.get(("sfint", main_workload))
    peers = [by[k] for k in by if k[1] == main_workload and k[0] in PEERS]
    floor = by.get(("floor", main_workload))
    checks: dict[str, Any] = {}
    if ours and peers:
        fastest = min(p["client_s"] for p in peers)
        checks["speedup_vs_fastest_peer"] = {"value": round(fastest / ours["client_s"], 2), "target": ">= 3"}
    if ours and floor:
        checks["ratio_to_floor"] = {"value": round(ours["client_s"] / floor["client_s"], 2), "target": "<= 1.5"}
    if ours:
        checks["peak_rss_mb"] = {"value": ours["peak_rss_mb"], "target": "<= 400"}
    large = [r for k, r in by.items() if k[0] == "sfint" and k[1] != main_workload]
    if ours and large:
        growth = large[0]["peak_rss_mb"] / ours["peak_rss_mb"] - 1
        checks["rss_growth_to_large"] = {"value": round(growth, 3), "target": "<= 0.20"}
    walk = next((r for r in rows if r["tool"] == "sfint-locator-walk" and "error" not in r), None)
    fast = next((r for r in rows if r["tool"] == "sfint-parallel" and "error" not in r), None)
    if walk and fast:
        checks["parallel_vs_locator_walk"] = {
            "value": round(walk["client_s"] / fast["client_s"], 2),
            "target": ">= 2.5",
        }
    result = {"workload": main_workload, "machine": machine(), "rows": rows, "checks": checks}
    write_result(args.out, result, checks)


if __name__ == "__main__":
    main()
