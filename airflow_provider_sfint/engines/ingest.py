"""The Bulk API 2.0 ingest engine: rows into Salesforce exactly once, with no Airflow in it.

One run: plan the input's columns against describe; check every value and key before any job exists; cut the
CSV into parts of at most ``max_bytes_per_job``; give each part a job (at most ``max_concurrent_jobs`` at once),
upload, close, wait; read the failed rows, run the transient ones (row locks) once more in follow-up jobs;
write the failed rows out; check the failure threshold; record the summary.

Every step that cannot be undone is recorded in a :class:`~.state.StateStore` first (the intent to create a job,
its id, the upload, the close, the end of the job, the summary), so a later run with the same store resumes:
it never uploads a part twice, adopts the job an earlier run created but could not record, and after a kill
that came after the summary was recorded returns that summary and touches nothing. The plan (columns, row
count, the parts' sizes and digests) is recorded too: a resumed run does not check the input again, and reads
it only when a part still waits for its upload.

Named crash points (``ingest.*``) mark each transition for the tests that kill a run there.

The module is a little over 600 lines on purpose: it is one state machine (plan, create, record, upload, close,
wait, adopt, follow up, summarise) whose steps all read and write the same recorded progress; the input checks
live in ``client/arrowio/preflight.py`` and the file writes in ``engines/files.py``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..client.arrowio import (
    NULL_POLICIES,
    ColumnResolver,
    IngestColumn,
    IngestPlan,
    PartSplitter,
    UploadPart,
    csv_text,
    iter_source,
    plan_ingest,
    read_text_csv,
)
from ..client.arrowio.preflight import preflight
from ..client.bulk2 import INGEST_OPERATIONS, MAX_UPLOAD_BYTES, POLL_START, Bulk2, JobInfo, parse_row_error
from ..client.crashpoints import crash_point
from ..client.errors import (
    TRANSIENT_ROW_ERRORS,
    BulkJobError,
    InputError,
    NotFoundError,
    ProgressConflictError,
    SalesforceError,
    TooManyFailedRowsError,
    TransportError,
)
from ..client.rest import SalesforceClient
from .files import write_failed_rows
from .state import MemoryStateStore, StateStore

STATE_KEY = "sfint_bulk_ingest"
#: How far before a recorded intent a job may carry its creation time (the org's clock against ours).
CLOCK_MARGIN = timedelta(minutes=2)
HARD_CAP_BYTES = 150_000_000 * 3 // 4  # 150 MB after base64


@dataclass
class IngestSettings:
    """What to load and how; :meth:`check` names the first setting that cannot work."""

    object: str
    operation: str
    external_id_field: str | None = None
    column_mapping: dict[str, str] = field(default_factory=dict)
    null_policy: str = "leave_unchanged"
    max_bytes_per_job: int = MAX_UPLOAD_BYTES
    max_concurrent_jobs: int = 4
    max_failed_records: int | None = 0
    max_failed_ratio: float | None = None
    retry_transient_failures: bool = True
    lock_order_column: str | None = None
    assignment_rule_id: str | None = None
    poll_interval: float = POLL_START
    timeout: float | None = None

    def check(self) -> None:
        """Raise ValueError for a setting that cannot work (the operators call it in their constructors)."""
        if self.null_policy not in NULL_POLICIES:
            raise ValueError(f"null_policy must be one of {', '.join(NULL_POLICIES)}, got {self.null_policy!r}")
        if not 1_000 <= int(self.max_bytes_per_job) <= HARD_CAP_BYTES:
            raise ValueError(
                f"max_bytes_per_job must be between 1000 and {HARD_CAP_BYTES} (150 MB after base64), "
                f"got {self.max_bytes_per_job}"
            )
        if not 1 <= int(self.max_concurrent_jobs) <= 25:
            raise ValueError(f"max_concurrent_jobs must be between 1 and 25, got {self.max_concurrent_jobs}")
        check_failure_limits(self.max_failed_records, self.max_failed_ratio)

    @property
    def key_field(self) -> str | None:
        return self.external_id_field if self.operation == "upsert" else None


def check_failure_limits(max_failed_records: int | None, max_failed_ratio: float | None) -> None:
    """The failure-threshold settings every writing operator takes."""
    if max_failed_records is not None and int(max_failed_records) < 0:
        raise ValueError(f"max_failed_records must be 0 or more, got {max_failed_records}")
    if max_failed_ratio is not None and not 0 <= float(max_failed_ratio) <= 1:
        raise ValueError(f"max_failed_ratio must be between 0 and 1, got {max_failed_ratio}")


def over_failure_limit(failed: int, rows: int, max_failed_records: int | None, max_failed_ratio: float | None) -> bool:
    """True when ``failed`` of ``rows`` is more than the caller allows."""
    too_many = max_failed_records is not None and failed > max_failed_records
    too_high = max_failed_ratio is not None and rows > 0 and failed / rows > max_failed_ratio
    return bool(too_many or too_high)


class IngestEngine:
    """One ingest of ``source`` (a path of Parquet/CSV/JSONL, an Arrow table or a DataFrame) into ``settings.object``.

    :param client: a signed-in client
    :param settings: what to load and how
    :param source: the input; a path is read twice (checked, then sent) and again on a resume that still has
        parts to upload; a table or DataFrame is held by the caller
    :param store: where progress lives between runs (None: this process only)
    :param failed_output: where failed rows go (a path; None: nowhere)
    :param on_job: called with ``(part index, job id, created)`` when a part gets its job (links, logs)
    """

    def __init__(
        self,
        client: SalesforceClient,
        settings: IngestSettings,
        source: Any,
        store: StateStore | None = None,
        *,
        failed_output: Any = None,
        on_job: Callable[[int, str, bool], None] | None = None,
        log: Any = None,
    ) -> None:
        self.client = client
        self.bulk = Bulk2(client)
        self.settings = settings
        self.source = source
        self.store: StateStore = store if store is not None else MemoryStateStore()
        self.failed_output = failed_output
        self.on_job = on_job
        self.log = log or logging.getLogger(__name__)
        self.state: dict[str, Any] = {"parts": {}}
        self.plan: IngestPlan | None = None
        self.rows = 0
        self.source_schema: list[tuple[str, str]] = []
        self.adopted: list[str] = []
        self.left_open: list[str] = []
        self._lock = threading.Lock()
        self._adopt_lock = threading.Lock()
        self._folder = tempfile.mkdtemp(prefix="sfint-ingest-")
        self._parts_cache: list[UploadPart] | None = None
        self._started = time.monotonic()
        self._calls = client.api_calls
        self._last_close: float | None = None

    # --- life cycle ---------------------------------------------------------------------------------

    def completed(self) -> dict[str, Any] | None:
        """The summary an earlier run recorded after loading every part (its caller never heard of it), or None."""
        saved = self.store.get(STATE_KEY)
        if isinstance(saved, dict) and isinstance(saved.get("complete"), dict):
            self.log.info(
                "an earlier try of this run loaded every part (jobs %s) and its success was not recorded: returning "
                "its summary, nothing is loaded again",
                ", ".join(job_ids(saved)),
            )
            return dict(saved["complete"])
        return None

    def prepare(self, handed_back: dict[str, Any] | None = None) -> None:
        """Plan and check the input (or take the plan an earlier run recorded, once it has started a job: before
        that the input is checked again), load the progress, and adopt the jobs an earlier run created without
        recording them. ``handed_back``: progress carried by a trigger
        event, used when the store has none (a store that does not outlive the process)."""
        saved = self.store.get(STATE_KEY)
        if not (isinstance(saved, dict) and saved.get("parts")) and isinstance(handed_back, dict):
            saved = handed_back
        started = isinstance(saved, dict) and any(e.get("intent") for e in saved.get("parts", {}).values())
        if isinstance(saved, dict) and isinstance(saved.get("plan"), dict) and started:
            self.state = saved
            self._restore_plan(saved["plan"])
            self.log.info(
                "resuming: %d rows checked by an earlier try; %d part(s) already have jobs",
                self.rows,
                len(job_ids(saved)),
            )
        else:
            self.state = {"parts": dict(saved.get("parts", {})) if isinstance(saved, dict) else {}}
            self.plan = self._plan()
            self.rows = self._preflight(self.plan)
            self._save(plan=self._plan_record())
        self._adopt()
        s = self.settings
        self.log.info(
            "%d rows checked; %s %s in parts of at most %.1f MB, %d job(s) at a time",
            self.rows,
            s.operation,
            s.object,
            s.max_bytes_per_job / 1e6,
            s.max_concurrent_jobs,
        )

    def run(self) -> dict[str, Any]:
        """Load every part, blocking until its job ends, then finish (see :meth:`finish`)."""
        self._run_parts()
        return self.finish()

    def start_batch(self) -> list[str]:
        """For a caller that waits elsewhere (a deferred task): give the next parts their jobs (at most
        ``max_concurrent_jobs``), and return the ids of those still running; an empty list once every part's
        job has ended (then call :meth:`finish`)."""
        while True:
            pending = [p for p in self.parts() if not self._done(p)]
            if not pending:
                return []
            batch = pending[: self.settings.max_concurrent_jobs]
            started = [self._start(p) for p in batch]
            active = [j for j in started if self.bulk.job_info("ingest", j).active]
            if active:
                return active
            for part in batch:
                self._finish_part(part)

    def finish(self) -> dict[str, Any]:
        """Every part's job has ended: read the failed rows, run the transient ones once more, write the failed
        rows out, check the failure threshold and record the summary (a later run returns it)."""
        assert self.plan is not None
        parts = self.parts(serialise=False)
        entries = [self.state["parts"][str(p.index)] for p in parts]
        jobs = [e["job"] for e in entries]
        failed_tables = [t for t in (self._failed_rows(j) for j in jobs) if t is not None]
        failed = pa.concat_tables(failed_tables) if failed_tables else None
        retried = 0
        retry_jobs: list[str] = []
        if failed is not None and self.settings.retry_transient_failures:
            transient = pc.fill_null(
                pc.is_in(error_codes(failed), value_set=pa.array(sorted(TRANSIENT_ROW_ERRORS))), False
            )
            again = failed.filter(transient)
            if again.num_rows:
                retried = again.num_rows
                failed_after, retry_jobs = self._follow_up(again)
                keep = failed.filter(pc.invert(transient))
                remaining = [keep] + ([failed_after] if failed_after is not None else [])
                failed = pa.concat_tables(remaining) if any(t.num_rows for t in remaining) else None
        failed_count = failed.num_rows if failed is not None else 0
        processed = sum(int(e.get("processed") or 0) for e in entries)
        if processed != self.rows:
            raise BulkJobError(
                f"Salesforce processed {processed} of the {self.rows} rows sent to jobs {jobs}; the rest were not "
                "loaded (see each job's unprocessed records in Setup > Bulk Data Load Jobs)",
                job_id=jobs[0] if jobs else "",
            )
        written = self._write_failed(failed) if failed is not None and failed_count else None
        if written:
            crash_point("ingest.failed_rows_written")
        s = self.settings
        summary = {
            "object": s.object,
            "operation": s.operation,
            "jobs": jobs + retry_jobs,
            "records": self.rows,
            "processed": processed,
            "succeeded": self.rows - failed_count,
            "failed": failed_count,
            "retried": retried,
            "adopted_jobs": self.adopted,  # created by an earlier try that could not record them, then used
            "left_open": self.left_open,  # Open jobs that may be an earlier try's but could not be told apart
            "failed_output": written,
            "batches": sum(-(-p.rows // 10_000) for p in parts),
            "api_calls": self.client.api_calls - self._calls,
            "retries": len(self.client.retries),  # requests retried by this run (503, 429, cut connections...)
            "seconds": round(time.monotonic() - self._started, 3),
            "upload_seconds": round((self._last_close or self._started) - self._started, 3),
        }
        self.log.info("Bulk %s of %s: %s", s.operation, s.object, summary)
        if over_failure_limit(failed_count, self.rows, s.max_failed_records, s.max_failed_ratio):
            where = f"; failed rows with their errors are in {written}" if written else ""
            raise TooManyFailedRowsError(
                f"{failed_count} of {self.rows} rows failed ({s.operation} {s.object}), over the allowed "
                f"max_failed_records={s.max_failed_records} / max_failed_ratio={s.max_failed_ratio}{where}. "
                f"First errors: {first_errors(failed)}",
                summary=summary,
            )
        self._save(complete=summary)  # until the next run of the task: a retry after this point returns it
        crash_point("ingest.summary_recorded")
        return summary

    def abort_open_jobs(self) -> None:
        """After a failure: abort jobs still Open (nothing of theirs was processed) and forget them, so no job is
        left open and a later run starts those parts afresh. Closed jobs keep running: their rows load, and a
        later run re-attaches to them."""
        for index, entry in list(self.state.get("parts", {}).items()):
            if entry.get("job") and not entry.get("closed"):
                try:
                    self.bulk.abort("ingest", entry["job"])
                except SalesforceError as error:
                    self.log.warning("could not abort job %s: %s", entry["job"], error)
                    continue
                with self._lock:
                    self.state["parts"].pop(index, None)
                    self.store.set(STATE_KEY, self.state)

    def abort_all(self) -> None:
        """Abort every job of this run (the task was killed): closed jobs stop where they are."""
        for job_id in job_ids(self.state):
            try:
                self.bulk.abort("ingest", job_id)
            except SalesforceError as exc:
                self.log.warning("could not abort job %s: %s", job_id, exc)

    def close(self) -> None:
        """Remove the spooled parts (the input and the recorded progress stay)."""
        shutil.rmtree(self._folder, ignore_errors=True)

    # --- the plan -----------------------------------------------------------------------------------

    def _batches(self) -> Generator[pa.RecordBatch, None, None]:
        """The source's batches; a file that cannot be parsed fails naming it, the row, and the fix."""
        try:
            yield from iter_source(self.source)
        except pa.ArrowInvalid as exc:
            message = str(exc)
            hint = ""
            if "UTF8" in message or "UTF-8" in message:
                hint = "; the file is not valid UTF-8: save it as UTF-8 (or pass Parquet)"
            elif "Expected" in message and "columns" in message:
                hint = (
                    "; that row has a different number of fields than the header (an unquoted delimiter or line break?)"
                )
            raise InputError(f"source {self.source}: {message}{hint}. Nothing was sent to Salesforce") from exc

    def _plan(self) -> IngestPlan:
        """Map the input's columns to fields (from its first batch) and check them against describe."""
        s = self.settings
        if s.operation not in INGEST_OPERATIONS:
            raise InputError(f"operation must be one of {', '.join(INGEST_OPERATIONS)}, got {s.operation!r}")
        batches = self._batches()
        try:
            first = next(batches, None)
        except (FileNotFoundError, OSError) as exc:
            raise InputError(f"source {self.source}: {exc}") from exc
        finally:
            batches.close()  # the reader and its file now, not whenever the collector (or exit) gets to them
        if first is None:
            raise InputError(f"source {self.source} holds no rows")
        self.source_schema = [(f.name, str(f.type)) for f in first.schema]
        try:
            return plan_ingest(
                ColumnResolver(self.client.describe),
                s.object,
                s.operation,
                first.schema.names,
                external_id_field=s.external_id_field,
                column_mapping=s.column_mapping,
            )
        except NotFoundError:  # describe of the object itself: the first call plan_ingest makes
            raise InputError(f"{self.client.unknown_object(s.object)}; no job was created") from None

    def _plan_record(self) -> dict[str, Any]:
        assert self.plan is not None
        return {
            "plan": asdict(self.plan),
            "rows": self.rows,
            "source_schema": [list(pair) for pair in self.source_schema],
        }

    def _restore_plan(self, record: dict[str, Any]) -> None:
        plan = dict(record["plan"])
        plan["columns"] = [IngestColumn(**c) for c in plan["columns"]]
        self.plan = IngestPlan(**plan)
        self.rows = int(record["rows"])
        self.source_schema = [(str(n), str(t)) for n, t in record.get("source_schema", [])]
        split = self.state.get("split")
        if isinstance(split, list):
            self._parts_cache = [
                UploadPart(int(p["index"]), "", int(p["rows"]), int(p["bytes"]), str(p["digest"])) for p in split
            ]

    def _preflight(self, plan: IngestPlan) -> int:
        """First pass over the input: every value and key checked; raises before any job. Returns the rows."""
        return preflight(
            self.settings.object, plan, self._batches, self.settings.max_bytes_per_job, self.settings.null_policy
        )

    # --- parts --------------------------------------------------------------------------------------

    def parts(self, serialise: bool = True) -> list[UploadPart]:
        """Every part, written to the spool when one still needs its upload (and ``serialise``)."""
        if self._parts_cache is not None and not (serialise and self._needs_bytes(self._parts_cache)):
            return self._parts_cache
        self._parts_cache = list(self._serialise())
        return self._parts_cache

    def _needs_bytes(self, parts: list[UploadPart]) -> bool:
        return any(not p.path and not self.state["parts"].get(str(p.index), {}).get("uploaded") for p in parts)

    def _serialise(self) -> Iterator[UploadPart]:
        """Second pass: serialise and split, yielding each part as soon as it is closed (so its job can upload
        while the next part is written). The parts' sizes and digests are recorded at the end."""
        assert self.plan is not None
        splitter = PartSplitter(self._folder, self.plan.header, self.settings.max_bytes_per_job)
        given = 0
        rows = 0
        for batch in self._batches():
            splitter.add(csv_text(self.plan, batch, self.settings.null_policy), rows)
            rows += batch.num_rows
            while given < len(splitter.parts):
                yield splitter.parts[given]
                given += 1
        splitter.finish()
        if rows != self.rows:
            raise ProgressConflictError(
                f"source {self.source} now holds {rows} rows where an earlier try checked {self.rows} and started "
                f"jobs {', '.join(job_ids(self.state))}; their rows may already be loaded. Check them in Salesforce, "
                "then clear the task's state to start afresh"
            )
        yield from splitter.parts[given:]
        self._save(split=[{k: v for k, v in asdict(p).items() if k != "path"} for p in splitter.parts])

    def _done(self, part: UploadPart) -> bool:
        return bool(self.state["parts"].get(str(part.index), {}).get("done"))

    def _run_parts(self) -> None:
        """Each part's job starts as soon as the part is written, at most ``max_concurrent_jobs`` at once (and one
        more part spooled ahead), so uploading overlaps serialising."""
        slots = threading.Semaphore(self.settings.max_concurrent_jobs + 1)
        futures: list[Future[None]] = []

        def run(part: UploadPart) -> None:
            try:
                self._finish_part(part, self._start(part))
            finally:
                slots.release()

        known = self._parts_cache
        reuse = known is not None and not self._needs_bytes(known)
        stream: Iterator[UploadPart] = iter(known) if reuse and known is not None else self._serialise()
        collected: list[UploadPart] = []
        with ThreadPoolExecutor(self.settings.max_concurrent_jobs, thread_name_prefix="sfint-ingest") as pool:
            for part in stream:
                collected.append(part)
                if self._done(part):
                    continue
                slots.acquire()
                if any(f.done() and f.exception() is not None for f in futures):
                    slots.release()
                    break  # a job failed: stop writing parts; the error is raised below
                futures.append(pool.submit(run, part))
            for future in futures:
                future.result()
        self._parts_cache = collected

    # --- jobs ---------------------------------------------------------------------------------------

    def _save(self, **values: Any) -> None:
        with self._lock:
            self.state.update(values)
            self.store.set(STATE_KEY, self.state)

    def expected_records(self, job_ids: list[str]) -> dict[str, int]:
        """The rows uploaded to each of ``job_ids`` (what their processed counts will reach)."""
        wanted = set(job_ids)
        return {
            str(entry["job"]): int(entry["rows"])
            for entry in self.state["parts"].values()
            if entry.get("job") in wanted and entry.get("rows") is not None
        }

    def _record(self, index: int, **values: Any) -> None:
        with self._lock:
            self.state["parts"].setdefault(str(index), {}).update(values)
            self.store.set(STATE_KEY, self.state)

    def _start(self, part: UploadPart) -> str:
        """Create (or find), upload and close the job for ``part``; returns its id. Never uploads twice."""
        entry = self.state["parts"].get(str(part.index), {})
        job_id = entry.get("job")
        if entry.get("digest") not in (None, part.digest):
            raise ProgressConflictError(
                f"the input changed since an earlier try started job {job_id} for part {part.index}; its rows may "
                "already be loaded. Check them in Salesforce, then clear the task's state to start afresh"
            )
        if job_id is None:
            job_id = self._create_job(part)
            entry = self.state["parts"][str(part.index)]
            state = "Open"
            created = True
        else:
            state = self.bulk.job_info("ingest", job_id).state
            created = False
        if self.on_job is not None:
            self.on_job(part.index, str(job_id), created)
        if state == "Open":
            if not entry.get("uploaded"):
                if not part.path:
                    raise ProgressConflictError(
                        f"part {part.index} needs its upload but was not written; retry the task"
                    )
                fresh = self.bulk.upload(job_id, part.path)
                if not fresh and entry.get("adopted"):
                    raise ProgressConflictError(
                        f"job {job_id}, adopted for part {part.index} as one an earlier try created, already held "
                        "data: it was another client's. Nothing of this part was sent; retry the task"
                    )
                if not fresh:
                    self.log.info("job %s already held this part's data (an earlier try uploaded it)", job_id)
                self._record(part.index, uploaded=True)
                crash_point("ingest.upload_recorded")
            self.bulk.mark_upload_complete(job_id)
            crash_point("ingest.job_closed")
            self._last_close = time.monotonic()
            self._record(part.index, closed=True)
        elif state in ("Failed", "Aborted"):
            raise BulkJobError(
                f"job {job_id} for part {part.index} is {state}; its rows were not loaded", job_id=job_id, state=state
            )
        return str(job_id)

    def _create_job(self, part: UploadPart) -> str:
        """Create the part's job, recording the intent first: a kill (or a lost answer) between the create and the
        record leaves a job that the next run finds and adopts, instead of an Open job nobody closes."""
        intent = datetime.now(UTC).isoformat()
        self._record(part.index, intent=intent, rows=part.rows, digest=part.digest)
        s = self.settings
        try:
            job = self.bulk.create_ingest_job(
                s.object, s.operation, external_id_field=s.key_field, assignment_rule_id=s.assignment_rule_id
            )
        except TransportError as exc:
            if not exc.sent:
                raise
            with self._adopt_lock:  # the request may have created the job before its answer was lost
                self._adopt()
            adopted = self.state["parts"][str(part.index)].get("job")
            if adopted is None:
                raise
            return str(adopted)
        crash_point("ingest.job_created")
        self._record(part.index, job=job.id)
        crash_point("ingest.job_recorded")
        return job.id

    def _adopt(self) -> None:
        """Jobs an earlier run created but never recorded (killed between the two, or the create's answer lost):
        Open jobs on this object with this operation that this user created since the earliest unrecorded intent.
        While there are no more of them than parts waiting for one, they are this run's, and interchangeable
        (Open, empty, same object, operation and key): each waiting part adopts one. More of them means another
        client made some too: none is touched, and they are reported."""
        waiting = sorted((int(i), e) for i, e in self.state["parts"].items() if e.get("intent") and not e.get("job"))
        if not waiting:
            return
        user = self.client.user_id()
        if user is None:
            self.log.warning("cannot look for jobs an earlier try created: the session has no user id")
            return
        s = self.settings
        since = min(datetime.fromisoformat(e["intent"]) for _, e in waiting) - CLOCK_MARGIN
        known = set(job_ids(self.state))
        found = [
            j
            for j in self.bulk.jobs_created_since("ingest", s.object, s.operation, since, user)
            if j.state == "Open" and j.id not in known and self._external_id_of(j) == s.key_field
        ]
        if len(found) > len(waiting):
            self.left_open = [j.id for j in found]
            self.log.warning(
                "%d Open %s %s job(s) were created since an earlier try lost track of %d: it cannot tell which are "
                "its own, so it leaves them as they are: %s",
                len(found),
                s.operation,
                s.object,
                len(waiting),
                ", ".join(self.left_open),
            )
            return
        for (index, _), job in zip(waiting, found, strict=False):
            self._record(index, job=job.id, adopted=True)
            self.adopted.append(job.id)
            self.log.info("part %d: adopting job %s, which an earlier try created but could not record", index, job.id)

    def _external_id_of(self, job: JobInfo) -> str | None:
        """The job's external id field (job lists may leave it out: then its full info is read)."""
        if self.settings.operation != "upsert":
            return None
        raw = job.raw if "externalIdFieldName" in job.raw else self.bulk.job_info("ingest", job.id).raw
        return raw.get("externalIdFieldName") or None

    def _finish_part(self, part: UploadPart, job_id: str | None = None) -> None:
        job_id = job_id or self.state["parts"][str(part.index)]["job"]
        info = self.bulk.wait(
            "ingest",
            job_id,
            poll_interval=self.settings.poll_interval,
            timeout=self.settings.timeout,
            total_records=part.rows,
        )
        self._record(part.index, done=True, processed=info.records_processed, failed=info.records_failed)
        crash_point("ingest.job_done")

    # --- results ------------------------------------------------------------------------------------

    def _failed_rows(self, job_id: str) -> pa.Table | None:
        target = f"{self._folder}/failed-{job_id}.csv"
        if self.bulk.download_results(job_id, "failedResults", target) == 0:
            return None
        table = read_text_csv(target)
        return table if table.num_rows else None

    def _follow_up(self, rows: pa.Table) -> tuple[pa.Table | None, list[str]]:
        """Run rows that failed for a transient reason once more, in follow-up jobs recorded like the others
        (parts -1, -2, ...), so a crash during the follow-up does not send them twice."""
        original = rows.drop_columns([c for c in rows.column_names if c.startswith("sf__")])
        order = self.settings.lock_order_column
        if order and order in original.column_names:
            original = original.sort_by(order)
        self.log.info("retrying %d rows that failed with lock or availability errors", original.num_rows)
        folder = os.path.join(self._folder, "retry")
        os.makedirs(folder, exist_ok=True)
        splitter = PartSplitter(folder, original.column_names, self.settings.max_bytes_per_job)
        splitter.add(original)
        jobs: list[str] = []
        failed: list[pa.Table] = []
        for written in splitter.finish():
            part = UploadPart(-1 - written.index, written.path, written.rows, written.bytes, written.digest)
            job_id = self._start(part)
            crash_point("ingest.follow_up_started")
            if not self._done(part):
                self._finish_part(part, job_id)
            crash_point("ingest.follow_up_done")
            jobs.append(job_id)
            table = self._failed_rows(job_id)
            if table is not None:
                failed.append(table)
        return (pa.concat_tables(failed) if failed else None), jobs

    def _write_failed(self, failed: pa.Table) -> str | None:
        """Failed rows with their errors, under the input's own column names (so a corrected file can be loaded
        again with the same ``column_mapping``)."""
        if self.failed_output is None:
            return None
        assert self.plan is not None
        back = dict(zip(self.plan.header, self.plan.source_names, strict=True))
        failed = failed.rename_columns([back.get(name, name) for name in failed.column_names])
        table = failed.add_column(2, "sf__ErrorCode", error_codes(failed))
        return write_failed_rows(table, self.failed_output)


def job_ids(state: dict[str, Any]) -> list[str]:
    """The jobs recorded in an ingest's progress, part by part."""
    return [p["job"] for p in state.get("parts", {}).values() if p.get("job")]


def error_codes(failed: pa.Table) -> Any:
    """The status code at the start of each ``sf__Error`` (``UNABLE_TO_LOCK_ROW:...``)."""
    return pc.struct_field(pc.extract_regex(failed.column("sf__Error"), r"^(?P<code>[A-Za-z_]+):"), "code")


def first_errors(failed: pa.Table | None) -> str:
    if failed is None:
        return "none"
    errors = [parse_row_error(e or "") for e in failed.column("sf__Error").to_pylist()[:3]]
    return "; ".join(f"{code}: {message} {fields or ''}".strip() for code, message, fields in errors)
