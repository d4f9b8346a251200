"""A doorbell on a Pub/Sub channel, for ``AssetWatcher``: it says "events are waiting", never carries them.

The DAG run it starts reads the events with :class:`~airflow_provider_sfint.operators.change_events.
SalesforceChangeEventsOperator` from that operator's own checkpoint, so delivery never depends on this
trigger: a triggerer restart, a paused DAG, events merged into one run or a duplicate run cost at most an
extra or an empty run, never an event (ARCHITECTURE.md, event-driven scheduling).

How it listens, and why it costs one delivery per ring:

1. Subscribe with ``num_requested=1`` from its resume point (the asset state store's on Airflow 3.3, else
   ``replay_id``, else ``start``). While nothing comes, keep-alives move the resume point (stored).
2. The first event rings the bell. It waits out ``min_interval`` since the previous ring (events arriving
   meanwhile join this ring), stores the event's replay id as the resume point, and fires.
3. It subscribes again from ``LATEST``: everything published up to then belongs to the run it has just
   started (that run reads to the channel's latest replay id when it starts, which is later). The next
   event after that rings again.

Each ring costs one event delivery against the org's daily allocation, however many events the burst had.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from ..client.errors import (
    ConfigurationError,
    DeliveryAllocationError,
    PubSubAuthError,
    PubSubError,
    ReplayIdCorruptedError,
    ReplayIdExpiredError,
    TopicNotFoundError,
)

#: Where the resume point lives in the watched asset's state store (Airflow 3.3+).
STATE_KEY_PREFIX = "sfint_channel_resume:"
STARTS = ("LATEST", "EARLIEST")
#: Waits after a refused subscription that may pass: the stream kept breaking, or the allocation ran out.
RETRY_AFTER = 30.0
ALLOCATION_RETRY_AFTER = 600.0
#: Errors that no wait will fix: the trigger stops, and the triggerer logs them.
PERMANENT = (TopicNotFoundError, PubSubAuthError, ReplayIdCorruptedError, ConfigurationError)


class SalesforceChannelTrigger(BaseEventTrigger):
    """Fires ``{"channel", "replay_id", "reason", "rang_at"}`` when events are waiting on ``channel``, at most
    once per ``min_interval`` seconds and once per burst, however many events it holds.

    :param channel: a Pub/Sub channel, e.g. ``/data/AccountChangeEvent``, ``/data/ChangeEvents``,
        ``/event/Order_Event__e``
    :param sfint_conn_id: the Salesforce connection (its ``pubsub_endpoint`` and sign-in)
    :param min_interval: seconds between two rings; events in between join the later ring
    :param start: where to listen from with no stored resume point: ``LATEST`` (events published from now
        on) or ``EARLIEST`` (rings at once when the channel holds any retained event)
    :param replay_id: resume after this replay id (hex) when the asset state store holds none
    """

    def __init__(
        self,
        channel: str,
        sfint_conn_id: str = "sfint_default",
        min_interval: float = 30.0,
        start: str = "LATEST",
        replay_id: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(channel, str) or not channel.startswith(("/data/", "/event/")):
            raise ValueError(f"channel must be a Pub/Sub channel such as /data/AccountChangeEvent, got {channel!r}")
        if not sfint_conn_id or not isinstance(sfint_conn_id, str):
            raise ValueError("sfint_conn_id must be a connection id")
        if float(min_interval) < 0:
            raise ValueError(f"min_interval must be >= 0 seconds, got {min_interval!r}")
        if start not in STARTS:
            raise ValueError(f"start must be one of {STARTS}, got {start!r}")
        if replay_id is not None:
            try:
                bytes.fromhex(replay_id)
            except (TypeError, ValueError):
                raise ValueError(f"replay_id must be a replay id in hex, got {replay_id!r}") from None
        self.channel = channel
        self._resume: bytes | None = None  # where the next subscription starts (set by run())
        self.sfint_conn_id = sfint_conn_id
        self.min_interval = float(min_interval)
        self.start = start
        self.replay_id = replay_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "channel": self.channel,
                "sfint_conn_id": self.sfint_conn_id,
                "min_interval": self.min_interval,
                "start": self.start,
                "replay_id": self.replay_id,
            },
        )

    # --- the resume point ---------------------------------------------------------------------------------

    @property
    def _state_key(self) -> str:
        return STATE_KEY_PREFIX + self.channel

    def _store(self) -> Any:
        """The watched asset's state store (Airflow 3.3+, one watched asset), or None."""
        return getattr(self, "asset_state_store", None)

    async def _load(self) -> bytes | None:
        store = self._store()
        stored = None
        if store is not None:
            try:
                stored = await store.aget(self._state_key) if hasattr(store, "aget") else store.get(self._state_key)
            except Exception as exc:  # a store that cannot answer must not stop the doorbell
                self.log.warning("Could not read the resume point of %s from the state store: %s", self.channel, exc)
        value = stored if isinstance(stored, str) and stored else self.replay_id
        return bytes.fromhex(value) if value else None

    async def _save(self, replay_id: bytes) -> None:
        store = self._store()
        if store is None or not replay_id:
            return
        try:
            if hasattr(store, "aset"):
                await store.aset(self._state_key, replay_id.hex())
            else:
                store.set(self._state_key, replay_id.hex())
        except Exception as exc:
            self.log.warning("Could not store the resume point of %s: %s", self.channel, exc)

    # --- listening ----------------------------------------------------------------------------------------

    async def _wait_for_one(self, client: Any, preset: str) -> bytes:
        """Block until one event is waiting after ``self._resume`` (or from ``preset`` without one): its
        replay id. Keep-alives move and store the resume point meanwhile, so a broken subscription
        resumes where it was, not from LATEST."""
        resume = self._resume
        found = client.subscribe(
            self.channel, replay_preset="CUSTOM" if resume else preset, replay_id=resume, batch_size=1, limit=1
        )
        async with contextlib.aclosing(found):  # closing it cancels the call at once
            async for batch in found:
                if batch.events:
                    return bytes(batch.events[0].replay_id)
                if batch.latest_replay_id and batch.latest_replay_id != self._resume:
                    self._resume = bytes(batch.latest_replay_id)
                    await self._save(self._resume)
        raise PubSubError(f"the subscription to {self.channel} ended without an event")  # limit=1: unreachable

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from ..hooks.salesforce import SalesforceHook

        self._resume = await self._load()
        preset = self.start
        last_ring = float("-inf")
        client = await SalesforceHook(sfint_conn_id=self.sfint_conn_id).get_pubsub_client()
        try:
            while True:
                try:
                    replay_id, reason = await self._wait_for_one(client, preset), "events"
                except PERMANENT:
                    raise
                except ReplayIdExpiredError:
                    # Events may have come and gone while nobody listened: ring once, the run reads from its
                    # own checkpoint (and snapshots if that expired too), then listen from now on.
                    self.log.warning("The resume point of %s is past retention; ringing once", self.channel)
                    replay_id, reason = b"", "resume point expired"
                    self._resume = None
                except DeliveryAllocationError as exc:
                    self.log.warning("%s; listening again in %.0f s", exc, ALLOCATION_RETRY_AFTER)
                    await asyncio.sleep(ALLOCATION_RETRY_AFTER)
                    continue
                except PubSubError as exc:
                    self.log.warning("Listening to %s failed (%s); again in %.0f s", self.channel, exc, RETRY_AFTER)
                    await asyncio.sleep(RETRY_AFTER)
                    continue
                wait = last_ring + self.min_interval - time.monotonic()
                if wait > 0:
                    self.log.info("Events wait on %s; ringing in %.1f s (min_interval)", self.channel, wait)
                    await asyncio.sleep(wait)
                last_ring = time.monotonic()
                if replay_id:
                    await self._save(replay_id)
                # From now on LATEST: what came before belongs to the run this ring starts.
                self._resume, preset = None, "LATEST"
                self.log.info("Events wait on %s (from replay id %s): ringing", self.channel, replay_id.hex() or "-")
                yield TriggerEvent(
                    {
                        "channel": self.channel,
                        "replay_id": replay_id.hex() or None,
                        "reason": reason,
                        "rang_at": time.time(),
                    }
                )
        finally:
            await client.close()
