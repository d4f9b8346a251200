"""The change-event consumer engine (``engines/changes.py``) against the emulator over gRPC: typed parts per
entity, the checkpoint, gap healing, an overflow stopping the run after committing what came before, the
final table equal to the store, and SIGKILL between the steps of a run with every event exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_sfint.client import ClientConfig, SalesforceClient
from airflow_provider_sfint.client.pubsub import PubSubClient
from airflow_provider_sfint.client.transport import Transport
from airflow_provider_sfint.emulator import EmulatorProcess
from airflow_provider_sfint.engines.changes import ChangeEventsEngine, ChangeSettings, ResyncNeeded
from airflow_provider_sfint.engines.state import MemoryStateStore

from ..emulator.helpers import Admin, SalesforceHttp

CHANNEL = "/data/AccountChangeEvent"


def _config(config: ClientConfig, server: EmulatorProcess) -> ClientConfig:
    import dataclasses

    return dataclasses.replace(config, pubsub_endpoint=server.grpc_target)


def _engine(config: ClientConfig, rest: SalesforceClient, output: Path, store: Any, **kw: Any) -> ChangeEventsEngine:
    idle = kw.pop("idle_seconds", 1.0)
    settings = ChangeSettings(channel=kw.pop("channel", CHANNEL), output=str(output), idle_seconds=idle, **kw)
    return ChangeEventsEngine(rest, lambda: PubSubClient.for_config(Transport(config)), settings, store)


def _rows(output: Path, entity: str = "Account") -> list[dict[str, Any]]:
    parts = sorted((output / entity).glob("part-*.parquet"))
    return [row for part in parts for row in pq.read_table(part).to_pylist()]


def _apply(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What a warehouse does with the change rows: merge by record id, field by field, in commit order."""
    table: dict[str, dict[str, Any]] = {}
    header = {"replay_id", "change_type", "record_id", "commit_timestamp", "commit_number", "transaction_key",
              "sequence_number", "changed_fields", "nulled_fields", "commit_user", "change_origin"}  # fmt: skip
    for row in sorted(rows, key=lambda r: (r["commit_number"], r["sequence_number"])):
        rid, kind = row["record_id"], row["change_type"]
        values = {k: v for k, v in row.items() if k not in header}
        if kind in ("DELETE", "GAP_DELETE"):
            table.pop(rid, None)
        elif kind in ("CREATE", "UNDELETE", "GAP_CREATE", "GAP_UPDATE", "GAP_UNDELETE"):
            table[rid] = values
        elif kind == "UPDATE":
            current = table.setdefault(rid, {})
            for name in row["changed_fields"]:
                current[name] = values.get(name)
    return table


def test_parts_checkpoint_and_the_table_equals_the_store(
    config: ClientConfig, emulator_server: EmulatorProcess, sf: SalesforceHttp, admin: Admin, tmp_path: Path
) -> None:
    config = _config(config, emulator_server)
    store = MemoryStateStore()
    ids = [r["id"] for r in sf.post("composite/sobjects", json={"records": [
        {"attributes": {"type": "Account"}, "Name": f"T{i}", "AnnualRevenue": 1000 + i, "NumberOfEmployees": i,
         "BillingCity": "Oslo", "Description": "first"} for i in range(5)]}).json()]  # fmt: skip
    sf.patch(f"sobjects/Account/{ids[0]}", json={"Description": None, "BillingCity": "Bergen", "Rating": "Hot"})
    sf.delete(f"sobjects/Account/{ids[1]}")
    with SalesforceClient(config) as rest:
        first = _engine(config, rest, tmp_path, store).run()
        assert first["events"] == 7 and first["rows"] == {"CREATE": 5, "UPDATE": 1, "DELETE": 1}
        assert first["parts"] == [str(tmp_path / "Account" / "part-000001.parquet")]
        schema = pq.read_schema(first["parts"][0])
        assert schema.field("AnnualRevenue").type == pa.decimal128(18, 0)
        assert schema.field("CreatedDate").type == pa.timestamp("ms", tz="UTC")
        assert schema.field("changed_fields").type == pa.list_(pa.string())
        update = next(r for r in _rows(tmp_path) if r["change_type"] == "UPDATE")
        assert update["changed_fields"] == ["LastModifiedDate", "Description", "Rating", "BillingCity"]
        assert update["nulled_fields"] == ["Description"] and update["BillingCity"] == "Bergen"
        assert store.get("checkpoint")["replay_id"] == first["last_replay_id"]
        again = _engine(config, rest, tmp_path, store).run()
        assert again["events"] == 0 and again["parts"] == []
        sf.patch(f"sobjects/Account/{ids[2]}", json={"NumberOfEmployees": 99})
        third = _engine(config, rest, tmp_path, store).run()
        assert third["parts"] == [str(tmp_path / "Account" / "part-000002.parquet")]
    table = _apply(_rows(tmp_path))
    stored = {r["Id"]: r for r in admin.records("Account", include_deleted=False) if r["Id"] in ids}
    assert set(table) == set(stored) == {ids[0], *ids[2:]}
    for rid, record in stored.items():
        for name in ("Name", "BillingCity", "Description", "Rating", "NumberOfEmployees"):
            assert table[rid].get(name) == record[name], (rid, name)
        assert table[rid]["AnnualRevenue"] == Decimal(str(record["AnnualRevenue"])).quantize(Decimal(1))


