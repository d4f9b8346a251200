"""The ERP feed: deals won in Salesforce (through REST, Collections and Bulk) publish ``Order_Event__e``; the
example DAG reads the events into the lake and delivers each to an ERP endpoint exactly once, with the
event's replay id as the idempotency key, across a failed delivery and the run after it. Also under a real
scheduler and triggerer, where the watcher starts the run."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ..airflow_stack import AirflowStack, connection_env
from ..emulator.helpers import Admin, SalesforceHttp
from .conftest import EXAMPLES

NAME = "salesforce_orders_to_erp"


class Erp:
    """A small ERP order endpoint that honours ``Idempotency-Key`` (a repeated key answers 200 with
    ``Idempotent-Replayed: true`` and stores nothing); ``fail`` lists request numbers answered 503 once."""

    def __init__(self, fail: set[int] | None = None) -> None:
        self.fail = set(fail or ())
        self.orders: dict[str, dict[str, Any]] = {}
        self.requests = 0
        self.lock = threading.Lock()
        erp = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.headers.get("Idempotency-Key")
                with erp.lock:
                    erp.requests += 1
                    number = erp.requests
                    if number in erp.fail:
                        status, replayed = 503, False
                    elif not key or key != body.get("source_event"):
                        status, replayed = 400, False
                    elif key in erp.orders:
                        status, replayed = 200, True
                    else:
                        erp.orders[key] = body
                        status, replayed = 201, False
                self.send_response(status)
                self.send_header("Idempotent-Replayed", "true" if replayed else "false")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/orders"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def erp() -> Iterator[Erp]:
    server = Erp(fail={7})
    yield server
    server.close()


def _win(sf: SalesforceHttp, n: int, how: str) -> list[dict[str, Any]]:
    """Close ``n`` open Opportunities as won through REST, Collections or Bulk; returns them."""
    soql = f"SELECT Id, AccountId, Name, Amount, CloseDate FROM Opportunity WHERE IsClosed = false LIMIT {n}"
    opps: list[dict[str, Any]] = sf.query(soql).json()["records"]
    assert len(opps) == n
    if how == "rest":
        for o in opps:
            assert sf.patch(f"sobjects/Opportunity/{o['Id']}", json={"StageName": "Closed Won"}).status_code == 204
    elif how == "collections":
        records = [{"attributes": {"type": "Opportunity"}, "id": o["Id"], "StageName": "Closed Won"} for o in opps]
        assert all(r["success"] for r in sf.patch("composite/sobjects", json={"records": records}).json())
    else:
        from ..emulator.test_bulk import _ingest

        body = "Id,StageName\n" + "".join(f"{o['Id']},Closed Won\n" for o in opps)
        _, info = _ingest(sf, body, object="Opportunity", operation="update")
        assert info["numberRecordsProcessed"] == n and info["numberRecordsFailed"] == 0
    return opps


def _states(run: Any) -> dict[str, str]:
    return {t.task_id: t.state for t in run.get_task_instances()}


def test_each_won_deal_reaches_the_erp_exactly_once_across_a_failed_delivery(
    example: Any, org: Admin, erp: Erp, emulator_url: str, tmp_path: Path
) -> None:
    dag = example(NAME, SFINT_ERP_ORDERS_URL=erp.url, SFINT_ORDERS_IDLE="1")
    with SalesforceHttp.login(emulator_url) as sf:
        won = _win(sf, 3, "rest") + _win(sf, 5, "collections") + _win(sf, 4, "bulk")
    # the ERP answers its 7th request 503: the delivery fails half-way (no retries in this test's settings)
    first = dag.test()
    assert _states(first) == {"read_order_events": "success", "deliver_to_erp": "failed"}
    assert len(erp.orders) == 6 and erp.requests == 7
    # the next run reads nothing new, and sends the undelivered part again: the first six are known by key
    second = dag.test()
    assert _states(second) == {"read_order_events": "success", "deliver_to_erp": "success"}
    summary = json.loads((tmp_path / "lake" / "_runs" / "orders_latest.json").read_text())
    assert summary["events_read"] == 0 and summary["orders"] == {"duplicate": 6, "created": 6}
    with SalesforceHttp.login(emulator_url) as sf:
        won += _win(sf, 3, "collections")
    third = dag.test()
    assert _states(third) == {"read_order_events": "success", "deliver_to_erp": "success"}
    summary = json.loads((tmp_path / "lake" / "_runs" / "orders_latest.json").read_text())
    assert summary["events_read"] == 3 and summary["orders"] == {"created": 3}
    assert summary["parts_delivered"] == ["part-000002.parquet"]
    # every event published, once, with the deal's values; the key is the replay id the lake holds
    published = org.events("Order_Event__e")
    assert len(published) == len(won) == len(erp.orders) == 15
    assert sorted(o["event_uuid"] for o in erp.orders.values()) == sorted(e["uuid"] for e in published)
    by_deal = {o["crm_deal_id"]: o for o in erp.orders.values()}
    for opp in won:
        order = by_deal[opp["Id"]]
        assert order["crm_customer_id"] == opp["AccountId"] and order["description"] == opp["Name"]
        assert order["amount"] == pytest.approx(opp["Amount"]) and order["order_date"] == opp["CloseDate"]
    assert erp.requests == 7 + 12 + 3


def test_without_an_endpoint_orders_go_to_the_outbox_named_by_their_key(
    example: Any, org: Admin, emulator_url: str, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    dag = example(NAME, SFINT_ERP_OUTBOX=str(outbox), SFINT_ORDERS_IDLE="1")
    with SalesforceHttp.login(emulator_url) as sf:
        won = _win(sf, 4, "collections")
    assert set(_states(dag.test()).values()) == {"success"}
    files = sorted(outbox.glob("*.json"))
    assert len(files) == 4 and sorted(json.loads(f.read_text())["crm_deal_id"] for f in files) == sorted(
        o["Id"] for o in won
    )
    assert all(f.stem == json.loads(f.read_text())["source_event"] for f in files)
    assert set(_states(dag.test()).values()) == {"success"} and len(list(outbox.glob("*.json"))) == 4


@pytest.mark.slow
def test_a_won_deal_starts_the_erp_feed_through_the_watcher(
    emulator_server: Any, fresh_org: Admin, sf: SalesforceHttp, erp: Erp, tmp_path: Path
) -> None:
    erp.fail = set()
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / f"{NAME}.py").write_text((EXAMPLES / f"{NAME}.py").read_text())
    env = {
        **connection_env("sfint_erp", emulator_server.url, pubsub_endpoint=emulator_server.grpc_target),
        "SFINT_CONN_ID": "sfint_erp",
        "SFINT_LAKE": f"file://{tmp_path / 'lake'}",
        "SFINT_ERP_ORDERS_URL": erp.url,
        "SFINT_ORDERS_MIN_INTERVAL": "2",
        "SFINT_ORDERS_IDLE": "1",
    }
    with AirflowStack(tmp_path / "home", dags, env) as stack:
        stack.wait(
            "a listening watcher",
            lambda: fresh_org._call("GET", "pubsub")["subscribers"].get("/event/Order_Event__e"),
        )
        won = _win(sf, 5, "collections")
        stack.wait("five orders in the ERP", lambda: len(erp.orders) == 5)
        runs = stack.wait("a successful run", lambda: [r for r in stack.runs(NAME) if r["state"] == "success"])
        assert {r["run_type"] for r in runs} == {"asset_triggered"}
        assert sorted(o["crm_deal_id"] for o in erp.orders.values()) == sorted(o["Id"] for o in won)
