"""Change-event benchmark (issue 14): the emulator's Pub/Sub delivery against a bare gRPC floor, and what
capturing change events adds to Bulk ingest. Run with ``make bench-events``; results go to
``bench/results/events.json``. Not part of the tests.

- ``ingest overhead``: one Bulk upsert of ``--rows`` Accounts (every row created), timed from
  UploadComplete to JobComplete, on an org reset to empty, with Account deselected from Change Data
  Capture and selected, in ``--repeat`` pairs of adjacent runs (alternating which goes first). The
  overhead is the median of the pairs' ratios; the best runs, the means and the emulator's CPU seconds are
  reported too (this machine's speed drifts by tens of percent from minute to minute).
- ``emulator``: one subscriber on ``/data/AccountChangeEvent`` (EARLIEST, 100 outstanding, re-requesting as
  events arrive, payloads not decoded) receiving the events of that upsert.
- ``floor``: the same subscriber against a bare grpcio server (its own process, no store, no auth) that
  streams the same number of pre-encoded payloads, taken from the emulator's own events, under the same
  flow control: the physical limit of gRPC delivery on this machine.

Each side runs in its own process: the emulator (or the floor server) and the subscriber. ``peak_rss_mb`` is
the serving process's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import EmulatorProcess, free_port, machine, rss_mb, run_child, write_result
from common import token as client_token

import airflow_provider_sfint.pubsub_proto as pb

TOPIC = "/data/AccountChangeEvent"


# --- the subscriber (child process) ---------------------------------------------------------------------


def subscribe(target: str, metadata: list[tuple[str, str]], count: int) -> dict[str, Any]:
    """Receive ``count`` events, keeping 100 requested; returns timings."""
    import queue

    channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    call = channel.stream_stream(
        pb.method_path("Subscribe"),
        request_serializer=pb.FetchRequest.SerializeToString,
        response_deserializer=pb.FetchResponse.FromString,
    )
    requests: queue.Queue[Any] = queue.Queue()
    requests.put(pb.FetchRequest(topic_name=TOPIC, replay_preset=pb.EARLIEST, num_requested=100))

    def feed() -> Iterator[Any]:
        while True:
            item = requests.get()
            if item is None:
                return
            yield item

    received = 0
    payload_bytes = 0
    start = time.perf_counter()
    stream = call(feed(), metadata=metadata)
    for response in stream:
        n = len(response.events)
        if not n:
            continue
        received += n
        payload_bytes += sum(len(e.event.payload) for e in response.events)
        if received >= count:
            break
        requests.put(pb.FetchRequest(topic_name=TOPIC, num_requested=n))
    wall = time.perf_counter() - start
    requests.put(None)
    stream.cancel()
    channel.close()
    return {
        "wall_s": round(wall, 3),
        "events": received,
        "events_per_s": round(received / wall, 1),
        "payload_mb": round(payload_bytes / 1e6, 2),
        "client_peak_rss_mb": rss_mb(),
    }


# --- the floor server (child process) ---------------------------------------------------------------------


def floor_server(port: int, count: int, payload_file: Path) -> None:
    """Serve ``count`` copies of the payloads in ``payload_file`` on Subscribe, honouring num_requested."""
    import threading

    sample = json.loads(payload_file.read_text())
    payloads = [bytes.fromhex(p) for p in sample["payloads"]]
    schema_id = sample["schema_id"]

    def handler(request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        pending = 0
        cond = threading.Condition()
        done = threading.Event()

        def read() -> None:
            nonlocal pending
            for request in request_iterator:
                with cond:
                    pending = min(100, pending + request.num_requested)
                    cond.notify()
            done.set()

        threading.Thread(target=read, daemon=True).start()
        sent = 0
        while sent < count and context.is_active():
            with cond:
                while pending == 0 and not done.is_set():
                    cond.wait(0.5)
                n = min(pending, count - sent)
                pending -= n
            if n == 0:
                return
            events = []
            for i in range(sent, sent + n):
                events.append(
                    pb.ConsumerEvent(
                        event=pb.ProducerEvent(id=str(i), schema_id=schema_id, payload=payloads[i % len(payloads)]),
                        replay_id=(i + 1).to_bytes(8, "big"),
                    )
                )
            sent += n
            latest = sent.to_bytes(8, "big")
            yield pb.FetchResponse(events=events, latest_replay_id=latest, pending_num_requested=pending)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                pb.SERVICE,
                {
                    "Subscribe": grpc.stream_stream_rpc_method_handler(
                        handler,
                        request_deserializer=pb.FetchRequest.FromString,
                        response_serializer=pb.FetchResponse.SerializeToString,
                    )
                },
            ),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("READY", flush=True)
    server.wait_for_termination()


# --- the orchestrator ----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bulk_upsert(url: str, access: str, rows: int) -> float:
    """Upsert ``rows`` new Accounts in one Bulk job; seconds from UploadComplete to JobComplete."""
    headers = {"Authorization": f"Bearer {access}"}
    body = "External_Id__c,Name,BillingCity,Industry,NumberOfEmployees\n" + "".join(
        f"EV-{i},Account {i},City {i % 50},Energy,{i % 5000}\n" for i in range(rows)
    )
    with httpx.Client(base_url=f"{url}/services/data/v62.0", headers=headers, timeout=600) as http:
        job = http.post(
            "/jobs/ingest",
            json={"object": "Account", "operation": "upsert", "externalIdFieldName": "External_Id__c"},
        ).json()["id"]
        http.put(f"/jobs/ingest/{job}/batches", content=body.encode(), headers={"Content-Type": "text/csv"})
        start = time.perf_counter()
        http.patch(f"/jobs/ingest/{job}", json={"state": "UploadComplete"})
        while True:
            info = http.get(f"/jobs/ingest/{job}").json()
            if info["state"] in ("JobComplete", "Failed", "Aborted"):
                break
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        assert info["state"] == "JobComplete" and info["numberRecordsFailed"] == 0, info
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5, help="pairs of ingest runs (without and with CDC)")
    parser.add_argument("--out", default="bench/results/events.json")
    parser.add_argument("--child", choices=["subscribe", "floor-server"])
    parser.add_argument("--target")
    parser.add_argument("--metadata")
    parser.add_argument("--port", type=int)
    parser.add_argument("--payloads")
    args = parser.parse_args()
    if args.child == "subscribe":
        result = subscribe(args.target, [tuple(m) for m in json.loads(args.metadata)], args.rows)
        print("RESULT " + json.dumps(result), flush=True)
        return
    if args.child == "floor-server":
        floor_server(args.port, args.rows, Path(args.payloads))
        return

    import subprocess
    import tempfile

    grpc_port = free_port()
    with EmulatorProcess(extra_args=["--grpc-port", str(grpc_port)]) as emulator:
        emulator.admin("PUT", "limits", json={"platform_events_delivered_max": 100_000_000})
        timings: dict[str, list[float]] = {"without_cdc": [], "with_cdc": []}
        cpu: dict[str, list[float]] = {"without_cdc": [], "with_cdc": []}
        ratios: list[float] = []
        for pair in range(args.repeat):
            # adjacent runs, in alternating order: this machine's speed drifts by tens of percent over
            # minutes, so each with-CDC run is compared with the run next to it
            modes = ("without_cdc", "with_cdc") if pair % 2 == 0 else ("with_cdc", "without_cdc")
            for mode in modes:
                emulator.admin("POST", "reset", json={"seed": "empty"})
                emulator.admin("PUT", "limits", json={"platform_events_delivered_max": 100_000_000})
                change = {"enable": ["Account"]} if mode == "with_cdc" else {"disable": ["Account"]}
                emulator.admin("PUT", "pubsub/cdc", json=change)
                access = client_token(emulator.url, emulator.verify)["access_token"]
                before = cpu_seconds(emulator.pid)
                timings[mode].append(bulk_upsert(emulator.url, access, args.rows))
                cpu[mode].append(cpu_seconds(emulator.pid) - before)
                print(mode, round(timings[mode][-1], 2), "s wall", round(cpu[mode][-1], 2), "s cpu", flush=True)
            ratios.append(timings["with_cdc"][-1] / timings["without_cdc"][-1])
        # the last reset left CDC as the last pair's second mode: the delivery run needs the with-CDC events
        if modes[-1] != "with_cdc":
            emulator.admin("POST", "reset", json={"seed": "empty"})
            emulator.admin("PUT", "limits", json={"platform_events_delivered_max": 100_000_000})
            emulator.admin("PUT", "pubsub/cdc", json={"enable": ["Account"]})
            bulk_upsert(emulator.url, client_token(emulator.url, emulator.verify)["access_token"], args.rows)
        login = client_token(emulator.url, emulator.verify)
        metadata = [
            ("accesstoken", login["access_token"]),
            ("instanceurl", login["instance_url"]),
            ("tenantid", login["id"].split("/")[-2]),
        ]
        stats = {c["channel"]: c for c in emulator.admin("GET", "pubsub/channels")}
        stored = stats[TOPIC]["events"]
        print("stored events on", TOPIC, stored, flush=True)
        command = [sys.executable, __file__, "--child", "subscribe", "--target", f"127.0.0.1:{grpc_port}"]
        sub = run_child([*command, "--metadata", json.dumps(metadata), "--rows", str(stored)])
        emulator_row = {"tool": "emulator", **sub, "peak_rss_mb": rss_mb(emulator.pid)}
        sample = _sample_payloads(f"127.0.0.1:{grpc_port}", metadata)
    with tempfile.TemporaryDirectory() as tmp:
        payload_file = Path(tmp) / "payloads.json"
        payload_file.write_text(json.dumps(sample))
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--child",
                "floor-server",
                "--port",
                str(port),
                "--rows",
                str(stored),
                "--payloads",
                str(payload_file),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "READY"
            child = [sys.executable, __file__, "--child", "subscribe", "--target", f"127.0.0.1:{port}"]
            floor = run_child([*child, "--metadata", "[]", "--rows", str(stored)])
            floor_row = {"tool": "floor", **floor, "peak_rss_mb": rss_mb(server.pid)}
        finally:
            server.terminate()
            server.wait(30)
    without, with_cdc = min(timings["without_cdc"]), min(timings["with_cdc"])
    overhead = sorted(ratios)[len(ratios) // 2] - 1  # the median of the paired ratios
    mean_without = sum(timings["without_cdc"]) / len(timings["without_cdc"])
    mean_with = sum(timings["with_cdc"]) / len(timings["with_cdc"])
    rows = [emulator_row, floor_row]
    ratio = emulator_row["events_per_s"] / floor_row["events_per_s"]
    result = {
        "workload": f"{stored:,} change events of a {args.rows:,}-row Bulk upsert to one subscriber",
        "machine": machine(),
        "rows": rows,
        "ingest": {
            "rows": args.rows,
            "seconds_without_cdc": round(without, 3),
            "seconds_with_cdc": round(with_cdc, 3),
            "runs": {k: [round(v, 3) for v in vs] for k, vs in timings.items()},
            "paired_ratios": [round(r, 3) for r in ratios],
            "overhead": round(overhead, 3),
            "overhead_of_best_runs": round(with_cdc / without - 1, 3),
            "overhead_of_means": round((mean_with - mean_without) / mean_without, 3),
            "emulator_cpu_s": {k: [round(v, 2) for v in vs] for k, vs in cpu.items()},
            "cpu_overhead": round(min(cpu["with_cdc"]) / min(cpu["without_cdc"]) - 1, 3),
        },
        "checks": {
            "emulator events/s to one subscriber": {"value": emulator_row["events_per_s"], "target": ">= 10,000"},
            "emulator / floor": {"value": round(ratio, 3), "target": ">= 0.5"},
            "CDC overhead on Bulk ingest (median of paired runs)": {"value": f"{overhead:.1%}", "target": "<= 25%"},
            "CDC overhead on Bulk ingest (best runs)": {"value": f"{with_cdc / without - 1:.1%}", "target": "<= 25%"},
            "CDC overhead on Bulk ingest (mean of runs)": {
                "value": f"{(mean_with - mean_without) / mean_without:.1%}",
                "target": "<= 25%",
            },
            "CDC overhead on the emulator's CPU time (best runs)": {
                "value": f"{min(cpu['with_cdc']) / min(cpu['without_cdc']) - 1:.1%}",
                "target": "<= 25%",
            },
        },
    }
    write_result(args.out, result, result)


def _sample_payloads(target: str, metadata: list[tuple[str, str]]) -> dict[str, Any]:
    """A thousand of the emulator's own event payloads (the floor replays them)."""
    channel = grpc.insecure_channel(target)
    call = channel.stream_stream(
        pb.method_path("Subscribe"),
        request_serializer=pb.FetchRequest.SerializeToString,
        response_deserializer=pb.FetchResponse.FromString,
    )
    requests = [pb.FetchRequest(topic_name=TOPIC, replay_preset=pb.EARLIEST, num_requested=100)]
    requests += [pb.FetchRequest(topic_name=TOPIC, num_requested=100) for _ in range(9)]
    payloads: list[str] = []
    schema_id = ""
    stream = call(iter(requests), metadata=metadata)
    for response in stream:
        for event in response.events:
            payloads.append(event.event.payload.hex())
            schema_id = event.event.schema_id
        if len(payloads) >= 1000:
            break
    stream.cancel()
    channel.close()
    return {"schema_id": schema_id, "payloads": payloads}


if __name__ == "__main__":
    main()
