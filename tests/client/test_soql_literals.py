"""SOQL literals built safely: hostile values round-trip through the emulator and never inject."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from airflow_provider_sfint.client import SalesforceClient, literal, quote_like, soql

HOSTILE = [
    "O'Brien",
    "back\\slash",
    'double"quote',
    "line\nbreak",
    "tab\tand\rreturn",
    "x' OR Name != '",
    "100% _sure_",
    "emoji \U0001f600 and 漢字",
    "\\' OR 1=1 --",
]


def test_hostile_strings_match_exactly_and_never_inject(client: SalesforceClient) -> None:
    ids = {value: client.create("Account", {"Name": value}) for value in HOSTILE}
    total = client.count("SELECT COUNT() FROM Account")
    for value, record_id in ids.items():
        rows = client.query_all(soql("SELECT Id FROM Account WHERE Name = {v}", v=value))
        assert [r["Id"] for r in rows] == [record_id], value
    like = client.query_all(f"SELECT Name FROM Account WHERE Name LIKE {quote_like('100% _sure_')}")
    assert [r["Name"] for r in like] == ["100% _sure_"]
    assert client.count(soql("SELECT COUNT() FROM Account WHERE Name IN {names}", names=HOSTILE)) == len(HOSTILE)
    assert client.count("SELECT COUNT() FROM Account") == total


def test_literals() -> None:
    assert literal(None) == "NULL" and literal(True) == "TRUE" and literal(False) == "FALSE"
    assert literal(42) == "42" and literal(1e-7) == "0.0000001" and literal(Decimal("1E+3")) == "1000"
    assert literal(2.5) == "2.5"
    assert literal(date(2024, 2, 29)) == "2024-02-29"
    assert (
        literal(datetime(2024, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))) == "2024-01-01T00:00:00Z"
    )
    assert literal(datetime(2024, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)) == "2024-01-01T00:00:00.123Z"
    assert literal(["a", 1]) == "('a', 1)"
    for bad in (float("nan"), float("inf"), [], {"a": 1}, object()):
        with pytest.raises((ValueError, TypeError)):
            literal(bad)
    with pytest.raises(ValueError, match="naive"):
        literal(datetime(2024, 1, 1))
    with pytest.raises(KeyError):
        soql("SELECT Id FROM Account WHERE Name = {missing}")
    with pytest.raises(ValueError):
        soql("SELECT Id FROM Account WHERE Name = {v!r}", v="x")


def test_datetime_literals_select_the_right_rows(client: SalesforceClient) -> None:
    record_id = client.create("Account", {"Name": "When"})
    created = client.get("Account", record_id, ["CreatedDate"])["CreatedDate"]
    stamp = datetime.strptime(created, "%Y-%m-%dT%H:%M:%S.%f%z")
    before = soql(
        "SELECT Id FROM Account WHERE Id = {i} AND CreatedDate >= {t}", i=record_id, t=stamp - timedelta(seconds=1)
    )
    after = soql(
        "SELECT Id FROM Account WHERE Id = {i} AND CreatedDate > {t}", i=record_id, t=stamp + timedelta(seconds=1)
    )
    assert client.count(before) == 1 and client.count(after) == 0
