"""SalesforceChangeEventsOperator: Change Data Capture events into the lake, from a checkpoint, exactly once."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import BaseOperator, ObjectStoragePath

from ..client.pubsub import PubSubClient
from ..client.transport import Transport
from ..compat import AirflowFailException
from ..engines.changes import ChangeEventsEngine, ChangeSettings, ResyncNeeded
from ..engines.state import FileStateStore
from ..hooks.salesforce import SalesforceHook

#: the checkpoint's name inside the output directory
CHECKPOINT_FILE = "_sfint_checkpoint.json"


class SalesforceChangeEventsOperator(BaseOperator):
    """Read a Change Data Capture channel from its checkpoint to "caught up" and write the change rows, one
    part file per entity and run, under ``destination``.

    The checkpoint lives next to the output (``<destination>/_sfint_checkpoint.json``, replaced whole on each
    move): it must outlive task tries *and* DAG runs, on every Airflow version, and stay with the data it
    describes (move or delete the lake, and the checkpoint goes with it). Parts are committed before the
    checkpoint moves, and a try killed between the two rewrites the same part names: every event lands once.

    :param channel: ``/data/ChangeEvents``, ``/data/<Object>ChangeEvent`` or ``/data/<Name>__chn`` (templated)
    :param destination: the lake directory (a path or ObjectStoragePath URL; templated), like the Bulk query
        operator's
    :param fmt: ``parquet`` (default) or ``jsonl``
    :param max_events: stop after this many events (default: until caught up)
    :param idle_seconds: caught up when no event arrives for this long (default 5)
    :param start: where a channel without a checkpoint starts: ``EARLIEST`` (default), ``LATEST``, or
        ``SNAPSHOT`` (a Bulk snapshot of the channel's entities, then every retained event on top of it)
    :param resync: heal a ``GAP_OVERFLOW`` or an expired checkpoint with a Bulk snapshot (default True; False
        fails the task, naming the entity, after committing what came before)
    :param entities: the entities of a multi-entity channel, for ``SNAPSHOT`` and expired checkpoints
    :param batch_size: events kept requested from the server (1..100, default 100)
    :param part_events: a run commits its parts and moves the checkpoint every this many events (default 10,000),
        so memory stays flat however far behind the channel is
    :param min_remaining_delivery_percent: refuse to start when less of the org's daily event delivery
        allocation remains (``/limits`` ``DailyDeliveredPlatformEvents``; default None: no check)
    :param min_remaining_api_percent: refuse to start when less of the daily API allowance remains (default
        None: no check)
    :param sfint_conn_id: the Salesforce connection (its ``pubsub_endpoint`` is used)

    Returns the summary: events, rows per change type, gaps healed, parts, first and last replay id,
    deliveries used, reconnections.
    """

    template_fields: Sequence[str] = ("channel", "destination", "sfint_conn_id")
    ui_color = "#e1f1fb"
    #: the channels this operator reads: change events (``/data/...``); the platform-event reader overrides it
    platform_events = False

    def __init__(
        self,
        *,
        channel: str,
        destination: str | ObjectStoragePath,
        fmt: str = "parquet",
        max_events: int | None = None,
        idle_seconds: float = 5.0,
        start: str = "EARLIEST",
        batch_size: int = 100,
        resync: bool = True,
        entities: Sequence[str] = (),
        part_events: int = 10_000,
        min_remaining_delivery_percent: float | None = None,
        min_remaining_api_percent: float | None = None,
        sfint_conn_id: str = SalesforceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.channel = channel
        self.destination = destination
        self.fmt = fmt
        self.max_events = max_events
        self.idle_seconds = float(idle_seconds)
        self.start = start
        self.batch_size = int(batch_size)
        self.resync = bool(resync)
        self.entities = tuple(entities)
        self.part_events = int(part_events)
        self.min_remaining_delivery_percent = min_remaining_delivery_percent
        self.min_remaining_api_percent = min_remaining_api_percent
        for name in ("min_remaining_delivery_percent", "min_remaining_api_percent"):
            value = getattr(self, name)
            if value is not None and not 0 <= float(value) <= 100:
                raise ValueError(f"{name} must be a percentage between 0 and 100, got {value!r}")
        self.sfint_conn_id = sfint_conn_id
        if "{{" not in str(channel):  # a bad setting fails at DAG parse time, naming it
            self._check()

    def _check(self) -> None:
        settings = self._settings(self.destination)
        if settings.platform_events != self.platform_events:
            other = "SalesforceReadEventsOperator" if settings.platform_events else "SalesforceChangeEventsOperator"
            raise ValueError(f"{type(self).__name__} cannot read {settings.channel}: read it with {other}")
        settings.check()

    @cached_property
    def hook(self) -> SalesforceHook:
        return SalesforceHook(sfint_conn_id=self.sfint_conn_id)

    def _output(self) -> Any:
        text = str(self.destination)
        if "://" in text and not text.startswith("file://"):
            return ObjectStoragePath(text)
        return text.removeprefix("file://")

    def _settings(self, output: Any) -> ChangeSettings:
        return ChangeSettings(
            self.channel,
            output,
            self.fmt,
            self.max_events,
            self.idle_seconds,
            self.start,
            self.batch_size,
            self.resync,
            self.entities,
            self.part_events,
        )

    def execute(self, context: Any) -> dict[str, Any]:
        self._check()
        output = self._output()
        settings = self._settings(output)
        if isinstance(output, str):
            checkpoint: Any = f"{output.rstrip('/')}/{CHECKPOINT_FILE}"
        else:
            checkpoint = output / CHECKPOINT_FILE
        store = FileStateStore(checkpoint)
        config = self.hook.config
        purpose = f"task {self.task_id} ({self.channel})"
        # Budgets first (BudgetExhaustedError, retried like the Bulk operators' API budget, as allocations
        # recover): a refused start reads no event and moves nothing.
        if self.min_remaining_api_percent is not None:
            self.hook.client.check_budget(self.min_remaining_api_percent, purpose=purpose)
        if self.min_remaining_delivery_percent is not None:
            self.hook.client.check_delivery_budget(self.min_remaining_delivery_percent, purpose=purpose)

        def pubsub() -> PubSubClient:
            transport = Transport(config)
            transport.on_login_refused = self.hook._login_refused
            return PubSubClient.for_config(transport)

        engine = ChangeEventsEngine(self.hook.client, pubsub, settings, store)
        try:
            summary = engine.run()
        except ResyncNeeded as exc:
            raise AirflowFailException(str(exc)) from exc
        summary["api_calls"] = self.hook.client.transport.calls
        if self.platform_events:
            self.log.info("%s: %d events, parts %s", self.channel, summary["events"], summary["parts"])
            return summary
        self.log.info(
            "%s: %d events, rows %s, %d gap records healed, parts %s",
            self.channel,
            summary["events"],
            summary["rows"],
            summary["gaps_healed"],
            summary["parts"],
        )
        return summary


class SalesforceReadEventsOperator(SalesforceChangeEventsOperator):
    """Read a platform-event channel (``/event/<Name>__e``) from its checkpoint to "caught up" into the lake,
    exactly once: one row per event in ``<destination>/<Name>__e/part-<NNNNNN>.parquet`` (or ``.jsonl``):
    ``replay_id`` (hex), ``event_uuid``, ``created_date``, ``created_by_id``, then the event's fields typed from
    describe. The checkpoint and the exactly-once commit are the change-events operator's.

    Deliver the rows onward with ``replay_id`` as the idempotency key: it identifies the event for as long as
    Salesforce retains it, and a retried delivery carries the same key.

    :param channel: ``/event/<Name>__e`` (templated)
    :param destination: the lake directory (a path or ObjectStoragePath URL; templated)
    :param fmt: ``parquet`` (default) or ``jsonl``
    :param max_events: stop after this many events (default: until caught up)
    :param idle_seconds: caught up when no event arrives for this long (default 5)
    :param start: where a channel without a checkpoint starts: ``EARLIEST`` (default: every retained event,
        up to 72 hours) or ``LATEST`` (events published from now on)
    :param batch_size: events kept requested from the server (1..100, default 100)
    :param part_events: commit the parts and move the checkpoint every this many events (default 10,000)
    :param min_remaining_delivery_percent: refuse to start when less of the daily event delivery allocation
        remains (default None: no check)
    :param min_remaining_api_percent: refuse to start when less of the daily API allowance remains (default
        None: no check)
    :param sfint_conn_id: the Salesforce connection (its ``pubsub_endpoint`` is used)

    Returns the summary: ``events``, ``rows`` (``{"EVENT": n}``), ``parts``, first and last replay id,
    deliveries used, reconnections, ``api_calls`` (describe, once per event schema).
    """

    platform_events = True

    def __init__(
        self,
        *,
        channel: str,
        destination: str | ObjectStoragePath,
        fmt: str = "parquet",
        max_events: int | None = None,
        idle_seconds: float = 5.0,
        start: str = "EARLIEST",
        batch_size: int = 100,
        part_events: int = 10_000,
        min_remaining_delivery_percent: float | None = None,
        min_remaining_api_percent: float | None = None,
        sfint_conn_id: str = SalesforceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            channel=channel,
            destination=destination,
            fmt=fmt,
            max_events=max_events,
            idle_seconds=idle_seconds,
            start=start,
            batch_size=batch_size,
            resync=False,
            part_events=part_events,
            min_remaining_delivery_percent=min_remaining_delivery_percent,
            min_remaining_api_percent=min_remaining_api_percent,
            sfint_conn_id=sfint_conn_id,
            **kwargs,
        )
