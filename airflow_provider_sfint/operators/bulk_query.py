"""SalesforceBulkQueryOperator: SOQL to Parquet, CSV or JSONL on any ObjectStoragePath through Bulk API 2.0."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import BaseOperator, ObjectStoragePath, conf

from ..client.arrowio import FORMATS, ColumnResolver, CsvParser, QueryOutput
from ..client.bulk2 import Bulk2, BulkJobError, JobInfo, job_link
from ..client.crashpoints import crash_point
from ..client.errors import NotFoundError, QueryError, SalesforceError
from ..client.soql import add_window, query_shape
from ..compat import AirflowFailException
from ..engines.state import StateStore
from ..hooks.salesforce import SalesforceHook
from ..lineage import LineageMixin, file_dataset, salesforce_dataset
from ..links import JOB_URL_ATTR, SalesforceJobLink, announce_job, forget_job_link
from ..triggers.bulk import SalesforceBulkJobTrigger, check_event
from ._settings import check_waiting
from ._state import start_execution, task_store
from ._window import Window, resolve_window

PROGRESS_EVERY = 10.0
PROGRESS_KEY = "sfint_bulk_query_progress"
#: What the stored job was created for (query with its window, output, format): a retry re-attaches only to a
#: job created for the same.
SPEC_KEY = "sfint_bulk_query_spec"
#: The summary of a committed output, kept until the next run of the task (a retry after a kill that came after
#: the commit returns it and touches nothing).
COMPLETE_KEY = "sfint_bulk_query_complete"
#: Written just before a job is created (when and for what), so a retry can find a job whose id was never saved.
INTENT_KEY = "sfint_bulk_query_intent"
#: How far before a recorded intent a job may carry its creation time (the org's clock against ours).
CLOCK_MARGIN = timedelta(minutes=2)
MAX_PAGE_SIZE = 1_000_000


class SalesforceBulkQueryOperator(LineageMixin, BaseOperator):
    """Run a SOQL query as a Bulk API 2.0 query job and write its rows, typed from describe, to ``output``.

    Pages are fetched in parallel (``resultPages``, API 58+) and streamed through pyarrow; memory is
    bounded by ``parallel_pages x page_size`` rows, never by the result. Output is committed under its
    final name only when every page has arrived and every count agrees. The job id is stored before
    any wait (in the task's progress store: ``[sfint] state_path`` or Airflow 3.3's ``task_state_store``), so a
    retried task re-attaches to its job.

    :param soql: the query (templated; ``.soql`` / ``.sql`` files are read)
    :param output: an ObjectStoragePath or URL (``file://``, ``s3://``, ...): a file, or a directory for
        part files when it ends with ``/`` (templated; kept as ``destination``, since ``BaseOperator.output``
        is the task's XComArg)
    :param format: ``parquet`` (default), ``csv`` or ``jsonl`` (templated)
    :param include_deleted: queryAll: include soft-deleted and archived rows
    :param incremental_field: a datetime field (for example ``SystemModstamp``); restricts the query to the
        run's window, ``start <= field < end``, combined with any WHERE (templated). The window ends at the
        run's data interval end (or logical date) and starts at its data interval start when the interval is
        not empty, else where the previous successful run's window ended (Airflow 3's default timetable gives
        cron schedules zero-length intervals): see ``docs/incremental.md``
    :param window_start: overrides the window's start (an ISO 8601 datetime with offset, or a datetime;
        templated, an empty string keeps the derived start), for example in a full refresh
    :param window_end: overrides the window's end likewise (default: the data interval end or logical date)
    :param initial_window_start: where the window starts on the DAG's first run, when no earlier run has
        succeeded (templated; for example ``2000-01-01T00:00:00+00:00`` loads the whole history); without
        it a first run with an empty data interval fails and says so
    :param page_size: rows per result page (``maxRecords``), default 25,000: memory holds about
        ``parallel_pages x page_size`` rows
    :param parallel_pages: result pages fetched at once (``resultPages``), default 4
    :param typed: type columns from describe (default); False writes every column as text
    :param part_size: rows per part file in a directory output (default 1,000,000)
    :param directory: write a directory of part files (True) or one file (False); None (default) decides by a
        trailing ``/`` on ``output`` or a ``part_size``. Say it for an ``ObjectStoragePath`` object, whose text
        form drops the trailing ``/``
    :param delete_job_on_success: delete the job (and its stored results) after the output is committed
    :param poll_interval: first delay between job status checks, seconds (grows to 30 s)
    :param timeout: give up waiting for the job after this many seconds (None: as long as the job lives)
    :param deferrable: wait in the triggerer instead of on a worker
    :param min_remaining_api_percent: refuse to start when less of the daily API allowance remains
    :param max_split_depth: how many times a timed-out window may be halved (with ``incremental_field``)
    :param sfint_conn_id: the Salesforce connection
    """

    template_fields: Sequence[str] = (
        "soql",
        "destination",
        "format",
        "incremental_field",
        "window_start",
        "window_end",
        "initial_window_start",
        "sfint_conn_id",
    )
    template_ext: Sequence[str] = (".soql", ".sql")
    template_fields_renderers = {"soql": "sql"}
    operator_extra_links = (SalesforceJobLink(),)
    ui_color = "#e1f1fb"
    external_id_key = "sfint_bulk_query_job"

    def __init__(
        self,
        *,
        soql: str,
        output: str | ObjectStoragePath,
        format: str = "parquet",
        include_deleted: bool = False,
        incremental_field: str | None = None,
        window_start: str | datetime | None = None,
        window_end: str | datetime | None = None,
        initial_window_start: str | datetime | None = None,
        page_size: int = 25_000,
        parallel_pages: int = 4,
        typed: bool = True,
        part_size: int | None = None,
        directory: bool | None = None,
        delete_job_on_success: bool = False,
        poll_interval: float = 2.0,
        timeout: float | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        min_remaining_api_percent: float | None = None,
        max_split_depth: int = 4,
        sfint_conn_id: str = SalesforceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 1 <= int(page_size) <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
        if not 1 <= int(parallel_pages) <= 32:
            raise ValueError(f"parallel_pages must be between 1 and 32, got {parallel_pages}")
        if part_size is not None and int(part_size) < 1:
            raise ValueError(f"part_size must be a positive number of rows, got {part_size}")
        if directory is False and part_size is not None:
            raise ValueError("part_size splits a directory output into parts; it cannot go with directory=False")
        check_waiting(poll_interval, timeout, min_remaining_api_percent)
        if not 0 <= int(max_split_depth) <= 10:
            raise ValueError(f"max_split_depth must be between 0 and 10, got {max_split_depth}")
        self.soql = soql
        # BaseOperator.output is the XComArg of the task's return value; the location lives here.
        self.destination = output
        self.format = format
        self.include_deleted = include_deleted
        self.incremental_field = incremental_field
        self.window_start = window_start
        self.window_end = window_end
        self.initial_window_start = initial_window_start
        self.page_size = int(page_size)
        self.parallel_pages = int(parallel_pages)
        self.typed = typed
        self.part_size = part_size
        self.directory = directory
        self.delete_job_on_success = delete_job_on_success
        self.poll_interval = float(poll_interval)
        self.timeout = None if timeout is None else float(timeout)
        self.deferrable = deferrable
        self.min_remaining_api_percent = min_remaining_api_percent
        self.max_split_depth = int(max_split_depth)
        self.sfint_conn_id = sfint_conn_id
        self._running_job: str | None = None
        setattr(self, JOB_URL_ATTR, None)
        self._resolved_window: Window | None = None
        self._aborted: list[str] = []
        self._store: StateStore | None = None

    # --- set-up -----------------------------------------------------------------------------------

    @cached_property
    def hook(self) -> SalesforceHook:
        return SalesforceHook(sfint_conn_id=self.sfint_conn_id)

    @cached_property
    def bulk(self) -> Bulk2:
        return Bulk2(self.hook.client)

    @property
    def _directory(self) -> bool:
        if self.directory is not None:
            return bool(self.directory)
        return str(self.destination).endswith("/") or self.part_size is not None

    def _output_path(self) -> Any:
        return (
            self.destination
            if isinstance(self.destination, ObjectStoragePath)
            else ObjectStoragePath(str(self.destination))
        )

    def _window(self, context: Any) -> Window | None:
        """The window of this run (recorded once per try: the split path and the result check reuse it)."""
        if not self.incremental_field:
            for name in ("window_start", "window_end", "initial_window_start"):
                if getattr(self, name) not in (None, ""):
                    raise AirflowFailException(f"{name} is set but incremental_field is not: set both or neither")
            return None
        if self._resolved_window is None:
            self._resolved_window = resolve_window(
                context,
                task=self.task_id,
                field=self.incremental_field,
                window_start=self.window_start,
                window_end=self.window_end,
                initial_window_start=self.initial_window_start,
            )
        return self._resolved_window

    def _window_query(self, window: Window | None, start: datetime | None = None, end: datetime | None = None) -> str:
        """The SOQL of ``window`` (or of ``[start, end)`` within it, for a split)."""
        if window is None or not self.incremental_field:
            return self.soql
        try:
            return add_window(self.soql, self.incremental_field, start or window.start, end or window.end)
        except ValueError as exc:
            raise AirflowFailException(f"incremental_field={self.incremental_field!r}: {exc}") from exc

    def _schema(self, soql: str) -> Any:
        cache = self.__dict__.setdefault("_schemas", {})
        if soql not in cache:
            cache[soql] = self._resolve_schema(soql)
        return cache[soql]

    def _resolve_schema(self, soql: str) -> Any:
        import pyarrow as pa

        try:
            columns, obj = query_shape(soql)
        except ValueError as exc:
            raise AirflowFailException(f"soql: {exc}") from exc
        bad = [c for c in columns if "(" in c]
        if bad:
            raise AirflowFailException(
                f"soql selects {', '.join(bad)}: Bulk API 2.0 does not run aggregate functions, FIELDS() or "
                "subqueries; select plain fields (child-to-parent paths such as Account.Name are fine), or use the "
                "REST query (SalesforceHook().client.query) for aggregates"
            )
        if not self.typed:
            return pa.schema([pa.field(c, pa.string()) for c in columns])
        resolver = ColumnResolver(self.hook.client.describe)
        try:
            return resolver.schema(obj, columns)
        except NotFoundError as exc:
            raise AirflowFailException(f"soql: {self.hook.client.unknown_object(obj)}") from exc
        except ValueError as exc:  # every unknown column at once, each with the closest names
            raise AirflowFailException(f"soql: {exc}") from exc

    def execute(self, context: Any) -> dict[str, Any]:
        self._started = time.monotonic()
        self._calls_at_start = self.hook.client.api_calls
        window = self._window(context)
        if window is not None:
            self.log.info(
                "window %s <= %s < %s (start from the %s)",
                window.start.isoformat(),
                self.incremental_field,
                window.end.isoformat(),
                window.source,
            )
        soql = self._window_query(window)
        if self.format not in FORMATS:
            raise AirflowFailException(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        QueryOutput.check_writable(self._output_path(), self._directory)
        if self.min_remaining_api_percent is not None:
            self.hook.client.check_budget(self.min_remaining_api_percent, purpose=f"task {self.task_id}")
        self._schema(soql)  # unknown objects and fields fail here, before a job exists
        keys = (self.external_id_key, PROGRESS_KEY, SPEC_KEY, COMPLETE_KEY, INTENT_KEY)
        store = self._store = start_execution(context, self.retries, keys, self.log)
        job_id: str | None = None
        if store is not None:
            spec = self._spec(soql)
            done = store.get(COMPLETE_KEY)
            if isinstance(done, dict) and done.get("spec") == spec:
                self.log.info(
                    "an earlier try of this run committed the output of job %s (its success was not recorded): "
                    "returning its summary, nothing is queried or written again",
                    done["summary"].get("job_id"),
                )
                return dict(done["summary"])
            if store.get(self.external_id_key) and store.get(SPEC_KEY) != spec:
                self.log.info("the saved job was created for another query, window or output: creating a new one")
                for key in keys:
                    store.delete(key)
            self._unrecorded_job(store, spec, soql)
            job_id = self._saved_job(store)
        if job_id is None:
            job_id = self.submit_job(context)
            if store is not None:
                store.set(self.external_id_key, job_id)
        self.poll_until_complete(job_id, context)
        return self._collect(context, job_id)

    def _saved_job(self, store: Any) -> str | None:
        """The job an earlier try of this execution created for the same spec, when it is worth re-attaching to
        (running or complete); a failed, aborted or deleted one is forgotten (a new job is created)."""
        saved = store.get(self.external_id_key)
        if not saved:
            return None
        state = self.get_job_status(saved, {})
        if self.is_job_active(state) or self.is_job_succeeded(state):
            self.log.info("re-attaching to job %s (%s), which an earlier try created", saved, state)
            return str(saved)
        self.log.info("job %s of an earlier try is %s: creating a new one", saved, state)
        store.delete(self.external_id_key)
        store.delete(PROGRESS_KEY)
        return None

    def _unrecorded_job(self, store: Any, spec: dict[str, Any], soql: str) -> None:
        """An earlier try that recorded its intent but not the job it then created (killed in between, or the
        create's answer lost) left that job running. Bulk jobs do not carry their SOQL, so it cannot be shown to
        be this query's and is not adopted: when exactly one job of this user on this object and operation was
        created since the intent and is still running, it is aborted (it would otherwise be paid for twice over
        its run); anything less certain is left alone and logged."""
        intent = store.get(INTENT_KEY)
        if not isinstance(intent, dict):
            return
        store.delete(INTENT_KEY)
        if store.get(self.external_id_key):  # the job was recorded after all
            return
        user = self.hook.client.user_id()
        if intent.get("spec") != spec or user is None:
            return
        since = datetime.fromisoformat(str(intent["at"])) - CLOCK_MARGIN
        operation = "queryAll" if self.include_deleted else "query"
        found = self.bulk.jobs_created_since("query", query_shape(soql)[1], operation, since, user)
        active = [j for j in found if j.active]
        if len(found) == 1 and active:
            self.log.warning(
                "job %s was created by an earlier try that could not record it; it cannot be shown to be this "
                "query's, so it is aborted and a new one created",
                active[0].id,
            )
            self.bulk.abort("query", active[0].id)
            self._aborted.append(active[0].id)
        elif found:
            self.log.warning(
                "an earlier try may have created one of these jobs without recording it; they are left as they are: %s",
                ", ".join(f"{j.id} ({j.state})" for j in found),
            )

    def _spec(self, soql: str) -> dict[str, Any]:
        return {
            "soql": soql,
            "include_deleted": bool(self.include_deleted),
            "output": str(self.destination),
            "format": self.format,
            "directory": self._directory,
            "typed": bool(self.typed),
        }

    # --- the job's life cycle -----------------------------------------------------------------------

    def submit_job(self, context: Any) -> str:
        soql = self._window_query(self._window(context))
        store = self._store
        spec = self._spec(soql)
        if store is not None:
            store.set(INTENT_KEY, {"at": datetime.now(UTC).isoformat(), "spec": spec})
        try:
            job = self.bulk.create_query_job(soql, include_deleted=self.include_deleted)
        except QueryError as exc:
            raise AirflowFailException(f"Salesforce refused the query: {exc}") from exc
        except SalesforceError as exc:
            if exc.status == 400:
                raise AirflowFailException(
                    f"Salesforce refused the Bulk query job: {exc}. Bulk API 2.0 rejects GROUP BY, aggregates, "
                    "OFFSET, TYPEOF, FIELDS() and parent-to-child subqueries"
                ) from exc
            raise
        crash_point("query.job_created")
        if store is not None:
            store.set(SPEC_KEY, spec)
        self._announce(context, job.id)
        return job.id

    def _announce(self, context: Any, job_id: str) -> None:
        self._running_job = job_id
        self.log.info("Bulk query job %s created on %s", job_id, self.hook.client.login())
        announce_job(self, context, job_link(self.hook.client.login(), job_id), job_id)

    def get_job_status(self, external_id: Any, context: Any) -> str:
        try:
            return self.bulk.job_info("query", str(external_id)).state
        except NotFoundError:
            return "Deleted"

    def is_job_active(self, status: str) -> bool:
        return status in ("UploadComplete", "InProgress")

    def is_job_succeeded(self, status: str) -> bool:
        return status == "JobComplete"

    def poll_until_complete(self, external_id: Any, context: Any) -> None:
        job_id = str(external_id)
        crash_point("query.job_recorded")
        store = self._store
        if store is not None and store.get(INTENT_KEY) is not None:  # the job id is recorded: no longer needed
            store.delete(INTENT_KEY)
        self._running_job = job_id
        setattr(self, JOB_URL_ATTR, job_link(self.hook.client.login(), job_id))  # also when re-attached
        if self.deferrable:
            info = self.bulk.job_info("query", job_id)
            if info.active:
                end = None if self.timeout is None else time.time() + self.timeout
                self.defer(
                    trigger=SalesforceBulkJobTrigger(
                        sfint_conn_id=self.sfint_conn_id,
                        job_ids=[job_id],
                        kind="query",
                        poll_interval=self.poll_interval,
                        end_time=end,
                    ),
                    method_name="execute_complete",
                    kwargs={"job_id": job_id, "window": self._window_dict()},
                    timeout=None if self.timeout is None else timedelta(seconds=self.timeout + 60),
                )
            return
        try:
            self.bulk.wait(
                "query", job_id, poll_interval=self.poll_interval, timeout=self.timeout, on_poll=self._polled
            )
        except BulkJobError as exc:
            if not (exc.is_timeout and self.incremental_field and self.max_split_depth):
                raise

    def _polled(self, info: JobInfo) -> None:
        self.log.info("Bulk query job %s: %s, %d records so far", info.id, info.state, info.records_processed)

    def get_job_result(self, external_id: Any, context: Any) -> dict[str, Any]:
        return self._collect(context, str(external_id))

    def _window_dict(self) -> dict[str, str] | None:
        return None if self._resolved_window is None else self._resolved_window.as_dict()

    def execute_complete(
        self,
        context: Any,
        event: dict[str, Any] | None = None,
        job_id: str = "",
        window: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        event = check_event(event, f"Bulk query job {job_id or '?'}")
        # The event names its job (not every Airflow version hands the defer kwargs back).
        job_id = job_id or str(next(iter(event.get("jobs") or {}), ""))
        if not job_id:
            raise SalesforceError(f"trigger event {event!r} names no Bulk query job")
        forget_job_link(self)
        self._started = time.monotonic()
        if window:  # the window the job was created for, not one derived again after the wait
            self._resolved_window = Window.from_dict(window)
        status = event["status"]
        if status == "timeout":
            raise BulkJobError(f"Bulk query job {job_id} did not finish within {self.timeout} s", job_id=job_id)
        if status == "cancelled":
            raise BulkJobError(f"waiting for Bulk query job {job_id} was cancelled", job_id=job_id)
        if status == "error":
            error = BulkJobError(
                f"Bulk query job {job_id} ended {event.get('state')}: {event.get('message')}",
                job_id=job_id,
                state=event.get("state"),
                job_message=event.get("message"),
            )
            if not (error.is_timeout and self.incremental_field and self.max_split_depth):
                raise error
        self._calls_at_start = self.hook.client.api_calls
        self._store = task_store(context)
        return self._collect(context, job_id)

    # --- results ----------------------------------------------------------------------------------

    def _collect(self, context: Any, job_id: str) -> dict[str, Any]:
        """Download the job's results (or, after a timeout, its window in halves) and commit the output."""
        collecting = time.monotonic()
        started = getattr(self, "_started", collecting)
        calls_before = getattr(self, "_calls_at_start", self.hook.client.api_calls)
        window = self._window(context)
        soql = self._window_query(window)
        schema = self._schema(soql)
        store = self._store
        saved = store.get(PROGRESS_KEY) if store is not None else None
        progress = saved if isinstance(saved, dict) and saved.get("job_id") == job_id and self._directory else {}
        output = QueryOutput(
            self._output_path(),
            self.format,
            schema,
            directory=self._directory,
            token=job_id,
            part_rows=self.part_size or (1_000_000 if self._directory else None),
            parts=progress.get("parts"),
        )
        if output.parts:
            self.log.info("resuming job %s after %d committed part(s)", job_id, len(output.parts))
        parser = CsvParser(schema)
        job = self.bulk.job_info("query", job_id)
        jobs = [job_id]
        splits = 0
        records = 0
        try:
            if job.succeeded:
                records += self._download(job, output, parser, store, progress.get("next_locator"))
            elif job.error().is_timeout and window is not None and self.max_split_depth:
                start, end = window.start, window.end
                self.log.warning("job %s timed out on [%s, %s); splitting the window", job_id, start, end)
                got, more_jobs, splits = self._split(window, start, end, output, parser, 1)
                records += got
                jobs += more_jobs
            else:
                raise job.error()
            crash_point("query.downloaded")
            files = output.commit()
            crash_point("query.output_committed")
        except BaseException:
            if not self._directory:
                output.discard()  # a single file cannot be resumed: leave nothing behind
            raise
        if self.delete_job_on_success:
            for j in jobs:
                self.bulk.delete("query", j)
        summary = {
            "job_id": job_id,
            "job_ids": jobs,
            "records": output.rows_written,
            "bytes": sum(p.bytes for p in output.parts),
            "files": files,
            "format": self.format,
            "schema": [{"name": f.name, "type": str(f.type)} for f in schema],
            "splits": splits,
            "aborted_jobs": self._aborted,  # created by an earlier try that could not record them
            "window": None if window is None else window.as_dict(),
            "api_calls": self.hook.client.api_calls - calls_before,
            "retries": len(self.hook.client.retries),  # requests retried by this task (503, 429, cut connections...)
            "seconds": round(time.monotonic() - started, 3),
            "download_seconds": round(time.monotonic() - collecting, 3),
        }
        self.log.info(
            "committed %d records to %d file(s) at %s (%d API calls, %.1f s)",
            summary["records"],
            len(files),
            self.destination,
            summary["api_calls"],
            summary["seconds"],
        )
        if store is not None:  # until the next run of the task: a retry after this point returns the summary
            store.set(COMPLETE_KEY, {"spec": self._spec(soql), "summary": summary})
            store.delete(PROGRESS_KEY)
            crash_point("query.summary_recorded")
        self._running_job = None
        self._record_lineage(
            [
                salesforce_dataset(
                    self.hook.client.login(),
                    query_shape(soql)[1],
                    [(f.name, (f.metadata or {}).get(b"salesforce_type", b"").decode()) for f in schema],
                )
            ],
            [file_dataset(self.destination, [(f.name, str(f.type)) for f in schema])],
        )
        return summary

    def _download(self, job: JobInfo, output: QueryOutput, parser: CsvParser, store: Any, locator: str | None) -> int:
        start_page = output.pages_committed
        rows = sum(p.rows for p in output.parts)
        written_bytes = 0
        began = last_log = time.monotonic()
        pages = self.bulk.download(
            job,
            parser.parse_chunks,
            page_size=self.page_size,
            parallel=self.parallel_pages,
            start_page=start_page,
            locator=locator if start_page else None,
        )
        for page, table in pages:
            closed = output.write(table, page.index)
            rows += page.records
            written_bytes += page.csv_bytes
            if closed is not None and store is not None:
                state = {
                    "job_id": job.id,
                    "parts": [p.as_dict() for p in output.parts],
                    "next_locator": page.next_locator,
                }
                store.set(PROGRESS_KEY, state)
                crash_point("query.part_recorded")
            now = time.monotonic()
            if now - last_log >= PROGRESS_EVERY:
                last_log = now
                self._progress(rows, job.records_processed, written_bytes, now - began)
        self._progress(rows, job.records_processed, written_bytes, time.monotonic() - began)
        return rows

    def _progress(self, rows: int, total: int, csv_bytes: int, seconds: float) -> None:
        rate = rows / seconds if seconds > 0 else 0.0
        eta = (total - rows) / rate if rate > 0 and total >= rows else 0.0
        self.log.info(
            "downloaded %d of %d records (%.1f MB of CSV) at %.0f records/s; about %.0f s to go",
            rows,
            total,
            csv_bytes / 1e6,
            rate,
            eta,
        )

    def _split(
        self, window: Window, start: datetime, end: datetime, output: QueryOutput, parser: CsvParser, depth: int
    ) -> tuple[int, list[str], int]:
        """Query [start, mid) and [mid, end) as separate jobs into the same output, halving again on timeout."""
        if depth > self.max_split_depth or (end - start) < timedelta(seconds=2):
            raise AirflowFailException(
                f"the query still times out on the window [{start}, {end}) after {depth - 1} split(s); "
                "make it more selective or raise max_split_depth"
            )
        mid = start + (end - start) / 2
        mid = mid.replace(microsecond=0)
        records, jobs, splits = 0, [], 1
        for lo, hi in ((start, mid), (mid, end)):
            job = self.bulk.create_query_job(self._window_query(window, lo, hi), include_deleted=self.include_deleted)
            jobs.append(job.id)
            self._running_job = job.id
            self.log.info("window [%s, %s) is job %s (split depth %d)", lo, hi, job.id, depth)
            try:
                done = self.bulk.wait("query", job.id, poll_interval=self.poll_interval, on_poll=self._polled)
            except BulkJobError as exc:
                if not exc.is_timeout:
                    raise
                got, more, deeper = self._split(window, lo, hi, output, parser, depth + 1)
                records, splits = records + got, splits + deeper
                jobs += more
                continue
            records += self._download(done, output, parser, None, None)
        return records, jobs, splits

    def on_kill(self) -> None:
        if self._running_job:
            self.log.info("task killed: aborting Bulk query job %s", self._running_job)
            self.bulk.abort("query", self._running_job)