def test_gap_events_are_healed_with_current_values(
    config: ClientConfig, emulator_server: EmulatorProcess, sf: SalesforceHttp, admin: Admin, tmp_path: Path
) -> None:
    config = _config(config, emulator_server)
    kept, gone = admin.load("Account", [{"Name": "Written straight"}, {"Name": "Deleted straight"}])
    sf.delete(f"sobjects/Account/{gone}")  # a DELETE event, then the gap for both
    admin._call("POST", "pubsub/gap", json={"object": "Account", "ids": [kept, gone], "change_type": "GAP_UPDATE"})
    with SalesforceClient(config) as rest:
        summary = _engine(config, rest, tmp_path, MemoryStateStore()).run()
    assert summary["gaps_healed"] == 2
    rows = {(r["record_id"], r["change_type"]): r for r in _rows(tmp_path)}
    assert rows[(kept, "GAP_UPDATE")]["Name"] == "Written straight"
    assert (gone, "GAP_DELETE") in rows


def test_an_overflow_without_resync_commits_what_came_before_and_asks_for_a_snapshot(
    config: ClientConfig, emulator_server: EmulatorProcess, sf: SalesforceHttp, admin: Admin, tmp_path: Path
) -> None:
    config = _config(config, emulator_server)
    sf.post("sobjects/Account", json={"Name": "Before"})
    admin._call("PUT", "pubsub", json={"overflow_threshold": 3})
    sf.post(
        "composite/sobjects", json={"records": [{"attributes": {"type": "Account"}, "Name": f"M{i}"} for i in range(5)]}
    )
    store = MemoryStateStore()
    with SalesforceClient(config) as rest, pytest.raises(ResyncNeeded) as caught:
        _engine(config, rest, tmp_path, store, resync=False).run()
    assert caught.value.entity == "Account" and "snapshot" in str(caught.value)
    assert [r["Name"] for r in _rows(tmp_path)] == ["Before"]
    assert store.get("checkpoint")["replay_id"] != caught.value.replay_id


def _apply_parts(output: Path) -> dict[str, dict[str, Any]]:
    """Parts in order; a SNAPSHOT part replaces the table's rows of its records."""
    table: dict[str, dict[str, Any]] = {}
    for part in sorted((output / "Account").glob("part-*.parquet")):
        rows = pq.read_table(part).to_pylist()
        snapshot = [r for r in rows if r["change_type"] == "SNAPSHOT"]
        if snapshot:
            table.clear()
            table.update({r["record_id"]: {k: v for k, v in r.items()} for r in snapshot})
            rows = [r for r in rows if r["change_type"] != "SNAPSHOT"]
        _apply_changes_onto(table, rows)
    return table


