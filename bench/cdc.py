"""Change Data Capture benchmark (issue 15). Run with ``make bench-cdc``; results go to ``bench/results/cdc.json``
(rows ``{tool, wall_s, events, events_per_s, peak_rss_mb, api_calls}`` plus each part's figures). Not a test.

(a) ``decode``: the change events of ``--rows`` Account creates (30 fields each) read by our change-events
    engine from the emulator into committed Parquet parts (``sfint``), against the floor: the same payloads,
    already fetched, decoded by bare fastavro into one Arrow table (``floor``: nothing else). Both in their own
    process; the engine's wall time excludes its final idle wait (how it knows it is caught up). Repeated
    with ``--big-rows`` to see that memory stays flat.
(b) ``sync cost``: an org where ``--changes-per-hour`` Accounts change, synced every ``--every-minutes`` over
    ``--hours`` simulated hours (the emulator's clock moves, no waiting): by the change-events engine from its
    checkpoint, and by a Bulk query window over ``SystemModstamp``; REST API calls and wall time per sync.
(c) ``freshness``: ``airflow standalone`` with an AssetWatcher on the channel trigger; a change committed in
    the emulator every ``--fresh-interval`` seconds, ``--fresh-samples`` times; the time from the commit to
    the start of the DAG run the watcher started (the run's ``start_date``) and to its queueing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.airflow_stack, for the freshness part

from common import EmulatorProcess, free_port, machine, rss_mb, run_child, write_result
from common import token as client_token

CHANNEL = "/data/AccountChangeEvent"
#: how long a sync's change-events run waits for more events before it calls itself caught up (excluded from its
#: wall time in the results, and named next to them)
SYNC_IDLE = 1.0
#: 30 fields per event: these 27 written, plus the system fields an insert sets (owner, created/modified by)
FIELDS = (
    "Name,Type,BillingStreet,BillingCity,BillingState,BillingPostalCode,BillingCountry,ShippingStreet,"
    "ShippingCity,ShippingState,ShippingPostalCode,ShippingCountry,Phone,Fax,AccountNumber,Website,Sic,Industry,"
    "AnnualRevenue,NumberOfEmployees,Ownership,TickerSymbol,Description,Rating,Site,AccountSource,External_Id__c"
)


def _row(i: int) -> str:
    return (
        f"Account {i},Prospect,{i} Main St,City {i % 97},CA,{10000 + i % 89999},USA,{i} Dock Rd,Port {i % 53},WA,"
        f"{20000 + i % 79999},USA,555-{i % 10000:04d},555-{(i * 7) % 10000:04d},AN-{i},https://a{i}.example.com,"
        f"{1000 + i % 8999},Energy,{1000 * (i % 9000)},{i % 5000},Private,T{i % 999},Row {i} of the benchmark,"
        f"Hot,Site {i % 31},Web,CDC-{i}\n"
    )


def bulk_insert(url: str, access: str, rows: int, start: int = 0, per_job: int = 200_000) -> None:
    """Insert ``rows`` Accounts with 27 values each, ``per_job`` rows a Bulk job (an upload stays far below the
    150 MB a job accepts)."""
    headers = {"Authorization": f"Bearer {access}"}
    with httpx.Client(base_url=f"{url}/services/data/v62.0", headers=headers, timeout=3600) as http:
        for first in range(start, start + rows, per_job):
            job = http.post("/jobs/ingest", json={"object": "Account", "operation": "insert"}).json()["id"]
            body = FIELDS + "\n" + "".join(_row(i) for i in range(first, min(first + per_job, start + rows)))
            csv = {"Content-Type": "text/csv"}
            upload = http.put(f"/jobs/ingest/{job}/batches", content=body.encode(), headers=csv)
            assert upload.status_code == 201, upload.text
            http.patch(f"/jobs/ingest/{job}", json={"state": "UploadComplete"})
            while (info := http.get(f"/jobs/ingest/{job}").json())["state"] not in ("JobComplete", "Failed", "Aborted"):
                time.sleep(0.2)
            assert info["state"] == "JobComplete" and info["numberRecordsFailed"] == 0, info


def _config(url: str, grpc_target: str) -> Any:
    from airflow_provider_sfint.client import ClientConfig
    from airflow_provider_sfint.emulator import CLIENT_ID, CLIENT_SECRET

    return ClientConfig(
        auth_type="client_credentials",
        login_url=url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        pubsub_endpoint=grpc_target,
    )


def _engine(config: Any, rest: Any, out: Path, idle: float) -> Any:
    from airflow_provider_sfint.client.pubsub import PubSubClient
    from airflow_provider_sfint.client.transport import Transport
    from airflow_provider_sfint.engines.changes import ChangeEventsEngine, ChangeSettings
    from airflow_provider_sfint.engines.state import FileStateStore

    settings = ChangeSettings(channel=CHANNEL, output=str(out), idle_seconds=idle)
    store = FileStateStore(str(out / "_sfint_checkpoint.json"))
    transports: list[Any] = []

    def pubsub() -> Any:  # the Pub/Sub client's own sign-in is counted too
        transports.append(Transport(config))
        return PubSubClient.for_config(transports[-1])

    engine = ChangeEventsEngine(rest, pubsub, settings, store)
    engine.transports = transports  # type: ignore[attr-defined]
    return engine


# --- (a) decode: children ----------------------------------------------------------------------------------


def child_sfint(url: str, grpc_target: str, out: str) -> dict[str, Any]:
    from airflow_provider_sfint.client import SalesforceClient

    idle = 2.0
    config = _config(url, grpc_target)
    with SalesforceClient(config) as rest:
        rest.login()
        calls = rest.transport.calls
        start = time.perf_counter()
        engine = _engine(config, rest, Path(out), idle)
        summary = engine.run()
        wall = time.perf_counter() - start - idle
        api_calls = rest.transport.calls - calls + sum(t.calls for t in engine.transports)
    return {"wall_s": round(wall, 3), "events": summary["events"], "peak_rss_mb": rss_mb(), "api_calls": api_calls}


def child_floor(url: str, grpc_target: str, out: str) -> dict[str, Any]:
    """Fetch every payload first (not timed), then time bare fastavro decoding into one Arrow table."""
    import io

    import fastavro
    import grpc
    import pyarrow as pa

    import airflow_provider_sfint.pubsub_proto as pb

    auth = client_token(url, True)
    org = auth["id"].rstrip("/").split("/")[-2]
    metadata = [("accesstoken", auth["access_token"]), ("instanceurl", auth["instance_url"]), ("tenantid", org)]
    channel = grpc.insecure_channel(grpc_target, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    payloads: list[bytes] = []
    schema_id = ""
    call = channel.stream_stream(
        pb.method_path("Subscribe"),
        request_serializer=pb.FetchRequest.SerializeToString,
        response_deserializer=pb.FetchResponse.FromString,
    )
    import queue

    requests: queue.Queue[Any] = queue.Queue()
    requests.put(pb.FetchRequest(topic_name=CHANNEL, replay_preset=pb.EARLIEST, num_requested=100))
    expected = int(out)

    def feed() -> Any:
        while (item := requests.get()) is not None:
            yield item

    stream = call(feed(), metadata=metadata)
    for response in stream:
        for e in response.events:
            payloads.append(bytes(e.event.payload))
            schema_id = e.event.schema_id
        if len(payloads) >= expected:
            break
        if response.events:
            requests.put(pb.FetchRequest(topic_name=CHANNEL, num_requested=len(response.events)))
    stream.cancel()
    requests.put(None)
    get_schema = channel.unary_unary(
        pb.method_path("GetSchema"),
        request_serializer=pb.SchemaRequest.SerializeToString,
        response_deserializer=pb.SchemaInfo.FromString,
    )
    info = get_schema(pb.SchemaRequest(schema_id=schema_id), metadata=metadata)
    schema = fastavro.parse_schema(json.loads(info.schema_json))
    start = time.perf_counter()
    records = [fastavro.schemaless_reader(io.BytesIO(p), schema, None) for p in payloads]
    for r in records:  # the header as columns, as any table of changes needs it
        r.update(r.pop("ChangeEventHeader"))
    table = pa.Table.from_pylist(records)
    wall = time.perf_counter() - start
    return {"wall_s": round(wall, 3), "events": table.num_rows, "peak_rss_mb": rss_mb(), "api_calls": 0}


def decode(rows: int, big_rows: int) -> list[dict[str, Any]]:
    results = []
    for n in [rows, big_rows] if big_rows else [rows]:
        grpc_port = free_port()
        with EmulatorProcess(extra_args=["--grpc-port", str(grpc_port)]) as emulator:
            emulator.admin("PUT", "limits", json={"platform_events_delivered_max": 100_000_000})
            emulator.admin("PUT", "pubsub/cdc", json={"enable": ["Account"]})
            access = client_token(emulator.url, True)["access_token"]
            bulk_insert(emulator.url, access, n)
            target = f"127.0.0.1:{grpc_port}"
            with tempfile.TemporaryDirectory() as out:
                ours = run_child([sys.executable, __file__, "--child", "sfint", emulator.url, target, out])
            floor = run_child([sys.executable, __file__, "--child", "floor", emulator.url, target, str(n)])
        for tool, r in (("sfint", ours), ("floor", floor)):
            r = {"tool": tool, "part": "decode", "rows": n, **r}
            if "wall_s" in r:
                r["events_per_s"] = round(r["events"] / r["wall_s"]) if r["wall_s"] else None
            results.append(r)
        print(json.dumps(results[-2:]), flush=True)
    return results


# --- (b) the cost of staying current ------------------------------------------------------------------------


def sync_cost(hours: int, per_hour: int, every_minutes: int, accounts: int) -> list[dict[str, Any]]:
    import random

    import pyarrow as pa

    from airflow_provider_sfint.client import SalesforceClient
    from airflow_provider_sfint.client.arrowio.types import arrow_type
    from airflow_provider_sfint.engines.query import QueryEngine, QuerySettings, QuerySpec

    grpc_port = free_port()
    rng = random.Random(15)
    syncs = hours * 60 // every_minutes
    per_sync = per_hour * every_minutes // 60
    cdc: list[tuple[int, float]] = []
    bulk: list[tuple[int, float]] = []
    with EmulatorProcess(extra_args=["--grpc-port", str(grpc_port)]) as emulator, tempfile.TemporaryDirectory() as tmp:
        emulator.admin("PUT", "limits", json={"platform_events_delivered_max": 100_000_000})
        emulator.admin("PUT", "pubsub/cdc", json={"enable": ["Account"]})
        access = client_token(emulator.url, True)["access_token"]
        bulk_insert(emulator.url, access, accounts)
        ids = [r["Id"] for r in emulator.admin("GET", "records/Account")]
        config = _config(emulator.url, f"127.0.0.1:{grpc_port}")
        lake, windows = Path(tmp) / "lake", Path(tmp) / "windows"
        windows.mkdir()
        http = httpx.Client(
            base_url=f"{emulator.url}/services/data/v62.0", headers={"Authorization": f"Bearer {access}"}, timeout=600
        )
        with SalesforceClient(config) as rest:
            rest.login()
            by_name = {f["name"]: f for f in rest.describe("Account")["fields"]}
            columns = ("Id", "Name", "NumberOfEmployees", "SystemModstamp")
            schema = pa.schema([(n, arrow_type(by_name[n])) for n in columns])
            # both start caught up: the change stream after the initial load, the window at "now"
            _engine(config, rest, lake, 1.0).run()
            since = datetime.fromisoformat(emulator.admin("GET", "clock")["now"].replace("Z", "+00:00"))
            for n in range(syncs):
                for start in range(0, per_sync, 200):  # the hour's changes, through Collections
                    chunk = rng.sample(ids, min(200, per_sync - start))
                    records = [
                        {"attributes": {"type": "Account"}, "id": i, "NumberOfEmployees": rng.randrange(10**6)}
                        for i in chunk
                    ]
                    assert http.patch("/composite/sobjects", json={"records": records}).status_code == 200
                offset = float(emulator.admin("GET", "clock")["offset_seconds"])
                emulator.admin("PUT", "clock", json={"offset_seconds": offset + every_minutes * 60})
                calls, t0 = rest.transport.calls, time.perf_counter()
                engine = _engine(config, rest, lake, SYNC_IDLE)
                got = engine.run()
                spent = rest.transport.calls - calls + sum(t.calls for t in engine.transports)
                cdc.append((spent, time.perf_counter() - t0 - SYNC_IDLE))
                assert got["events"] == per_sync, (got["events"], per_sync)
                until = datetime.fromisoformat(emulator.admin("GET", "clock")["now"].replace("Z", "+00:00"))
                fmt = "%Y-%m-%dT%H:%M:%SZ"
                soql = (
                    f"SELECT {', '.join(columns)} FROM Account "
                    f"WHERE SystemModstamp >= {since.strftime(fmt)} AND SystemModstamp < {until.strftime(fmt)}"
                )
                since = until
                calls, t0 = rest.transport.calls, time.perf_counter()
                target = windows / f"w{n}.parquet"
                spec = QuerySpec(soql, False, str(target), "parquet", False, True)
                query = QueryEngine(rest, spec, target, schema, QuerySettings(poll_interval=0.5))
                job = query.submit()
                query.recorded(job)
                query.wait(job)
                query.collect(job)
                bulk.append((rest.transport.calls - calls, time.perf_counter() - t0))
        http.close()
    out = []
    for tool, samples in (("sfint_cdc", cdc), ("bulk_window", bulk)):
        out.append(
            {
                "tool": tool,
                "part": "sync cost",
                "syncs": len(samples),
                "changes_per_sync": per_sync,
                "api_calls": sum(c for c, _ in samples),
                "api_calls_per_sync": round(statistics.mean(c for c, _ in samples), 2),
                "wall_s": round(sum(w for _, w in samples), 2),
                "wall_s_per_sync": round(statistics.mean(w for _, w in samples), 3),
            }
        )
    print(json.dumps(out), flush=True)
    return out


# --- (c) freshness under a real triggerer -------------------------------------------------------------------

WATCH_DAG = """
import os
from datetime import datetime, timezone

