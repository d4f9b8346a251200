"""Hostile input catalog: each case must fail with an error that names the culprit (object, field, row,
setting) and says what to do, write nothing to Salesforce, and leave no Bulk job open."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowNotFoundException

from airflow_provider_sfint.client.errors import SalesforceError
from airflow_provider_sfint.compat import AirflowFailException
from airflow_provider_sfint.emulator import CLIENT_ID, CLIENT_SECRET
from airflow_provider_sfint.operators.bulk_ingest import SalesforceBulkIngestOperator
from airflow_provider_sfint.operators.bulk_query import SalesforceBulkQueryOperator
from airflow_provider_sfint.operators.composite import SalesforceCompositeUpsertOperator
from airflow_provider_sfint.operators.events import SalesforcePublishEventOperator

from ..emulator.helpers import Admin, SalesforceHttp
from ..operators.conftest import make_context

OPEN_STATES = {"Open", "UploadComplete", "InProgress"}
EXPECTED = (AirflowFailException, AirflowNotFoundException, SalesforceError, ValueError, OSError)
WATCHED = ("Account", "Contact", "ERP_Order__c")


def _query(conn: str, tmp: Path, soql: str, **kw: Any) -> None:
    kw.setdefault("output", str(tmp / "out.parquet"))
    SalesforceBulkQueryOperator(task_id="q", soql=soql, sfint_conn_id=conn, **kw).execute(make_context())


def _ingest(conn: str, source: Any, obj: str = "Account", operation: str = "insert", **kw: Any) -> None:
    op = SalesforceBulkIngestOperator(
        task_id="i", object=obj, operation=operation, source=source, sfint_conn_id=conn, **kw
    )
    op.execute(make_context())


def _csv(tmp: Path, data: bytes, name: str = "in.csv") -> str:
    path = tmp / name
    path.write_bytes(data)
    return str(path)


def _set(monkeypatch: pytest.MonkeyPatch, conn_id: str, url: str, **extra: Any) -> str:
    extra = {"auth_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **extra}
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "sfint", "host": url, "extra": extra})
    )
    return conn_id


def _pre_issued(mp: pytest.MonkeyPatch, url: str, tmp: Path, instance_url: str) -> None:
    conn = _set(mp, "sfint_bad", url, auth_type="access_token", access_token="x", instance_url=instance_url)
    _query(conn, tmp, "SELECT Id FROM Account")


def _sensor_on_deleted_job(conn: str) -> None:
    from airflow_provider_sfint.client.bulk2 import Bulk2
    from airflow_provider_sfint.hooks.salesforce import SalesforceHook
    from airflow_provider_sfint.sensors.bulk import SalesforceBulkJobSensor

    bulk = Bulk2(SalesforceHook(sfint_conn_id=conn).client)
    job = bulk.create_query_job("SELECT Id FROM Account")
    bulk.wait("query", job.id, poll_interval=0.1)
    bulk.delete("query", job.id)
    SalesforceBulkJobSensor(task_id="s", job_id=job.id, kind="query", sfint_conn_id=conn, timeout=30).execute(
        make_context()
    )


Case = Callable[[str, Path, Admin, pytest.MonkeyPatch, str], None]

CASES: dict[str, tuple[Case, str]] = {
    # --- SOQL ---------------------------------------------------------------------------------------
    "malformed soql": (lambda c, t, *_: _query(c, t, "SELECT Id FROM Account WHERE Name = "), "MALFORMED_QUERY"),
    "injected literal closes the string": (
        lambda c, t, *_: _query(c, t, "SELECT Id FROM Account WHERE Name = 'x' OR Name != 'y"),
        "MALFORMED_QUERY",
    ),
    "templated value that breaks the SOQL": (
        lambda c, t, *_: _query(
            c,
            t,
            SalesforceBulkQueryOperator(task_id="r", soql="x", output="x").render_template(
                "SELECT Id FROM Account WHERE Name = '{{ params.name }}'", {"params": {"name": "O'Brien"}}
            ),
        ),
        r"MALFORMED_QUERY",
    ),
    "aggregate in bulk": (lambda c, t, *_: _query(c, t, "SELECT COUNT(Id) FROM Account"), "aggregate"),
    "group by in bulk": (
        lambda c, t, *_: _query(c, t, "SELECT Industry FROM Account GROUP BY Industry"),
        "GROUP BY",
    ),
    "offset in bulk": (lambda c, t, *_: _query(c, t, "SELECT Id FROM Account LIMIT 5 OFFSET 2"), "OFFSET"),
    "subquery in bulk": (
        lambda c, t, *_: _query(c, t, "SELECT Id, (SELECT Id FROM Contacts) FROM Account"),
        "subquer",
    ),
    "fields() in bulk": (lambda c, t, *_: _query(c, t, "SELECT FIELDS(ALL) FROM Account LIMIT 200"), "FIELDS"),
    "unknown object": (lambda c, t, *_: _query(c, t, "SELECT Id FROM Acount"), "'Acount'"),
    "unknown field with a suggestion": (
        lambda c, t, *_: _query(c, t, "SELECT Id, Nmae FROM Account"),
        r"Account has no field 'Nmae'.*did you mean Name",
    ),
    "unknown relationship": (
        lambda c, t, *_: _query(c, t, "SELECT Id, Ownr.Name FROM Account"),
        "Account has no relationship 'Ownr'",
    ),
    "output cannot be written": (
        lambda c, t, *_: (t / "file").write_text("x") and _query(c, t, "SELECT Id FROM Account", output=f"{t}/file/o/"),
        "not writable",
    ),
    "unknown format": (lambda c, t, *_: _query(c, t, "SELECT Id FROM Account", format="xlsx"), "format must be one of"),
    "window without interval": (
        lambda c, t, *_: SalesforceBulkQueryOperator(
            task_id="q",
            soql="SELECT Id FROM Account",
            output=str(t / "o.parquet"),
            incremental_field="SystemModstamp",
            sfint_conn_id=c,
        ).execute({**make_context(), "data_interval_start": None}),
        "incremental_field='SystemModstamp'",
    ),
    "bad window_start": (
        lambda c, t, *_: _query(
            c, t, "SELECT Id FROM Account", incremental_field="SystemModstamp", window_start="soon"
        ),
        "window_start='soon' is not an ISO 8601",
    ),
    "incremental field that is not a field": (
        lambda c, t, *_: _query(c, t, "SELECT Id FROM Account", incremental_field="Id; DELETE"),
        "incremental_field",
    ),
    # --- files into Salesforce ----------------------------------------------------------------------
    "unknown column": (
        lambda c, t, *_: _ingest(c, _csv(t, b"Name,Nmae\nA,B\n")),
        r"Nmae",
    ),
    "wrong type": (
        lambda c, t, *_: _ingest(c, _csv(t, b"Name,NumberOfEmployees\nA,many\n")),
        r"row 1.*NumberOfEmployees.*'many'",
    ),
    "value over the field length": (
        lambda c, t, *_: _ingest(c, _csv(t, b"Name,Site\nA," + b"x" * 81 + b"\n")),
        r"row 1.*Site.*over the field's 80",
    ),
    "non-UTF-8 file": (
        lambda c, t, *_: _ingest(c, _csv(t, "Name\nZoë\n".encode("latin-1"))),
        r"in\.csv.*UTF-8",
    ),
    "mixed encodings": (
        lambda c, t, *_: _ingest(c, _csv(t, "Name\nZoë\n".encode() + "Zoë\n".encode("latin-1"))),
        r"in\.csv.*UTF-8",
    ),
    "ragged rows": (
        lambda c, t, *_: _ingest(c, _csv(t, b"Name,Site\nA,x\nB,y,z\n")),
        r"in\.csv.*Row #3.*different number of fields",
    ),
    "header only": (lambda c, t, *_: _ingest(c, _csv(t, b"Name,Site\n")), r"in\.csv holds no rows"),
    "empty file": (lambda c, t, *_: _ingest(c, _csv(t, b"")), r"in\.csv"),
    "missing file": (lambda c, t, *_: _ingest(c, str(t / "nowhere.csv")), r"nowhere\.csv"),
    "duplicate external ids": (
        lambda c, t, *_: _ingest(
            c,
            _csv(t, b"External_Id__c,Name\nE-1,A\nE-2,B\nE-1,C\n"),
            operation="upsert",
            external_id_field="External_Id__c",
        ),
        r"row 3: External_Id__c 'E-1' repeats row 1",
    ),
    "upsert without external id": (
        lambda c, t, *_: _ingest(c, _csv(t, b"Name\nA\n"), operation="upsert"),
        "external_id_field",
    ),
    "update without Id": (lambda c, t, *_: _ingest(c, _csv(t, b"Name\nA\n"), operation="update"), r"\bId\b"),
    "unknown operation": (
        lambda c, t, *_: _ingest(c, _csv(t, b"Name\nA\n"), operation="merge"),
        "operation must be one of",
    ),
    "read-only field": (
        lambda c, t, *_: _ingest(c, _csv(t, b"Name,CreatedDate\nA,2026-01-01T00:00:00Z\n")),
        "CreatedDate",
    ),
    "unknown object to write": (
        lambda c, t, *_: _ingest(c, _csv(t, b"Name\nA\n"), obj="Acount"),
        "object 'Acount' does not exist",
    ),
    "a row larger than a job may be": (
        lambda c, t, *_: _ingest(c, _csv(t, b"Name,Description\nA," + b"d" * 5000 + b"\n"), max_bytes_per_job=1000),
        r"row 1 is 5,\d+ bytes as CSV",
    ),
    "a late row larger than a job may be": (
        lambda c, t, *_: _ingest(
            c, _csv(t, b"Name,Description\nA,a\nB,b\nC," + b"d" * 5000 + b"\n"), max_bytes_per_job=1000
        ),
        r"row 3 is 5,\d+ bytes as CSV, more than max_bytes_per_job=1,000",
    ),
    "job size above Salesforce's cap": (
        lambda c, t, *_: _ingest(c, _csv(t, b"Name\nA\n"), max_bytes_per_job=200_000_000),
        "max_bytes_per_job",
    ),
    # --- Composite and events ----------------------------------------------------------------------
    "composite duplicate external ids": (
        lambda c, *_: SalesforceCompositeUpsertOperator(
            task_id="c",
            object="Account",
            external_id_field="External_Id__c",
            sfint_conn_id=c,
            records=[{"External_Id__c": "D-1", "Name": "a"}, {"External_Id__c": "D-1", "Name": "b"}],
        ).execute(make_context()),
        r"D-1",
    ),
    "composite batch over 200": (
        lambda c, *_: SalesforceCompositeUpsertOperator(
            task_id="c",
            object="Account",
            external_id_field="External_Id__c",
            records=[],
            batch_size=201,
            sfint_conn_id=c,
        ),
        "batch_size",
    ),
    "event that is not a platform event": (
        lambda c, *_: SalesforcePublishEventOperator(
            task_id="e", event="Account", events={"Name": "x"}, sfint_conn_id=c
        ).execute(make_context()),
        r"event 'Account' is not a platform event",
    ),
    # --- connections -------------------------------------------------------------------------------
    "missing connection": (
        lambda c, t, *_: _query("sfint_nowhere", t, "SELECT Id FROM Account"),
        "sfint_nowhere",
    ),
    "bad auth type": (
        lambda c, t, a, mp, url: _query(_set(mp, "sfint_bad", url, auth_type="magic"), t, "SELECT Id FROM Account"),
        "auth_type",
    ),
    "non-number timeout": (
        lambda c, t, a, mp, url: _query(_set(mp, "sfint_bad", url, read_timeout="soon"), t, "SELECT Id FROM Account"),
        "read_timeout",
    ),
    "revoked refresh token": (
        lambda c, t, a, mp, url: _query(
            _set(mp, "sfint_bad", url, auth_type="refresh_token", refresh_token="revoked-token"),
            t,
            "SELECT Id FROM Account",
        ),
        "refresh token",
    ),
    "non-https instance url": (
        lambda c, t, a, mp, url: _pre_issued(mp, url, t, "http://acme.my.salesforce.com"),
        "https",
    ),
    "non-Salesforce instance url": (
        lambda c, t, a, mp, url: _pre_issued(mp, url, t, "https://evil.example.com"),
        "evil.example.com",
    ),
    "daily allowance spent": (
        lambda c, t, a, *_: a.limits(api_max=1000, api_used=1000) and _query(c, t, "SELECT Id FROM Account"),
        r"REQUEST_LIMIT_EXCEEDED|1000",
    ),
    "job deleted from under a sensor": (
        lambda c, t, *_: _sensor_on_deleted_job(c),
        r"750\w+.*(NOT_FOUND|does not exist|deleted)",
    ),
    "budget guard": (
        lambda c, t, a, *_: (
            a.limits(api_max=1000, api_used=950)
            and _query(c, t, "SELECT Id FROM Account", min_remaining_api_percent=10)
        ),
        r"10.*%|percent",
    ),
}


def _open_jobs(url: str) -> list[dict[str, Any]]:
    with SalesforceHttp.login(url) as sf:
        jobs = sf.get("jobs/ingest").json()["records"] + sf.get("jobs/query").json()["records"]
    return [j for j in jobs if j["state"] in OPEN_STATES and j.get("jobType") != "Classic"]


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_hostile_input_fails_clearly_and_writes_nothing(
    case: str, conn: str, tmp_path: Path, fresh_org: Admin, monkeypatch: pytest.MonkeyPatch, emulator_url: str
) -> None:
    run, message = CASES[case]
    before = {obj: len(fresh_org.records(obj)) for obj in WATCHED}
    events = len(fresh_org.events())
    with pytest.raises(
        (AirflowFailException, AirflowNotFoundException, SalesforceError, ValueError, OSError)
    ) as raised:
        run(conn, tmp_path, fresh_org, monkeypatch, emulator_url)
    text = str(raised.value)
    assert re.search(message, text, flags=re.S), f"{case}: {text}"
    assert CLIENT_SECRET not in text and "revoked-token" not in text  # no secret in any message
    fresh_org.limits(api_max=1_000_000, api_used=0)
    assert {obj: len(fresh_org.records(obj)) for obj in WATCHED} == before, f"{case} wrote records"
    assert len(fresh_org.events()) == events
    assert _open_jobs(emulator_url) == [], f"{case} left a job open"
    assert not list(tmp_path.glob("**/*.parquet")), f"{case} left output behind"


def test_the_catalog_is_large() -> None:
    assert len(CASES) >= 30
