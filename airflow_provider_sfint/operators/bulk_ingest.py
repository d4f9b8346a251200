"""SalesforceBulkIngestOperator: files and DataFrames into Salesforce through Bulk API 2.0, exactly once."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from array import array
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from airflow.providers.common.compat.sdk import BaseOperator, ObjectStoragePath, TaskDeferred, conf

from ..client.arrowio import (
    NULL_POLICIES,
    ColumnResolver,
    IngestPlan,
    PartSplitter,
    PreflightError,
    UploadPart,
    check_values,
    csv_header,
    csv_rows,
    csv_text,
    iter_source,
    plan_ingest,
    read_text_csv,
)
from ..client.bulk2 import (
    INGEST_OPERATIONS,
    MAX_UPLOAD_BYTES,
    TRANSIENT_ROW_ERRORS,
    Bulk2,
    BulkJobError,
    JobInfo,
    job_link,
    parse_row_error,
)
from ..client.crashpoints import crash_point
from ..client.errors import NotFoundError, SalesforceError, TransportError
from ..compat import AirflowFailException
from ..hooks.salesforce import SalesforceHook
from ..lineage import LineageMixin, file_dataset, salesforce_dataset
from ..links import JOB_URL_ATTR, SalesforceJobLink, announce_job, forget_job_link
from ..triggers.bulk import EVENT_STATUSES, SalesforceBulkJobTrigger
from ._settings import check_waiting, write_failed_rows
from ._state import start_execution

STATE_KEY = "sfint_bulk_ingest"
#: How far before a recorded intent a job may carry its creation time (the org's clock against ours).
CLOCK_MARGIN = timedelta(minutes=2)
HARD_CAP_BYTES = 150_000_000 * 3 // 4  # 150 MB after base64


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
    :param poll_interval: first delay between job checks, seconds (grows to 30 s)
    :param timeout: give up waiting after this many seconds (None: as long as the jobs live)
    :param deferrable: wait in the triggerer (needs a path source: the worker re-reads it after resuming)
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
        poll_interval: float = 2.0,
        timeout: float | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        min_remaining_api_percent: float | None = None,
        sfint_conn_id: str = SalesforceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        setattr(self, JOB_URL_ATTR, None)
        if null_policy not in NULL_POLICIES:
            raise ValueError(f"null_policy must be one of {', '.join(NULL_POLICIES)}, got {null_policy!r}")
        if not 1_000 <= int(max_bytes_per_job) <= HARD_CAP_BYTES:
            raise ValueError(
                f"max_bytes_per_job must be between 1000 and {HARD_CAP_BYTES} (150 MB after base64), "
                f"got {max_bytes_per_job}"
            )
        if not 1 <= int(max_concurrent_jobs) <= 25:
            raise ValueError(f"max_concurrent_jobs must be between 1 and 25, got {max_concurrent_jobs}")
        if max_failed_records is not None and int(max_failed_records) < 0:
            raise ValueError(f"max_failed_records must be 0 or more, got {max_failed_records}")
        if max_failed_ratio is not None and not 0 <= float(max_failed_ratio) <= 1:
            raise ValueError(f"max_failed_ratio must be between 0 and 1, got {max_failed_ratio}")
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
        self._state: dict[str, Any] = {}
        self._store: Any = None
        self._lock = threading.Lock()
        self._adopt_lock = threading.Lock()
        self._adopted: list[str] = []
        self._left_open: list[str] = []

    @cached_property
    def hook(self) -> SalesforceHook:
        return SalesforceHook(sfint_conn_id=self.sfint_conn_id)

    @cached_property
    def bulk(self) -> Bulk2:
        return Bulk2(self.hook.client)

    def _source(self) -> Any:
        if isinstance(self.source, str):
            return ObjectStoragePath(self.source)
        return self.source

    def _is_path(self) -> bool:
        return isinstance(self.source, str | ObjectStoragePath)

    def _batches(self) -> Iterator[pa.RecordBatch]:
        """The source's batches; a file that cannot be parsed fails naming it, the row, and the fix."""
        try:
            yield from iter_source(self._source())
        except pa.ArrowInvalid as exc:
            message = str(exc)
            hint = ""
            if "UTF8" in message or "UTF-8" in message:
                hint = "; the file is not valid UTF-8: save it as UTF-8 (or pass Parquet)"
            elif "Expected" in message and "columns" in message:
                hint = (
                    "; that row has a different number of fields than the header (an unquoted delimiter or line break?)"
                )
            raise AirflowFailException(
                f"source {self.source}: {message}{hint}. Nothing was sent to Salesforce"
            ) from exc

    # --- preparing the parts -----------------------------------------------------------------------

    def _plan(self) -> IngestPlan:
        """Map the input's columns to fields (from its first batch) and check them against describe."""
        if self.operation not in INGEST_OPERATIONS:
            raise AirflowFailException(
                f"operation must be one of {', '.join(INGEST_OPERATIONS)}, got {self.operation!r}"
            )
        try:
            first = next(self._batches(), None)
        except (FileNotFoundError, OSError) as exc:
            raise AirflowFailException(f"source {self.source}: {exc}") from exc
        if first is None:
            raise AirflowFailException(f"source {self.source} holds no rows")
        self._source_schema = first.schema
        try:
            return plan_ingest(
                ColumnResolver(self.hook.client.describe),
                self.object,
                self.operation,
                first.schema.names,
                external_id_field=self.external_id_field,
                column_mapping=self.column_mapping,
            )
        except PreflightError as exc:
            raise AirflowFailException(str(exc)) from exc
        except NotFoundError:  # describe of the object itself: the first call plan_ingest makes
            raise AirflowFailException(f"{self.hook.client.unknown_object(self.object)}; no job was created") from None

    def _preflight(self, plan: IngestPlan) -> int:
        """First pass over the input: every value and key checked; raises before any job. Returns the rows."""
        problems: list[str] = []
        hashes: array[int] = array("q")
        rows = 0
        for batch in self._batches():
            problems += check_values(plan, batch, rows)
            problems += self._oversized_rows(plan, batch, rows)
            if plan.key is not None:
                hashes.frombytes(self._key_hashes(plan, batch, rows, problems).tobytes())
            rows += batch.num_rows
            if len(problems) > 200:
                break
        if not problems:
            problems += self._duplicates(plan, hashes)
        if problems:
            raise AirflowFailException(str(PreflightError(self.object, problems)))
        return rows

    def _oversized_rows(self, plan: IngestPlan, batch: pa.RecordBatch, first_row: int) -> list[str]:
        """Rows too big for a job of their own, found before any job starts (not half-way through the
        upload). A cheap upper bound (every byte doubled by quoting) picks the rows worth serialising."""
        room = self.max_bytes_per_job - len(csv_header(plan.header))
        bound = pa.array([1] * batch.num_rows, pa.int64())  # the line break
        for source in plan.source_names:
            values = batch.column(batch.schema.get_field_index(source))
            if (
                pa.types.is_string(values.type)
                or pa.types.is_large_string(values.type)
                or pa.types.is_binary(values.type)
            ):
                size = pc.fill_null(pc.binary_length(values), 0)
                bound = pc.add(bound, pc.add(pc.multiply(pc.cast(size, pa.int64()), 2), 3))
            else:
                bound = pc.add(bound, 64)  # numbers, dates and booleans as text, quoted, with a delimiter
        suspects = pc.indices_nonzero(pc.greater(bound, room)).to_pylist()
        out = []
        for i in suspects[:25]:
            size = len(csv_rows(csv_text(plan, batch.slice(i, 1), self.null_policy)))
            if size > room:
                out.append(
                    f"row {first_row + i + 1} is {size:,} bytes as CSV, more than max_bytes_per_job="
                    f"{self.max_bytes_per_job:,} allows for one job; raise max_bytes_per_job or shorten the row"
                )
        return out

    def _parts(self, plan: IngestPlan, folder: str) -> Iterator[UploadPart]:
        """Second pass: serialise and split, yielding each part as soon as it is closed (so its job can
        upload while the next part is written)."""
        splitter = PartSplitter(folder, plan.header, self.max_bytes_per_job)
        given = 0
        rows = 0
        for batch in self._batches():
            splitter.add(csv_text(plan, batch, self.null_policy), rows)
            rows += batch.num_rows
            while given < len(splitter.parts):
                yield splitter.parts[given]
                given += 1
        splitter.finish()
        yield from splitter.parts[given:]

    @staticmethod
    def _key_hashes(plan: IngestPlan, batch: pa.RecordBatch, first_row: int, out: list[str]) -> Any:
        """64-bit hashes of the batch's keys (8 bytes a row, so millions of rows cost little); empty keys
        are reported."""
        import numpy as np

        assert plan.key is not None
        source = plan.source_names[plan.header.index(plan.key)]
        values = batch.column(batch.schema.get_field_index(source))
        text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
        empty = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(text), ""), True)
        for i in pc.indices_nonzero(empty).to_pylist()[: max(0, 50 - len(out))]:
            out.append(f"row {first_row + i + 1}: the key column {source!r} is empty")
        keys = text.to_pylist()
        return np.fromiter((hash(k) for k in keys), dtype=np.int64, count=len(keys))

    def _duplicates(self, plan: IngestPlan, hashes: array[int]) -> list[str]:
        """Rows whose key repeats an earlier row's: the 64-bit key hashes (one growing buffer, 8 bytes a
        row) are sorted in place; only if two are equal is the input read again to name the rows."""
        import numpy as np

        if not hashes:
            return []
        ordered = np.frombuffer(hashes, dtype=np.int64)
        ordered.sort()
        same = ordered[1:] == ordered[:-1]
        repeated = set(np.unique(ordered[1:][same]).tolist()) if same.any() else set()
        del ordered, same
        if not repeated:
            return []
        assert plan.key is not None
        source = plan.source_names[plan.header.index(plan.key)]
        first_seen: dict[str, int] = {}
        out: list[str] = []
        row = 0
        for batch in self._batches():
            values = batch.column(batch.schema.get_field_index(source))
            text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
            for i, value in enumerate(text.to_pylist()):
                if value is not None and hash(value) in repeated:
                    if value in first_seen and len(out) < 50:
                        out.append(f"row {row + i + 1}: {plan.key} {value!r} repeats row {first_seen[value]}")
                    first_seen.setdefault(value, row + i + 1)
            row += len(text)
        return out

    # --- state (task_state_store on Airflow 3.3) ---------------------------------------------------

    def _load_state(self, context: Any) -> None:
        self._store = context.get("task_state_store")
        saved = self._store.get(STATE_KEY) if self._store is not None else None
        if not (isinstance(saved, dict) and saved.get("parts")):
            saved = getattr(self, "_echoed", None)  # handed back by the trigger after a deferral
        if isinstance(saved, dict) and saved.get("parts"):
            self._state = saved
            self.log.info("resuming: %d part(s) already have jobs", len(saved["parts"]))
        else:
            self._state = {"parts": {}}

    @staticmethod
    def _job_ids(state: dict[str, Any]) -> list[str]:
        return [p["job"] for p in state.get("parts", {}).values() if p.get("job")]

    def _record(self, index: int, **values: Any) -> None:
        with self._lock:
            entry = self._state["parts"].setdefault(str(index), {})
            entry.update(values)
            if self._store is not None:
                self._store.set(STATE_KEY, self._state)

    # --- running jobs ------------------------------------------------------------------------------

    def _start(self, part: UploadPart, context: Any) -> str:
        """Create (or find), upload and close the job for ``part``; returns its id. Never uploads twice."""
        entry = self._state["parts"].get(str(part.index), {})
        job_id = entry.get("job")
        if entry.get("digest") not in (None, part.digest):
            raise AirflowFailException(
                f"the input changed since an earlier try started job {job_id} for part {part.index}; its rows may "
                "already be loaded. Check them in Salesforce, then clear the task's state to start afresh"
            )
        if job_id is None:
            job_id = self._create_job(part)
            entry = self._state["parts"][str(part.index)]
            if part.index == 0:
                announce_job(self, context, job_link(self.hook.client.login(), job_id), job_id)
            state = "Open"
        else:
            state = self.bulk.job_info("ingest", job_id).state
            if part.index == 0:  # a retried or resumed task links the job it re-attached to
                setattr(self, JOB_URL_ATTR, job_link(self.hook.client.login(), job_id))
        if state == "Open":
            if not entry.get("uploaded"):
                fresh = self.bulk.upload(job_id, part.path)
                if not fresh and entry.get("adopted"):
                    raise AirflowFailException(
                        f"job {job_id}, adopted for part {part.index} as one an earlier try created, already held "
                        "data: it was another client's. Nothing of this part was sent; retry the task"
                    )
                if not fresh:
                    self.log.info("job %s already held this part's data (an earlier try uploaded it)", job_id)
                self._record(part.index, uploaded=True)
                crash_point("ingest.upload_recorded")
            self.bulk.close(job_id)
            crash_point("ingest.job_closed")
            self._last_close = time.monotonic()
            self._record(part.index, closed=True)
        elif state in ("Failed", "Aborted"):
            raise BulkJobError(
                f"job {job_id} for part {part.index} is {state}; its rows were not loaded", job_id=job_id, state=state
            )
        return str(job_id)

    def _create_job(self, part: UploadPart) -> str:
        """Create the part's job, recording the intent first: a kill (or a lost answer) between the create and
        the record leaves a job that the retry finds and adopts, instead of an Open job nobody closes."""
        intent = datetime.now(UTC).isoformat()
        self._record(part.index, intent=intent, rows=part.rows, digest=part.digest)
        try:
            job = self.bulk.create_ingest_job(
                self.object,
                self.operation,
                external_id_field=self.external_id_field if self.operation == "upsert" else None,
                assignment_rule_id=self.assignment_rule_id,
            )
        except TransportError as exc:
            if not exc.sent:
                raise
            with self._adopt_lock:  # the request may have created the job before its answer was lost
                self._adopt()
            adopted = self._state["parts"][str(part.index)].get("job")
            if adopted is None:
                raise
            return str(adopted)
        crash_point("ingest.job_created")
        self._record(part.index, job=job.id)
        crash_point("ingest.job_recorded")
        return job.id

    def _adopt(self) -> None:
        """Jobs an earlier try created but never recorded (killed between the two, or the create's answer lost):
        Open jobs on this object with this operation that this user created since the earliest unrecorded
        intent. While there are no more of them than parts waiting for one, they are this task's, and
        interchangeable (Open, empty, same object, operation and key): each waiting part adopts one. More of
        them means another client made some too: none is touched, and they are reported."""
        waiting = sorted((int(i), e) for i, e in self._state["parts"].items() if e.get("intent") and not e.get("job"))
        if not waiting:
            return
        user = self.hook.client.user_id()
        if user is None:
            self.log.warning("cannot look for jobs an earlier try created: the session has no user id")
            return
        since = min(datetime.fromisoformat(e["intent"]) for _, e in waiting) - CLOCK_MARGIN
        known = set(self._job_ids(self._state))
        key = self.external_id_field if self.operation == "upsert" else None
        found = [
            j
            for j in self.bulk.jobs_created_since("ingest", self.object, self.operation, since, user)
            if j.state == "Open" and j.id not in known and self._external_id_of(j) == key
        ]
        if len(found) > len(waiting):
            self._left_open = [j.id for j in found]
            self.log.warning(
                "%d Open %s %s job(s) were created since an earlier try lost track of %d: it cannot tell which are "
                "its own, so it leaves them as they are: %s",
                len(found),
                self.operation,
                self.object,
                len(waiting),
                ", ".join(self._left_open),
            )
            return
        for (index, _), job in zip(waiting, found, strict=False):
            self._record(index, job=job.id, adopted=True)
            self._adopted.append(job.id)
            self.log.info("part %d: adopting job %s, which an earlier try created but could not record", index, job.id)

    def _external_id_of(self, job: JobInfo) -> str | None:
        """The job's external id field (job lists may leave it out: then its full info is read)."""
        if self.operation != "upsert":
            return None
        raw = job.raw if "externalIdFieldName" in job.raw else self.bulk.job_info("ingest", job.id).raw
        return raw.get("externalIdFieldName") or None

    def _wait(self, job_id: str) -> JobInfo:
        try:
            return self.bulk.wait("ingest", job_id, poll_interval=self.poll_interval, timeout=self.timeout)
        except BulkJobError as exc:
            raise AirflowFailException(f"{exc}") from exc

    def execute(self, context: Any) -> dict[str, Any]:
        self._started = time.monotonic()
        self._calls = self.hook.client.api_calls
        if self.deferrable and not self._is_path():
            raise AirflowFailException(
                "deferrable=True needs a path source (the worker that resumes re-reads it); pass the data as "
                "Parquet/CSV/JSONL on an ObjectStoragePath, or set deferrable=False for a DataFrame"
            )
        store = start_execution(context, self.retries, (STATE_KEY,), self.log)
        saved = store.get(STATE_KEY) if store is not None else None
        if isinstance(saved, dict) and isinstance(saved.get("complete"), dict):
            self.log.info(
                "an earlier try of this run loaded every part (jobs %s) and its success was not recorded: returning "
                "its summary, nothing is loaded again",
                ", ".join(self._job_ids(saved)),
            )
            return dict(saved["complete"])
        if self.min_remaining_api_percent is not None:
            self.hook.client.check_budget(self.min_remaining_api_percent, purpose=f"task {self.task_id}")
        return self._run(context, resumed=False)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES:
            raise SalesforceError(f"unexpected trigger event {event!r} for the ingest jobs of {self.task_id}")
        forget_job_link(self)
        self._echoed = event.get("echo") if isinstance(event.get("echo"), dict) else None
        if event["status"] != "success":
            self._state = self._echoed or {}
            raise AirflowFailException(f"Bulk ingest jobs did not complete: {event.get('message') or event}")
        self._started = time.monotonic()
        self._calls = self.hook.client.api_calls
        return self._run(context, resumed=True)

    def _run(self, context: Any, resumed: bool) -> dict[str, Any]:
        self._run_started = time.monotonic()
        folder = tempfile.mkdtemp(prefix="sfint-ingest-")
        try:
            plan = self._plan()
            rows = self._preflight(plan)
            self._load_state(context)
            self._adopt()
            self.log.info(
                "%d rows checked; %s %s in parts of at most %.1f MB, %d job(s) at a time",
                rows,
                self.operation,
                self.object,
                self.max_bytes_per_job / 1e6,
                self.max_concurrent_jobs,
            )
            if self.deferrable:
                parts = list(self._parts(plan, folder))
                pending = [p for p in parts if not self._done(p)]
                batch = pending[: self.max_concurrent_jobs]
                started = [self._start(p, context) for p in batch]
                active = [j for j in started if self.bulk.job_info("ingest", j).active]
                if active:
                    self.defer(
                        trigger=SalesforceBulkJobTrigger(
                            sfint_conn_id=self.sfint_conn_id,
                            job_ids=active,
                            kind="ingest",
                            poll_interval=self.poll_interval,
                            end_time=None if self.timeout is None else time.time() + self.timeout,
                            echo=self._state,  # the jobs per part, for Airflow versions without task_state_store
                        ),
                        method_name="execute_complete",
                    )
                for p in batch:
                    self._finish_part(p)
                if len(pending) > len(batch):
                    return self._run(context, resumed=True)
            else:
                parts = self._run_parts(plan, folder, context)
            return self._summarise(context, plan, parts, rows, folder)
        except Exception as exc:
            if not isinstance(exc, TaskDeferred):
                self._abort_open_jobs()
            raise
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _abort_open_jobs(self) -> None:
        """After a failure: abort jobs still Open (nothing of theirs was processed) and forget them, so no
        job is left open and a retry starts those parts afresh. Closed jobs keep running: their rows load,
        and a retry re-attaches to them."""
        for index, entry in list(self._state.get("parts", {}).items()):
            if entry.get("job") and not entry.get("closed"):
                try:
                    self.bulk.abort("ingest", entry["job"])
                except SalesforceError as error:
                    self.log.warning("could not abort job %s: %s", entry["job"], error)
                    continue
                with self._lock:
                    self._state["parts"].pop(index, None)
                    if self._store is not None:
                        self._store.set(STATE_KEY, self._state)

    def _done(self, part: UploadPart) -> bool:
        return bool(self._state["parts"].get(str(part.index), {}).get("done"))

    def _run_parts(self, plan: IngestPlan, folder: str, context: Any) -> list[UploadPart]:
        """Each part's job starts as soon as the part is written, at most ``max_concurrent_jobs`` at once
        (and one more part spooled ahead), so uploading overlaps serialising."""
        parts: list[UploadPart] = []
        slots = threading.Semaphore(self.max_concurrent_jobs + 1)
        futures: list[Future[None]] = []

        def run(part: UploadPart) -> None:
            try:
                self._finish_part(part, self._start(part, context))
            finally:
                slots.release()

        with ThreadPoolExecutor(self.max_concurrent_jobs, thread_name_prefix="sfint-ingest") as pool:
            for part in self._parts(plan, folder):
                parts.append(part)
                if self._done(part):
                    continue
                slots.acquire()
                if any(f.done() and f.exception() is not None for f in futures):
                    slots.release()
                    break  # a job failed: stop writing parts; the error is raised below
                futures.append(pool.submit(run, part))
            for future in futures:
                future.result()
        return parts

    def _finish_part(self, part: UploadPart, job_id: str | None = None) -> None:
        job_id = job_id or self._state["parts"][str(part.index)]["job"]
        info = self._wait(job_id)
        self._record(
            part.index,
            done=True,
            processed=info.records_processed,
            failed=info.records_failed,
        )

    # --- results -----------------------------------------------------------------------------------

    def _failed_rows(self, job_id: str, folder: str) -> pa.Table | None:
        target = f"{folder}/failed-{job_id}.csv"
        if self.bulk.download_results(job_id, "failedResults", target) == 0:
            return None
        table = read_text_csv(target)
        return table if table.num_rows else None

    def _summarise(
        self, context: Any, plan: IngestPlan, parts: list[UploadPart], rows: int, folder: str
    ) -> dict[str, Any]:
        entries = [self._state["parts"][str(p.index)] for p in parts]
        jobs = [e["job"] for e in entries]
        failed_tables = [t for t in (self._failed_rows(j, folder) for j in jobs) if t is not None]
        failed = pa.concat_tables(failed_tables) if failed_tables else None
        retried = 0
        retry_jobs: list[str] = []
        if failed is not None and self.retry_transient_failures:
            transient = pc.is_in(_error_codes(failed), value_set=pa.array(sorted(TRANSIENT_ROW_ERRORS)))
            transient = pc.fill_null(transient, False)
            again = failed.filter(transient)
            if again.num_rows:
                retried = again.num_rows
                failed_after, retry_jobs = self._retry(again, folder, context)
                keep = failed.filter(pc.invert(transient))
                parts_left = [keep] + ([failed_after] if failed_after is not None else [])
                failed = pa.concat_tables(parts_left) if any(t.num_rows for t in parts_left) else None
        failed_count = failed.num_rows if failed is not None else 0
        processed = sum(int(e.get("processed") or 0) for e in entries)
        if processed != rows:
            raise AirflowFailException(
                f"Salesforce processed {processed} of the {rows} rows sent to jobs {jobs}; the rest were not "
                "loaded (see each job's unprocessed records in Setup > Bulk Data Load Jobs)"
            )
        written = self._write_failed(failed, plan) if failed is not None and failed_count else None
        summary = {
            "object": self.object,
            "operation": self.operation,
            "jobs": jobs + retry_jobs,
            "records": rows,
            "processed": processed,
            "succeeded": rows - failed_count,
            "failed": failed_count,
            "retried": retried,
            "adopted_jobs": self._adopted,  # created by an earlier try that could not record them, then used
            "left_open": self._left_open,  # Open jobs that may be an earlier try's but could not be told apart
            "failed_output": written,
            "batches": sum(-(-p.rows // 10_000) for p in parts),
            "api_calls": self.hook.client.api_calls - getattr(self, "_calls", 0),
            "retries": len(self.hook.client.retries),  # requests retried by this task (503, 429, cut connections...)
            "seconds": round(time.monotonic() - getattr(self, "_started", time.monotonic()), 3),
            "upload_seconds": round(getattr(self, "_last_close", self._run_started) - self._run_started, 3),
        }
        self.log.info("Bulk %s of %s: %s", self.operation, self.object, summary)
        source_schema = getattr(self, "_source_schema", None)
        self._record_lineage(
            [file_dataset(self.source, [(f.name, str(f.type)) for f in source_schema] if source_schema else ())]
            if self._is_path()
            else [],
            [salesforce_dataset(self.hook.client.login(), self.object, [(c.name, c.sf_type) for c in plan.columns])],
        )
        too_many = self.max_failed_records is not None and failed_count > self.max_failed_records
        too_high = self.max_failed_ratio is not None and rows and failed_count / rows > self.max_failed_ratio
        if too_many or too_high:
            where = f"; failed rows with their errors are in {written}" if written else ""
            first = _first_errors(failed)
            raise AirflowFailException(
                f"{failed_count} of {rows} rows failed ({self.operation} {self.object}), over the allowed "
                f"max_failed_records={self.max_failed_records} / max_failed_ratio={self.max_failed_ratio}{where}. "
                f"First errors: {first}"
            )
        if self._store is not None:  # until the next run of the task: a retry after this point returns it
            with self._lock:
                self._state["complete"] = summary
                self._store.set(STATE_KEY, self._state)
            crash_point("ingest.summary_recorded")
        return summary

    def _retry(self, rows: pa.Table, folder: str, context: Any) -> tuple[pa.Table | None, list[str]]:
        """Run rows that failed for a transient reason once more, in follow-up jobs recorded like the others
        (parts -1, -2, ...), so a crash during the retry does not send them twice."""
        original = rows.drop_columns([c for c in rows.column_names if c.startswith("sf__")])
        if self.lock_order_column and self.lock_order_column in original.column_names:
            original = original.sort_by(self.lock_order_column)
        self.log.info("retrying %d rows that failed with lock or availability errors", original.num_rows)
        retry_folder = os.path.join(folder, "retry")
        os.makedirs(retry_folder, exist_ok=True)
        splitter = PartSplitter(retry_folder, original.column_names, self.max_bytes_per_job)
        splitter.add(original)
        jobs: list[str] = []
        failed: list[pa.Table] = []
        for part in splitter.finish():
            part = UploadPart(-1 - part.index, part.path, part.rows, part.bytes, part.digest)
            job_id = self._start(part, context)
            if not self._done(part):
                self._finish_part(part, job_id)
            jobs.append(job_id)
            table = self._failed_rows(job_id, folder)
            if table is not None:
                failed.append(table)
        return (pa.concat_tables(failed) if failed else None), jobs

    def _write_failed(self, failed: pa.Table, plan: IngestPlan) -> str | None:
        """Failed rows with their errors, under the input's own column names (so a corrected file can be
        loaded again with the same ``column_mapping``)."""
        back = dict(zip(plan.header, plan.source_names, strict=True))
        failed = failed.rename_columns([back.get(name, name) for name in failed.column_names])
        target = self.failed_output
        if target is None and self._is_path():
            target = str(self._source()).rstrip("/") + ".failed.csv"
        if target is None:
            return None
        table = failed.add_column(2, "sf__ErrorCode", _error_codes(failed))
        return write_failed_rows(table, str(target))

    def on_kill(self) -> None:
        for job_id in self._job_ids(self._state):
            try:
                self.bulk.abort("ingest", job_id)
            except SalesforceError as exc:
                self.log.warning("could not abort job %s: %s", job_id, exc)


def _error_codes(failed: pa.Table) -> Any:
    """The status code at the start of each ``sf__Error`` (``UNABLE_TO_LOCK_ROW:...``)."""
    return pc.struct_field(pc.extract_regex(failed.column("sf__Error"), r"^(?P<code>[A-Za-z_]+):"), "code")


def _first_errors(failed: pa.Table | None) -> str:
    if failed is None:
        return "none"
    errors = [parse_row_error(e or "") for e in failed.column("sf__Error").to_pylist()[:3]]
    return "; ".join(f"{code}: {message} {fields or ''}".strip() for code, message, fields in errors)
