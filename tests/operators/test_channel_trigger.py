"""SalesforceChannelTrigger, the doorbell of asset watchers, against the emulator over gRPC: one ring per burst
and per min_interval, one event delivery per ring, a resume point kept in the asset state store, and the
``salesforce`` scheme of common-messaging's MessageQueueTrigger."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from airflow_provider_sfint.triggers.channel import STATE_KEY_PREFIX, SalesforceChannelTrigger

from ..emulator.helpers import Admin, SalesforceHttp
from .conftest import set_connection

CHANNEL = "/data/AccountChangeEvent"


@pytest.fixture()
def events_conn(monkeypatch: pytest.MonkeyPatch, emulator_server: Any, fresh_org: Admin) -> str:
    return set_connection(monkeypatch, "sfint_bell", emulator_server.url, pubsub_endpoint=emulator_server.grpc_target)


class Store:
    """Airflow 3.3's asset state store accessor (aget/aset of JSON values), kept across trigger restarts."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = value


class Bell:
    """Runs a trigger in the background and keeps what it fires, with the time of each ring."""

    def __init__(self, trigger: SalesforceChannelTrigger) -> None:
        self.trigger = trigger
        self.rings: list[tuple[float, dict[str, Any]]] = []
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Bell:
        async def listen() -> None:
            async for event in self.trigger.run():
                self.rings.append((time.monotonic(), event.payload))

        self.task = asyncio.create_task(listen())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass

    async def wait_for(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.rings) < count:
            assert self.task is not None
            if self.task.done():
                self.task.result()  # raises what stopped the trigger
            assert time.monotonic() < deadline, f"{len(self.rings)} rings, waited for {count}"
            await asyncio.sleep(0.05)


def _latest(admin: Admin) -> str:
    latest = admin._call("GET", "pubsub")["latest_replay_id"]
    assert latest, "the bus holds no event yet"
    return str(latest)


def _delivered(sf: SalesforceHttp) -> int:
    return int(sf.get("limits").json()["DailyDeliveredPlatformEvents"]["Remaining"])


def _burst(sf: SalesforceHttp, n: int, prefix: str) -> None:
    """``n`` Account creates in one Collections call: one transaction, ``n`` change events."""
    records = [{"attributes": {"type": "Account"}, "Name": f"{prefix}{i}"} for i in range(n)]
    results = sf.post("composite/sobjects", json={"allOrNone": True, "records": records}).json()
    assert all(r["success"] for r in results)


def test_rings_once_per_burst_and_min_interval_with_one_delivery_each(
    events_conn: str, sf: SalesforceHttp, fresh_org: Admin
) -> None:
    sf.post("sobjects/Account", json={"Name": "Before the bell"})
    start = _latest(fresh_org)
    remaining = _delivered(sf)
    trigger = SalesforceChannelTrigger(CHANNEL, sfint_conn_id=events_conn, min_interval=3.0, replay_id=start)

    async def run() -> list[tuple[float, dict[str, Any]]]:
        async with Bell(trigger) as bell:
            _burst(sf, 150, "First")
            await bell.wait_for(1)
            await asyncio.sleep(1.5)  # the rest of the burst is the run's to read: no second ring
            assert len(bell.rings) == 1
            _burst(sf, 10, "Second")
            await bell.wait_for(2)
            await asyncio.sleep(1.0)
            return list(bell.rings)

    rings = asyncio.run(run())
    assert len(rings) == 2
    (t1, first), (t2, second) = rings
    assert first["channel"] == CHANNEL and first["reason"] == "events" and first["replay_id"]
    assert int(first["replay_id"], 16) > int(start, 16) and int(second["replay_id"], 16) > int(first["replay_id"], 16)
    assert t2 - t1 >= 3.0 - 0.05  # min_interval between two rings
    assert set(first) == {"channel", "replay_id", "reason", "rang_at"}  # a doorbell: no event data
    assert remaining - _delivered(sf) == 2  # one delivery per ring, not 160


