"""The event-driven half of the main job: after the Bulk-loaded warehouse, change events from many write paths
are read into the lake and applied; the warehouse then equals a fresh Bulk extract of the org, row by row and
field by field, and applying again changes nothing."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from airflow_provider_sfint.operators.bulk_query import SalesforceBulkQueryOperator

from ..emulator.helpers import Admin, SalesforceHttp
from ..operators.conftest import make_context
from .conftest import EXAMPLES

NAME = "salesforce_cdc_to_warehouse"


def _columns() -> dict[str, list[str]]:
    source = (EXAMPLES / f"{NAME}.py").read_text()
    block = re.search(r"^COLUMNS = (\{.*?^\})", source, flags=re.S | re.M)
    assert block, "COLUMNS not found in the example"
    return dict(ast.literal_eval(block.group(1)))


def _main_job_columns() -> dict[str, list[str]]:
    source = (EXAMPLES / "salesforce_to_warehouse.py").read_text()
    extracts = re.findall(r'"(\w+)": "SELECT (.*?) FROM \1"', source.replace('"\n    "', ""))
    return {obj: [c.strip() for c in cols.split(",") if c.strip() != "IsDeleted"] for obj, cols in extracts}


def _warehouse(path: Path, columns: dict[str, list[str]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Each table by Id, without SystemModstamp (CDC stamps rows with the commit time, Bulk with the org's)."""
    with duckdb.connect(str(path), read_only=True) as db:
        return {
            obj: {
                row["Id"]: {k: v for k, v in row.items() if k != "SystemModstamp"}
                for row in db.sql(f"SELECT {', '.join(cols)} FROM {obj.lower()}").to_arrow_table().to_pylist()
            }
            for obj, cols in columns.items()
        }


