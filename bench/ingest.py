"""Bulk ingest benchmark (issue 6): a 1,000,000-row x 25-column upsert from Parquet, side by side, in one run.

Run with ``make bench-ingest``; results go to ``bench/results/ingest.json``. Not part of the tests.

Each tool runs in its own process against one emulator (HTTPS, its own process), on an org reset to
empty before each run, so every tool does the same work (all rows created):

- ``sfint``: SalesforceBulkIngestOperator.execute from the Parquet file (preflight, serialise, split,
  4 jobs in flight, results).
- ``simple-salesforce``: ``bulk2.Account.upsert(csv_file=...)`` from a CSV file of the same rows (the
  CSV is written before the clock starts).
- ``floor``: pyarrow reads the Parquet file and ``write_csv`` writes it, then raw PUTs of those bytes to
  the same number of jobs as sfint used, four at a time, and UploadComplete.

``client_s`` runs from the first byte read to the last UploadComplete; ``wall_s`` until every job is
complete and its results are collected.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import EmulatorProcess, machine, rss_mb, run_child, write_result
from common import token as client_token

COLUMNS = [
    "External_Id__c", "Name", "Type", "BillingStreet", "BillingCity", "BillingState", "BillingPostalCode",
    "BillingCountry", "ShippingStreet", "ShippingCity", "ShippingState", "ShippingPostalCode", "ShippingCountry",
    "Phone", "Fax", "AccountNumber", "Website", "Industry", "AnnualRevenue", "NumberOfEmployees", "TickerSymbol",
    "Description", "Rating", "Site", "Is_Strategic__c",
]  # fmt: skip
CLIENT = {"client_id": "sfint-emulator", "client_secret": "sfint-emulator-secret"}


def make_input(rows: int, folder: Path) -> Path:
    """``rows`` Accounts x 25 columns as Parquet (and the same rows as CSV for simple-salesforce)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    i = np.arange(rows)
    words = np.array(["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne"])
    cities = np.array(["Paris", "Berlin", "Austin", "Osaka", "Lagos", "Lima", "Oslo", "Pune"])

    def text(prefix: str) -> pa.Array:
        return pa.array(np.char.add(prefix, words[rng.integers(0, len(words), rows)]))

    data = {
        "External_Id__c": pa.array(np.char.add("BENCH-", i.astype(str))),
        "Name": pa.array(np.char.add(words[i % len(words)], i.astype(str))),
        "Type": pa.array(np.where(i % 2 == 0, "Customer - Direct", "Prospect")),
        "BillingStreet": pa.array(np.char.add(i.astype(str), " Main St\nSuite 5")),
        "BillingCity": pa.array(cities[i % len(cities)]),
        "BillingState": text("State "),
        "BillingPostalCode": pa.array((10000 + i % 89999).astype(str)),
        "BillingCountry": text("Country "),
        "ShippingStreet": pa.array(np.char.add(i.astype(str), " Dock Rd")),
        "ShippingCity": pa.array(cities[(i + 3) % len(cities)]),
        "ShippingState": text("State "),
        "ShippingPostalCode": pa.array((20000 + i % 79999).astype(str)),
        "ShippingCountry": text("Country "),
        "Phone": pa.array(np.char.add("+1 555 ", (i % 10000).astype(str))),
        "Fax": pa.array(np.char.add("+1 556 ", (i % 10000).astype(str))),
        "AccountNumber": pa.array(np.char.add("AN", i.astype(str))),
        "Website": pa.array(np.char.add("https://example.com/", i.astype(str))),
        "Industry": pa.array(np.where(i % 3 == 0, "Energy", "Banking")),
        "AnnualRevenue": pa.array(rng.integers(0, 10**9, rows).astype("float64")),
        "NumberOfEmployees": pa.array(rng.integers(1, 100_000, rows)),
        "TickerSymbol": pa.array(np.char.add("T", (i % 1000).astype(str))),
        "Description": pa.array(np.char.add('Customer since 2019, "gold" tier, ', words[i % len(words)])),
        "Rating": pa.array(np.where(i % 2 == 0, "Hot", "Warm")),
        "Site": text("Site "),
        "Is_Strategic__c": pa.array(i % 5 == 0),
    }
    table = pa.table(data)
    path = folder / "accounts.parquet"
    pq.write_table(table, path)
    pacsv.write_csv(table, folder / "accounts.csv", write_options=pacsv.WriteOptions(quoting_style="all_valid"))
    return path


