"""SalesforceBulkIngestOperator: files and DataFrames into Salesforce through Bulk API 2.0, exactly once.

The work is done by :class:`~airflow_provider_sfint.engines.ingest.IngestEngine` (Airflow-free); this module is
the glue: templating, the task's progress store, deferring and resuming, links, XCom and lineage.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import BaseOperator, ObjectStoragePath, conf

from ..client.bulk2 import MAX_UPLOAD_BYTES, POLL_START
from ..compat import AirflowFailException
from ..engines.ingest import STATE_KEY, IngestEngine, IngestSettings
from ..hooks.salesforce import SalesforceHook
from ..lineage import LineageMixin
from ..links import JOB_URL_ATTR, SalesforceJobLink, forget_job_link
from ..triggers.bulk import SalesforceBulkJobTrigger, check_event
from ._settings import check_waiting, engine_run, failed_rows_path, job_announcer, record_ingest_lineage
from ._state import start_execution


class SalesforceBulkIngestOperator(LineageMixin, BaseOperator):
    """Load rows into Salesforce with Bulk API 2.0: checked against describe first, split into jobs of at
    most ``max_bytes_per_job``, a bounded number in flight, results correlated by key, failed rows written
    out, and the task failed when more rows fail than allowed.

    :param object: the sObject (templated)
    :param operation: insert, update, upsert, delete or hardDelete (templated)
    :param source: an ObjectStoragePath or URL of Parquet, CSV or JSONL (a file or a directory of parts;
        templated when a string), or a pandas DataFrame / Arrow table
    :param external_id_field: the External ID (or idLookup) field upsert matches on (templated)
    :param column_mapping: input column -> field API name (``Account.External_Id__c`` sets a lookup)
    :param null_policy: ``leave_unchanged`` (default: a null or empty value leaves the field as it is) or
        ``set_null`` (a null clears the field, written as ``#N/A``)
    :param max_bytes_per_job: CSV bytes per job (default 100 MB, at most 112.5 MB: 150 MB after base64)
    :param max_concurrent_jobs: jobs open or running at once (default 4)
    :param failed_output: where failed rows go (a CSV, with ``sf__Error`` and the parsed code); default a
        ``.failed.csv`` beside a path source, else nowhere
    :param max_failed_records: the task fails when more rows than this fail (default 0)
    :param max_failed_ratio: ... or when the failed share of rows is above this (0-1)
    :param retry_transient_failures: rows failed with UNABLE_TO_LOCK_ROW and similar run once more in a
        follow-up job (default True)
    :param lock_order_column: order the follow-up job's rows by this column (a parent id) to reduce
        lock contention
    :param assignment_rule_id: Case or Lead assignment rule
    :param poll_interval: shortest delay between job checks, seconds; a running job is checked again after a
        tenth of its age, up to 30 s, or when its progress predicts its end (see "Waiting for jobs" in the docs)
    :param timeout: give up waiting after this many seconds (None: as long as the jobs live)
    :param deferrable: wait in the triggerer (needs a path source: a worker that resumes reads it again when a
        part still waits for its upload)
    :param min_remaining_api_percent: refuse to start below this share of the daily API allowance
    :param sfint_conn_id: the Salesforce connection
    """

    template_fields: Sequence[str] = (
        "object",
        "operation",
        "source",
        "external_id_field",
        "failed_output",
        "sfint_conn_id",
    )
    operator_extra_links = (SalesforceJobLink(),)
    ui_color = "#e1f1fb"

    def __init__(
        self,
        *,
        object: str,
        operation: str,
        source: Any,
        external_id_field: str | None = None,
        column_mapping: dict[str, str] | None = None,
        null_policy: str = "leave_unchanged",
        max_bytes_per_job: int = MAX_UPLOAD_BYTES,
        max_concurrent_jobs: int = 4,
        failed_output: str | None = None,
        max_failed_records: int | None = 0,
        max_failed_ratio: float | None = None,
        retry_transient_failures: bool = True,
        lock_order_column: str | None = None,
        assignment_rule_id: str | None = None,
        poll_interval: float = POLL_START,
        timeout: float | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        min_remaining_api_percent: float | None = None,
        sfint_conn_id: str = SalesforceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        setattr(self, JOB_URL_ATTR, None)
        IngestSettings(
            object,
            operation,
            null_policy=null_policy,
            max_bytes_per_job=max_bytes_per_job,
            max_concurrent_jobs=max_concurrent_jobs,
            max_failed_records=max_failed_records,
            max_failed_ratio=max_failed_ratio,
        ).check()
        check_waiting(poll_interval, timeout, min_remaining_api_percent)
        self.object = object
        self.operation = operation
        self.source = source
        self.external_id_field = external_id_field
        self.column_mapping = dict(column_mapping or {})
        self.null_policy = null_policy
        self.max_bytes_per_job = int(max_bytes_per_job)
        self.max_concurrent_jobs = int(max_concurrent_jobs)
        self.failed_output = failed_output
        self.max_failed_records = max_failed_records
        self.max_failed_ratio = max_failed_ratio
        self.retry_transient_failures = retry_transient_failures
        self.lock_order_column = lock_order_column
        self.assignment_rule_id = assignment_rule_id
        self.poll_interval = float(poll_interval)
        self.timeout = None if timeout is None else float(timeout)
        self.deferrable = deferrable
        self.min_remaining_api_percent = min_remaining_api_percent
        self.sfint_conn_id = sfint_conn_id
        self._engine: IngestEngine | None = None

    @cached_property
    def hook(self) -> SalesforceHook:
        return SalesforceHook(sfint_conn_id=self.sfint_conn_id)

    def _source(self) -> Any:
        if isinstance(self.source, str):
            return ObjectStoragePath(self.source)
        return self.source

    def _is_path(self) -> bool:
        return isinstance(self.source, str | ObjectStoragePath)

    def _settings(self) -> IngestSettings:
        return IngestSettings(
            object=self.object,
            operation=self.operation,
            external_id_field=self.external_id_field,
            column_mapping=self.column_mapping,
            null_policy=self.null_policy,
            max_bytes_per_job=self.max_bytes_per_job,
            max_concurrent_jobs=self.max_concurrent_jobs,
            max_failed_records=self.max_failed_records,
            max_failed_ratio=self.max_failed_ratio,
            retry_transient_failures=self.retry_transient_failures,
            lock_order_column=self.lock_order_column,
            assignment_rule_id=self.assignment_rule_id,
            poll_interval=self.poll_interval,
            timeout=self.timeout,
        )

    def _new_engine(self, context: Any) -> IngestEngine:
        store = start_execution(context, self.retries, (STATE_KEY,), self.log)
        failed = self.failed_output
        if failed is None and self._is_path():
            failed = str(self._source()).rstrip("/") + ".failed.csv"
        self._engine = IngestEngine(
            self.hook.client,
            self._settings(),
            self._source(),
            store,
            failed_output=failed_rows_path(failed),
            on_job=job_announcer(self, context),
            log=self.log,
        )
        return self._engine

    def execute(self, context: Any) -> dict[str, Any]:
        if self.deferrable and not self._is_path():
            raise AirflowFailException(
                "deferrable=True needs a path source (the worker that resumes re-reads it); pass the data as "
                "Parquet/CSV/JSONL on an ObjectStoragePath, or set deferrable=False for a DataFrame"
            )
        engine = self._new_engine(context)
        done = engine.completed()
        if done is not None:
            engine.close()
            return done
        if self.min_remaining_api_percent is not None:
            self.hook.client.check_budget(self.min_remaining_api_percent, purpose=f"task {self.task_id}")
        return self._run(context, engine, None)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        event = check_event(event, f"the ingest jobs of {self.task_id}")
        forget_job_link(self)
        echoed = event.get("echo") if isinstance(event.get("echo"), dict) else None
        engine = self._new_engine(context)
        if event["status"] != "success":
            if echoed:
                engine.state = echoed
            engine.close()
            raise AirflowFailException(f"Bulk ingest jobs did not complete: {event.get('message') or event}")
        return self._run(context, engine, echoed)

    def _run(self, context: Any, engine: IngestEngine, echoed: dict[str, Any] | None) -> dict[str, Any]:
        with engine_run(engine):
            engine.prepare(handed_back=echoed)
            if not self.deferrable:
                summary = engine.run()
            else:
                active = engine.start_batch()
                if active:
                    self.defer(
                        trigger=SalesforceBulkJobTrigger(
                            sfint_conn_id=self.sfint_conn_id,
                            job_ids=active,
                            kind="ingest",
                            poll_interval=self.poll_interval,
                            end_time=None if self.timeout is None else time.time() + self.timeout,
                            expected_records=engine.expected_records(active),
                            echo=engine.state,  # the jobs per part, for a task without a durable store
                        ),
                        method_name="execute_complete",
                    )
                summary = engine.finish()
        record_ingest_lineage(self, engine, self.source)
        return summary

    @property
    def _state(self) -> dict[str, Any]:
        """The progress of the run in this process (jobs per part), for callers that watch it."""
        return self._engine.state if self._engine is not None else {"parts": {}}

    def on_kill(self) -> None:
        if self._engine is not None:
            self._engine.abort_all()
