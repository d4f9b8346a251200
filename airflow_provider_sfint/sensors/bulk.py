"""SalesforceBulkJobSensor: waits for any Bulk API 2.0 job (started by this provider, a script or another tool)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import BaseSensorOperator, PokeReturnValue, conf

from ..client.bulk2 import KINDS, POLL_CAP, Bulk2, JobInfo, PollPlan, job_link
from ..client.errors import NotFoundError
from ..compat import AirflowFailException
from ..hooks.salesforce import SalesforceHook
from ..links import JOB_URL_ATTR, JOB_URL_XCOM_KEY, SalesforceJobLink, forget_job_link
from ..triggers.bulk import SalesforceBulkJobTrigger, check_event


def _summary(info: JobInfo) -> dict[str, Any]:
    return {
        "job_id": info.id,
        "kind": info.kind,
        "state": info.state,
        "object": info.object,
        "operation": info.operation,
        "records_processed": info.records_processed,
        "records_failed": info.records_failed,
    }


class SalesforceBulkJobSensor(BaseSensorOperator):
    """Succeeds when a Bulk job is JobComplete (returning a small summary as XCom); fails on Failed or
    Aborted with the job's errorMessage, as a failure a retry cannot fix (``soft_fail`` skips instead).

    Works in ``poke``, ``reschedule`` and deferrable modes; deferred, it pokes once and then waits in
    :class:`SalesforceBulkJobTrigger` with the sensor's ``timeout``. In ``poke`` and ``reschedule`` modes the next
    poke comes after a tenth of the job's age: at least 1 s (poke) or 5 s (reschedule, where each poke starts
    the task again), at most ``poke_interval`` (30 s unless given), so a job's end is noticed promptly.

    :param job_id: the Bulk job id (templated)
    :param kind: ``ingest`` or ``query`` (templated)
    :param deferrable: wait in the triggerer
    :param trigger_poll_interval: shortest delay between the trigger's checks, seconds (then a tenth of the
        job's age, up to 30 s)
    :param sfint_conn_id: the Salesforce connection
    """

    template_fields: Sequence[str] = ("job_id", "kind", "sfint_conn_id")
    operator_extra_links = (SalesforceJobLink(),)
    ui_color = "#e1f1fb"

    def __init__(
        self,
        *,
        job_id: str,
        kind: str = "ingest",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        trigger_poll_interval: float = 1.0,
        sfint_conn_id: str = SalesforceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", POLL_CAP)
        super().__init__(**kwargs)
        self.max_poke_interval = float(self.poke_interval)  # the longest wait; each poke sets the next one
        if float(trigger_poll_interval) <= 0:
            raise ValueError(f"trigger_poll_interval must be positive seconds, got {trigger_poll_interval}")
        self.job_id = job_id
        self.kind = kind
        self.deferrable = deferrable
        self.trigger_poll_interval = float(trigger_poll_interval)
        self.sfint_conn_id = sfint_conn_id
        setattr(self, JOB_URL_ATTR, None)

    @cached_property
    def bulk(self) -> Bulk2:
        return Bulk2(SalesforceHook(sfint_conn_id=self.sfint_conn_id).client)

    def _check(self) -> None:
        if self.kind not in KINDS:
            raise AirflowFailException(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.job_id is None or str(self.job_id).strip() in ("", "None"):
            raise AirflowFailException(
                f"job_id is empty (got {self.job_id!r}): the value or template gave no job. To wait for the job "
                "of an upstream Salesforce operator, pull what it pushes: "
                "job_id=\"{{ ti.xcom_pull(task_ids='<upstream task>', key='sfint_job_id') }}\""
            )
        if not str(self.job_id).isalnum():
            raise AirflowFailException(f"job_id {self.job_id!r} is not a Bulk job id (15 or 18 letters and digits)")

    def poke(self, context: Any) -> bool | PokeReturnValue:
        self._check()
        if getattr(self, JOB_URL_ATTR, None) is None:
            url = job_link(self.bulk.client.login(), self.job_id)
            setattr(self, JOB_URL_ATTR, url)
            ti = context.get("ti")
            if ti is not None:
                ti.xcom_push(key=JOB_URL_XCOM_KEY, value=url)
        try:
            info = self.bulk.job_info(self.kind, self.job_id)
        except NotFoundError as exc:
            raise AirflowFailException(f"Bulk {self.kind} job {self.job_id} does not exist (deleted?)") from exc
        self.log.info("Bulk %s job %s is %s", self.kind, self.job_id, info.state)
        if info.succeeded:
            return PokeReturnValue(is_done=True, xcom_value=_summary(info))
        if info.state in ("Failed", "Aborted"):
            raise AirflowFailException(str(info.error()))
        if not self.exponential_backoff and self.max_poke_interval > 0:
            shortest = min(5.0 if self.reschedule else 1.0, self.max_poke_interval)
            plan = PollPlan(shortest, self.max_poke_interval, from_created=True)
            self.poke_interval = plan.regular(info, time.time())
            self.log.info("next poke in %.1f s", self.poke_interval)
        return False

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        done = self.poke(context)
        if done:
            return done.xcom_value if isinstance(done, PokeReturnValue) else None
        self.defer(
            trigger=SalesforceBulkJobTrigger(
                sfint_conn_id=self.sfint_conn_id,
                job_ids=[str(self.job_id)],
                kind=self.kind,
                poll_interval=self.trigger_poll_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        event = check_event(event, f"Bulk job {self.job_id}")
        forget_job_link(self)
        if event["status"] == "success":
            return _summary(self.bulk.job_info(self.kind, str(self.job_id)))
        raise AirflowFailException(
            f"Bulk {self.kind} job {self.job_id}: {event.get('status')} {event.get('state') or ''} "
            f"{event.get('message') or ''}".strip()
        )