# --- tools (each in a child process) -----------------------------------------------------------------------


def run_sfint(url: str, cert: str, source: Path, out: dict[str, Any], poll_interval: float | None = 0.5) -> None:
    home = tempfile.mkdtemp(prefix="sfint-bench-airflow-")
    extra = {"auth_type": "client_credentials", **CLIENT, "verify_tls": cert}
    os.environ.update(
        {
            "AIRFLOW_HOME": home,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",  # as deployments run: no example plugins loaded per task
            "AIRFLOW_CONN_SFINT_BENCH": json.dumps({"conn_type": "sfint", "host": url, "extra": extra}),
        }
    )
    from airflow_provider_sfint.operators.bulk_ingest import SalesforceBulkIngestOperator

    op = SalesforceBulkIngestOperator(
        task_id="bench",
        object="Account",
        operation="upsert",
        external_id_field="External_Id__c",
        source=str(source),
        sfint_conn_id="sfint_bench",
        **({} if poll_interval is None else {"poll_interval": poll_interval}),
    )
    started = time.perf_counter()
    summary = op.execute({})
    out.update(
        wall_s=time.perf_counter() - started,
        client_s=summary["upload_seconds"],
        records=summary["succeeded"],
        jobs=len(summary["jobs"]),
        api_calls=summary["api_calls"],
    )


def run_simple_salesforce(url: str, cert: str, source: Path, out: dict[str, Any]) -> None:
    from simple_salesforce import Salesforce
    from simple_salesforce.bulk2 import _Bulk2Client

    os.environ["REQUESTS_CA_BUNDLE"] = cert
    token = client_token(url, cert)
    closes: list[float] = []
    original = _Bulk2Client.close_job

    def timed_close(self: Any, job_id: str) -> Any:  # measurement only: when the last upload was closed
        result = original(self, job_id)
        closes.append(time.perf_counter())
        return result

    _Bulk2Client.close_job = timed_close  # type: ignore[method-assign]
    started = time.perf_counter()
    sf = Salesforce(instance_url=token["instance_url"], session_id=token["access_token"], version="62.0")
    # Its default chunking made a 106 MB chunk for this file and then refused it ("exceeds the max file
    # size accepted by Bulk V2 (100 MB)"); 250,000 rows a chunk stays under (it uploads one job at a time).
    results = sf.bulk2.Account.upsert(
        str(source.with_suffix(".csv")), external_id_field="External_Id__c", batch_size=250_000
    )
    out.update(
        wall_s=time.perf_counter() - started,
        client_s=max(closes) - started,
        records=sum(int(r["numberRecordsProcessed"]) - int(r["numberRecordsFailed"]) for r in results),
        jobs=len(results),
    )


def run_floor(url: str, cert: str, source: Path, out: dict[str, Any], jobs: int) -> None:
    """pyarrow write_csv of the Parquet rows, then raw PUTs of those bytes to ``jobs`` jobs, 4 at a time."""
    import httpx
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    token = client_token(url, cert)["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    base = "/services/data/v62.0/jobs/ingest"
    started = time.perf_counter()
    table = pq.read_table(source)
    step = -(-table.num_rows // jobs)
    bodies = []
    for start in range(0, table.num_rows, step):
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table.slice(start, step), sink)
        bodies.append(sink.getvalue())
    del table
    with httpx.Client(base_url=url, verify=cert, headers=headers, timeout=600) as http:

        def load(body: Any) -> str:
            body_json = {"object": "Account", "operation": "upsert", "externalIdFieldName": "External_Id__c"}
            job = http.post(base, json=body_json).json()["id"]
            http.put(f"{base}/{job}/batches", content=body.to_pybytes(), headers={"Content-Type": "text/csv"})
            http.patch(f"{base}/{job}", json={"state": "UploadComplete"})
            return str(job)

        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(load, bodies))
        client = time.perf_counter() - started
        processed = 0
        for job in ids:
            while (info := http.get(f"{base}/{job}").json())["state"] not in ("JobComplete", "Failed", "Aborted"):
                time.sleep(0.5)
            processed += int(info["numberRecordsProcessed"]) - int(info["numberRecordsFailed"])
            http.get(f"{base}/{job}/failedResults/")
    out.update(wall_s=time.perf_counter() - started, client_s=client, records=processed, jobs=len(ids))