from airflow.sdk import DAG, Asset, AssetWatcher

from airflow_provider_sfint.operators.change_events import SalesforceChangeEventsOperator
from airflow_provider_sfint.triggers.channel import SalesforceChannelTrigger

bell = SalesforceChannelTrigger(channel="/data/AccountChangeEvent", min_interval=1)
changes = Asset("bench_account_changes", watchers=[AssetWatcher(name="bench_account_changes", trigger=bell)])

with DAG("bench_freshness", schedule=[changes], start_date=datetime(2026, 1, 1, tzinfo=timezone.utc), catchup=False):
    SalesforceChangeEventsOperator(task_id="changes", channel="/data/AccountChangeEvent",
                                   destination=os.environ["BENCH_LAKE"], idle_seconds=1)
"""


def freshness(samples: int, interval: float) -> list[dict[str, Any]]:
    from tests.airflow_stack import AirflowStack, connection_env

    grpc_port = free_port()
    delays_start: list[float] = []
    delays_queued: list[float] = []
    with EmulatorProcess(extra_args=["--grpc-port", str(grpc_port)]) as emulator, tempfile.TemporaryDirectory() as tmp:
        emulator.admin("PUT", "pubsub/cdc", json={"enable": ["Account"]})
        dags = Path(tmp) / "dags"
        dags.mkdir()
        (dags / "fresh.py").write_text(WATCH_DAG)
        env = {
            **connection_env("sfint_default", emulator.url, pubsub_endpoint=f"127.0.0.1:{grpc_port}"),
            "BENCH_LAKE": str(Path(tmp) / "lake"),
        }
        access = client_token(emulator.url, True)["access_token"]
        http = httpx.Client(
            base_url=f"{emulator.url}/services/data/v62.0", headers={"Authorization": f"Bearer {access}"}, timeout=60
        )
        with AirflowStack(Path(tmp) / "home", dags, env) as stack:
            stack.wait("a listening watcher", lambda: emulator.admin("GET", "pubsub")["subscribers"].get(CHANNEL), 300)
            for i in range(samples):
                before = len(stack.runs("bench_freshness"))
                committed = time.time()
                assert http.post("/sobjects/Account", json={"Name": f"Fresh {i}"}).status_code == 201
                run = stack.wait(
                    "a started run",
                    lambda b=before: [r for r in stack.runs("bench_freshness")[b:] if r["start_date"]],
                    120,
                )[0]
                queued = stack.query("SELECT queued_at FROM dag_run WHERE run_id = ?", run["run_id"])[0]["queued_at"]
                delays_start.append(_epoch(run["start_date"]) - committed)
                delays_queued.append(_epoch(queued) - committed)
                stack.wait("the run to end", lambda r=run["run_id"]: _ended(stack, r), 120)
                time.sleep(interval)
        http.close()
    out = [
        {
            "tool": "sfint_watcher",
            "part": "freshness",
            "samples": samples,
            "p50_commit_to_run_start_s": round(statistics.median(delays_start), 2),
            "max_commit_to_run_start_s": round(max(delays_start), 2),
            "p50_commit_to_run_queued_s": round(statistics.median(delays_queued), 2),
            "api_calls": None,
        }
    ]
    print(json.dumps(out), flush=True)
    return out


def _epoch(value: str) -> float:
    stamp = datetime.fromisoformat(value)
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def _ended(stack: Any, run_id: str) -> bool:
    rows = stack.query("SELECT state FROM dag_run WHERE run_id = ?", run_id)
    return bool(rows) and rows[0]["state"] in ("success", "failed")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--big-rows", type=int, default=1_000_000, help="0 skips the memory-flatness run")
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--changes-per-hour", type=int, default=1000)
    parser.add_argument("--every-minutes", type=int, default=15)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--fresh-samples", type=int, default=10)
    parser.add_argument("--fresh-interval", type=float, default=3.0)
    parser.add_argument("--parts", default="decode,sync,freshness")
    parser.add_argument("--out", default="bench/results/cdc.json")
    parser.add_argument("--child", choices=["sfint", "floor"])
    args, rest = parser.parse_known_args()
    if args.child:
        fn = child_sfint if args.child == "sfint" else child_floor
        print("RESULT " + json.dumps(fn(*rest)))
        return
    parts = set(args.parts.split(","))
    rows: list[dict[str, Any]] = []
    if "decode" in parts:
        rows += decode(args.rows, args.big_rows)
    if "sync" in parts:
        rows += sync_cost(args.hours, args.changes_per_hour, args.every_minutes, args.accounts)
    if "freshness" in parts:
        rows += freshness(args.fresh_samples, args.fresh_interval)
    checks = _checks(rows)
    result = {"machine": machine(), "when": datetime.now(UTC).isoformat(), "rows": rows, "checks": checks}
    write_result(args.out, result, {"rows": rows, "checks": checks})


def _checks(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def find(tool: str, part: str, **match: Any) -> dict[str, Any] | None:
        for r in rows:
            if r.get("tool") == tool and r.get("part") == part and all(r.get(k) == v for k, v in match.items()):
                return r
        return None

    checks: dict[str, Any] = {}
    decoded = sorted({r["rows"] for r in rows if r.get("part") == "decode"})
    if decoded:
        ours, floor = find("sfint", "decode", rows=decoded[0]), find("floor", "decode", rows=decoded[0])
        if ours and floor and "wall_s" in ours and "wall_s" in floor:
            ratio = floor["wall_s"] / ours["wall_s"]
            checks["decode_vs_floor"] = {"value": round(ratio, 3), "target": ">= 0.6", "met": ratio >= 0.6}
            rss = ours["peak_rss_mb"]
            checks["decode_peak_rss_mb"] = {"value": rss, "target": "<= 300", "met": rss <= 300}
        big = find("sfint", "decode", rows=decoded[-1])
        if ours and big and big is not ours and "peak_rss_mb" in big:
            growth = big["peak_rss_mb"] / ours["peak_rss_mb"] - 1
            checks["rss_growth_to_big"] = {
                "value": f"{growth:+.1%} ({ours['peak_rss_mb']} -> {big['peak_rss_mb']} MB)",
                "target": "flat, <= 300 MB",
                "met": big["peak_rss_mb"] <= 300 and growth <= 0.25,
            }
    cdc, bulk = find("sfint_cdc", "sync cost"), find("bulk_window", "sync cost")
    if cdc and bulk:
        per_sync = cdc["api_calls_per_sync"]
        checks["cdc_calls_per_sync"] = {"value": per_sync, "target": "<= 2", "met": per_sync <= 2}
        fewer = bulk["api_calls"] / max(cdc["api_calls"], 1)
        checks["cdc_fewer_calls_than_bulk"] = {
            "value": f"{cdc['api_calls']} against {bulk['api_calls']} in {cdc['syncs']} syncs",
            "target": ">= 10x fewer",
            "met": fewer >= 10,
        }
    fresh = find("sfint_watcher", "freshness")
    if fresh:
        p50 = fresh["p50_commit_to_run_start_s"]
        checks["freshness_p50_s"] = {"value": p50, "target": "<= 5", "met": p50 <= 5}
    return checks


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
