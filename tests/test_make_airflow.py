"""`make airflow` as a user starts it (demo/run_airflow.py): the emulator and airflow standalone, the event-driven
DAGs unpaused, and activity in the emulator that makes their watchers start runs the UI shows. Its smoke mode
returns once each event-driven DAG has a successful asset-triggered run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .airflow_stack import free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_make_airflow_shows_the_event_driven_dags_running(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SFINT_"))}
    env.update(
        SFINT_AIRFLOW_SMOKE="1",
        SFINT_AIRFLOW_PORT=str(free_port()),
        SFINT_AIRFLOW_ACTIVITY="10",
        SFINT_DEMO_ACCOUNTS="300",
        SFINT_DEMO_OUT=str(tmp_path / "demo"),
    )
    done = subprocess.run(
        [sys.executable, str(ROOT / "demo" / "run_airflow.py")], env=env, capture_output=True, text=True, timeout=560
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "event-driven runs succeeded: salesforce_cdc_to_warehouse, salesforce_orders_to_erp" in done.stdout
    assert "activity: changed 10 Accounts and won" in done.stdout
    orders = list((tmp_path / "demo" / "erp" / "outbox").glob("*.json"))
    assert orders, "no order reached the ERP outbox"
