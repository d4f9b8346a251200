"""`make airflow`: Airflow's UI with the example DAGs against the bundled emulator, on loopback only.

Starts the emulator (demo org) and ``airflow standalone`` (API server and UI, scheduler, triggerer, DAG
processor) in ``.demo/airflow-home`` with SQLite. Ctrl-C stops both; nothing is left running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_demo import BIN, OUT, airflow_env, free_port, stop, wait_for

UI_PORT = int(os.environ.get("SFINT_AIRFLOW_PORT", "8080"))
ACCOUNTS = os.environ.get("SFINT_DEMO_ACCOUNTS", "2000")


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
        print('Unpause salesforce_to_warehouse or trigger it with conf {"full_refresh": true}. Ctrl-C stops all.')
        if os.environ.get("SFINT_AIRFLOW_SMOKE"):  # used by CI-style checks: start, verify, stop
            return 0 if httpx.get(f"http://127.0.0.1:{UI_PORT}/api/v2/monitor/health").status_code == 200 else 1
        while airflow.poll() is None and emulator.poll() is None:
            time.sleep(1)
        return 1
    except KeyboardInterrupt:
        print("\nstopping")
        return 0
    finally:
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
