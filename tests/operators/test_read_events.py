"""SalesforceReadEventsOperator: platform events into the lake from the checkpoint kept next to it, one typed
row per event with its replay id, run after run; the same exactly-once commit as the change events."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from airflow_provider_sfint.operators.change_events import CHECKPOINT_FILE, SalesforceReadEventsOperator

from ..emulator.helpers import Admin, SalesforceHttp
from .conftest import make_context, set_connection

TOPIC = "/event/Order_Event__e"


@pytest.fixture()
def events_conn(monkeypatch: pytest.MonkeyPatch, emulator_server: Any, fresh_org: Admin) -> str:
    return set_connection(monkeypatch, "sfint_events", emulator_server.url, pubsub_endpoint=emulator_server.grpc_target)


def _win(sf: SalesforceHttp, n: int) -> list[dict[str, Any]]:
    soql = f"SELECT Id, Name, AccountId, Amount, CloseDate FROM Opportunity WHERE IsClosed = false LIMIT {n}"
    opps: list[dict[str, Any]] = sf.query(soql).json()["records"]
    records = [{"attributes": {"type": "Opportunity"}, "id": o["Id"], "StageName": "Closed Won"} for o in opps]
    assert all(r["success"] for r in sf.patch("composite/sobjects", json={"records": records}).json())
    return opps


def test_events_land_typed_with_their_replay_ids_and_resume_from_the_checkpoint(
    events_conn: str, sf: SalesforceHttp, fresh_org: Admin, tmp_path: Path
) -> None:
    won = _win(sf, 5)
    op = SalesforceReadEventsOperator(
        task_id="orders", channel=TOPIC, destination=str(tmp_path), idle_seconds=1, sfint_conn_id=events_conn
    )
    first = op.execute(make_context())
    assert first["events"] == 5 and first["rows"] == {"EVENT": 5}
    assert first["parts"] == [str(tmp_path / "Order_Event__e" / "part-000001.parquet")]
    table = pq.read_table(first["parts"][0])
    assert table.schema.names[:4] == ["replay_id", "event_uuid", "created_date", "created_by_id"]
    assert str(table.schema.field("Close_Date__c").type) == "date32[day]"
    assert str(table.schema.field("created_date").type) == "timestamp[ms, tz=UTC]"
    rows = table.to_pylist()
    published = fresh_org.events("Order_Event__e")
    assert [r["event_uuid"] for r in rows] == [e["uuid"] for e in published]
    assert [r["Opportunity_Id__c"] for r in rows] == [o["Id"] for o in won]
    assert [r["Close_Date__c"] for r in rows] == [date.fromisoformat(o["CloseDate"]) for o in won]
    assert [r["Amount__c"] for r in rows] == pytest.approx([o["Amount"] for o in won])
    replay_ids = [r["replay_id"] for r in rows]
    assert replay_ids == sorted(replay_ids) and len(set(replay_ids)) == 5 and first["last_replay_id"] == replay_ids[-1]
    checkpoint = json.loads((tmp_path / CHECKPOINT_FILE).read_text())["values"]["checkpoint"]
    assert checkpoint["replay_id"] == replay_ids[-1]
    # nothing new: nothing read, no part; then only the new events, in the next part
    assert op.execute(make_context())["events"] == 0
    _win(sf, 2)
    second = op.execute(make_context())
    assert second["events"] == 2 and second["parts"] == [str(tmp_path / "Order_Event__e" / "part-000002.parquet")]
    assert min(r["replay_id"] for r in pq.read_table(second["parts"][0]).to_pylist()) > replay_ids[-1]


def test_jsonl_and_latest_and_bad_settings(
    events_conn: str, sf: SalesforceHttp, fresh_org: Admin, tmp_path: Path
) -> None:
    fresh_org._call("PUT", "clock", json={"offset_seconds": -3600})
    _win(sf, 1)  # published an hour before a LATEST reader's first run: not for it
    fresh_org._call("PUT", "clock", json={"offset_seconds": 0})
    op = SalesforceReadEventsOperator(
        task_id="latest", channel=TOPIC, destination=str(tmp_path), fmt="jsonl", start="LATEST", idle_seconds=1,
        sfint_conn_id=events_conn,
    )  # fmt: skip
    assert op.execute(make_context())["events"] == 0
    # published between the first run (which read nothing, so has no replay id) and the next: not lost
    (opp,) = _win(sf, 1)
    summary = op.execute(make_context())
    assert summary["events"] == 1 and summary["skipped_before_start"] == 1
    (line,) = Path(summary["parts"][0]).read_text().splitlines()
    assert json.loads(line)["Opportunity_Id__c"] == opp["Id"] and summary["parts"][0].endswith(".jsonl")
    (later,) = _win(sf, 1)
    third = op.execute(make_context())
    assert third["events"] == 1 and "skipped_before_start" not in third
    assert json.loads(Path(third["parts"][0]).read_text())["Opportunity_Id__c"] == later["Id"]
    for kwargs, message in (
        ({"channel": "/data/ChangeEvents"}, "read it with SalesforceChangeEventsOperator"),
        ({"channel": TOPIC, "start": "SNAPSHOT"}, "nothing to snapshot"),
        ({"channel": "/event/Order_Event"}, r"/event/<Name>__e"),
    ):
        with pytest.raises(ValueError, match=message):
            SalesforceReadEventsOperator(task_id="x", destination=str(tmp_path), **kwargs)
