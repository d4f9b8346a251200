"""End to end under the emulator's realistic org profile (issue 19 item 4): what a user feels against a real org.

Run with ``make bench-realistic``; results go to ``bench/results/realistic.json``. Not part of the tests.

The emulator runs with ``--profile realistic`` (API latency, Bulk job start-up and processing rates, per-connection
bandwidth: see docs/emulator.md, "Org profiles") in its own process, over HTTPS; every tool runs in its own process
too (its peak RSS is its own). Workloads, one run, side by side:

- ``Q-large``: 1,000,000 Accounts x 30 fields to typed Parquet, submit to committed file: ``sfint`` (the query
  operator, ``api="auto"``), ``simple-salesforce`` (bulk2 create/wait/download page by page, then pyarrow's typed
  CSV parse, the best conversion we know), ``official-provider`` (REST ``query_all`` in memory, then the same).
- ``Q-small``: an incremental window of 500 changed Accounts x 30 fields: the same tools, and simple-salesforce's
  REST ``query_all``.
- ``I-large``: upsert of 1,000,000 Accounts x 25 columns from Parquet, to all jobs complete and results read:
  ``sfint`` and ``simple-salesforce`` (bulk2 ``upsert``), each on an emptied org.

``sfint`` runs as an Airflow operator (outside a task runner, with Airflow's default configuration but
``load_examples`` off, as deployments run), so its times include the Airflow plumbing a task pays (connection
lookup, object-storage path checks, lineage); the peers run as bare scripts.

``notice_delay_s`` is the median over a run's Bulk jobs of the time from the job's end to the first job-info request
that saw it ended, measured by the emulator (``GET /__emulator__/bulk/jobs``); ``job_s`` the median job duration.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest as ingest_bench
import query as query_bench
from common import EmulatorProcess, machine, rss_mb, run_child, write_result
from common import token as client_token

SMALL = 500


def _window_soql(start: str) -> str:
    return f"{query_bench.SOQL} WHERE SystemModstamp > {start}"


# --- the tools (each runs in a child process) --------------------------------------------------------------


def run_simple_salesforce_rest(url: str, cert: str, out: Path) -> dict[str, Any]:
    """simple-salesforce's REST ``query_all``, then the records to the same typed Parquet."""
    import csv

    import requests
    from simple_salesforce import Salesforce

    os.environ["REQUESTS_CA_BUNDLE"] = cert
    started = time.perf_counter()  # describe (for the typed conversion) is part of the run
    schema = query_bench._schema(url, cert)
    token = client_token(url, cert)
    session = requests.Session()
    session.verify = cert
    sf = Salesforce(
        instance_url=token["instance_url"], session_id=token["access_token"], version="62.0", session=session
    )
    records = sf.query_all(query_bench.SOQL)["records"]
    path = out / "ss-rest.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        writer.writerow(query_bench.FIELDS)
        for record in records:
            writer.writerow(["" if record.get(f) is None else record[f] for f in query_bench.FIELDS])
    rows = query_bench._typed_parquet([str(path)], schema, out / "ss-rest.parquet", lenient=True)
    end = time.perf_counter()
    return {"wall_s": end - started, "client_s": end - started, "records": rows, "output": str(out / "ss-rest.parquet")}


def child(tool: str, url: str, cert: str, soql: str, source: str) -> None:
    query_bench.SOQL = soql  # the runners read the module's query
    with tempfile.TemporaryDirectory(prefix="sfint-bench-") as folder:
        out = Path(folder)
        if tool == "sfint":
            result = query_bench.run_sfint(url, cert, out, poll_interval=None)  # the operator's defaults
        elif tool == "simple-salesforce":
            result = query_bench.run_simple_salesforce(url, cert, out)
        elif tool == "simple-salesforce-rest":
            result = run_simple_salesforce_rest(url, cert, out)
        elif tool == "official-provider":
            result = query_bench.run_official_provider(url, cert, out)
        elif tool == "sfint-ingest":
            result = {}
            ingest_bench.run_sfint(url, cert, Path(source), result, poll_interval=None)
        elif tool == "simple-salesforce-ingest":
            result = {}
            ingest_bench.run_simple_salesforce(url, cert, Path(source), result)
        else:
            raise SystemExit(f"unknown tool {tool}")
        if result.get("output"):
            import pyarrow.parquet as pq

            result["parquet_rows"] = pq.read_metadata(result["output"]).num_rows
        result["peak_rss_mb"] = rss_mb()
    print("RESULT " + json.dumps(result), flush=True)


# --- the parent --------------------------------------------------------------------------------------------


def measure(
    server: EmulatorProcess, workload: str, tool: str, soql: str = "", source: str = "", name: str | None = None
) -> dict[str, Any]:
    server.admin("POST", "counters/reset")
    before = {j["id"] for j in server.admin("GET", "bulk/jobs")}
    command = [sys.executable, __file__, "--child", tool, "--url", server.url, "--cert", str(server.verify)]
    result = run_child([*command, "--soql", soql, "--source", source])
    shown = name or tool.removesuffix("-ingest")
    if "error" in result:
        row = {"workload": workload, "tool": shown, "error": result["error"]}
        print(json.dumps(row), flush=True)
        return row
    counters = server.admin("GET", "counters")
    jobs = [j for j in server.admin("GET", "bulk/jobs") if j["id"] not in before]
    delays = [j["notice_delay_s"] for j in jobs if j["notice_delay_s"] is not None]
    durations = [j["ended"] - j["created"] for j in jobs if j["ended"]]
    row = {
        "workload": workload,
        "tool": shown,
        "wall_s": round(result["wall_s"], 2),
        "client_s": round(result["client_s"], 2),
        "api_calls": counters["requests"].get("api calls", 0),
        "peak_rss_mb": result["peak_rss_mb"],
        "records": result["records"],
        "notice_delay_s": round(statistics.median(delays), 2) if delays else None,
        "job_s": round(statistics.median(durations), 2) if durations else None,
        "jobs": len(jobs),
    }
    print(json.dumps(row), flush=True)
    return row


