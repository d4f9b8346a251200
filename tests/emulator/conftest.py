"""Shared by the emulator's Pub/Sub tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_sfint.emulator import EmulatorProcess

from .helpers import Admin
from .pubsub_client import PubSubTestClient


@pytest.fixture()
def bus(emulator_server: EmulatorProcess, fresh_org: Admin) -> Iterator[PubSubTestClient]:
    """The tests' own Pub/Sub client (not the provider's) on the session emulator, signed in to a freshly reset
    org, which it carries as ``bus.admin``."""
    client = PubSubTestClient(
        emulator_server.grpc_target, fresh_org.token(), emulator_server.url, emulator_server.org_id
    )
    client.admin = fresh_org  # type: ignore[attr-defined]
    yield client
    client.close()
