"""The retry matrix against injected emulator faults: what is retried, what is not, and why."""

from __future__ import annotations

import dataclasses

import pytest

from airflow_provider_sfint.client import (
    ClientConfig,
    LimitExceededError,
    NotFoundError,
    QueryError,
    RateLimitedError,
    SalesforceClient,
    ServerError,
    TransportError,
)
from airflow_provider_sfint.client.errors import RowLockError
from airflow_provider_sfint.client.transport import ApiRequest, should_retry

from ..emulator.helpers import Admin


def _requests(admin: Admin, key: str) -> int:
    return int(admin.counters()["requests"].get(key, 0))


def test_503_is_retried_until_success(client: SalesforceClient, fresh_org: Admin) -> None:
    client.login()
    fresh_org.faults({"kind": "503", "path": "/limits$", "count": 2})
    assert client.limits()["DailyApiRequests"].max > 0
    reasons = [r.reason for r in client.retries]
    assert len(reasons) == 2 and all("503 SERVER_UNAVAILABLE" in r for r in reasons)


def test_retries_stop_after_max_attempts(config: ClientConfig, fresh_org: Admin) -> None:
    with SalesforceClient(dataclasses.replace(config, max_attempts=3)) as client:
        client.login()
        fresh_org.faults({"kind": "503", "path": "/limits$"})
        with pytest.raises(ServerError):
            client.limits()
        assert len(client.retries) == 2
    assert _requests(fresh_org, "GET limits") == 3


def test_429_retry_after_is_honoured(
    client: SalesforceClient, fresh_org: Admin, caplog: pytest.LogCaptureFixture
) -> None:
    client.login()
    fresh_org.faults({"kind": "429", "path": "/limits$", "count": 1, "retry_after": 1})
    with caplog.at_level("WARNING"):
        client.limits()
    (event,) = client.retries
    assert event.delay == 1.0 and "429" in event.reason
    assert "retrying GET /services/data/v62.0/limits (attempt 2 of 6) in 1.00 s" in caplog.text


def test_connection_reset_mid_body_is_retried(client: SalesforceClient, fresh_org: Admin) -> None:
    client.login()
    fresh_org.faults({"kind": "drop", "path": "/query", "count": 1})
    rows = client.query_all("SELECT Id, Name, Description FROM Account")
    assert len(rows) > 0
    assert len(client.retries) == 1 and "RemoteProtocolError" in client.retries[0].reason


def test_read_timeout_is_retried(config: ClientConfig, fresh_org: Admin) -> None:
    with SalesforceClient(dataclasses.replace(config, read_timeout=0.5)) as client:
        client.login()
        fresh_org.faults({"kind": "latency", "latency_ms": 1500, "path": "/limits$", "count": 1})
        client.limits()
        assert "ReadTimeout" in client.retries[0].reason


def test_request_level_row_lock_is_retried(client: SalesforceClient, fresh_org: Admin) -> None:
    record_id = client.create("Account", {"Name": "Locked"})
    fresh_org.faults({"kind": "lock_row", "path": "/sobjects/Account/", "count": 1})
    client.update("Account", record_id, {"Name": "Unlocked"})
    assert client.get("Account", record_id)["Name"] == "Unlocked"
    assert "UNABLE_TO_LOCK_ROW" in client.retries[0].reason


def test_validation_and_not_found_are_not_retried(client: SalesforceClient, fresh_org: Admin) -> None:
    client.login()
    with pytest.raises(QueryError) as exc:
        client.query_all("SELECT Nope__c FROM Account")
    assert exc.value.error_code == "INVALID_FIELD" and exc.value.status == 400
    with pytest.raises(NotFoundError):
        client.describe("Nope__c")
    assert client.retries == []
    assert _requests(fresh_org, "GET query") == 1


def test_daily_limit_exhaustion_is_not_retried(client: SalesforceClient, fresh_org: Admin) -> None:
    client.limits()
    used = client.usage.used if client.usage else 0
    fresh_org.limits(api_max=used)
    before = _requests(fresh_org, "GET limits")
    with pytest.raises(LimitExceededError) as exc:
        client.limits()
    assert f"API usage {used}/{used}" in str(exc.value)
    assert client.retries == []
    assert _requests(fresh_org, "GET limits") == before + 1


def test_create_is_not_retried_after_an_ambiguous_failure(client: SalesforceClient, fresh_org: Admin) -> None:
    client.login()
    fresh_org.faults({"kind": "drop", "path": "/sobjects/Account$", "method": "POST", "count": 1})
    with pytest.raises(TransportError) as exc:
        client.create("Account", {"Name": "Exactly once"})
    assert exc.value.sent is True
    assert client.retries == []
    assert client.count("SELECT COUNT() FROM Account WHERE Name = 'Exactly once'") == 1


def test_create_is_retried_when_the_server_refused_it(client: SalesforceClient, fresh_org: Admin) -> None:
    client.login()
    fresh_org.faults({"kind": "503", "path": "/sobjects/Account$", "method": "POST", "count": 1})
    client.create("Account", {"Name": "Second try"})
    assert client.count("SELECT COUNT() FROM Account WHERE Name = 'Second try'") == 1
    fresh_org.faults({"kind": "500", "path": "/sobjects/Account$", "method": "POST", "count": 1})
    with pytest.raises(ServerError):
        client.create("Account", {"Name": "Maybe written"})


def test_request_that_never_left_is_retried_even_for_post(config: ClientConfig) -> None:
    with SalesforceClient(dataclasses.replace(config, max_attempts=3)) as client:
        client.login()
        dead = ApiRequest("POST", "http://127.0.0.1:9/services/data/v62.0/sobjects/Account", json={"Name": "x"})
        with pytest.raises(TransportError) as exc:
            client.transport.send(dead)
        assert exc.value.sent is False
        assert len(client.retries) == 2


def test_retry_policy_table() -> None:
    post, get = ApiRequest("POST", "/x"), ApiRequest("GET", "/x")
    upsert = ApiRequest("PATCH", "/x", idempotent=True)
    ambiguous = TransportError("reset", sent=True)
    assert should_retry(ambiguous, get) and should_retry(ambiguous, upsert) and not should_retry(ambiguous, post)
    assert should_retry(TransportError("refused", sent=False), post)
    assert should_retry(RateLimitedError("busy", status=403, error_code="REQUEST_LIMIT_EXCEEDED"), post)
    assert should_retry(RowLockError("locked"), post)
    assert should_retry(ServerError("down", status=503), post)
    assert not should_retry(ServerError("boom", status=500), post) and should_retry(ServerError("b", status=500), get)
    assert not should_retry(LimitExceededError("TotalRequests Limit exceeded."), get)
