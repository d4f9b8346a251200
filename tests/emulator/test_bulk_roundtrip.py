"""Hostile generated values through Bulk ingest and back out through Bulk query and REST, exactly."""

from __future__ import annotations

import csv
import io
import random
import time
from typing import Any

import pytest

from airflow_provider_sfint.emulator.datagen import HOSTILE_VALUES, hostile_text
from airflow_provider_sfint.emulator.dml import sf_trim

from .helpers import Admin, SalesforceHttp

FIELDS = {"Description": 32000, "Long_Notes__c": 131072, "Site": 80, "BillingStreet": 255, "TickerSymbol": 20}


def _wait(sf: SalesforceHttp, kind: str, job_id: str) -> dict[str, Any]:
    for _ in range(600):
        info = sf.get(f"jobs/{kind}/{job_id}").json()
        if info["state"] in ("JobComplete", "Failed", "Aborted"):
            return dict(info)
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def _expected(value: str) -> str:
    """What Bulk keeps of a written string: NUL stripped, trimmed (spec 4.9a), null read back as ''.

    A literal ``#N/A`` cannot be written through Bulk CSV at all: it means "set null".
    """
    if value == "#N/A":
        return ""
    return sf_trim(value.replace("\x00", "")) or ""


@pytest.mark.parametrize(("delimiter", "line_ending"), [("COMMA", "LF"), ("PIPE", "CRLF"), ("TAB", "LF")])
def test_hostile_values_round_trip_through_bulk(
    sf: SalesforceHttp, admin: Admin, delimiter: str, line_ending: str
) -> None:
    char = {"COMMA": ",", "PIPE": "|", "TAB": "\t"}[delimiter]
    newline = {"LF": "\n", "CRLF": "\r\n"}[line_ending]
    rng = random.Random(7)
    rows: dict[str, dict[str, str]] = {}
    for i, value in enumerate([*HOSTILE_VALUES, *(None for _ in range(30))]):
        key = f"H-{delimiter}-{i:03d}"
        rows[key] = {
            f: (value if value is not None and FIELDS[f] >= len(value) else hostile_text(rng, length))
            for f, length in FIELDS.items()
        }
        rows[key]["Description"] = value if value is not None else hostile_text(rng, 32000)
    rows[f"H-{delimiter}-long"] = {f: hostile_text(random.Random(1), n) for f, n in FIELDS.items()}
    rows[f"H-{delimiter}-long"]["Long_Notes__c"] = ('x,"\n\u00e9\U0001f600 ' * 20_000)[:131072]
    buffer = io.StringIO(newline="")
    # Every field quoted: with QUOTE_MINIMAL and an LF terminator, Python leaves a bare CR unquoted and any
    # CSV reader (Salesforce's too) then splits the record there.
    writer = csv.writer(buffer, delimiter=char, lineterminator=newline, quoting=csv.QUOTE_ALL)
    writer.writerow(["Name", "External_Id__c", *FIELDS])
    for key, values in rows.items():
        writer.writerow([f"Round trip {key}", key, *(values[f] for f in FIELDS)])
    job = sf.post(
        "jobs/ingest",
        json={"object": "Account", "operation": "insert", "columnDelimiter": delimiter, "lineEnding": line_ending},
    ).json()["id"]
    data = buffer.getvalue().encode("utf-8")
    assert (
        sf.http.put(
            sf.path(f"jobs/ingest/{job}/batches"), content=data, headers={"Content-Type": "text/csv"}
        ).status_code
        == 201
    )
    sf.patch(f"jobs/ingest/{job}", json={"state": "UploadComplete"})
    info = _wait(sf, "ingest", job)
    assert (info["state"], info["numberRecordsFailed"]) == ("JobComplete", 0), sf.get(
        f"jobs/ingest/{job}/failedResults/"
    ).text[:500]
    query = sf.post(
        "jobs/query",
        json={
            "operation": "query",
            "columnDelimiter": delimiter,
            "lineEnding": line_ending,
            "query": f"SELECT External_Id__c, {', '.join(FIELDS)} FROM Account "
            f"WHERE External_Id__c LIKE 'H-{delimiter}-%'",
        },
    ).json()["id"]
    assert _wait(sf, "query", query)["state"] == "JobComplete"
    body = sf.get(f"jobs/query/{query}/results").content.decode("utf-8")
    got = list(csv.reader(io.StringIO(body, newline=""), delimiter=char))
    assert got[0] == ["External_Id__c", *FIELDS]
    assert len(got) - 1 == len(rows)
    for record in got[1:]:
        key, values = record[0], record[1:]
        for field, value in zip(FIELDS, values, strict=True):
            assert value == _expected(rows[key][field]), (key, field)
    stored = {
        r["External_Id__c"]: r
        for r in admin.records("Account")
        if (r["External_Id__c"] or "").startswith(f"H-{delimiter}-")
    }
    for key, values in rows.items():
        for field in FIELDS:
            assert (stored[key][field] or "") == _expected(values[field]), (key, field)


def test_hostile_values_round_trip_through_rest_json(sf: SalesforceHttp) -> None:
    for i, value in enumerate(HOSTILE_VALUES):
        sf.post("sobjects/Account", json={"Name": f"json {i}", "External_Id__c": f"J-{i}", "Description": value})
    got = sf.query("SELECT External_Id__c, Description FROM Account WHERE External_Id__c LIKE 'J-%'").json()
    by_key = {r["External_Id__c"]: r["Description"] for r in got["records"]}
    for i, value in enumerate(HOSTILE_VALUES):
        assert by_key[f"J-{i}"] == (sf_trim(value) or None), value


def test_hostile_seed_is_stored_as_salesforce_stores_strings(admin: Admin) -> None:
    admin.reset(seed="empty")
    admin._call("POST", "seed", json={"counts": {"Account": 2000}, "seed": 5, "hostile": True, "burst_share": 0.3})
    rows = admin.records("Account")
    texts = [r["Description"] for r in rows if r["Description"]]
    assert any("\n" in t for t in texts) and any("\u2028" in t for t in texts) and any('"' in t for t in texts)
    assert any(t == "NA" for t in texts) and any(len(r["Long_Notes__c"] or "") > 32000 for r in rows)
    assert all(t == t.strip(" \t\r\n") for t in texts)
    stamps = [r["SystemModstamp"] for r in rows]
    assert max(stamps.count(s) for s in set(stamps)) > 100  # bursts share one SystemModstamp
