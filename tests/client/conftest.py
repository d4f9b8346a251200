from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_sfint.client import ClientConfig, SalesforceClient, forget_sessions
from airflow_provider_sfint.emulator import CLIENT_ID, CLIENT_SECRET

from ..emulator.helpers import Admin


@pytest.fixture(autouse=True)
def _fresh_sessions() -> Iterator[None]:
    """Sessions are cached per connection and process; each test starts without one."""
    forget_sessions()
    yield
    forget_sessions()


@pytest.fixture()
def config(emulator_url: str, fresh_org: Admin) -> ClientConfig:
    return ClientConfig(
        auth_type="client_credentials",
        login_url=emulator_url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        cache_key="test",
        max_retry_seconds=30,
    )


@pytest.fixture()
def client(config: ClientConfig) -> Iterator[SalesforceClient]:
    with SalesforceClient(config) as c:
        yield c
