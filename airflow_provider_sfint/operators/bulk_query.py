"""SalesforceBulkQueryOperator: SOQL to Parquet, CSV or JSONL on any ObjectStoragePath through Bulk API 2.0."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import BaseOperator, ObjectStoragePath, conf

from ..client.arrowio import FORMATS, ColumnResolver, QueryOutput
from ..client.bulk2 import POLL_START, Bulk2, JobInfo, job_link
from ..client.errors import BulkJobError, InputError, NotFoundError, QueryError, SalesforceError
from ..client.soql import add_window, bulk_refuses, query_shape
from ..compat import AirflowFailException
from ..engines.query import KEYS, SPLIT_KEY, QueryEngine, QuerySettings, QuerySpec
from ..engines.state import StateStore
from ..hooks.salesforce import SalesforceHook
from ..lineage import LineageMixin, file_dataset, salesforce_dataset
from ..links import JOB_URL_ATTR, SalesforceJobLink, announce_job, forget_job_link
from ..triggers.bulk import SalesforceBulkJobTrigger, check_event
from ._settings import check_waiting
from ._state import start_execution, task_store
from ._window import Window, resolve_window

MAX_PAGE_SIZE = 1_000_000
APIS = ("auto", "bulk", "rest")
#: Salesforce: "Jobs with fewer than 2,000 records should involve bulkified synchronous calls in REST"
REST_THRESHOLD = 2_000


def _result(future: Future[Any] | None) -> Any:
    """The prefetched first page, or None when there is none or it failed (the engine then asks again, and a
    failure is raised from there with its context)."""
    if future is None:
        return None
    try:
        return future.result()
    except Exception:
        return None


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
    :param poll_interval: shortest delay between job status checks, seconds; a running job is checked again
        after a tenth of its age, up to 30 s (see "Waiting for jobs" in the docs)
    :param timeout: give up waiting for the job after this many seconds (None: as long as the job lives)
    :param deferrable: wait in the triggerer instead of on a worker
    :param min_remaining_api_percent: refuse to start when less of the daily API allowance remains
    :param max_split_depth: how many times a timed-out window may be halved (with ``incremental_field``)
    :param api: ``auto`` (default): start with the REST query API and read through it when the query returns at
        most ``rest_threshold`` records, else run a Bulk job; ``bulk``: always a Bulk job; ``rest``: always the
        REST query API. Both paths write the same typed output; the summary's ``api`` says which ran
    :param rest_threshold: the most records ``api="auto"`` reads through REST (default 2,000, Salesforce's own
        guidance for when Bulk pays off)
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
        poll_interval: float = POLL_START,
        timeout: float | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        min_remaining_api_percent: float | None = None,
        max_split_depth: int = 4,
        api: str = "auto",
        rest_threshold: int = REST_THRESHOLD,
        sfint_conn_id: str = SalesforceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if api not in APIS:
            raise ValueError(f"api must be one of {', '.join(APIS)}, got {api!r}")
        if isinstance(rest_threshold, bool) or not isinstance(rest_threshold, int) or rest_threshold < 0:
            raise ValueError(f"rest_threshold must be a number of records >= 0, got {rest_threshold!r}")
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
        self.api = api
        self.rest_threshold = rest_threshold
        self.sfint_conn_id = sfint_conn_id
        self._running: QueryEngine | None = None
        setattr(self, JOB_URL_ATTR, None)
        self._resolved_window: Window | None = None

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
        try:
            QueryOutput.check_writable(self._output_path(), self._directory)
        except PermissionError as exc:  # a missing bucket, a missing filesystem package, a refusal: not transient
            raise AirflowFailException(str(exc)) from exc
        if self.min_remaining_api_percent is not None:
            self.hook.client.check_budget(self.min_remaining_api_percent, purpose=f"task {self.task_id}")
        # A REST read's first page is asked for while describe runs: two round trips overlap (it goes unused when
        # an earlier try's job or output is found, or the query is too large for REST)
        first_page = self._prefetch_rest(soql)
        self._schema(soql)  # unknown objects and fields fail here, before a job exists
        engine = self._engine(context, start_execution(context, self.retries, KEYS, self.log))
        done = engine.completed()
        if done is not None:
            return done
        job_id = engine.saved_job()
        refused = bulk_refuses(engine.spec.soql) if self.api == "auto" else None
        if refused:  # it may run as a Bulk job, which refuses it: the same answer whatever the query returns
            self.log.info("the query has %s, which Bulk API 2.0 refuses: not reading it through REST", refused)
        if job_id is None and self.api != "bulk" and not refused:
            try:
                summary = engine.read_rest(
                    None if self.api == "rest" else self.rest_threshold, first=_result(first_page)
                )
            except InputError as exc:
                raise AirflowFailException(str(exc)) from exc
            if summary is not None:
                return self._complete(engine, summary)
        if job_id is None:
            job_id = self._submit(engine)
            self.log.info("Bulk query job %s created on %s", job_id, self.hook.client.login())
            announce_job(self, context, job_link(self.hook.client.login(), job_id), job_id)
        engine.recorded(job_id)
        setattr(self, JOB_URL_ATTR, job_link(self.hook.client.login(), job_id))  # also when re-attached
        self._wait(engine, job_id)
        return self._finish(engine, job_id)

    def _prefetch_rest(self, soql: str) -> Future[Any] | None:
        """Start the REST query's first page in the background, when the query may be read through REST."""
        if self.api == "bulk" or bulk_refuses(soql):
            return None
        client = self.hook.client

        def first() -> Any:
            pages = client.query_pages(soql, include_deleted=bool(self.include_deleted), exact_numbers=True)
            return pages, next(pages)

        pool = ThreadPoolExecutor(1, thread_name_prefix="sfint-rest-prefetch")
        try:
            return pool.submit(first)
        finally:
            pool.shutdown(wait=False)

    def _engine(self, context: Any, store: StateStore | None) -> QueryEngine:
        window = self._window(context)
        soql = self._window_query(window)
        engine = QueryEngine(
            self.hook.client,
            QuerySpec(
                soql=soql,
                include_deleted=bool(self.include_deleted),
                output=str(self.destination),
                format=self.format,
                directory=self._directory,
                typed=bool(self.typed),
            ),
            self._output_path(),
            self._schema(soql),
            QuerySettings(
                page_size=self.page_size,
                parallel_pages=self.parallel_pages,
                part_size=self.part_size,
                max_split_depth=self.max_split_depth if self.incremental_field else 0,
                poll_interval=self.poll_interval,
                timeout=self.timeout,
                delete_job_on_success=self.delete_job_on_success,
            ),
            store,
            window_query=None if window is None else (lambda lo, hi: self._window_query(window, lo, hi)),
            window=None if window is None else (window.start, window.end),
            log=self.log,
        )
        self._running = engine
        return engine

    def _submit(self, engine: QueryEngine) -> str:
        try:
            return engine.submit()
        except QueryError as exc:
            raise AirflowFailException(f"Salesforce refused the query: {exc}") from exc
        except SalesforceError as exc:
            if exc.status == 400:
                raise AirflowFailException(
                    f"Salesforce refused the Bulk query job: {exc}. Bulk API 2.0 rejects GROUP BY, aggregates, "
                    "OFFSET, TYPEOF, FIELDS() and parent-to-child subqueries"
                ) from exc
            raise

    def _wait(self, engine: QueryEngine, job_id: str) -> None:
        """Wait for the job: in the triggerer when deferrable (the window travels with the deferral), else here.
        Deferrable, a job that timed out on its window has its halves' jobs created and is deferred on them
        (again after each resume, until every piece has ended): a split never holds a worker slot."""
        if not self.deferrable:
            engine.wait(job_id, on_poll=self._polled)
            return
        try:
            waiting = [job_id] if self.bulk.job_info("query", job_id).active else engine.split_jobs_running(job_id)
        except InputError as exc:
            raise AirflowFailException(str(exc)) from exc
        if waiting:
            end = None if self.timeout is None else time.time() + self.timeout
            self.defer(
                trigger=SalesforceBulkJobTrigger(
                    sfint_conn_id=self.sfint_conn_id,
                    job_ids=waiting,
                    kind="query",
                    poll_interval=self.poll_interval,
                    end_time=end,
                    # The job and window (for an Airflow that does not hand back the kwargs), and the jobs of a
                    # split window (for a task without a durable store: the next resume must not create them again)
                    echo={"job_id": job_id, "window": self._window_dict(), "splits": engine.store.get(SPLIT_KEY)},
                ),
                method_name="execute_complete",
                kwargs={"job_id": job_id, "window": self._window_dict()},
                timeout=None if self.timeout is None else timedelta(seconds=self.timeout + 60),
            )

    def _polled(self, info: JobInfo) -> None:
        self.log.info("Bulk query job %s: %s, %d records so far", info.id, info.state, info.records_processed)

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
        # The trigger echoes the job and window (not every Airflow version hands the defer kwargs back); the jobs
        # it watched may be the halves of a split window, never to be taken for the job itself.
        echo: dict[str, Any] = event["echo"] if isinstance(event.get("echo"), dict) else {}
        job_id = job_id or str(echo.get("job_id") or next(iter(event.get("jobs") or {}), ""))
        window = window or echo.get("window")
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
        engine = self._engine(context, task_store(context))
        if isinstance(echo.get("splits"), dict) and not engine.store.get(SPLIT_KEY):
            engine.store.set(SPLIT_KEY, echo["splits"])  # no durable store: the split's jobs came with the event
        self._wait(engine, job_id)  # a split window: defers again while a piece still runs
        return self._finish(engine, job_id)

    def _finish(self, engine: QueryEngine, job_id: str) -> dict[str, Any]:
        """Collect the job's rows into the output, then record the summary and the lineage."""
        try:
            summary = engine.collect(job_id, on_poll=self._polled)
        except InputError as exc:
            raise AirflowFailException(str(exc)) from exc
        return self._complete(engine, summary)

    def _complete(self, engine: QueryEngine, summary: dict[str, Any]) -> dict[str, Any]:
        """Record the summary of a committed output (Bulk or REST) and the lineage."""
        window = self._resolved_window
        summary["window"] = None if window is None else window.as_dict()
        summary["seconds"] = round(time.monotonic() - getattr(self, "_started", time.monotonic()), 3)
        summary["api_calls"] = self.hook.client.api_calls - getattr(self, "_calls_at_start", 0)  # the whole task's
        self.log.info(
            "committed %d records to %d file(s) at %s (%s API, %d API calls, %.1f s)",
            summary["records"],
            len(summary["files"]),
            self.destination,
            "REST" if summary.get("api") == "rest" else "Bulk",
            summary["api_calls"],
            summary["seconds"],
        )
        engine.record_complete(summary)
        soql = engine.spec.soql
        self._record_lineage(
            [
                salesforce_dataset(
                    self.hook.client.login(),
                    query_shape(soql)[1],
                    [(f.name, (f.metadata or {}).get(b"salesforce_type", b"").decode()) for f in engine.schema],
                )
            ],
            [file_dataset(self.destination, [(f.name, str(f.type)) for f in engine.schema])],
        )
        return summary

    def on_kill(self) -> None:
        running = self._running.running_job if self._running is not None else None
        if running:
            self.log.info("task killed: aborting Bulk query job %s", running)
            self.bulk.abort("query", running)
