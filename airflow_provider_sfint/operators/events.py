"""SalesforcePublishEventOperator: platform events (``X__e``) from dicts or a file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import BaseOperator, ObjectStoragePath

from ..client.arrowio import iter_source
from ..client.composite import COLLECTION_LIMIT, Collections, RecordResult, json_value
from ..client.errors import PubSubError
from ..client.pubsub import PubSubClient
from ..client.rest import sobject_request
from ..client.transport import Transport
from ..compat import AirflowFailException
from ..hooks.salesforce import SalesforceHook
from ..lineage import LineageMixin

#: Salesforce answers a published event with success and this "error": the event was queued.
ENQUEUED = "OPERATION_ENQUEUED"


def published(result: RecordResult) -> bool:
    """An event counts as published when the call succeeded; OPERATION_ENQUEUED is that success's note."""
    return result.success or (bool(result.errors) and all(e.get("statusCode") == ENQUEUED for e in result.errors))


class SalesforcePublishEventOperator(LineageMixin, BaseOperator):
    """Publish platform events: one REST call for one event, sObject Collections (200 a call) for more.

    :param event: the platform event's API name, ending in ``__e`` (templated)
    :param events: a dict, a list of dicts, a DataFrame / Arrow table, or an ObjectStoragePath/URL of
        Parquet, CSV or JSONL (templated when a string)
    :param max_concurrency: Collections calls in flight (default 4)
    :param api: ``rest`` (default: one REST call, or Collections 200 a call) or ``pubsub`` (the Pub/Sub API,
        Avro-encoded with the channel's schema, 200 a request; no REST API calls)
    :param sfint_conn_id: the Salesforce connection

    Returns ``{"event", "published", "ids", "api_calls", "seconds"}``; fails, naming the events and
    Salesforce's errors, when any event is refused (events that were published stay published).
    """

    template_fields: Sequence[str] = ("event", "events", "sfint_conn_id")
    ui_color = "#e1f1fb"

    def __init__(
        self,
        *,
        event: str,
        events: Any,
        max_concurrency: int = 4,
        api: str = "rest",
        sfint_conn_id: str = SalesforceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if api not in ("rest", "pubsub"):
            raise ValueError(f"api {api!r}: use rest or pubsub")
        self.api = api
        self.event = event
        self.events = events
        self.max_concurrency = int(max_concurrency)
        self.sfint_conn_id = sfint_conn_id

    @cached_property
    def hook(self) -> SalesforceHook:
        return SalesforceHook(sfint_conn_id=self.sfint_conn_id)

    def _rows(self) -> list[dict[str, Any]]:
        source = self.events
        if isinstance(source, dict):
            source = [source]
        if isinstance(source, list):
            if not all(isinstance(r, dict) for r in source):
                raise AirflowFailException("events: a list must hold dicts (one per event)")
            rows = source
        else:
            path = ObjectStoragePath(source) if isinstance(source, str) else source
            rows = [row for batch in iter_source(path) for row in batch.to_pylist()]
        return [{k: json_value(v) for k, v in row.items() if v is not None} for row in rows]

    def execute(self, context: Any) -> dict[str, Any]:
        if not str(self.event).endswith("__e"):
            raise AirflowFailException(f"event {self.event!r} is not a platform event API name (X__e)")
        started = time.monotonic()
        client = self.hook.client
        calls_before = client.api_calls
        rows = self._rows()
        if not rows:
            raise AirflowFailException(f"no events to publish to {self.event}")
        if self.api == "pubsub":
            return self._publish_pubsub(rows, started)
        if len(rows) == 1:
            body = client.transport.send(sobject_request(client.config, "POST", self.event, body=rows[0])).json()
            results = [RecordResult(0, body.get("id"), bool(body.get("success")), None, list(body.get("errors") or []))]
        else:
            results = Collections(client, self.max_concurrency).create(self.event, rows, batch_size=COLLECTION_LIMIT)
        refused = [r for r in results if not published(r)]
        if refused:
            shown = "; ".join(f"event {r.index + 1}: {r.describe_errors()}" for r in refused[:5])
            raise AirflowFailException(
                f"{len(refused)} of {len(rows)} {self.event} events were refused ({len(rows) - len(refused)} "
                f"published): {shown}"
            )
        summary = {
            "event": self.event,
            "published": len(results),
            "ids": [r.id for r in results],
            "api_calls": client.api_calls - calls_before,
            "retries": len(client.retries),  # requests retried by this task (503, 429, cut connections...)
            "seconds": round(time.monotonic() - started, 3),
        }
        self.log.info("published %d %s events in %d API call(s)", len(results), self.event, summary["api_calls"])
        self._record_rows_lineage(self.events, client.login(), self.event, rows)
        return summary

    def _publish_pubsub(self, rows: list[dict[str, Any]], started: float) -> dict[str, Any]:
        config = self.hook.config
        topic = f"/event/{self.event}"

        async def publish() -> list[Any]:
            transport = Transport(config)
            transport.on_login_refused = self.hook._login_refused
            try:
                async with PubSubClient.for_config(transport) as pubsub:
                    return await pubsub.publish(topic, rows, [str(i) for i in range(len(rows))])
            finally:
                await transport.aclose()

        try:
            outcomes = asyncio.run(publish())
        except PubSubError as exc:
            raise AirflowFailException(f"publishing to {topic} failed: {exc}") from exc
        refused = [(i, o) for i, o in enumerate(outcomes) if o.error]
        if refused:
            shown = "; ".join(f"event {i + 1}: {o.error}" for i, o in refused[:5])
            raise AirflowFailException(
                f"{len(refused)} of {len(rows)} {self.event} events were refused ({len(rows) - len(refused)} "
                f"published): {shown}"
            )
        summary = {
            "event": self.event,
            "published": len(outcomes),
            "ids": [o.replay_id.hex() if o.replay_id else None for o in outcomes],
            "api_calls": 0,
            "api": "pubsub",
            "seconds": round(time.monotonic() - started, 3),
        }
        self.log.info("published %d %s events through the Pub/Sub API", len(outcomes), self.event)
        return summary
