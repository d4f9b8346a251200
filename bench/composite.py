"""Composite upsert benchmark (issue 7): 10,000 upserts by external id, side by side, in one run.

Run with ``make bench-composite``; results go to ``bench/results/composite.json``. Not part of the tests.

- ``sfint``: SalesforceCompositeUpsertOperator on the Collections path (200 records a call, 4 at once).
- ``sfint-auto-bulk``: the same operator with its default ``bulk_threshold`` (2,000), so Bulk API 2.0.
- ``simple-salesforce``: one ``sf.Account.upsert("External_Id__c/<value>", record)`` call per record.
- ``floor``: ceil(N/200) raw Collections PATCH calls, 4 at once.

``api_calls`` are counted by the emulator; the org is reset to empty before each tool.
"""

from __future__ import annotations

import argparse
import json
import math
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


def records(n: int) -> list[dict[str, Any]]:
    return [
        {"External_Id__c": f"CB-{i:06d}", "Name": f"Composite {i}", "NumberOfEmployees": i % 5000, "Site": "HQ"}
        for i in range(n)
    ]


def run_sfint(url: str, cert: str, n: int, threshold: int) -> dict[str, Any]:
    home = tempfile.mkdtemp(prefix="sfint-bench-airflow-")
    extra = {
        "auth_type": "client_credentials",
        "client_id": "sfint-emulator",
        "client_secret": "sfint-emulator-secret",
        "verify_tls": cert,
    }
    os.environ.update(
        {
            "AIRFLOW_HOME": home,
            "AIRFLOW_CONN_SFINT_BENCH": json.dumps({"conn_type": "sfint", "host": url, "extra": extra}),
        }
    )
    from airflow_provider_sfint.operators.composite import SalesforceCompositeUpsertOperator

    rows = records(n)
    started = time.perf_counter()
    summary = SalesforceCompositeUpsertOperator(
        task_id="bench",
        object="Account",
        external_id_field="External_Id__c",
        records=rows,
        bulk_threshold=threshold,
        sfint_conn_id="sfint_bench",
    ).execute({})
    return {"wall_s": time.perf_counter() - started, "records": summary["succeeded"], "path": summary["path"]}


def run_simple_salesforce(url: str, cert: str, n: int) -> dict[str, Any]:
    import requests
    from simple_salesforce import Salesforce

    os.environ["REQUESTS_CA_BUNDLE"] = cert  # requests lets this variable override session.verify
    token = client_token(url, cert)
    session = requests.Session()
    session.verify = cert
    sf = Salesforce(
        instance_url=token["instance_url"], session_id=token["access_token"], version="62.0", session=session
    )
    started = time.perf_counter()
    done = 0
    for row in records(n):
        body = {k: v for k, v in row.items() if k != "External_Id__c"}
        status = sf.Account.upsert(f"External_Id__c/{row['External_Id__c']}", body)
        done += status in (200, 201, 204)
    return {"wall_s": time.perf_counter() - started, "records": done, "path": "rest-per-record"}


def run_floor(url: str, cert: str, n: int) -> dict[str, Any]:
    import httpx

    token = client_token(url, cert)["access_token"]
    rows = records(n)
    started = time.perf_counter()
    with httpx.Client(base_url=url, verify=cert, headers={"Authorization": f"Bearer {token}"}, timeout=300) as http:

        def call(start: int) -> int:
            chunk = [{"attributes": {"type": "Account"}, **r} for r in rows[start : start + 200]]
            response = http.patch(
                "/services/data/v62.0/composite/sobjects/Account/External_Id__c",
                json={"allOrNone": False, "records": chunk},
            )
            return sum(1 for r in response.json() if r["success"])

        with ThreadPoolExecutor(4) as pool:
            done = sum(pool.map(call, range(0, n, 200)))
    return {"wall_s": time.perf_counter() - started, "records": done, "path": "collections"}


def child(tool: str, url: str, cert: str, n: int) -> None:
    if tool == "sfint":
        result = run_sfint(url, cert, n, threshold=n + 1)
    elif tool == "sfint-auto-bulk":
        result = run_sfint(url, cert, n, threshold=2_000)
    elif tool == "simple-salesforce":
        result = run_simple_salesforce(url, cert, n)
    else:
        result = run_floor(url, cert, n)
    result["peak_rss_mb"] = rss_mb()
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--tools", default="sfint,sfint-auto-bulk,simple-salesforce,floor")
    parser.add_argument("--out", default="bench/results/composite.json")
    parser.add_argument("--child")
    parser.add_argument("--url")
    parser.add_argument("--cert")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.cert, args.records)
        return
    rows: list[dict[str, Any]] = []
    workload = f"upsert {args.records:,} Accounts by external id"
    with (
        tempfile.TemporaryDirectory(prefix="sfint-bench-composite-") as folder,
        EmulatorProcess(tls=True, cert_dir=Path(folder)) as server,
    ):
        for tool in args.tools.split(","):
            server.admin("POST", "reset", json={"seed": "empty"})
            server.admin("POST", "counters/reset")
            command = [sys.executable, __file__, "--child", tool, "--url", server.url, "--cert", str(server.verify)]
            result = run_child([*command, "--records", str(args.records)])
            if "error" in result:
                rows.append({"tool": tool, "workload": workload, "error": result["error"]})
                continue
            row = {
                "tool": tool,
                "workload": workload,
                "wall_s": round(result["wall_s"], 2),
                "client_s": round(result["wall_s"], 2),
                "peak_rss_mb": result["peak_rss_mb"],
                "api_calls": server.admin("GET", "counters")["requests"].get("api calls", 0),
                "records": result["records"],
                "path": result["path"],
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    by = {r["tool"]: r for r in rows if "error" not in r}
    checks: dict[str, Any] = {}
    if "sfint" in by:
        checks["collections_api_calls"] = {
            "value": by["sfint"]["api_calls"],
            "target": f"== {math.ceil(args.records / 200)}",
        }
    if "sfint-auto-bulk" in by:
        checks["auto_bulk_api_calls"] = {"value": by["sfint-auto-bulk"]["api_calls"], "target": "<= 10"}
    if "sfint" in by and "simple-salesforce" in by:
        value = round(by["simple-salesforce"]["wall_s"] / by["sfint"]["wall_s"], 1)
        checks["speedup_vs_per_record"] = {"value": value, "target": ">= 10"}
    result = {"workload": workload, "machine": machine(), "rows": rows, "checks": checks}
    write_result(args.out, result, checks)


if __name__ == "__main__":
    main()
