"""The main job end to end: Salesforce -> lake -> DuckDB -> scores back to Salesforce -> event, asserted
against the org's own records (counts, warehouse contents, written scores, the event)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ..emulator.helpers import Admin, SalesforceHttp

NAME = "salesforce_to_warehouse"


def _today() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _expected_scores(org: Admin) -> dict[str, float]:
    """The DAG's score, computed here from the org's records (not from the warehouse)."""
    won: dict[str, float] = defaultdict(float)
    open_opps: dict[str, int] = defaultdict(int)
    contacts: dict[str, int] = defaultdict(int)
    for o in org.records("Opportunity", include_deleted=False):
        if o.get("IsWon"):
            won[o["AccountId"]] += float(o.get("Amount") or 0)
        if not o.get("IsClosed"):
            open_opps[o["AccountId"]] += 1
    for c in org.records("Contact", include_deleted=False):
        contacts[c.get("AccountId")] += 1
    return {
        a["External_Id__c"]: min(
            999.99, round(math.log(1 + won[a["Id"]]) * 5 + open_opps[a["Id"]] * 3 + contacts[a["Id"]], 2)
        )
        for a in org.records("Account", include_deleted=False)
        if a.get("External_Id__c")
    }


def _states(run: Any) -> dict[str, str]:
    return {t.task_id: t.state for t in run.get_task_instances()}


def _stamp(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(record["SystemModstamp"]).replace("Z", "+00:00"))


def test_main_job_runs_end_to_end(example: Any, org: Admin, tmp_path: Path, emulator_url: str) -> None:
    today = _today()
    dag = example(NAME, SFINT_START_DATE=(today - timedelta(days=1)).date().isoformat())
    before = {obj: org.records(obj, include_deleted=True) for obj in ("Account", "Contact", "Opportunity")}
    run = dag.test(logical_date=today)  # the interval [yesterday, today): the first, so history up to today
    assert set(_states(run).values()) == {"success"}, _states(run)
    assert run.data_interval_end == today
    summary = json.loads((tmp_path / "lake" / "_runs" / "latest.json").read_text())
    db = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    for obj in ("Account", "Contact", "Opportunity"):
        everything = [r for r in before[obj] if _stamp(r) < today]
        live = {r["Id"] for r in everything if not r.get("IsDeleted")}
        counts = summary["objects"][obj]
        assert counts["extracted"] == len(everything) and counts["deleted"] == len(everything) - len(live)
        stored = {row[0] for row in db.execute(f"SELECT Id FROM {obj.lower()}").fetchall()}
        assert stored == live and counts["warehouse_rows"] == len(live)
    db.close()
    expected = _expected_scores(org)
    written = {a["External_Id__c"]: a.get("Account_Score__c") for a in org.records("Account", include_deleted=False)}
    wrong = {k: (v, written[k]) for k, v in expected.items() if written[k] != pytest.approx(v, abs=0.005)}
    assert expected and not wrong, list(wrong.items())[:5]
    assert summary["written_back"]["records"] == summary["scores_changed"] == len(expected)
    (event,) = org.events("Warehouse_Sync__e")
    assert event["payload"]["Records__c"] == len(expected) and event["payload"]["Run_Id__c"] == run.run_id

    # The next interval carries what changed since: a rename, a deleted contact, a new won deal.
    acct = next(a for a in org.records("Account", include_deleted=False) if a.get("External_Id__c"))
    contact = next(c for c in org.records("Contact", include_deleted=False) if c.get("AccountId") == acct["Id"])
    with SalesforceHttp.login(emulator_url) as sf:
        assert sf.patch(f"sobjects/Account/{acct['Id']}", json={"Name": "Renamed Co"}).status_code == 204
        assert sf.delete(f"sobjects/Contact/{contact['Id']}").status_code == 204
        body = {
            "Name": "Big",
            "AccountId": acct["Id"],
            "StageName": "Closed Won",
            "CloseDate": "2026-11-01",
            "Amount": 250000,
        }
        new_opp = sf.post("sobjects/Opportunity", json=body).json()["id"]
    run2 = dag.test(logical_date=today + timedelta(days=1))
    assert set(_states(run2).values()) == {"success"}, _states(run2)
    second = json.loads((tmp_path / "lake" / "_runs" / "latest.json").read_text())
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as db:
        assert db.execute("SELECT Name FROM account WHERE Id = ?", [acct["Id"]]).fetchone() == ("Renamed Co",)
        assert db.execute("SELECT COUNT(*) FROM contact WHERE Id = ?", [contact["Id"]]).fetchone() == (0,)
        assert db.execute("SELECT Amount FROM opportunity WHERE Id = ?", [new_opp]).fetchone() == (250000,)
        for obj in ("Account", "Contact", "Opportunity"):
            live = len(org.records(obj, include_deleted=False))
            assert db.execute(f"SELECT COUNT(*) FROM {obj.lower()}").fetchone() == (live,)
    assert second["objects"]["Contact"]["extracted"] == second["objects"]["Contact"]["deleted"] == 1
    # Only the one account whose score moved is written back; Salesforce now holds every expected score.
    assert second["scores_changed"] == second["written_back"]["records"] == 1
    final = {a["External_Id__c"]: a.get("Account_Score__c") for a in org.records("Account", include_deleted=False)}
    assert all(final[k] == pytest.approx(v, abs=0.005) for k, v in _expected_scores(org).items())
