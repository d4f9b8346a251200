"""The suite's guard against forking while gRPC runs (``tests/conftest.py``) sees gRPC's runtime by the names of its
threads. Those names belong to grpcio, not to us: if an upgrade renamed them, the guard would pass everything and
the hangs it prevents would be back. This pins the premise: the threads are there while a channel is open and gone
once it is closed."""

from __future__ import annotations

import asyncio
import time

import grpc
import grpc.aio

from .conftest import _grpc_threads


def _gone_soon() -> list[str]:
    deadline = time.monotonic() + 5
    while (alive := _grpc_threads()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def test_an_open_aio_channel_shows_and_a_closed_one_does_not() -> None:
    assert _grpc_threads() == []

    async def use() -> list[str]:
        channel = grpc.aio.insecure_channel("127.0.0.1:9")  # nothing listens: the runtime starts all the same
        try:
            await asyncio.wait_for(channel.channel_ready(), 0.3)
        except TimeoutError:
            pass
        seen = _grpc_threads()
        await channel.close()
        return seen

    assert asyncio.run(use()), "gRPC's runtime threads were not recognised while an aio channel was open"
    assert _gone_soon() == []


def test_an_open_sync_channel_shows_and_a_closed_one_does_not() -> None:
    channel = grpc.insecure_channel("127.0.0.1:9")
    try:
        grpc.channel_ready_future(channel).result(timeout=0.3)
    except grpc.FutureTimeoutError:
        pass
    assert _grpc_threads(), "gRPC's runtime threads were not recognised while a channel was open"
    channel.close()
    assert _gone_soon() == []
