"""SalesforceChangeEventsOperator: change events into the lake from the checkpoint kept next to it, in a DAG
run through dag.test() and run after run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from airflow_provider_sfint.compat import AirflowFailException
from airflow_provider_sfint.operators.change_events import CHECKPOINT_FILE, SalesforceChangeEventsOperator

from ..emulator.helpers import Admin, SalesforceHttp
from .conftest import load_dag, make_context, set_connection

DAG_FILE = """
import os
from datetime import datetime, timezone

from airflow.sdk import DAG

from airflow_provider_sfint.operators.change_events import SalesforceChangeEventsOperator

with DAG("sfint_change_events", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    SalesforceChangeEventsOperator(
        task_id="changes",
        channel="/data/ChangeEvents",
        destination=os.environ["SFINT_TEST_LAKE"] + "/{{ dag.dag_id }}",
        idle_seconds=1,
        sfint_conn_id=os.environ["SFINT_TEST_CONN"],
    )
"""


@pytest.fixture()
def events_conn(monkeypatch: pytest.MonkeyPatch, emulator_server: Any, fresh_org: Admin) -> str:
    return set_connection(monkeypatch, "sfint_events", emulator_server.url, pubsub_endpoint=emulator_server.grpc_target)


def test_runs_in_a_dag_and_resumes_from_its_checkpoint(
    events_conn: str,
    sf: SalesforceHttp,
    airflow_db: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    account = sf.post("sobjects/Account", json={"Name": "Lake"}).json()["id"]
    sf.post("sobjects/Contact", json={"LastName": "Lake", "AccountId": account})
    monkeypatch.setenv("SFINT_TEST_LAKE", str(tmp_path))
    monkeypatch.setenv("SFINT_TEST_CONN", events_conn)
    run = load_dag("sfint_change_events", DAG_FILE).test()
    (ti,) = run.get_task_instances()
    assert ti.state == "success"
    summary = ti.xcom_pull(task_ids="changes")
    assert summary["events"] == 2 and summary["rows"] == {"CREATE": 2} and summary["api_calls"] >= 1
    lake = tmp_path / "sfint_change_events"
    assert sorted(p.parent.name for p in lake.glob("*/part-*.parquet")) == ["Account", "Contact"]
    checkpoint = json.loads((lake / CHECKPOINT_FILE).read_text())
    assert checkpoint["values"]["checkpoint"]["replay_id"] == summary["last_replay_id"]
    sf.patch(f"sobjects/Account/{account}", json={"Rating": "Warm"})
    op = SalesforceChangeEventsOperator(
        task_id="again", channel="/data/ChangeEvents", destination=str(lake), idle_seconds=1, sfint_conn_id=events_conn
    )
    second = op.execute(make_context())
    assert second["events"] == 1 and second["parts"] == [str(lake / "Account" / "part-000002.parquet")]
    assert pq.read_table(second["parts"][0]).to_pylist()[0]["Rating"] == "Warm"


def test_bad_settings_fail_at_parse_time_and_overflow_fails_the_task(
    events_conn: str, sf: SalesforceHttp, fresh_org: Admin, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="read it with SalesforceReadEventsOperator"):
        SalesforceChangeEventsOperator(task_id="x", channel="/event/Warehouse_Sync__e", destination=str(tmp_path))
    with pytest.raises(ValueError, match="fmt"):
        SalesforceChangeEventsOperator(task_id="x", channel="/data/ChangeEvents", destination="d", fmt="csv")
    fresh_org._call("PUT", "pubsub", json={"overflow_threshold": 2})
    records = [{"attributes": {"type": "Account"}, "Name": f"O{i}"} for i in range(3)]
    sf.post("composite/sobjects", json={"records": records})
    op = SalesforceChangeEventsOperator(
        task_id="o", channel="/data/AccountChangeEvent", destination=str(tmp_path / "strict"), idle_seconds=1,
        resync=False, sfint_conn_id=events_conn,
    )  # fmt: skip
    with pytest.raises(AirflowFailException, match="GAP_OVERFLOW"):
        op.execute(make_context())
    healing = SalesforceChangeEventsOperator(
        task_id="h", channel="/data/AccountChangeEvent", destination=str(tmp_path / "healed"), idle_seconds=1,
        sfint_conn_id=events_conn,
    )  # fmt: skip
    summary = healing.execute(make_context())
    live = fresh_org.records("Account", include_deleted=False)
    assert summary["snapshots"] == 1 and summary["rows"]["SNAPSHOT"] == len(live)


def test_refuses_to_start_below_the_delivery_allocation_share(
    events_conn: str, sf: SalesforceHttp, fresh_org: Admin, tmp_path: Path
) -> None:
    from airflow_provider_sfint.client.errors import BudgetExhaustedError

    sf.post("sobjects/Account", json={"Name": "Waiting"})
    fresh_org.limits(platform_events_delivered_max=1000, platform_events_delivered_used=950)
    with pytest.raises(ValueError, match="min_remaining_delivery_percent"):
        SalesforceChangeEventsOperator(
            task_id="x", channel="/data/ChangeEvents", destination=str(tmp_path), min_remaining_delivery_percent=120
        )
    op = SalesforceChangeEventsOperator(
        task_id="guarded",
        channel="/data/ChangeEvents",
        destination=str(tmp_path),
        idle_seconds=1,
        min_remaining_delivery_percent=10,
        sfint_conn_id=events_conn,
    )
    with pytest.raises(BudgetExhaustedError, match=r"50 of 1000 daily event deliveries remain \(5\.0%\).*10%"):
        op.execute(make_context())
    assert not list(tmp_path.iterdir())  # nothing read, nothing written, no checkpoint
    assert fresh_org._call("GET", "limits")["platform_events_delivered_used"] == 950
    op.min_remaining_delivery_percent = 5
    assert op.execute(make_context())["events"] == 1
