"""`make airflow`: Airflow's UI with the example DAGs against the bundled emulator, on loopback only.

Starts the emulator (demo org) and ``airflow standalone`` (API server and UI, scheduler, triggerer, DAG
processor) in ``.demo/airflow-home`` with SQLite. The event-driven DAGs (``salesforce_cdc_to_warehouse``,
``salesforce_orders_to_erp``) are unpaused, and every ``SFINT_AIRFLOW_ACTIVITY`` seconds (default 30; 0: never)
a few Accounts change and a deal is won in the emulator, so their watchers start runs for the UI to show.
Ctrl-C stops everything; nothing is left running. ``SFINT_AIRFLOW_SMOKE=1`` starts, waits for one successful
run of each event-driven DAG, and stops (its test).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_demo import BIN, OUT, airflow_env, free_port, stop, wait_for

UI_PORT = int(os.environ.get("SFINT_AIRFLOW_PORT", "8080"))
ACCOUNTS = os.environ.get("SFINT_DEMO_ACCOUNTS", "2000")
ACTIVITY = float(os.environ.get("SFINT_AIRFLOW_ACTIVITY", "30"))
EVENT_DAGS = ("salesforce_cdc_to_warehouse", "salesforce_orders_to_erp")


def unpause(env: dict[str, str], dag_id: str, seconds: float = 180) -> None:
    """``airflow dags unpause`` once the DAG processor has stored the DAG."""
    deadline = time.monotonic() + seconds
    while True:
        done = subprocess.run([str(BIN / "airflow"), "dags", "unpause", dag_id], env=env, capture_output=True)
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"could not unpause {dag_id}: {done.stderr.decode(errors='replace')[-2000:]}")
        time.sleep(3)


def activity(emulator_url: str, every: float, stopping: threading.Event) -> None:
    """What users do in Salesforce, now and then: a few Accounts change, a deal is won (an Order_Event__e)."""
    from airflow_provider_sfint.emulator import CLIENT_ID, CLIENT_SECRET

    round_ = 0
    while not stopping.wait(every if round_ else 5):
        round_ += 1
        try:
            with httpx.Client(base_url=emulator_url, timeout=60) as http:
                token = http.post(
                    "/services/oauth2/token",
                    data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
                ).json()["access_token"]
                http.headers["Authorization"] = f"Bearer {token}"

                def query(soql: str) -> list[dict[str, Any]]:
                    return list(http.get("/services/data/v62.0/query", params={"q": soql}).json()["records"])

                accounts = query(f"SELECT Id FROM Account ORDER BY Id LIMIT 10 OFFSET {(round_ * 10) % 500}")
                records = [
                    {"attributes": {"type": "Account"}, "id": a["Id"], "AnnualRevenue": 1000 * round_ + i}
                    for i, a in enumerate(accounts)
                ]
                http.patch("/services/data/v62.0/composite/sobjects", json={"records": records})
                won = query("SELECT Id, Name FROM Opportunity WHERE IsClosed = false LIMIT 1")
                for deal in won:
                    path = f"/services/data/v62.0/sobjects/Opportunity/{deal['Id']}"
                    http.patch(path, json={"StageName": "Closed Won"})
            deal_text = f" and won {won[0]['Name']}" if won else ""
            print(f"activity: changed {len(records)} Accounts{deal_text} in the emulator", flush=True)
        except httpx.HTTPError as exc:
            print(f"activity: the emulator did not answer ({exc})", flush=True)


def succeeded(home: Path, dag_id: str) -> bool:
    try:
        db = sqlite3.connect(f"file:{home / 'airflow.db'}?mode=ro", uri=True, timeout=30)
        try:
            found = db.execute(
                "SELECT COUNT(*) FROM dag_run WHERE dag_id = ? AND state = 'success' AND run_type = 'asset_triggered'",
                (dag_id,),
            ).fetchone()
        finally:
            db.close()
    except sqlite3.OperationalError:
        return False
    return bool(found and found[0])


def main() -> int:
    home = OUT / "airflow-home"
    home.mkdir(parents=True, exist_ok=True)
    port, grpc_port = free_port(), free_port()
    emulator_url = f"http://127.0.0.1:{port}"
    emulator = subprocess.Popen(
        [
            *(str(BIN / "sfint-emulator"), "--port", str(port), "--grpc-port", str(grpc_port)),
            *("--seed", "demo", "--demo-records", ACCOUNTS),
        ],
        stdout=(OUT / "emulator.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    airflow: subprocess.Popen[bytes] | None = None
    stopping = threading.Event()
    try:
        wait_for(f"{emulator_url}/services/data", emulator, "the emulator")
        env = airflow_env(home, emulator_url, f"127.0.0.1:{grpc_port}")
        env.pop("SFINT_START_DATE")  # scheduled runs start from the DAGs' own start date
        # Task logs in the UI need INFO (progress, windows, summaries); the demo's quiet WARNING is for its console.
        env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
        env.update(
            AIRFLOW__API__HOST="127.0.0.1",  # loopback only
            AIRFLOW__API__PORT=str(UI_PORT),
            AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{UI_PORT}",
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
            SFINT_ERP_OUTBOX=f"file://{OUT / 'erp' / 'outbox'}",  # salesforce_orders_to_erp's orders, as files
            SFINT_CDC_MIN_INTERVAL="10",
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # standalone starts `airflow` subcommands
        )
        print(f"emulator: {emulator_url} (log {OUT / 'emulator.log'})")
        print(f"starting airflow standalone on http://127.0.0.1:{UI_PORT} (log {OUT / 'airflow-standalone.log'})")
        # Its own process group, so Ctrl-C here reaches the scheduler, triggerer and API server too.
        airflow = subprocess.Popen(
            [str(BIN / "airflow"), "standalone"],
            env=env,
            stdout=(OUT / "airflow-standalone.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(f"http://127.0.0.1:{UI_PORT}/api/v2/monitor/health", airflow, "airflow standalone", 300)
        passwords = home / "simple_auth_manager_passwords.json.generated"
        print(f"\nAirflow UI: http://127.0.0.1:{UI_PORT}  user admin, password in {passwords}")
        for dag_id in EVENT_DAGS:
            unpause(env, dag_id)
        print(f"unpaused the event-driven DAGs {', '.join(EVENT_DAGS)}: changes in the emulator start their runs")
        if ACTIVITY > 0:
            threading.Thread(target=activity, args=(emulator_url, ACTIVITY, stopping), daemon=True).start()
            print(f"every {ACTIVITY:.0f} s a few Accounts change and a deal is won (SFINT_AIRFLOW_ACTIVITY)")
        print('Unpause salesforce_to_warehouse or trigger it with conf {"full_refresh": true}. Ctrl-C stops all.')
        if os.environ.get("SFINT_AIRFLOW_SMOKE"):  # its test: start, see each event-driven DAG succeed, stop
            deadline = time.monotonic() + 300
            while not all(succeeded(home, d) for d in EVENT_DAGS):
                if time.monotonic() > deadline or airflow.poll() is not None:
                    print("no successful event-driven runs", flush=True)
                    return 1
                time.sleep(2)
            print("event-driven runs succeeded: " + ", ".join(EVENT_DAGS), flush=True)
            return 0
        while airflow.poll() is None and emulator.poll() is None:
            time.sleep(1)
        return 1
    except KeyboardInterrupt:
        print("\nstopping")
        return 0
    finally:
        stopping.set()
        if airflow is not None and airflow.poll() is None:
            os.killpg(airflow.pid, signal.SIGTERM)
            try:
                airflow.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(airflow.pid, signal.SIGKILL)
                airflow.wait()
        stop(emulator)


if __name__ == "__main__":
    sys.exit(main())
