"""`make demo`: the main job end to end on a laptop, nothing to configure.

Starts the bundled emulator with a seeded demo org (about 200,000 records), runs the
``salesforce_to_warehouse`` example DAG once with ``airflow dags test`` in a temporary SQLite
AIRFLOW_HOME and prints what it did; then the event half (``event_half.py``): the event-driven
``salesforce_cdc_to_warehouse`` DAG under ``airflow standalone``, started by changes made in the emulator.
Stops everything it started. The lake (Parquet) and the DuckDB
warehouse are kept in ``.demo/`` for you to explore; each run starts from a clean one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OUT = Path(os.environ.get("SFINT_DEMO_OUT", ROOT / ".demo"))  # the lake, the warehouse, logs
DEMO_ACCOUNTS = int(os.environ.get("SFINT_DEMO_ACCOUNTS", "40000"))  # x5 records across objects
DAG_ID = "salesforce_to_warehouse"
#: the event half (the event-driven DAG under a real scheduler and triggerer); SFINT_DEMO_EVENTS=0 skips it
EVENTS = os.environ.get("SFINT_DEMO_EVENTS", "1") != "0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, proc: subprocess.Popen[bytes], what: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with code {proc.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{what} was not ready after {seconds:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def airflow_env(home: Path, emulator_url: str, grpc_target: str | None = None) -> dict[str, str]:
    """The Airflow environment of the demo; ``grpc_target`` is the emulator's Pub/Sub API (change events)."""
    from airflow_provider_sfint.emulator import CLIENT_ID, CLIENT_SECRET

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    connection = {
        "conn_type": "sfint",
        "host": emulator_url,
        "extra": {
            "auth_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            **({"pubsub_endpoint": grpc_target} if grpc_target else {}),
        },
    }
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags_examples"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"),
        "AIRFLOW_CONN_SFINT_DEFAULT": json.dumps(connection),
        "SFINT_LAKE": f"file://{OUT / 'lake'}",
        "SFINT_WAREHOUSE": str(OUT / "warehouse.duckdb"),
        "SFINT_ERP_DROP": f"file://{OUT / 'erp'}",
        "SFINT_START_DATE": (today - timedelta(days=1)).date().isoformat(),
        "SFINT_RETRIES": "0",
    }


def summary_table(run: dict[str, Any], counters: dict[str, Any], seconds: float) -> str:
    lines = ["", f"{'object':<14}{'extracted':>12}{'deleted':>10}{'warehouse rows':>16}"]
    for obj, c in run["objects"].items():
        lines.append(f"{obj:<14}{c['extracted']:>12,}{c['deleted']:>10,}{c['warehouse_rows']:>16,}")
    written = run["written_back"]
    route = "Bulk API 2.0" if written.get("path") == "bulk" else "sObject Collections"
    lines += [
        "",
        f"account scores changed      {run['scores_changed']:,}",
        f"written back to Salesforce  {written.get('succeeded', 0):,} of {written.get('records', 0):,} "
        f"({route}; {written.get('failed', 0)} failed)",
        f"platform events published   {len(run['event_ids'])} (Warehouse_Sync__e {', '.join(run['event_ids'])})",
        f"Salesforce API calls used   {counters['api_usage']:,} (Bulk jobs: {counters['bulk_jobs']}; "
        f"{run.get('retries', 0)} retried)",
        f"wall time                   {seconds:.1f} s",
        f"lake                        {OUT / 'lake'}",
        f"warehouse (DuckDB)          {OUT / 'warehouse.duckdb'}",
    ]
    return "\n".join(lines)


def main() -> int:
    started = time.monotonic()
    for stale in ("lake", "erp"):  # a clean lake and warehouse each run (make airflow's home is kept)
        shutil.rmtree(OUT / stale, ignore_errors=True)
    (OUT / "warehouse.duckdb").unlink(missing_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    port, grpc_port = free_port(), free_port()
    emulator_url = f"http://127.0.0.1:{port}"
    records = DEMO_ACCOUNTS * 5
    print(f"starting the Salesforce emulator on {emulator_url} with a demo org of about {records:,} records")
    with tempfile.TemporaryDirectory(prefix="sfint-demo-") as tmp:
        home = Path(tmp) / "airflow-home"
        home.mkdir()
        emulator_log = (OUT / "emulator.log").open("wb")
        emulator = subprocess.Popen(
            [
                str(BIN / "sfint-emulator"),
                "--port",
                str(port),
                "--grpc-port",
                str(grpc_port),
                "--seed",
                "demo",
                "--demo-records",
                str(DEMO_ACCOUNTS),
                "--db",
                str(Path(tmp) / "org.db"),
            ],
            stdout=emulator_log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(f"{emulator_url}/services/data", emulator, "the emulator")
            httpx.post(f"{emulator_url}/__emulator__/counters/reset", timeout=30)
            env = airflow_env(home, emulator_url, f"127.0.0.1:{grpc_port}")
            print("preparing a temporary Airflow home (SQLite)")
            subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True)
            today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            print(f"running {DAG_ID} (airflow dags test) for the scheduled run of {today:%Y-%m-%d %H:%M} UTC")
            log_path = OUT / "airflow-dags-test.log"
            with log_path.open("wb") as log:
                result = subprocess.run(
                    # The DAG's first run: its window starts at initial_window_start, so it loads the org's whole
                    # history up to the logical date, as a new user's first scheduled run does.
                    [str(BIN / "airflow"), "dags", "test", DAG_ID, today.isoformat()],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if result.returncode != 0:
                print((log_path.read_text(errors="replace"))[-4000:])
                print(f"\nthe DAG run failed (exit {result.returncode}); the full log is {log_path}")
                return 1
            report = OUT / "lake" / "_runs" / "latest.json"
            if not report.exists():
                print(f"the DAG run did not write its summary ({report}); see {log_path}")
                return 1
            counters = httpx.get(f"{emulator_url}/__emulator__/counters", timeout=30).json()
            run = json.loads(report.read_text())
            print(summary_table(run, counters, time.monotonic() - started))
            if EVENTS:
                from event_half import report as event_report
                from event_half import run_event_half

                events = run_event_half(emulator_url, env, OUT, Path(tmp) / "events")
                print(event_report(events))
        finally:
            stop(emulator)
            emulator_log.close()
    print(f"\nwall time, both halves        {time.monotonic() - started:.1f} s")
    print(f"logs: {OUT / 'airflow-dags-test.log'}, {OUT / 'emulator.log'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
