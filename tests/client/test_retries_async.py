"""The retry matrix of test_retries.py, through the async client (what triggers use): the same faults give the
same retries, the same refusals and the same errors. The request pipeline is written once; this proves the
async half of it sends, retries and maps errors as the sync half does."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from airflow_provider_sfint.client import (
    AsyncSalesforceClient,
    ClientConfig,
    LimitExceededError,
    NotFoundError,
    QueryError,
    ServerError,
    TransportError,
)

from ..emulator.helpers import Admin

T = TypeVar("T")


def _run(config: ClientConfig, work: Callable[[AsyncSalesforceClient], Awaitable[T]]) -> tuple[T, list[str]]:
    """Run ``work`` with a fresh async client; returns its result and the reasons of the retries it made."""

    async def main() -> tuple[T, list[str]]:
        async with AsyncSalesforceClient(config) as client:
            await client.login()
            result = await work(client)
            return result, [r.reason for r in client.retries]

    return asyncio.run(main())


def _requests(admin: Admin, key: str) -> int:
    return int(admin.counters()["requests"].get(key, 0))


def test_503_is_retried_until_success(config: ClientConfig, fresh_org: Admin) -> None:
    fresh_org.faults({"kind": "503", "path": "/limits$", "count": 2})
    limits, reasons = _run(config, lambda c: c.limits())
    assert limits["DailyApiRequests"].max > 0
    assert len(reasons) == 2 and all("503 SERVER_UNAVAILABLE" in r for r in reasons)


def test_retries_stop_after_max_attempts(config: ClientConfig, fresh_org: Admin) -> None:
    fresh_org.faults({"kind": "503", "path": "/limits$"})
    with pytest.raises(ServerError):
        _run(dataclasses.replace(config, max_attempts=3), lambda c: c.limits())
    assert _requests(fresh_org, "GET limits") == 3


def test_429_retry_after_is_honoured(config: ClientConfig, fresh_org: Admin) -> None:
    fresh_org.faults({"kind": "429", "path": "/limits$", "count": 1, "retry_after": 1})

    async def work(client: AsyncSalesforceClient) -> Any:
        await client.limits()
        return [r.delay for r in client.retries]

    delays, reasons = _run(config, work)
    assert delays == [1.0] and "429" in reasons[0]


def test_connection_reset_mid_body_is_retried(config: ClientConfig, fresh_org: Admin) -> None:
    fresh_org.faults({"kind": "drop", "path": "/query", "count": 1})

    async def work(client: AsyncSalesforceClient) -> list[dict[str, Any]]:
        return [row async for row in client.query("SELECT Id, Name, Description FROM Account")]

    rows, reasons = _run(config, work)
    assert len(rows) == len(fresh_org.records("Account", include_deleted=False))
    assert len(reasons) == 1 and "RemoteProtocolError" in reasons[0]


def test_read_timeout_is_retried(config: ClientConfig, fresh_org: Admin) -> None:
    fresh_org.faults({"kind": "latency", "latency_ms": 1500, "path": "/limits$", "count": 1})
    _, reasons = _run(dataclasses.replace(config, read_timeout=0.5), lambda c: c.limits())
    assert len(reasons) == 1 and "ReadTimeout" in reasons[0]


def test_validation_and_not_found_are_not_retried(config: ClientConfig, fresh_org: Admin) -> None:
    async def bad_query(client: AsyncSalesforceClient) -> None:
        async for _ in client.query("SELECT Nope__c FROM Account"):
            pass

    with pytest.raises(QueryError) as exc:
        _run(config, bad_query)
    assert exc.value.error_code == "INVALID_FIELD" and exc.value.status == 400
    with pytest.raises(NotFoundError):
        _run(config, lambda c: c.describe("Nope__c"))
    assert _requests(fresh_org, "GET query") == 1


def test_daily_limit_exhaustion_is_not_retried(config: ClientConfig, fresh_org: Admin) -> None:
    fresh_org.limits(api_max=fresh_org.counters()["api_usage"])
    before = _requests(fresh_org, "GET limits")
    with pytest.raises(LimitExceededError):
        _run(config, lambda c: c.limits())
    assert _requests(fresh_org, "GET limits") == before + 1


def test_create_is_not_retried_after_an_ambiguous_failure(config: ClientConfig, fresh_org: Admin) -> None:
    fresh_org.faults({"kind": "drop", "path": "/sobjects/Account$", "method": "POST", "count": 1})
    with pytest.raises(TransportError) as exc:
        _run(config, lambda c: c.request("POST", "sobjects/Account", json={"Name": "Async exactly once"}))
    assert exc.value.sent is True
    assert len([r for r in fresh_org.records("Account") if r["Name"] == "Async exactly once"]) == 1


def test_create_is_retried_when_the_server_refused_it(config: ClientConfig, fresh_org: Admin) -> None:
    fresh_org.faults({"kind": "503", "path": "/sobjects/Account$", "method": "POST", "count": 1})
    _, reasons = _run(config, lambda c: c.request("POST", "sobjects/Account", json={"Name": "Async second try"}))
    assert len(reasons) == 1
    assert len([r for r in fresh_org.records("Account") if r["Name"] == "Async second try"]) == 1
