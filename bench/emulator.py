"""Emulator benchmark (issue 2): seeding speed and REST query page latency.

Run with ``make bench-emulator``; results go to ``bench/results/emulator.json``. Not part of the tests.

- seed: 1,000,000 Accounts through the admin fast path (target <= 30 s on the 2-core reference box).
- query pages: ``SELECT`` of 30 Account fields at ``batchSize=2000``, following ``nextRecordsUrl``;
  the per-page latency p50 (target <= 100 ms). The first page, which materialises the cursor over all
  matching rows, is reported on its own.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from airflow_provider_sfint.emulator import CLIENT_ID, CLIENT_SECRET

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import free_port, machine, rss_mb, wait_until_up, write_result

FIELDS = (
    "Id, IsDeleted, Name, Type, ParentId, BillingStreet, BillingCity, BillingState, BillingPostalCode, "
    "BillingCountry, ShippingCity, Phone, Fax, AccountNumber, Website, Industry, AnnualRevenue, "
    "NumberOfEmployees, Ownership, TickerSymbol, Description, Rating, Site, AccountSource, OwnerId, "
    "CreatedDate, LastModifiedDate, SystemModstamp, External_Id__c, Regions__c"
)


def _wait_job(http: httpx.Client, headers: dict[str, str], kind: str, job_id: str) -> dict[str, object]:
    while True:
        info = http.get(f"/services/data/v62.0/jobs/{kind}/{job_id}", headers=headers).json()
        if info["state"] in ("JobComplete", "Failed", "Aborted"):
            return dict(info)
        time.sleep(0.1)


def _bulk_query(http: httpx.Client, token: str) -> dict[str, object]:
    """Bulk query of all Accounts x 30 fields: job time, then every page downloaded without gzip."""
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    job = http.post(
        "/services/data/v62.0/jobs/query",
        headers=headers,
        json={"operation": "query", "query": f"SELECT {FIELDS} FROM Account"},
    ).json()
    info = _wait_job(http, headers, "query", job["id"])
    job_s = time.perf_counter() - started
    total_bytes, rows, locator = 0, 0, None
    started = time.perf_counter()
    while locator != "null":
        params = {"maxRecords": 200_000, **({"locator": locator} if locator else {})}
        with http.stream(
            "GET",
            f"/services/data/v62.0/jobs/query/{job['id']}/results",
            params=params,
            headers={**headers, "Accept-Encoding": "identity"},
        ) as response:
            for chunk in response.iter_raw(1 << 20):
                total_bytes += len(chunk)
            rows += int(response.headers["Sforce-NumberOfRecords"])
            locator = response.headers["Sforce-Locator"]
    download_s = time.perf_counter() - started
    return {
        "rows": rows,
        "records_processed": info["numberRecordsProcessed"],
        "job_seconds": round(job_s, 2),
        "download_seconds": round(download_s, 2),
        "megabytes": round(total_bytes / 1e6, 1),
        "mb_per_second": round(total_bytes / 1e6 / download_s, 1),
        "target_mb_per_second": 150,
    }


def _bulk_ingest(http: httpx.Client, token: str, rows: int) -> dict[str, object]:
    """Insert ``rows`` Accounts through one Bulk ingest job: seconds from UploadComplete to JobComplete."""
    headers = {"Authorization": f"Bearer {token}"}
    lines = ["Name,External_Id__c,Phone,AnnualRevenue,Description,Industry"]
    lines += [f'Bench {i},BENCH-{i},555-{i},{i * 10},"line one\nline {i}",Energy' for i in range(rows)]
    data = ("\n".join(lines) + "\n").encode()
    job = http.post(
        "/services/data/v62.0/jobs/ingest", headers=headers, json={"object": "Account", "operation": "insert"}
    ).json()
    http.put(
        f"/services/data/v62.0/jobs/ingest/{job['id']}/batches",
        content=data,
        headers={**headers, "Content-Type": "text/csv"},
    ).raise_for_status()
    started = time.perf_counter()
    http.patch(f"/services/data/v62.0/jobs/ingest/{job['id']}", headers=headers, json={"state": "UploadComplete"})
    info = _wait_job(http, headers, "ingest", job["id"])
    seconds = time.perf_counter() - started
    return {
        "rows": rows,
        "state": info["state"],
        "failed": info.get("numberRecordsFailed"),
        "seconds": round(seconds, 1),
        "rows_per_second": round(rows / seconds),
        "target_seconds_per_million": 60,
        "upload_megabytes": round(len(data) / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=60)
    parser.add_argument("--ingest-rows", type=int, default=1_000_000)
    parser.add_argument("--out", default="bench/results/emulator.json")
    args = parser.parse_args()
    port = free_port()
    # The emulator runs in its own process, as `sfint-emulator` does, so client and server do not share a GIL.
    server = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_sfint.emulator", "--seed", "empty", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url)
        http = httpx.Client(base_url=url, timeout=600)
        started = time.perf_counter()
        r = http.post("/__emulator__/seed", json={"counts": {"Account": args.accounts}, "seed": 1})
        r.raise_for_status()
        seed_s = time.perf_counter() - started
        print(f"seeded {args.accounts:,} Accounts in {seed_s:.1f} s")
        token = http.post(
            "/services/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Sforce-Query-Options": "batchSize=2000"}
        started = time.perf_counter()
        page = http.get("/services/data/v62.0/query", params={"q": f"SELECT {FIELDS} FROM Account"}, headers=headers)
        page.raise_for_status()
        first_s = time.perf_counter() - started
        body = page.json()
        latencies, sizes = [], []
        for _ in range(args.pages):
            if body["done"]:
                break
            started = time.perf_counter()
            page = http.get(body["nextRecordsUrl"], headers=headers)
            latencies.append((time.perf_counter() - started) * 1000)
            sizes.append(len(page.content))
            body = page.json()
            assert len(body["records"]) == 2000
        latencies.sort()
        result = {
            "machine": machine(),
            "seed": {
                "accounts": args.accounts,
                "seconds": round(seed_s, 2),
                "target_seconds": 30,
                "rows_per_second": round(args.accounts / seed_s),
            },
            "rest_query_pages": {
                "batch_size": 2000,
                "fields": len(FIELDS.split(",")),
                "pages_measured": len(latencies),
                "first_page_ms": round(first_s * 1000, 1),
                "p50_ms": round(statistics.median(latencies), 1),
                "p95_ms": round(latencies[int(len(latencies) * 0.95) - 1], 1),
                "max_ms": round(latencies[-1], 1),
                "target_p50_ms": 100,
                "mean_page_bytes": round(statistics.mean(sizes)),
            },
            "bulk_query": _bulk_query(http, token),
            "bulk_ingest": _bulk_ingest(http, token, args.ingest_rows),
            "server_peak_rss_mb": rss_mb(server.pid),
        }
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    write_result(args.out, result, result)


if __name__ == "__main__":
    main()
