"""Parsing: the limit header (tolerantly) and error bodies, including every recorded real-org body."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from airflow_provider_sfint.client import (
    ApiUsage,
    LimitExceededError,
    MultipleMatchesError,
    NotFoundError,
    QueryError,
    RateLimitedError,
    RecordValidationError,
    RowLockError,
    ServerError,
    parse_limit_info,
)
from airflow_provider_sfint.client.errors import SalesforceError, error_from_response
from airflow_provider_sfint.client.rest import flatten_record, parse_query_page


def test_limit_info_is_parsed_tolerantly() -> None:
    assert parse_limit_info("api-usage=18/15000") == ApiUsage(18, 15000)
    assert parse_limit_info("api-usage=110018/100000; api-bursts=1/750") == ApiUsage(110018, 100000, 1, 750)
    assert parse_limit_info("api-usage=5/100;per-app-api-usage=2/50(appName=x)") == ApiUsage(5, 100)
    assert parse_limit_info("API-USAGE=1/2") == ApiUsage(1, 2)
    assert parse_limit_info("garbage") is None and parse_limit_info(None) is None
    usage = ApiUsage(110018, 100000, 1, 750)
    assert usage.remaining == 0 and usage.remaining_percent == 0.0
    assert ApiUsage(250, 1000).remaining_percent == 75.0


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (
            403,
            [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}],
            LimitExceededError,
            "REQUEST_LIMIT_EXCEEDED",
        ),
        (
            403,
            [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "ConcurrentPerOrgLongTxn Limit exceeded."}],
            RateLimitedError,
            "REQUEST_LIMIT_EXCEEDED",
        ),
        (
            429,
            [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"}],
            RateLimitedError,
            "REQUEST_LIMIT_EXCEEDED",
        ),
        (420, "<html>no routing</html>", RateLimitedError, None),
        (503, [{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}], ServerError, "SERVER_UNAVAILABLE"),
        (502, "<html>bad gateway</html>", ServerError, None),
        (
            400,
            [{"errorCode": "UNABLE_TO_LOCK_ROW", "message": "unable to obtain exclusive access"}],
            RowLockError,
            "UNABLE_TO_LOCK_ROW",
        ),
        (
            300,
            ["/services/data/v60.0/sobjects/Account/001A", "/services/data/v60.0/sobjects/Account/001B"],
            MultipleMatchesError,
            None,
        ),
    ],
)
def test_error_mapping(status: int, body: object, kind: type, code: str | None) -> None:
    exc = error_from_response(status, body, method="GET", path="/services/data/v60.0/x", usage=(10, 10))
    assert isinstance(exc, kind)
    assert exc.error_code == code and exc.status == status
    assert "GET /services/data/v60.0/x" in str(exc)


def _load(recorded: Path, name: str) -> object:
    return json.loads((recorded / name).read_text(encoding="utf-8"))


def test_recorded_error_bodies_parse(recorded: Path) -> None:
    sobjects, query = "/services/data/v60.0/sobjects/Account", "/services/data/v60.0/query"
    cases = [
        ("unknown-field.json", 400, sobjects, RecordValidationError, "INVALID_FIELD"),
        ("unknown-object.json", 400, query, QueryError, "INVALID_TYPE"),
        ("invalid-field-upsert.json", 400, sobjects, RecordValidationError, "INVALID_FIELD_FOR_INSERT_UPDATE"),
        (
            "metadata/write/err-duplicate-permission-assignment.json",
            400,
            "/services/data/v60.0/sobjects/PermissionSetAssignment",
            SalesforceError,
            "DUPLICATE_VALUE",
        ),
        ("crm/delete/not-found.json", 404, sobjects, NotFoundError, "ENTITY_IS_DELETED"),
        (
            "batch/create/contacts/err-bad-request.json",
            400,
            "/services/data/v60.0/composite/sobjects",
            RecordValidationError,
            "REQUIRED_FIELD_MISSING",
        ),
    ]
    for name, status, path, kind, code in cases:
        exc = error_from_response(status, _load(recorded, name), method="POST", path=path)
        assert isinstance(exc, kind), name
        assert exc.error_code == code, name
    upsert = error_from_response(400, _load(recorded, "invalid-field-upsert.json"), method="PATCH", path=sobjects)
    assert upsert.fields == ["MasterRecordId"]
    duplicate = error_from_response(
        400, _load(recorded, "metadata/write/err-duplicate-permission-assignment.json"), method="POST", path=sobjects
    )
    assert duplicate.fields == ["AssigneeId", "PermissionSetId"]
    assert "Duplicate PermissionSetAssignment" in str(duplicate)


def test_recorded_query_bodies_parse_and_flatten(recorded: Path) -> None:
    for name in (
        "metadata/write/permission-set.json",
        "read-opportunity-with-account.json",
        "read-opportunity-with-contacts.json",
        "read-list-contacts.json",
        "read-list-leads.json",
    ):
        response = httpx.Response(200, json=_load(recorded, name))
        page = parse_query_page(response)
        assert len(page.records) > 0, name
        for record in page.records:
            flat = flatten_record(record)
            assert "attributes" not in flat
            assert not any(isinstance(v, dict) for v in flat.values()), name  # parents became dotted columns
    lead = flatten_record(
        parse_query_page(httpx.Response(200, json=_load(recorded, "read-list-leads.json"))).records[0]
    )
    assert lead["Address.city"] == lead["City"] and "Address" not in lead
    children = flatten_record(
        parse_query_page(httpx.Response(200, json=_load(recorded, "read-opportunity-with-contacts.json"))).records[0]
    )
    assert [c["Role"] for c in children["OpportunityContactRoles"]] == ["Decision Maker", "Influencer"]


def test_a_page_that_is_not_done_without_a_next_url_is_an_error() -> None:
    with pytest.raises(SalesforceError, match="no nextRecordsUrl"):
        parse_query_page(httpx.Response(200, json={"totalSize": 5, "done": False, "records": []}))
