"""SOQL through the emulator's grammar: every construct the issue lists, checked against stored rows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_sfint.emulator.soql import relative_range

from .helpers import Admin, SalesforceHttp


def _ids(sf: SalesforceHttp, soql: str) -> list[str]:
    r = sf.query(soql)
    assert r.status_code == 200, r.text
    return [rec["Id"] for rec in r.json()["records"]]


@pytest.fixture()
def people(sf: SalesforceHttp) -> dict[str, Any]:
    """A small, known dataset on top of the demo org."""
    acct = sf.post(
        "sobjects/Account",
        json={
            "Name": "Soql Corp",
            "External_Id__c": "SOQL-1",
            "Industry": "Energy",
            "Regions__c": "EMEA;APAC",
            "AnnualRevenue": 500,
        },
    ).json()["id"]
    other = sf.post(
        "sobjects/Account", json={"Name": "soql corp two", "Regions__c": "AMER", "AnnualRevenue": 1500}
    ).json()["id"]
    c1 = sf.post(
        "sobjects/Contact",
        json={
            "LastName": "O'Neil",
            "FirstName": "Zed",
            "AccountId": acct,
            "Email": "z@x.io",
            "Birthdate": "1990-05-01",
        },
    ).json()["id"]
    c2 = sf.post("sobjects/Contact", json={"LastName": "Percent%Sign", "AccountId": acct}).json()["id"]
    c3 = sf.post("sobjects/Contact", json={"LastName": "Under_score", "AccountId": other}).json()["id"]
    return {"acct": acct, "other": other, "c1": c1, "c2": c2, "c3": c3}


def test_where_operators_and_escaped_strings(sf: SalesforceHttp, people: dict[str, Any]) -> None:
    assert _ids(sf, r"SELECT Id FROM Contact WHERE LastName = 'O\'Neil'") == [people["c1"]]
    doubled = sf.query("SELECT Id FROM Contact WHERE LastName = 'o''neil'")  # '' is not an escape in SOQL
    assert doubled.status_code == 400 and doubled.json()[0]["errorCode"] == "MALFORMED_QUERY"
    assert _ids(sf, r"SELECT Id FROM Contact WHERE LastName LIKE 'percent\%%'") == [people["c2"]]
    assert _ids(sf, r"SELECT Id FROM Contact WHERE LastName LIKE 'Under\_sc%'") == [people["c3"]]
    accounts = "SELECT Id FROM Account WHERE Id IN ('{acct}', '{other}') AND ".format(**people)
    assert _ids(sf, accounts + "AnnualRevenue > 1000") == [people["other"]]
    assert _ids(sf, accounts + "AnnualRevenue >= 500 ORDER BY AnnualRevenue") == [people["acct"], people["other"]]
    assert _ids(sf, accounts + "AnnualRevenue < 500") == []
    assert _ids(sf, accounts + "AnnualRevenue <= 500") == [people["acct"]]
    assert _ids(sf, accounts + "Name = 'SOQL CORP'") == [people["acct"]]  # case-insensitive
    assert _ids(sf, accounts + "Industry != 'Energy'") == [people["other"]]  # != includes nulls
    assert _ids(sf, accounts + "Industry = null") == [people["other"]]
    assert _ids(sf, accounts + "Industry != null") == [people["acct"]]
    assert _ids(sf, accounts + "Name IN ('Soql Corp', 'nope')") == [people["acct"]]
    assert _ids(sf, accounts + "Name NOT IN ('Soql Corp')") == [people["other"]]
    assert _ids(sf, accounts + "(Industry = 'Energy' OR AnnualRevenue > 1000)") == [people["acct"], people["other"]]
    assert _ids(sf, accounts + "NOT Name LIKE 'soql corp t%'") == [people["acct"]]
    assert _ids(sf, accounts + "Is_Strategic__c = FALSE") == [people["acct"], people["other"]]
    assert _ids(sf, accounts + "Regions__c INCLUDES ('EMEA;APAC', 'LATAM')") == [people["acct"]]
    assert _ids(sf, accounts + "Regions__c INCLUDES ('APAC')") == [people["acct"]]
    assert _ids(sf, accounts + "Regions__c EXCLUDES ('EMEA')") == [people["other"]]
    assert _ids(sf, f"SELECT Id FROM Contact WHERE Id = '{people['c1'][:15]}'") == [people["c1"]]


def test_dates_datetimes_and_relative_literals(sf: SalesforceHttp, people: dict[str, Any]) -> None:
    c1 = people["c1"]
    assert _ids(sf, f"SELECT Id FROM Contact WHERE Id = '{c1}' AND Birthdate = 1990-05-01") == [c1]
    assert _ids(sf, f"SELECT Id FROM Contact WHERE Id = '{c1}' AND Birthdate > 1990-05-01") == []
    assert _ids(sf, f"SELECT Id FROM Contact WHERE Id = '{c1}' AND CreatedDate = TODAY") == [c1]
    assert _ids(sf, f"SELECT Id FROM Contact WHERE Id = '{c1}' AND CreatedDate = LAST_N_DAYS:3") == [c1]
    assert _ids(sf, f"SELECT Id FROM Contact WHERE Id = '{c1}' AND CreatedDate < YESTERDAY") == []
    assert _ids(sf, f"SELECT Id FROM Contact WHERE Id = '{c1}' AND CreatedDate = THIS_MONTH") == [c1]
    assert _ids(sf, f"SELECT Id FROM Contact WHERE Id = '{c1}' AND CreatedDate > 2020-01-01T00:00:00Z") == [c1]
    assert _ids(sf, f"SELECT Id FROM Contact WHERE Id = '{c1}' AND CreatedDate > 2020-01-01T00:00:00+05:00") == [c1]
    assert _ids(sf, f"SELECT Id FROM Contact WHERE Id = '{c1}' AND CreatedDate < 2020-01-01T00:00:00.000Z") == []
    bad = sf.query("SELECT Id FROM Contact WHERE CreatedDate = 2020-01-01")
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_FIELD"
    unknown = sf.query("SELECT Id FROM Contact WHERE CreatedDate = SOMEDAY")
    assert unknown.status_code == 400 and unknown.json()[0]["errorCode"] == "MALFORMED_QUERY"


def test_relative_ranges_are_half_open_and_calendar_aligned() -> None:
    now = datetime(2026, 11, 28, 15, 30, tzinfo=UTC)  # a Saturday
    day = timedelta(days=1)
    today = datetime(2026, 11, 28, tzinfo=UTC)
    assert relative_range("TODAY", None, now) == (today, today + day)
    assert relative_range("YESTERDAY", None, now) == (today - day, today)
    assert relative_range("THIS_WEEK", None, now) == (
        datetime(2026, 11, 22, tzinfo=UTC),
        datetime(2026, 11, 29, tzinfo=UTC),
    )
    assert relative_range("LAST_MONTH", None, now) == (
        datetime(2026, 10, 1, tzinfo=UTC),
        datetime(2026, 11, 1, tzinfo=UTC),
    )
    assert relative_range("NEXT_MONTH", None, now) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert relative_range("THIS_QUARTER", None, now) == (
        datetime(2026, 10, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert relative_range("LAST_YEAR", None, now) == (
        datetime(2025, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert relative_range("NEXT_N_DAYS", 2, now) == (today + day, today + 3 * day)
    assert relative_range("LAST_N_MONTHS", 2, now) == (
        datetime(2026, 9, 1, tzinfo=UTC),
        datetime(2026, 11, 1, tzinfo=UTC),
    )
    assert relative_range("N_YEARS_AGO", 1, now) == (datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    assert relative_range("BOGUS", None, now) is None


def test_parent_paths_up_to_five_levels(sf: SalesforceHttp, people: dict[str, Any]) -> None:
    top = sf.post("sobjects/Account", json={"Name": "L5"}).json()["id"]
    parent = top
    for level in (4, 3, 2, 1):
        parent = sf.post("sobjects/Account", json={"Name": f"L{level}", "ParentId": parent}).json()["id"]
    contact = sf.post("sobjects/Contact", json={"LastName": "Deep", "AccountId": parent}).json()["id"]
    soql = f"SELECT Account.Parent.Parent.Parent.Parent.Name FROM Contact WHERE Id = '{contact}'"
    rec = sf.query(soql).json()["records"][0]
    assert rec["Account"]["Parent"]["Parent"]["Parent"]["Parent"]["Name"] == "L5"
    too_deep = sf.query("SELECT Account.Parent.Parent.Parent.Parent.Parent.Name FROM Contact")
    assert too_deep.status_code == 400 and too_deep.json()[0]["errorCode"] == "MALFORMED_QUERY"
    where = _ids(sf, "SELECT Id FROM Contact WHERE Account.Parent.Parent.Parent.Parent.Name = 'L5'")
    assert where == [contact]


def test_child_subqueries_filter_order_and_limit(sf: SalesforceHttp, people: dict[str, Any]) -> None:
    soql = (
        "SELECT Name, (SELECT LastName FROM Contacts WHERE LastName != 'nobody' ORDER BY LastName DESC LIMIT 1) "
        f"FROM Account WHERE Id = '{people['acct']}'"
    )
    rec = sf.query(soql).json()["records"][0]
    assert rec["Contacts"]["totalSize"] == 1
    assert rec["Contacts"]["records"][0]["LastName"] == "Percent%Sign"
    bad = sf.query("SELECT Name, (SELECT Id FROM Nopes) FROM Account")
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_FIELD"


def test_semi_and_anti_joins(sf: SalesforceHttp, people: dict[str, Any]) -> None:
    lonely = sf.post("sobjects/Account", json={"Name": "Lonely"}).json()["id"]
    with_contacts = _ids(
        sf, "SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact WHERE LastName = 'Under_score')"
    )
    assert with_contacts == [people["other"]]
    without = _ids(sf, f"SELECT Id FROM Account WHERE Id = '{lonely}' AND Id NOT IN (SELECT AccountId FROM Contact)")
    assert without == [lonely]


def test_order_by_nulls_limit_offset(sf: SalesforceHttp, people: dict[str, Any]) -> None:
    base = "SELECT Id FROM Account WHERE Id IN ('{acct}', '{other}') ".format(**people)
    assert _ids(sf, base + "ORDER BY Industry ASC NULLS FIRST") == [people["other"], people["acct"]]
    assert _ids(sf, base + "ORDER BY Industry ASC NULLS LAST") == [people["acct"], people["other"]]
    assert _ids(sf, base + "ORDER BY Name DESC") == [people["other"], people["acct"]]
    assert _ids(sf, base + "ORDER BY Name LIMIT 1") == [people["acct"]]
    assert _ids(sf, base + "ORDER BY Name LIMIT 1 OFFSET 1") == [people["other"]]
    too_far = sf.query("SELECT Id FROM Account LIMIT 1 OFFSET 2001")
    assert too_far.status_code == 400 and too_far.json()[0]["errorCode"] == "NUMBER_OUTSIDE_VALID_RANGE"


def test_aggregates_group_by_having(sf: SalesforceHttp, admin: Admin, people: dict[str, Any]) -> None:
    rows = sf.query(
        "SELECT Account.Name, COUNT(Id) n, MAX(LastName), MIN(Birthdate) FROM Contact "
        f"WHERE AccountId = '{people['acct']}' GROUP BY Account.Name HAVING COUNT(Id) > 1"
    ).json()
    (row,) = rows["records"]
    assert row == {
        "attributes": {"type": "AggregateResult"},
        "Name": "Soql Corp",
        "n": 2,
        "expr0": "Percent%Sign",
        "expr1": "1990-05-01",
    }
    none = sf.query("SELECT AccountId, COUNT(Id) FROM Contact GROUP BY AccountId HAVING COUNT(Id) > 100000")
    assert none.json() == {"totalSize": 0, "done": True, "records": []}
    distinct = sf.query("SELECT COUNT_DISTINCT(Industry) FROM Account").json()["records"][0]["expr0"]
    live = {r["Industry"] for r in admin.records("Account") if not r["IsDeleted"] and r["Industry"]}
    assert distinct == len(live)
    avg = sf.query("SELECT AVG(AnnualRevenue) a FROM Account WHERE Id IN ('{acct}', '{other}')".format(**people))
    assert avg.json()["records"][0]["a"] == 1000.0
    ungrouped = sf.query("SELECT Name, COUNT(Id) FROM Account")
    assert ungrouped.status_code == 400 and "grouped or aggregated" in ungrouped.json()[0]["message"]
    bad_sum = sf.query("SELECT SUM(Name) FROM Account")
    assert bad_sum.status_code == 400


def test_fields_function(sf: SalesforceHttp, people: dict[str, Any]) -> None:
    one = sf.query(f"SELECT FIELDS(ALL) FROM Account WHERE Id = '{people['acct']}' LIMIT 200").json()["records"][0]
    assert {"Name", "External_Id__c", "Regions__c", "SystemModstamp"} <= set(one)
    custom = sf.query("SELECT FIELDS(CUSTOM) FROM Account LIMIT 1").json()["records"][0]
    assert set(custom) - {"attributes"} == {
        "External_Id__c",
        "Account_Score__c",
        "Regions__c",
        "Is_Strategic__c",
        "Long_Notes__c",
    }
    standard = sf.query("SELECT FIELDS(STANDARD) FROM Account").json()["records"][0]
    assert "External_Id__c" not in standard and "Name" in standard
    unbounded = sf.query("SELECT FIELDS(ALL) FROM Account")
    assert unbounded.status_code == 400
    assert "FIELDS function must have a LIMIT of at most 200" in unbounded.json()[0]["message"]


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("", "MALFORMED_QUERY"),
        ("SELECT FROM Account", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE Name = 'a' AND Name = 'b' OR Name = 'c'", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE Name = 'unterminated", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE NumberOfEmployees = 'five'", "INVALID_FIELD"),
        ("SELECT Id FROM Account WHERE Name = 5", "INVALID_FIELD"),
        ("SELECT Id FROM Account WHERE Id = 'xyz'", "INVALID_QUERY_FILTER_OPERATOR"),
        ("SELECT Account.Nope.Name FROM Contact", "INVALID_FIELD"),
        ("SELECT Id, Id FROM Account", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account; DELETE FROM Account", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE Name = 'x' --", "MALFORMED_QUERY"),
    ],
)
def test_malformed_queries(sf: SalesforceHttp, soql: str, code: str) -> None:
    r = sf.query(soql)
    assert r.status_code == 400, r.text
    assert r.json()[0]["errorCode"] == code


def test_injection_attempts_stay_literal(sf: SalesforceHttp, people: dict[str, Any]) -> None:
    hostile = r"x\' OR Name != \'"
    assert _ids(sf, f"SELECT Id FROM Account WHERE Name = '{hostile}'") == []
    total = sf.query("SELECT COUNT() FROM Account").json()["totalSize"]
    assert total > 0


def test_query_more_with_expired_or_bogus_locator(sf: SalesforceHttp) -> None:
    r = sf.get("query/01gHx0000000zzzIAA-200")
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_query_all_locator_path(sf: SalesforceHttp) -> None:
    page = sf.query("SELECT Id FROM Contact", all_rows=True, headers={"Sforce-Query-Options": "batchSize=200"}).json()
    assert "/queryAll/01g" in page["nextRecordsUrl"]
    assert sf.get(page["nextRecordsUrl"]).status_code == 200


def test_dates_in_results_use_salesforce_formats(sf: SalesforceHttp, people: dict[str, Any]) -> None:
    rec = sf.query(f"SELECT Birthdate, CreatedDate FROM Contact WHERE Id = '{people['c1']}'").json()["records"][0]
    assert date.fromisoformat(rec["Birthdate"]) == date(1990, 5, 1)
    created = rec["CreatedDate"]
    assert len(created) == 28 and created.endswith("+0000") and created[19] == "."


def _family(admin: Admin, parents: int, children: int) -> list[str]:
    ids = admin.load("Account", [{"Name": f"Family {i:02d}"} for i in range(parents)])
    admin.load("Contact", [{"LastName": f"Child {i:04d}", "AccountId": a} for a in ids for i in range(children)])
    return ids


def test_a_large_child_result_pages_with_its_own_locator(sf: SalesforceHttp, admin: Admin) -> None:
    """Issue 17 item 5: a parent's children beyond 200 come through the child result's nextRecordsUrl."""
    (account,) = _family(admin, 1, 450)
    soql = f"SELECT Id, (SELECT Id, LastName FROM Contacts ORDER BY LastName) FROM Account WHERE Id = '{account}'"
    page = sf.get("query", params={"q": soql}).json()
    contacts = page["records"][0]["Contacts"]
    assert page["done"] is True and contacts["totalSize"] == 450 and contacts["done"] is False
    assert len(contacts["records"]) == 200 and contacts["nextRecordsUrl"].startswith("/services/data/v")
    rest = sf.get(contacts["nextRecordsUrl"]).json()
    assert rest["done"] is True and rest["totalSize"] == 450 and len(rest["records"]) == 250
    names = [r["LastName"] for r in contacts["records"] + rest["records"]]
    assert names == [f"Child {i:04d}" for i in range(450)]


def test_child_records_count_toward_the_batch(sf: SalesforceHttp, admin: Admin) -> None:
    ids = _family(admin, 5, 300)
    quoted = ",".join(f"'{i}'" for i in ids)
    soql = f"SELECT Id, (SELECT Id FROM Contacts) FROM Account WHERE Id IN ({quoted}) ORDER BY Name"
    first = sf.get("query", params={"q": soql}, headers={"Sforce-Query-Options": "batchSize=1000"}).json()
    # each parent weighs 1 + its first 200 children: four fit in 1,000, the fifth starts the next page
    assert first["totalSize"] == 5 and first["done"] is False and len(first["records"]) == 4
    child_url = first["records"][0]["Contacts"]["nextRecordsUrl"]
    second = sf.get(first["nextRecordsUrl"]).json()
    assert second["done"] is True and [r["Id"] for r in second["records"]] == [ids[4]]
    # the parent's next page closed the previous page's child cursors, as queryMore() does
    stale = sf.get(child_url)
    assert stale.status_code == 400 and stale.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"
