"""The event half of ``make demo``: after the Bulk main job, the event-driven DAG under a real scheduler and
triggerer (``airflow standalone``), started by change events the demo makes in the emulator.

Prints what arrived, the delay from the commit in Salesforce to the change in the warehouse, and the REST API
calls the event-driven runs spent against what polling for the same freshness would cost.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.airflow_stack: the same harness as the tests
from tests.airflow_stack import AirflowStack

DAG_ID = "salesforce_cdc_to_warehouse"
CHANNEL = "/data/ChangeEvents"
#: what a Bulk window costs per object and poll: create the job, poll it, read its results (at least)
BULK_CALLS_PER_OBJECT = 4


def _changes(url: str, token: str, ids: list[str], n: int, rng: random.Random) -> float:
    """``n`` Account updates through sObject Collections, 200 a call; the commit time of the last call."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"{url}/services/data/v62.0", headers=headers, timeout=60) as http:
        for start in range(0, n, 200):
            records = [
                {"attributes": {"type": "Account"}, "id": i, "NumberOfEmployees": rng.randrange(1, 10**5)}
                for i in rng.sample(ids, min(200, n - start))
            ]
            response = http.patch("/composite/sobjects", json={"records": records})
            response.raise_for_status()
            refused = [r for r in response.json() if not r["success"]]
            if refused:
                raise SystemExit(f"the emulator refused {len(refused)} of the demo's changes: {refused[:3]}")
        return time.time()


def _ended_run(stack: AirflowStack, seen: int) -> dict[str, Any] | None:
    runs = [r for r in stack.runs(DAG_ID) if r["state"] in ("success", "failed")]
    return runs[seen] if len(runs) > seen else None


def _epoch(value: str) -> float:
    from datetime import UTC, datetime

    stamp = datetime.fromisoformat(value)
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def run_event_half(emulator_url: str, env: dict[str, str], out: Path, home: Path) -> dict[str, Any]:
    """Start Airflow with the event-driven DAG, make two bursts of changes, and measure each run they start."""
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(__file__).resolve().parents[1] / "dags_examples" / f"{DAG_ID}.py", dags)
    keep = {k: v for k, v in env.items() if k.startswith(("AIRFLOW_CONN_", "SFINT_"))}
    keep.update(SFINT_CDC_MIN_INTERVAL="1", SFINT_CDC_IDLE="2", SFINT_RETRIES="0")
    rng = random.Random(7)
    from airflow_provider_sfint.emulator import CLIENT_ID, CLIENT_SECRET

    grant = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    token = httpx.post(f"{emulator_url}/services/oauth2/token", data=grant).json()["access_token"]
    live = f"{emulator_url}/__emulator__/records/Account?include_deleted=false"
    ids = [r["Id"] for r in httpx.get(live, timeout=120).json()]
    results: dict[str, Any] = {}
    print("starting airflow standalone (scheduler, triggerer, DAG processor) with the event-driven DAG")
    with AirflowStack(home / "airflow-home", dags, keep) as stack:
        started = time.monotonic()
        stack.wait(
            "the watcher listening",
            lambda: httpx.get(f"{emulator_url}/__emulator__/pubsub").json()["subscribers"].get(CHANNEL),
            300,
        )
        print(f"the watcher listens on {CHANNEL} ({time.monotonic() - started:.0f} s after start)")
        for n, (label, count) in enumerate((("first run (Bulk snapshot, then every retained event)", 300),
                                            ("next run", 300))):  # fmt: skip
            committed = _changes(emulator_url, token, ids, count, rng)
            run = stack.wait(f"the {label}", lambda n=n: _ended_run(stack, n), 600)
            if run["state"] != "success":
                raise SystemExit(f"the event-driven run failed; see {stack.log} and the task logs in {home}")
            summary = json.loads((out / "lake" / "_runs" / "cdc_latest.json").read_text())
            results[label] = {
                "changes_made": count,
                "delay_s": round(_epoch(run["end_date"]) - committed, 1),
                "start_delay_s": round(_epoch(run["start_date"]) - committed, 1),
                **summary,
            }
    return results


def report(results: dict[str, Any]) -> str:
    lines = ["", "the event half: Salesforce change events -> lake -> warehouse, started by events"]
    for label, r in results.items():
        kinds = ", ".join(f"{k} {v:,}" for k, v in r["rows"].items())
        lines += [
            f"  {label}:",
            f"    changes made in Salesforce  {r['changes_made']:,} (sObject Collections)",
            f"    change events read          {r['events']:,} ({kinds})",
            f"    run started after           {r['start_delay_s']} s",
            f"    warehouse updated after     {r['delay_s']} s (from the commit in Salesforce)",
            f"    REST API calls              {r['api_calls']}",
        ]
    last = list(results.values())[-1]
    polls = 86_400 / max(last["delay_s"], 1)
    lines += [
        f"  polling for the same freshness ({last['delay_s']} s): a Bulk window of 3 objects every "
        f"{last['delay_s']} s, at least {BULK_CALLS_PER_OBJECT * 3} REST calls each: "
        f"{BULK_CALLS_PER_OBJECT * 3 * polls:,.0f} calls a day, against {last['api_calls']} for this run",
    ]
    return "\n".join(lines)
