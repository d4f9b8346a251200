"""One trigger waits for any number of Bulk API 2.0 jobs of one task; it only reads job state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from ..client.bulk2 import KINDS, POLL_CAP, POLL_START, JobInfo, PollPlan, aabort, ajob_info
from ..client.errors import SalesforceError

#: The closed vocabulary of event statuses; ``execute_complete`` refuses anything else.
EVENT_STATUSES = frozenset({"success", "error", "timeout", "cancelled"})


def check_event(event: Any, what: str) -> dict[str, Any]:
    """The event a Bulk job trigger sent, checked: SalesforceError naming ``what`` when it is not one."""
    if not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES:
        raise SalesforceError(f"unexpected trigger event {event!r} for {what}")
    return event


def _job_ids(job_ids: Any) -> list[str]:
    if isinstance(job_ids, str):
        job_ids = [job_ids]
    ids = [str(j) for j in job_ids or []]
    if not ids or not all(j.isalnum() for j in ids):
        raise ValueError(f"job_ids must be a non-empty list of Bulk job ids, got {job_ids!r}")
    return ids


class SalesforceBulkJobTrigger(BaseTrigger):
    """Waits until every job in ``job_ids`` is JobComplete, or one ends Failed or Aborted.

    Events (small dicts): ``{"status": "success", "jobs": {id: state}}``; ``{"status": "error",
    "job_id", "state", "message", "jobs"}``; ``{"status": "timeout", "jobs"}`` when ``end_time``
    (epoch seconds) passes. Looks again after a tenth of the youngest running job's age (between
    ``poll_interval`` and ``max_poll_interval``), or sooner when a job's progress predicts its end
    (:class:`~airflow_provider_sfint.client.bulk2.PollPlan`). On Airflow 3.3, killing the task aborts the jobs
    still running.

    :param sfint_conn_id: the Salesforce connection
    :param job_ids: the jobs to wait for
    :param kind: ``query`` or ``ingest``
    :param poll_interval: shortest delay between polls, seconds
    :param max_poll_interval: longest delay between polls, seconds
    :param expected_records: for ingest jobs, the rows uploaded to each (job id to count): their progress then
        predicts when they end
    :param end_time: give up (``timeout`` event) after this Unix time; None waits as long as the jobs live
    :param echo: a small dict of JSON values handed back in every event as ``echo`` (an operator's own
        bookkeeping, for Airflow versions without ``task_state_store``)
    """

    def __init__(
        self,
        sfint_conn_id: str,
        job_ids: list[str],
        kind: str,
        poll_interval: float = POLL_START,
        max_poll_interval: float = POLL_CAP,
        end_time: float | None = None,
        echo: dict[str, Any] | None = None,
        expected_records: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if not sfint_conn_id or not isinstance(sfint_conn_id, str):
            raise ValueError("sfint_conn_id must be a connection id")
        if float(poll_interval) <= 0 or float(max_poll_interval) <= 0:
            raise ValueError("poll intervals must be positive")
        self.sfint_conn_id = sfint_conn_id
        self.job_ids = _job_ids(job_ids)
        self.kind = kind
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max_poll_interval)
        self.end_time = None if end_time is None else float(end_time)
        if echo is not None and not isinstance(echo, dict):
            raise ValueError("echo must be a dict (of JSON values) or None")
        self.echo = echo
        self.expected_records = {str(k): int(v) for k, v in (expected_records or {}).items()}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "sfint_conn_id": self.sfint_conn_id,
                "job_ids": list(self.job_ids),
                "kind": self.kind,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "end_time": self.end_time,
                "echo": self.echo,
                "expected_records": self.expected_records,
            },
        )

    async def _client(self) -> Any:
        from ..hooks.salesforce import SalesforceHook

        return await SalesforceHook(sfint_conn_id=self.sfint_conn_id).get_async_client()

    def _event(self, payload: dict[str, Any]) -> TriggerEvent:
        if self.echo is not None:
            payload["echo"] = self.echo
        return TriggerEvent(payload)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        client = await self._client()
        states: dict[str, str] = {}
        plans = {
            job: PollPlan(self.poll_interval, self.max_poll_interval, total_records=self.expected_records.get(job))
            for job in self.job_ids
        }
        try:
            while True:
                delays: list[float] = []
                for job_id in self.job_ids:
                    if states.get(job_id) == "JobComplete":
                        continue
                    info: JobInfo = await ajob_info(client, self.kind, job_id)
                    states[job_id] = info.state
                    if info.state != "JobComplete":
                        delays.append(plans[job_id].next_delay(info))
                    if info.state in ("Failed", "Aborted"):
                        yield self._event(
                            {
                                "status": "error",
                                "job_id": job_id,
                                "state": info.state,
                                "message": info.error_message or f"job {job_id} ended {info.state}",
                                "jobs": dict(states),
                            }
                        )
                        return
                if all(states.get(j) == "JobComplete" for j in self.job_ids):
                    yield self._event({"status": "success", "jobs": dict(states)})
                    return
                delay = min(delays)
                if self.end_time is not None and time.time() + delay > self.end_time:
                    yield self._event({"status": "timeout", "jobs": dict(states)})
                    return
                self.log.info("Bulk %s jobs: %s; next check in %.1f s", self.kind, states, delay)
                await asyncio.sleep(delay)
        except SalesforceError as exc:
            yield self._event({"status": "error", "job_id": None, "state": None, "message": str(exc), "jobs": states})
        finally:
            await client.close()

    async def on_kill(self) -> None:
        """The user killed the task (Airflow 3.3): abort the jobs that are still open or running."""
        client = await self._client()
        try:
            for job_id in self.job_ids:
                await aabort(client, self.kind, job_id)
        finally:
            await client.close()
