"""SalesforceCompositeUpsertOperator against the emulator: results by key, thresholds, lock retries,
duplicate ids, routing to Bulk, and no duplicate creates when calls are retried after 503s."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from airflow_provider_sfint.compat import AirflowFailException
from airflow_provider_sfint.operators.composite import SalesforceCompositeUpsertOperator

from ..emulator.helpers import Admin
from .conftest import make_context


def _op(conn: str, records: Any, **kw: Any) -> SalesforceCompositeUpsertOperator:
    kw.setdefault("object", "Account")
    kw.setdefault("external_id_field", "External_Id__c")
    return SalesforceCompositeUpsertOperator(task_id="upsert", records=records, sfint_conn_id=conn, **kw)


def _stored(admin: Admin, prefix: str, obj: str = "Account") -> dict[str, dict[str, Any]]:
    return {r["External_Id__c"]: r for r in admin.records(obj) if str(r.get("External_Id__c")).startswith(prefix)}


def _api_calls(admin: Admin) -> int:
    return int(admin.counters()["requests"].get("api calls", 0))


def test_upsert_creates_then_updates_in_few_calls(conn: str, fresh_org: Admin) -> None:
    records = [
        {"External_Id__c": f"CMP-{i}", "Name": f"Comp {i}", "NumberOfEmployees": i, "Is_Strategic__c": i % 2 == 0}
        for i in range(450)
    ]
    fresh_org._call("POST", "counters/reset")
    first = _op(conn, records).execute(make_context())
    assert (first["path"], first["created"], first["updated"], first["failed"]) == ("collections", 450, 0, 0)
    assert _api_calls(fresh_org) == 3  # ceil(450 / 200) Collections calls and nothing else
    second = _op(conn, [{**r, "Name": r["Name"] + "!"} for r in records]).execute(make_context())
    assert (second["created"], second["updated"]) == (0, 450)
    stored = _stored(fresh_org, "CMP-")
    assert len(stored) == 450 and stored["CMP-7"]["Name"] == "Comp 7!" and stored["CMP-7"]["NumberOfEmployees"] == 7


def test_types_nulls_and_relationships(conn: str, fresh_org: Admin) -> None:
    _op(conn, [{"External_Id__c": "REL-P", "Name": "Parent", "Site": "keep"}]).execute(make_context())
    contacts = pa.table(
        {
            "External_Id__c": ["REL-C1"],
            "LastName": ["Child"],
            "Account.External_Id__c": ["REL-P"],
            "Birthdate": [date(1990, 5, 17)],
        }
    )
    _op(conn, contacts, object="Contact").execute(make_context())
    parent = _stored(fresh_org, "REL-P")["REL-P"]
    child = _stored(fresh_org, "REL-C", "Contact")["REL-C1"]
    assert child["AccountId"] == parent["Id"] and child["Birthdate"] == "1990-05-17"
    _op(conn, [{"External_Id__c": "REL-P", "Site": None}]).execute(make_context())
    assert _stored(fresh_org, "REL-P")["REL-P"]["Site"] == "keep"  # leave_unchanged: None is not sent
    _op(conn, [{"External_Id__c": "REL-P", "Site": None}], null_policy="set_null").execute(make_context())
    assert _stored(fresh_org, "REL-P")["REL-P"]["Site"] is None
    stamp = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    _op(conn, [{"External_Id__c": "OPP-D", "Name": "D", "StageName": "Prospecting", "CloseDate": stamp.date()}],
        object="Opportunity").execute(make_context())  # fmt: skip
    assert _stored(fresh_org, "OPP-D", "Opportunity")["OPP-D"]["CloseDate"] == "2026-03-01"


def test_failed_records_are_reported_by_key_and_fail_the_task(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    records = [
        {"External_Id__c": "BAD-1", "Name": "ok"},
        {"External_Id__c": "BAD-2", "Name": "x" * 300},  # longer than Name's 255
        {"External_Id__c": "BAD-3", "Name": "ok too"},
    ]
    out = tmp_path / "failed.csv"
    with pytest.raises(AirflowFailException, match=r"1 of 3 records failed.*row 2 \(External_Id__c='BAD-2'\)"):
        _op(conn, records, failed_output=str(out)).execute(make_context())
    failed = pacsv.read_csv(out).to_pylist()
    assert [(r["row"], r["External_Id__c"]) for r in failed] == [(2, "BAD-2")]
    assert failed[0]["sf__ErrorCode"] == "STRING_TOO_LONG"
    assert set(_stored(fresh_org, "BAD-")) == {"BAD-1", "BAD-3"}
    summary = _op(conn, records, max_failed_records=1).execute(make_context())
    assert summary["failed"] == 1 and summary["succeeded"] == 2


def test_lock_errors_are_retried_once(conn: str, fresh_org: Admin) -> None:
    fresh_org.faults({"kind": "lock_row", "rate": 0.3, "path": "/composite/sobjects", "count": 30})
    summary = _op(conn, [{"External_Id__c": f"LCK-{i}", "Name": f"L{i}"} for i in range(150)]).execute(make_context())
    assert summary["retried"] > 0 and summary["failed"] == 0
    assert len(_stored(fresh_org, "LCK-")) == 150


def test_no_duplicate_creates_when_calls_are_retried_after_503(conn: str, fresh_org: Admin) -> None:
    fresh_org.faults({"kind": "503", "rate": 0.5, "path": "/composite/sobjects"}, seed=3)
    records = [{"External_Id__c": f"RTY-{i}", "Name": f"R{i}"} for i in range(1000)]
    summary = _op(conn, records, max_concurrency=2).execute(make_context())
    assert summary["failed"] == 0
    assert fresh_org._call("GET", "faults")["rules"][0]["fired"] > 0
    stored = [r for r in fresh_org.records("Account") if str(r.get("External_Id__c")).startswith("RTY-")]
    assert len(stored) == 1000


def test_duplicate_external_ids_are_refused_or_deduplicated(conn: str, fresh_org: Admin) -> None:
    records = [{"External_Id__c": "DUP-1", "Name": "first"}, {"External_Id__c": "dup-1", "Name": "last"}]
    fresh_org._call("POST", "counters/reset")
    with pytest.raises(AirflowFailException, match=r"row 2 repeats 'dup-1' of row 1\. Pass dedupe='last'"):
        _op(conn, records).execute(make_context())
    assert _api_calls(fresh_org) == 0
    summary = _op(conn, records, dedupe="last").execute(make_context())
    named = [r["Name"] for r in fresh_org.records("Account") if str(r.get("External_Id__c")).lower() == "dup-1"]
    assert summary["records"] == 1 and named == ["last"]
    with pytest.raises(AirflowFailException, match=r"1 row\(s\) have no External_Id__c; first 1: rows 1\."):
        _op(conn, [{"Name": "no key"}]).execute(make_context())


def test_rows_without_a_key_are_summed_up(conn: str, fresh_org: Admin) -> None:
    """475 rows without an external id: one summary with the count and the first rows, and no suggestion to
    dedupe, since no key repeats."""
    records = [{"External_Id__c": None if i % 2 else f"K-{i}", "Name": f"N{i}"} for i in range(950)]
    fresh_org._call("POST", "counters/reset")
    with pytest.raises(AirflowFailException) as caught:
        _op(conn, records).execute(make_context())
    message = str(caught.value)
    assert "475 row(s) have no External_Id__c; first 5: rows 2, 4, 6, 8, 10." in message
    assert "dedupe" not in message and "row 12" not in message and _api_calls(fresh_org) == 0


def test_an_unknown_object_is_named_and_not_retried(conn: str, fresh_org: Admin) -> None:
    records = [{"External_Id__c": "U-1", "Name": "x"}]
    with pytest.raises(AirflowFailException, match=r"object 'Acount' does not exist .*did you mean Account, Contact\?"):
        _op(conn, records, object="Acount").execute(make_context())
    with pytest.raises(AirflowFailException, match=r"Account has no field 'External_Id_c' to upsert by; did you mean"):
        _op(conn, [{"External_Id_c": "U-1"}], external_id_field="External_Id_c").execute(make_context())


def test_above_the_threshold_the_bulk_path_is_taken(conn: str, fresh_org: Admin) -> None:
    records = [{"External_Id__c": f"BLK-{i}", "Name": f"B{i}"} for i in range(60)]
    fresh_org._call("POST", "counters/reset")
    summary = _op(conn, records, bulk_threshold=50).execute(make_context())
    assert summary["path"] == "bulk" and summary["succeeded"] == 60 and len(summary["jobs"]) == 1
    assert len(_stored(fresh_org, "BLK-")) == 60
    assert not any("composite" in k for k in fresh_org.counters()["requests"])


def test_records_from_a_file(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text('External_Id__c,Name,Site\nFIL-1,"From, a file","NA"\n')
    summary = _op(conn, str(tmp_path / "in.csv")).execute(make_context())
    assert summary["created"] == 1
    assert _stored(fresh_org, "FIL-")["FIL-1"]["Site"] == "NA"