def _apply_changes_onto(table: dict[str, dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    for row in sorted(rows, key=lambda r: (r["commit_number"], r["sequence_number"])):
        rid, kind = row["record_id"], row["change_type"]
        if kind in ("DELETE", "GAP_DELETE"):
            table.pop(rid, None)
        elif kind == "UPDATE":
            current = table.setdefault(rid, {})
            for name in row["changed_fields"]:
                current[name] = row.get(name)
        else:
            table[rid] = dict(row)
    return table


@pytest.mark.parametrize("case", ["overflow", "expired checkpoint", "initial snapshot"])
def test_snapshots_heal_overflow_expiry_and_start_with_no_hole(
    case: str, config: ClientConfig, emulator_server: EmulatorProcess, sf: SalesforceHttp, admin: Admin, tmp_path: Path
) -> None:
    """Snapshot plus the stream equals the store, row by row."""
    config = _config(config, emulator_server)
    store = MemoryStateStore()
    seeded = admin.load("Account", [{"Name": f"Seed {i}", "BillingCity": "Oslo"} for i in range(4)])  # no events
    sf.post("sobjects/Account", json={"Name": "Before"})
    with SalesforceClient(config) as rest:
        if case == "expired checkpoint":
            _engine(config, rest, tmp_path, store).run()
            admin._call("PUT", "clock", json={"offset_seconds": 73 * 3600})
            sf_fresh = SalesforceHttp.login(sf.url)
            sf_fresh.patch(f"sobjects/Account/{seeded[0]}", json={"BillingCity": "Lost event"})
            sf_fresh.post("sobjects/Account", json={"Name": "After expiry"})
        if case == "overflow":
            admin._call("PUT", "pubsub", json={"overflow_threshold": 3})
            sf.post(
                "composite/sobjects",
                json={"records": [{"attributes": {"type": "Account"}, "Name": f"M{i}"} for i in range(5)]},
            )
            sf.patch(f"sobjects/Account/{seeded[1]}", json={"BillingCity": "Bergen"})
        start = "SNAPSHOT" if case == "initial snapshot" else "EARLIEST"
        try:
            summary = _engine(config, rest, tmp_path, store, start=start).run()
        finally:
            admin._call("PUT", "clock", json={"offset_seconds": 0})
    assert summary["snapshots"] == 1 and summary["rows"]["SNAPSHOT"] >= 5
    table = _apply_parts(tmp_path)
    stored = {r["Id"]: r for r in admin.records("Account", include_deleted=False)}
    assert set(table) == set(stored)
    for rid, record in stored.items():
        for name in ("Name", "BillingCity"):
            assert table[rid].get(name) == record[name], (case, rid, name)


SCRIPT = textwrap.dedent(
    """
    import json, sys
    from airflow_provider_sfint.client import ClientConfig, SalesforceClient
    from airflow_provider_sfint.client.pubsub import PubSubClient
    from airflow_provider_sfint.client.transport import Transport
    from airflow_provider_sfint.engines.changes import ChangeEventsEngine, ChangeSettings
    from airflow_provider_sfint.engines.state import FileStateStore

    config = ClientConfig(**json.loads(sys.argv[1]))
    settings = ChangeSettings(channel="/data/AccountChangeEvent", output=sys.argv[2], idle_seconds=1.0,
                              start=sys.argv[4])
    with SalesforceClient(config) as rest:
        engine = ChangeEventsEngine(rest, lambda: PubSubClient.for_config(Transport(config)), settings,
                                    FileStateStore(sys.argv[3]))
        print("SUMMARY", json.dumps(engine.run()))
    """
)


#: every crash point of the change-event engine (tests/reliability/test_crash_points.py checks none is missed)
CRASH_POINTS = [
    "changes.run_recorded",
    "changes.part_written",
    "changes.parts_committed",
    "changes.checkpoint_moved",
    "changes.snapshot_read",
    "changes.snapshot_committed",
]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_killed_anywhere_every_event_exactly_once(
    point: str, config: ClientConfig, emulator_server: EmulatorProcess, sf: SalesforceHttp, tmp_path: Path
) -> None:
    config = _config(config, emulator_server)
    records = [{"attributes": {"type": "Account"}, "Name": f"K{i}"} for i in range(30)]
    ids = [r["id"] for r in sf.post("composite/sobjects", json={"records": records}).json()]
    settings = {
        k: getattr(config, k) for k in ("auth_type", "login_url", "client_id", "client_secret", "pubsub_endpoint")
    }
    out, state, ledger = tmp_path / "lake", tmp_path / "state.json", tmp_path / "ledger"
    env = {**os.environ, "SFINT_CRASH_AT": point, "SFINT_CRASH_LEDGER": str(ledger)}
    start = "SNAPSHOT" if "snapshot" in point else "EARLIEST"
    command = [sys.executable, "-c", SCRIPT, json.dumps(settings), str(out), str(state), start]
    killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    sf.post("sobjects/Account", json={"Name": "After the crash"})  # the retry reads further than the first try
    retried = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    rows = _rows(out)
    if start == "SNAPSHOT":  # the snapshot part once, then the replayed events on top of it
        table = _apply_parts(out)
        assert sorted(r["Name"] for r in table.values() if r["Name"].startswith("K")) == sorted(
            f"K{i}" for i in range(30)
        )
        assert "After the crash" in {r["Name"] for r in table.values()}
        assert len([r for r in rows if r["change_type"] == "SNAPSHOT"]) >= 30
        return
    names = [r["Name"] for r in rows]
    assert sorted(r["record_id"] for r in rows if r["Name"] != "After the crash") == sorted(ids)
    assert len(names) == len(set(names)) == 31, "every event once: no part doubled, none lost"
    assert not list((out / "Account").glob(".*sfint-tmp"))


def test_a_field_added_mid_run_becomes_a_new_column(
    config: ClientConfig, emulator_server: EmulatorProcess, sf: SalesforceHttp, admin: Admin, tmp_path: Path
) -> None:
    config = _config(config, emulator_server)
    first = sf.post("sobjects/Account", json={"Name": "Old schema"}).json()["id"]
    with SalesforceClient(config) as rest:
        engine = _engine(config, rest, tmp_path, MemoryStateStore())
        engine.columns("Account")  # describe read before the field exists
        admin._call("POST", "pubsub/fields/Account", json={"name": "Tier__c", "type": "string", "length": 20})
        sf.patch(f"sobjects/Account/{first}", json={"Tier__c": "Gold"})
        summary = engine.run()
    assert summary["events"] == 2
    (part,) = summary["parts"]
    table = pq.read_table(part)
    assert "Tier__c" in table.schema.names
    assert [r["Tier__c"] for r in table.to_pylist()] == [None, "Gold"]


def test_describe_is_read_once_per_event_schema(
    config: ClientConfig, emulator_server: EmulatorProcess, sf: SalesforceHttp, admin: Admin, tmp_path: Path
) -> None:
    """A sync whose events carry the schema id of the last run's needs no REST call: the describe it typed the
    columns from is kept in the checkpoint per schema id. A new field (a new schema id) reads describe again."""
    config = _config(config, emulator_server)
    store = MemoryStateStore()
    record = sf.post("sobjects/Account", json={"Name": "Kept", "AnnualRevenue": 10}).json()["id"]
    with SalesforceClient(config) as rest:
        rest.login()
        _engine(config, rest, tmp_path, store).run()
        assert store.get("checkpoint")["columns"]["Account"]["schema_id"]
        sf.patch(f"sobjects/Account/{record}", json={"AnnualRevenue": 20})
        calls = rest.transport.calls
        second = _engine(config, rest, tmp_path, store).run()
        assert second["events"] == 1 and rest.transport.calls == calls  # no describe, no REST call at all
        assert pq.read_table(second["parts"][0]).to_pylist()[0]["AnnualRevenue"] == Decimal(20)  # still typed
        admin._call("POST", "pubsub/fields/Account", json={"name": "Tier__c", "type": "string", "length": 20})
        sf.patch(f"sobjects/Account/{record}", json={"Tier__c": "Gold"})
        calls = rest.transport.calls
        third = _engine(config, rest, tmp_path, store).run()
        assert rest.transport.calls == calls + 1  # describe, once, for the new schema
        assert pq.read_table(third["parts"][0]).to_pylist()[0]["Tier__c"] == "Gold"


def test_a_long_backlog_is_committed_every_part_events(
    config: ClientConfig, emulator_server: EmulatorProcess, sf: SalesforceHttp, tmp_path: Path
) -> None:
    """A run far behind holds at most part_events events: it commits a part and moves the checkpoint every
    part_events, is charged for exactly the events it read, and max_events still caps the run."""
    config = _config(config, emulator_server)
    records = [{"attributes": {"type": "Account"}, "Name": f"Backlog {i}"} for i in range(30)]
    ids = [r["id"] for r in sf.post("composite/sobjects", json={"records": records}).json()]
    store = MemoryStateStore()
    with SalesforceClient(config) as rest:
        capped = _engine(config, rest, tmp_path / "capped", MemoryStateStore(), part_events=7, max_events=10).run()
        assert capped["events"] == 10 and capped["deliveries"] == 10 and len(capped["parts"]) == 2
        summary = _engine(config, rest, tmp_path / "all", store, part_events=7).run()
    assert summary["events"] == 30 and summary["deliveries"] == 30
    assert [Path(p).name for p in summary["parts"]] == [f"part-00000{i}.parquet" for i in range(1, 6)]
    sizes = [pq.read_metadata(p).num_rows for p in summary["parts"]]
    assert sizes == [7, 7, 7, 7, 2]
    rows = _rows(tmp_path / "all")
    assert [r["record_id"] for r in rows] == ids  # in order, each once
    assert store.get("checkpoint")["replay_id"] == summary["last_replay_id"] == rows[-1]["replay_id"]


@pytest.mark.parametrize("fault", ["cut", "unavailable", "expired session"])
def test_a_broken_stream_mid_run_ends_with_every_event_once_in_the_lake(
    fault: str, config: ClientConfig, emulator_server: EmulatorProcess, sf: SalesforceHttp, admin: Admin, tmp_path: Path
) -> None:
    """The stream cut every 25 events, UNAVAILABLE for the next calls, or every session expired while the run
    reads: the run reconnects after the last replay id and the lake holds each of the 250 events once."""
    import threading
    import time

    config = _config(config, emulator_server)
    ids: list[str] = []
    for start in range(0, 250, 125):
        records = [{"attributes": {"type": "Account"}, "Name": f"F{start + i}"} for i in range(125)]
        ids += [r["id"] for r in sf.post("composite/sobjects", json={"records": records}).json()]
    stop = threading.Event()
    if fault == "cut":
        admin._call("PUT", "pubsub", json={"cut_stream_after_events": 25})
    elif fault == "unavailable":
        admin._call("PUT", "pubsub", json={"unavailable_calls": 2})
    else:

        def expire_mid_run() -> None:  # once the run has read some events, every session expires
            while not stop.is_set():
                delivered = {c["channel"]: c["delivered"] for c in admin._call("GET", "pubsub/channels")}
                if delivered.get(CHANNEL, 0) >= 100:
                    admin._call("POST", "tokens/expire")
                    return
                time.sleep(0.01)

        threading.Thread(target=expire_mid_run, daemon=True).start()
    try:
        with SalesforceClient(config) as rest:
            # idle_seconds: "caught up" is an idle gap; a starved CI machine must not read a slow reconnection as one
            # a run on a starved machine may take a slow reconnection for "caught up" and end early: the next run
            # continues from the checkpoint (what matters is once, across runs)
            store = MemoryStateStore()
            summary = {"events": 0, "reconnects": 0}
            for _ in range(5):
                run = _engine(config, rest, tmp_path, store, batch_size=20, part_events=60, idle_seconds=4.0).run()
                summary = {k: summary[k] + run[k] for k in summary}
                if summary["events"] >= 250:
                    break
    finally:
        stop.set()
    rows = _rows(tmp_path)
    assert [r["record_id"] for r in rows] == ids  # in order, none lost, none twice
    assert summary["events"] == 250
    if fault != "expired session":
        assert summary["reconnects"] >= 1