def test_resume_point_survives_a_restart_through_the_asset_state_store(
    events_conn: str, sf: SalesforceHttp, fresh_org: Admin
) -> None:
    sf.post("sobjects/Account", json={"Name": "Seen"})
    store = Store()
    key = STATE_KEY_PREFIX + CHANNEL

    async def one_ring(trigger: SalesforceChannelTrigger) -> dict[str, Any]:
        trigger.asset_state_store = store  # as the triggerer injects it on Airflow 3.3
        async with Bell(trigger) as bell:
            await bell.wait_for(1)
            return bell.rings[0][1]

    # No stored point: EARLIEST rings at once for the retained event, and stores where it rang.
    first = asyncio.run(one_ring(SalesforceChannelTrigger(CHANNEL, sfint_conn_id=events_conn, start="EARLIEST")))
    assert store.values[key] == first["replay_id"]
    # While the triggerer is down, one more change: the restarted trigger resumes after the stored point
    # (not from EARLIEST again, not from LATEST, which would miss it).
    sf.post("sobjects/Account", json={"Name": "While down"})
    second = asyncio.run(one_ring(SalesforceChannelTrigger(CHANNEL, sfint_conn_id=events_conn, start="EARLIEST")))
    assert int(second["replay_id"], 16) > int(first["replay_id"], 16)


def test_keepalives_move_the_stored_resume_point(events_conn: str, sf: SalesforceHttp, fresh_org: Admin) -> None:
    sf.post("sobjects/Contact", json={"LastName": "Elsewhere"})
    fresh_org._call("PUT", "pubsub", json={"keepalive_seconds": 1})
    store = Store()
    trigger = SalesforceChannelTrigger(CHANNEL, sfint_conn_id=events_conn)
    trigger.asset_state_store = store

    async def run() -> None:
        async with Bell(trigger):
            deadline = time.monotonic() + 10
            while STATE_KEY_PREFIX + CHANNEL not in store.values:
                assert time.monotonic() < deadline, "no keep-alive stored a resume point"
                await asyncio.sleep(0.1)

    asyncio.run(run())
    assert store.values[STATE_KEY_PREFIX + CHANNEL] == _latest(fresh_org)


def test_refusals_that_no_wait_fixes_stop_the_trigger(events_conn: str, fresh_org: Admin) -> None:
    from airflow_provider_sfint.client.errors import ReplayIdCorruptedError, TopicNotFoundError

    async def first(trigger: SalesforceChannelTrigger) -> Any:
        async for event in trigger.run():
            return event
        return None

    with pytest.raises(TopicNotFoundError):
        asyncio.run(first(SalesforceChannelTrigger("/event/Nope__e", sfint_conn_id=events_conn)))
    with pytest.raises(ReplayIdCorruptedError):
        asyncio.run(first(SalesforceChannelTrigger(CHANNEL, sfint_conn_id=events_conn, replay_id="00ff")))


def test_settings_are_checked_and_serialize_round_trips() -> None:
    with pytest.raises(ValueError, match="channel"):
        SalesforceChannelTrigger("AccountChangeEvent")
    with pytest.raises(ValueError, match="start"):
        SalesforceChannelTrigger(CHANNEL, start="CUSTOM")
    with pytest.raises(ValueError, match="replay_id"):
        SalesforceChannelTrigger(CHANNEL, replay_id="not hex")
    with pytest.raises(ValueError, match="min_interval"):
        SalesforceChannelTrigger(CHANNEL, min_interval=-1)
    trigger = SalesforceChannelTrigger(CHANNEL, sfint_conn_id="c", min_interval=5, start="EARLIEST", replay_id="0a")
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_sfint.triggers.channel.SalesforceChannelTrigger"
    assert SalesforceChannelTrigger(**kwargs).serialize() == (path, kwargs)


def test_message_queue_trigger_with_the_salesforce_scheme() -> None:
    pytest.importorskip("airflow.providers.common.messaging", reason="the messaging extra is not installed")
    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

    trigger = MessageQueueTrigger(scheme="salesforce", channel=CHANNEL, sfint_conn_id="c", min_interval=10)
    assert isinstance(trigger.trigger, SalesforceChannelTrigger)
    assert trigger.serialize() == SalesforceChannelTrigger(CHANNEL, sfint_conn_id="c", min_interval=10).serialize()