def _bulk_extract(conn: str, columns: dict[str, list[str]], out: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """A fresh Bulk API 2.0 extract of the same columns, typed the same way: the reference."""
    reference = {}
    for obj, cols in columns.items():
        target = out / f"{obj}.parquet"
        op = SalesforceBulkQueryOperator(
            task_id=f"reference_{obj}",
            soql=f"SELECT {', '.join(cols)} FROM {obj}",
            output=str(target),
            sfint_conn_id=conn,
            poll_interval=0.2,
        )
        op.execute(make_context())
        rows = pq.read_table(target).to_pylist()
        reference[obj] = {r["Id"]: {k: v for k, v in r.items() if k != "SystemModstamp"} for r in rows}
    return reference


def _differences(got: dict[str, Any], want: dict[str, Any]) -> list[Any]:
    out = []
    for obj in want:
        for rid in sorted(set(got[obj]) | set(want[obj])):
            if got[obj].get(rid) != want[obj].get(rid):
                out.append((obj, rid, got[obj].get(rid), want[obj].get(rid)))
    return out


def _after_the_main_job(example: Any) -> Any:
    """The main job's first scheduled run (the Bulk-loaded warehouse), then the event-driven DAG, loaded."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    main = example("salesforce_to_warehouse", SFINT_START_DATE=(today - timedelta(days=1)).date().isoformat())
    assert {t.state for t in main.test(logical_date=today).get_task_instances()} == {"success"}
    return example(NAME, SFINT_CDC_IDLE="1")


def test_the_example_reads_the_main_jobs_columns() -> None:
    assert _columns() == _main_job_columns()


def test_change_events_keep_the_warehouse_equal_to_the_org(
    example: Any, org: Admin, conn: str, tmp_path: Path, emulator_url: str
) -> None:
    cdc = _after_the_main_job(example)
    columns = _columns()
    warehouse = tmp_path / "warehouse.duckdb"

    first = cdc.test()  # no checkpoint: a snapshot of the three entities, then every retained event on top
    assert {t.state for t in first.get_task_instances()} == {"success"}
    assert not _differences(_warehouse(warehouse, columns), _bulk_extract(conn, columns, tmp_path / "ref1"))

    accounts = [a for a in org.records("Account", include_deleted=False) if a.get("External_Id__c")]
    contacts = org.records("Contact", include_deleted=False)
    opps = org.records("Opportunity", include_deleted=False)
    with SalesforceHttp.login(emulator_url) as sf:
        # REST: a create, field updates, a field set to null, a delete and an undelete
        new = sf.post("sobjects/Account", json={"Name": "Born by CDC", "Industry": "Energy"}).json()["id"]
        sf.patch(f"sobjects/Account/{accounts[0]['Id']}", json={"Name": "Renamed by CDC", "AnnualRevenue": 1234})
        sf.patch(f"sobjects/Account/{accounts[1]['Id']}", json={"Industry": None})
        sf.patch(f"sobjects/Contact/{contacts[0]['Id']}", json={"Email": None, "LastName": "Changed"})
        sf.delete(f"sobjects/Opportunity/{opps[0]['Id']}")
        sf.delete(f"sobjects/Contact/{contacts[1]['Id']}")
        # a compound address change (not a warehouse column: it must not disturb the row)
        sf.patch(f"sobjects/Account/{accounts[2]['Id']}", json={"BillingCity": "Lyon", "BillingStreet": "1 Rue"})
        # Collections: several updates in one transaction
        records = [
            {"attributes": {"type": "Opportunity"}, "id": o["Id"], "StageName": "Closed Won", "Amount": 5000 + i}
            for i, o in enumerate(opps[1:21])
        ]
        assert all(r["success"] for r in sf.patch("composite/sobjects", json={"records": records}).json())
        # Composite: a create and an update of it in one request
        body = {
            "allOrNone": True,
            "compositeRequest": [
                {"method": "POST", "url": "/services/data/v62.0/sobjects/Contact", "referenceId": "c",
                 "body": {"LastName": "Composite", "AccountId": new}},
                {"method": "PATCH", "url": "/services/data/v62.0/sobjects/Contact/@{c.id}", "referenceId": "u",
                 "body": {"FirstName": "Then updated"}},
            ],
        }  # fmt: skip
        assert sf.post("composite", json=body).status_code == 200
    org._call("POST", "pubsub/undelete", json={"object": "Contact", "ids": [contacts[1]["Id"]]})
    # a change Salesforce could not capture (written while Account was not captured), announced by a gap event
    # and healed by reading the record again
    org._call("PUT", "pubsub/cdc", json={"disable": ["Account"]})
    with SalesforceHttp.login(emulator_url) as sf:
        sf.patch(f"sobjects/Account/{accounts[3]['Id']}", json={"Name": "Written straight to the database"})
    org._call("PUT", "pubsub/cdc", json={"enable": ["Account"]})
    org._call("POST", "pubsub/gap", json={"object": "Account", "ids": [accounts[3]["Id"]], "change_type": "GAP_UPDATE"})
    # one transaction over the overflow threshold: GAP_OVERFLOW, healed with a Bulk snapshot of Opportunity
    org._call("PUT", "pubsub", json={"overflow_threshold": 5})
    with SalesforceHttp.login(emulator_url) as sf:
        records = [{"attributes": {"type": "Opportunity"}, "id": o["Id"], "Amount": 777} for o in opps[21:31]]
        assert all(r["success"] for r in sf.patch("composite/sobjects", json={"records": records}).json())
    org._call("PUT", "pubsub", json={"overflow_threshold": 100000})

    second = cdc.test()
    assert {t.state for t in second.get_task_instances()} == {"success"}
    got = _warehouse(warehouse, columns)
    want = _bulk_extract(conn, columns, tmp_path / "ref2")
    assert not _differences(got, want), _differences(got, want)[:5]
    assert got["Account"][accounts[3]["Id"]]["Name"] == "Written straight to the database"
    assert got["Contact"][contacts[1]["Id"]]  # undeleted

    # Applying again changes nothing: every part is recorded as applied in the warehouse's own transaction.
    with duckdb.connect(str(warehouse)) as db:
        parts = db.execute("SELECT COUNT(*) FROM _sfint_applied_parts").fetchone()
    third = cdc.test()
    summary = next(t for t in third.get_task_instances() if t.task_id == "apply").xcom_pull(task_ids="apply")
    assert summary["parts_applied"] == 0 and summary["events"] == 0
    with duckdb.connect(str(warehouse)) as db:
        assert db.execute("SELECT COUNT(*) FROM _sfint_applied_parts").fetchone() == parts
    assert _warehouse(warehouse, columns) == got


def _bulk(sf: SalesforceHttp, obj: str, operation: str, rows: list[dict[str, Any]], **job: Any) -> None:
    """One Bulk API 2.0 ingest job over HTTP, waited for; every row must succeed."""
    import csv
    import io
    import time

    names = list(rows[0])
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("#N/A" if v is None else v) for k, v in r.items()} for r in rows)
    created = sf.post("jobs/ingest", json={"object": obj, "operation": operation, **job})
    assert created.status_code == 200, created.text
    info = created.json()
    upload = sf.put(f"jobs/ingest/{info['id']}/batches", content=text.getvalue().encode(),
                    headers={"Content-Type": "text/csv"})  # fmt: skip
    assert upload.status_code == 201, upload.text
    sf.patch(f"jobs/ingest/{info['id']}", json={"state": "UploadComplete"})
    while (info := sf.get(f"jobs/ingest/{info['id']}").json())["state"] not in ("JobComplete", "Failed", "Aborted"):
        time.sleep(0.05)
    assert info["state"] == "JobComplete" and info["numberRecordsFailed"] == 0, info


@pytest.mark.slow
def test_a_seeded_workload_of_20000_changes_keeps_the_warehouse_equal_to_bulk(
    example: Any, org: Admin, conn: str, tmp_path: Path, emulator_url: str
) -> None:
    """The proof: from the main job's Bulk-loaded warehouse, at least 20,000 seeded random changes through every
    write path (REST, Composite, Collections, Bulk insert/update/upsert/delete/hardDelete, undelete, nulls, a
    compound address, a gap, an overflow, a new field, a checkpoint pushed past retention while no run came),
    applied by runs of the event-driven DAG; the warehouse equals a fresh Bulk extract, row by row, field by
    field."""
    import random

    rng = random.Random(16)
    cdc = _after_the_main_job(example)
    columns = _columns()
    warehouse = tmp_path / "warehouse.duckdb"
    changes = 0

    summaries: list[dict[str, Any]] = []

    def run_cdc() -> None:
        tis = cdc.test().get_task_instances()
        assert {t.state for t in tis} == {"success"}, {t.task_id: t.state for t in tis}
        summaries.append(next(t for t in tis if t.task_id == "read_changes").xcom_pull(task_ids="read_changes"))

    def live(obj: str) -> list[str]:
        return [r["Id"] for r in org.records(obj, include_deleted=False)]

    run_cdc()  # the first run: snapshot, then every retained event
    for round_ in range(6):
        sf = SalesforceHttp.login(emulator_url)  # a new session each round: the clock moves 73 h in one
        accounts, contacts, opps = live("Account"), live("Contact"), live("Opportunity")
        # Bulk: new Accounts, updates of Opportunities, an upsert of Contacts by external id (new and existing)
        new = [{"Name": f"Bulk {round_}-{i}", "Industry": rng.choice(["Energy", "Banking", "Retail"]),
                "External_Id__c": f"W{round_}-{i}"} for i in range(2000)]  # fmt: skip
        _bulk(sf, "Account", "insert", new)
        updates = [{"Id": i, "Amount": rng.randrange(1, 10**6), "StageName": rng.choice(["Prospecting",
                    "Closed Won", "Closed Lost"])} for i in rng.sample(opps, min(1200, len(opps)))]  # fmt: skip
        _bulk(sf, "Opportunity", "update", updates)
        upserts = [{"External_Id__c": f"C{round_}-{i % 400}", "LastName": f"Upserted {round_}-{i}",
                    "Email": None if i % 7 == 0 else f"u{round_}.{i}@example.com"} for i in range(400)]  # fmt: skip
        _bulk(sf, "Contact", "upsert", upserts, externalIdFieldName="External_Id__c")
        accounts, contacts = live("Account"), live("Contact")
        # Bulk updates that null fields and change a compound address
        nulls = [{"Id": i, "Industry": None, "BillingCity": f"City {rng.randrange(99)}", "NumberOfEmployees":
                  rng.randrange(10**5)} for i in rng.sample(accounts, 400)]  # fmt: skip
        _bulk(sf, "Account", "update", nulls)
        # Collections and Composite
        touched = rng.sample(contacts, 400)
        for chunk in range(0, 400, 200):
            records = [{"attributes": {"type": "Contact"}, "id": i, "FirstName": f"F{rng.randrange(10**6)}"}
                       for i in touched[chunk:chunk + 200]]  # fmt: skip
            assert all(r["success"] for r in sf.patch("composite/sobjects", json={"records": records}).json())
        body = {"allOrNone": True, "compositeRequest": [
            {"method": "POST", "url": "/services/data/v62.0/sobjects/Opportunity", "referenceId": "o",
             "body": {"Name": f"Composite {round_}", "StageName": "Prospecting", "CloseDate": "2026-12-31",
                      "AccountId": accounts[round_]}},
            {"method": "PATCH", "url": "/services/data/v62.0/sobjects/Opportunity/@{o.id}", "referenceId": "p",
             "body": {"Amount": 4242}}]}  # fmt: skip
        assert sf.post("composite", json=body).status_code == 200
        # REST: single writes
        for i in rng.sample(accounts, 40):
            sf.patch(f"sobjects/Account/{i}", json={"Name": f"REST {rng.randrange(10**6)}", "AnnualRevenue": None})
        # deletes (Bulk delete and hardDelete, REST) and undeletes
        doomed = rng.sample(opps, 30)
        _bulk(sf, "Opportunity", "delete", [{"Id": i} for i in doomed[:20]])
        _bulk(sf, "Opportunity", "hardDelete", [{"Id": i} for i in doomed[20:]])
        for i in rng.sample(contacts, 30):
            sf.delete(f"sobjects/Contact/{i}")
        org._call("POST", "pubsub/undelete", json={"object": "Opportunity", "ids": doomed[:10]})
        changes += len(new) + len(updates) + len(upserts) + len(nulls) + 400 + 2 + 40 + len(doomed) + 30 + 10
        if round_ == 1:  # a change nobody captured, announced by a gap event
            org._call("PUT", "pubsub/cdc", json={"disable": ["Contact"]})
            gap_ids = rng.sample(live("Contact"), 25)
            records = [{"attributes": {"type": "Contact"}, "id": i, "LastName": "Gap"} for i in gap_ids]
            assert all(r["success"] for r in sf.patch("composite/sobjects", json={"records": records}).json())
            org._call("PUT", "pubsub/cdc", json={"enable": ["Contact"]})
            org._call("POST", "pubsub/gap", json={"object": "Contact", "ids": gap_ids, "change_type": "GAP_UPDATE"})
            changes += len(gap_ids)
        if round_ == 2:  # one transaction over the overflow threshold
            org._call("PUT", "pubsub", json={"overflow_threshold": 50})
            _bulk(sf, "Account", "update", [{"Id": i, "Rating": "Hot"} for i in rng.sample(live("Account"), 150)])
            changes += 150
            org._call("PUT", "pubsub", json={"overflow_threshold": 100000})
        if round_ == 3:  # a new field: a new schema id mid-stream
            org._call("POST", "pubsub/fields/Account", json={"name": "Tier__c", "type": "string", "length": 20})
            _bulk(sf, "Account", "update", [{"Id": i, "Tier__c": "Gold", "Name": f"Tiered {j}"}
                                            for j, i in enumerate(rng.sample(live("Account"), 300))])  # fmt: skip
            changes += 300
        if round_ == 4:  # no run for 73 hours: the checkpoint is past retention when the next run comes
            offset = float(org._call("GET", "clock")["offset_seconds"])
            org._call("PUT", "clock", json={"offset_seconds": offset + 73 * 3600})
        sf.http.close()
        if round_ % 2 == 1 or round_ == 4:
            run_cdc()
    assert changes >= 20_000, changes
    run_cdc()
    # the hard cases happened and were healed: the first snapshot, the overflow's, the expired checkpoint's
    assert sum(x["gaps_healed"] for x in summaries) >= 25
    assert sum(x["snapshots"] for x in summaries) >= 3 + 1 + 3, [x["snapshots"] for x in summaries]
    assert sum(x["events"] for x in summaries) >= 15_000
    got = _warehouse(warehouse, columns)
    want = _bulk_extract(conn, columns, tmp_path / "reference")
    assert sum(len(t) for t in want.values()) > 5000
    assert not _differences(got, want), _differences(got, want)[:5]


def test_run_before_the_main_job_it_creates_the_warehouse_from_the_snapshot(
    example: Any, org: Admin, conn: str, tmp_path: Path
) -> None:
    """No warehouse yet (the event-driven DAG unpaused first, as `make airflow` does): the first run creates the
    main job's tables from the snapshot, equal to a fresh Bulk extract."""
    cdc = example(NAME, SFINT_CDC_IDLE="1")
    assert {t.state for t in cdc.test().get_task_instances()} == {"success"}
    columns = _columns()
    got = _warehouse(tmp_path / "warehouse.duckdb", columns)
    assert all(got[obj] for obj in columns)
    assert not _differences(got, _bulk_extract(conn, columns, tmp_path / "reference"))
