"""A DAG run started by a Salesforce change event, as users run it: ``airflow standalone`` (scheduler,
triggerer, DAG processor, LocalExecutor) with an AssetWatcher on a SalesforceChannelTrigger, against the
emulator over gRPC. The run reads the waiting events into the lake from its own checkpoint."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from .airflow_stack import AirflowStack, connection_env
from .emulator.helpers import Admin, SalesforceHttp

CHANNEL = "/data/AccountChangeEvent"

DAG_FILE = """
import os
from datetime import datetime, timezone

from airflow.sdk import DAG, Asset, AssetWatcher

from airflow_provider_sfint.operators.change_events import SalesforceChangeEventsOperator
from airflow_provider_sfint.triggers.channel import SalesforceChannelTrigger

bell = SalesforceChannelTrigger(channel="/data/AccountChangeEvent", sfint_conn_id="sfint_watch", min_interval=2)
account_changes = Asset("salesforce_account_changes", watchers=[AssetWatcher(name="account_changes", trigger=bell)])

with DAG(
    "sfint_watched_changes",
    schedule=[account_changes],
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
):
    SalesforceChangeEventsOperator(
        task_id="changes",
        channel="/data/AccountChangeEvent",
        destination=os.environ["SFINT_TEST_LAKE"],
        idle_seconds=1,
        sfint_conn_id="sfint_watch",
    )
"""


def _rows(lake: Path) -> list[dict[str, Any]]:
    return [row for part in sorted(lake.glob("Account/part-*.parquet")) for row in pq.read_table(part).to_pylist()]


@pytest.mark.slow
def test_a_change_event_starts_a_dag_run_through_an_asset_watcher(
    emulator_server: Any, fresh_org: Admin, sf: SalesforceHttp, tmp_path: Path
) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "watched.py").write_text(DAG_FILE)
    lake = tmp_path / "lake"
    env = {
        **connection_env("sfint_watch", emulator_server.url, pubsub_endpoint=emulator_server.grpc_target),
        "SFINT_TEST_LAKE": str(lake),
    }
    with AirflowStack(tmp_path / "home", dags, env) as stack:
        # The triggerer runs the watcher: it listens from LATEST once its stream is open.
        stack.wait("a listening watcher", lambda: fresh_org._call("GET", "pubsub")["subscribers"].get(CHANNEL))
        assert stack.runs("sfint_watched_changes") == []  # no event, no run
        records = [{"attributes": {"type": "Account"}, "Name": f"Watched {i}"} for i in range(25)]
        committed = time.time()
        results = sf.post("composite/sobjects", json={"allOrNone": True, "records": records}).json()
        ids = {r["id"] for r in results}
        done = stack.wait(
            "a successful asset-triggered run",
            lambda: [r for r in stack.runs("sfint_watched_changes") if r["state"] == "success"],
        )
        runs = stack.runs("sfint_watched_changes")
        assert {r["run_type"] for r in runs} == {"asset_triggered"}
        assert len(runs) == 1, runs  # one ring for the burst of 25 events, not one run per event
        rows = _rows(lake)
        assert sorted(r["record_id"] for r in rows) == sorted(ids) and {r["change_type"] for r in rows} == {"CREATE"}
        # A second change later: a second run, which reads only what came after the first run's checkpoint.
        sf.patch(f"sobjects/Account/{sorted(ids)[0]}", json={"Rating": "Hot"})
        stack.wait(
            "a second successful run",
            lambda: len([r for r in stack.runs("sfint_watched_changes") if r["state"] == "success"]) >= 2,
        )
        rows = _rows(lake)
        assert len(rows) == 26 and [r["change_type"] for r in rows].count("UPDATE") == 1
        print(f"commit to first run start: {_seconds(done[0]['start_date']) - committed:.1f} s")


def _seconds(timestamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(timestamp).timestamp()
