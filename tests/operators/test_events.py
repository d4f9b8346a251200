"""SalesforcePublishEventOperator: one call for one event, Collections for many, OPERATION_ENQUEUED is success."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sfint.compat import AirflowFailException
from airflow_provider_sfint.operators.events import SalesforcePublishEventOperator

from ..emulator.helpers import Admin
from .conftest import make_context


def _op(conn: str, events: object, **kw: object) -> SalesforcePublishEventOperator:
    kw.setdefault("event", "Warehouse_Sync__e")
    return SalesforcePublishEventOperator(task_id="publish", events=events, sfint_conn_id=conn, **kw)  # type: ignore[arg-type]


def test_one_event_one_call(conn: str, fresh_org: Admin) -> None:
    fresh_org._call("POST", "counters/reset")
    summary = _op(conn, {"Pipeline__c": "nightly", "Records__c": 42, "Status__c": "done"}).execute(make_context())
    assert summary["published"] == 1 and summary["ids"][0]
    assert fresh_org.counters()["requests"]["api calls"] == 1
    (event,) = fresh_org.events("Warehouse_Sync__e")
    assert event["payload"]["Pipeline__c"] == "nightly" and event["payload"]["Records__c"] == 42


def test_many_events_go_200_a_call(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    rows = "\n".join(f"run-{i},sent" for i in range(450))
    (tmp_path / "events.csv").write_text("Run_Id__c,Status__c\n" + rows + "\n")
    fresh_org._call("POST", "counters/reset")
    summary = _op(conn, str(tmp_path / "events.csv")).execute(make_context())
    assert summary["published"] == 450 and len(set(summary["ids"])) == 450
    assert fresh_org.counters()["requests"]["api calls"] == 3
    published = fresh_org.events("Warehouse_Sync__e")
    assert sorted(e["payload"]["Run_Id__c"] for e in published) == sorted(f"run-{i}" for i in range(450))


def test_refused_events_fail_the_task_naming_them(conn: str, fresh_org: Admin) -> None:
    with pytest.raises(AirflowFailException, match=r"1 of 2 Warehouse_Sync__e events were refused.*event 2"):
        _op(conn, [{"Status__c": "ok"}, {"Status__c": "x" * 41}]).execute(make_context())
    with pytest.raises(AirflowFailException, match="not a platform event"):
        _op(conn, [{"Name": "x"}], event="Account").execute(make_context())


def test_publish_through_the_pubsub_api(
    monkeypatch: pytest.MonkeyPatch, emulator_server: Any, fresh_org: Admin
) -> None:
    from .conftest import set_connection

    conn = set_connection(monkeypatch, "sfint_pubsub", emulator_server.url, pubsub_endpoint=emulator_server.grpc_target)
    fresh_org._call("POST", "counters/reset")
    rows = [{"Pipeline__c": "p", "Run_Id__c": f"ps-{i}", "Records__c": i} for i in range(250)]
    summary = _op(conn, rows, api="pubsub").execute(make_context())
    assert summary["published"] == 250 and summary["api"] == "pubsub" and len(set(summary["ids"])) == 250
    assert fresh_org.counters()["requests"].get("api calls", 0) == 0, "no REST API call spent"
    published = fresh_org.events("Warehouse_Sync__e")
    assert [e["payload"]["Run_Id__c"] for e in published] == [f"ps-{i}" for i in range(250)]
    assert [e["payload"]["Records__c"] for e in published[:3]] == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="api"):
        _op(conn, rows, api="grpc")