def child(tool: str, url: str, cert: str, source: str, jobs: int) -> None:
    out: dict[str, Any] = {}
    if tool == "sfint":
        run_sfint(url, cert, Path(source), out)
    elif tool == "simple-salesforce":
        run_simple_salesforce(url, cert, Path(source), out)
    else:
        run_floor(url, cert, Path(source), out, jobs)
    out["peak_rss_mb"] = rss_mb()
    print("RESULT " + json.dumps(out), flush=True)


# --- the parent --------------------------------------------------------------------------------------------


def measure(server: EmulatorProcess, tool: str, source: Path, rows: int, jobs: int) -> dict[str, Any]:
    server.admin("POST", "reset", json={"seed": "empty"})
    server.admin("POST", "counters/reset")
    result = run_child(
        [
            *(sys.executable, __file__, "--child", tool, "--url", server.url, "--cert", str(server.verify)),
            *("--source", str(source), "--jobs", str(jobs)),
        ]
    )
    if "error" in result:
        return {"tool": tool, "rows_in": rows, "error": result["error"]}
    counters = server.admin("GET", "counters")
    row = {
        "tool": tool,
        "workload": f"upsert {rows:,} Accounts x {len(COLUMNS)} columns from Parquet",
        "wall_s": round(result["wall_s"], 2),
        "client_s": round(result["client_s"], 2),
        "peak_rss_mb": result["peak_rss_mb"],
        "api_calls": result.get("api_calls", counters["requests"].get("api calls", 0)),
        "records": result["records"],
        "jobs": result["jobs"],
    }
    print(json.dumps(row), flush=True)
    return row


def compute_checks(rows: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """The issue's targets, from the rows of one workload size ``n`` (and any larger sfint run)."""
    by = {r["tool"]: r for r in rows if "error" not in r and r["records"] == n}
    checks: dict[str, Any] = {}
    ours = by.get("sfint")
    if ours and "floor" in by:
        checks["ratio_to_floor"] = {"value": round(ours["client_s"] / by["floor"]["client_s"], 2), "target": "<= 1.3"}
    if ours and "simple-salesforce" in by:
        value = round(by["simple-salesforce"]["client_s"] / ours["client_s"], 2)
        checks["speedup_vs_simple_salesforce"] = {"value": value, "target": ">= 3"}
    if ours:
        checks["peak_rss_mb"] = {"value": ours["peak_rss_mb"], "target": "<= 400"}
        larger = [r for r in rows if r["tool"] == "sfint" and "error" not in r and r["records"] > n]
        if larger:
            growth = max(r["peak_rss_mb"] for r in larger) / ours["peak_rss_mb"] - 1
            checks["rss_growth_to_large"] = {"value": round(growth, 3), "target": "<= 0.20"}
    return checks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--large-rows", type=int, default=5_000_000, help="sfint's memory at this size (0: skip)")
    parser.add_argument("--tools", default="sfint,simple-salesforce,floor")
    parser.add_argument("--out", default="bench/results/ingest.json")
    parser.add_argument("--merge", action="store_true", help="keep the other tools' rows from --out")
    parser.add_argument("--child")
    parser.add_argument("--url")
    parser.add_argument("--cert")
    parser.add_argument("--source")
    parser.add_argument("--jobs", type=int, default=4)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.cert, args.source, args.jobs)
        return
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="sfint-bench-ingest-") as folder,
        EmulatorProcess(tls=True, cert_dir=Path(folder)) as server,
    ):
        source = make_input(args.rows, Path(folder))
        jobs = 4
        for tool in args.tools.split(","):
            row = measure(server, tool, source, args.rows, jobs)
            rows.append(row)
            if tool == "sfint" and "jobs" in row:
                jobs = row["jobs"]
        if args.large_rows:
            large = Path(folder) / "large"
            large.mkdir()
            rows.append(measure(server, "sfint", make_input(args.large_rows, large), args.large_rows, jobs))
    if args.merge and Path(args.out).exists():
        measured = {(r["tool"], r.get("workload")) for r in rows}
        earlier = json.loads(Path(args.out).read_text())["rows"]
        rows = [r for r in earlier if (r["tool"], r.get("workload")) not in measured] + rows
    checks = compute_checks(rows, args.rows)
    result = {
        "workload": f"upsert {args.rows:,} x {len(COLUMNS)}",
        "machine": machine(),
        "rows": rows,
        "checks": checks,
    }
    write_result(args.out, result, checks)


if __name__ == "__main__":
    main()