def change(server: EmulatorProcess, count: int) -> str:
    """Change ``count`` Accounts through sObject Collections (as users would); returns the window's start."""
    import httpx

    token = client_token(server.url, server.verify)["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, verify=server.verify, headers=headers, timeout=120) as http:
        start = http.get("/services/data/v62.0/query", params={"q": "SELECT SystemModstamp FROM Account "
                         "ORDER BY SystemModstamp DESC LIMIT 1"}).json()["records"][0]["SystemModstamp"]  # fmt: skip
        time.sleep(1.1)  # the changes get a later second than every record before them
        page = http.get("/services/data/v62.0/query", params={"q": f"SELECT Id FROM Account LIMIT {count}"}).json()
        ids = [r["Id"] for r in page["records"]]
        for i in range(0, len(ids), 200):
            records = [
                {"attributes": {"type": "Account"}, "Id": record_id, "Rating": "Hot"} for record_id in ids[i : i + 200]
            ]
            answer = http.patch("/services/data/v62.0/composite/sobjects", json={"allOrNone": True, "records": records})
            answer.raise_for_status()
    return f"{start[:19]}Z"  # stored datetimes have whole seconds: every change is after this second


def checks(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = {(r["workload"], r["tool"]): r for r in rows if "error" not in r}
    out: dict[str, Any] = {}

    def ratio(workload: str, peer: str, target: str, name: str) -> None:
        ours, theirs = by.get((workload, "sfint")), by.get((workload, peer))
        if ours and theirs:
            out[name] = {"value": round(theirs["wall_s"] / ours["wall_s"], 2), "target": target}

    ratio("Q-large", "simple-salesforce", ">= 2", "q_large_vs_simple_salesforce")
    ratio("Q-large", "official-provider", ">= 10", "q_large_vs_official_provider")
    ratio("Q-small", "simple-salesforce", ">= 5", "q_small_vs_simple_salesforce_bulk2")
    ratio("Q-small", "simple-salesforce-rest", ">= 1", "q_small_vs_simple_salesforce_rest")
    ratio("I-large", "simple-salesforce", ">= 1.5", "i_large_vs_simple_salesforce")
    small = by.get(("Q-small", "sfint"))
    if small:
        out["q_small_api_calls"] = {"value": small["api_calls"], "target": "<= 2"}
    for workload in ("Q-large", "I-large"):
        ours = by.get((workload, "sfint"))
        if ours and ours.get("notice_delay_s") is not None and ours.get("job_s"):
            bound = round(0.1 * ours["job_s"] + 1, 2)
            out[f"{workload.lower().replace('-', '_')}_notice_delay_s"] = {
                "value": ours["notice_delay_s"],
                "target": f"<= 10% of the job's {ours['job_s']:.0f} s + 1 s = {bound}",
                "met": ours["notice_delay_s"] <= bound,
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ingest-rows", type=int, default=1_000_000)
    parser.add_argument("--workloads", default="Q-large,Q-small,I-large")
    parser.add_argument("--out", default="bench/results/realistic.json")
    parser.add_argument("--merge", action="store_true", help="keep the other workloads' rows already in --out")
    parser.add_argument("--child")
    parser.add_argument("--url")
    parser.add_argument("--cert")
    parser.add_argument("--soql", default="")
    parser.add_argument("--source", default="")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.cert, args.soql, args.source)
        return
    workloads = args.workloads.split(",")
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="sfint-bench-realistic-") as folder,
        EmulatorProcess(tls=True, cert_dir=Path(folder), extra_args=["--profile", "realistic"]) as server,
    ):
        soql = query_bench.SOQL
        if "Q-large" in workloads or "Q-small" in workloads:
            query_bench.seed(server, args.rows)
        if "Q-large" in workloads:
            for tool in ("sfint", "simple-salesforce", "official-provider"):
                rows.append(measure(server, "Q-large", tool, soql))
        if "Q-small" in workloads:
            window = _window_soql(change(server, SMALL))
            for tool in ("sfint", "simple-salesforce", "simple-salesforce-rest", "official-provider"):
                rows.append(measure(server, "Q-small", tool, window))
        if "I-large" in workloads:
            source = ingest_bench.make_input(args.ingest_rows, Path(folder))
            for tool in ("sfint-ingest", "simple-salesforce-ingest"):
                server.admin("POST", "reset", json={"seed": "empty"})
                rows.append(measure(server, "I-large", tool, source=str(source)))
        profile = server.admin("GET", "profile")
    if args.merge and Path(args.out).exists():
        kept = [r for r in json.loads(Path(args.out).read_text())["rows"] if r["workload"] not in workloads]
        rows = [r for w in ("Q-large", "Q-small", "I-large") for r in [*kept, *rows] if r["workload"] == w]
    result = {
        "profile": profile,
        "machine": machine(),
        "rows": rows,
        "checks": checks(rows),
    }
    write_result(args.out, result, result["checks"])


if __name__ == "__main__":
    main()
