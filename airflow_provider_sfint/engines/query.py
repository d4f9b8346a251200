"""The Bulk API 2.0 query engine: one query (or one window of it) into committed files, exactly once, with no
Airflow in it.

A run: create the job (its intent recorded first), record its id, wait, download the result pages (in parallel,
each checked), write the parts, commit the output (``QueryOutput.commit``: the manifest is the switch), record
the summary. A job that times out on a window is split into halves, each a job of its own, recorded before it is
waited for, so a later run re-attaches to the halves instead of paying for them again.

Every record goes to a :class:`~.state.StateStore`, so a later run with the same store re-attaches to the job
made for the same spec (query, window, output, format), resumes a directory output after its last committed
part, aborts a job an earlier run created but could not record, and returns the recorded summary after a kill
that came after the commit. Named crash points (``query.*``, ``commit.*``) mark each transition.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from ..client.arrowio import CsvParser, QueryOutput, RecordConverter
from ..client.bulk2 import POLL_START, Bulk2, JobInfo
from ..client.crashpoints import crash_point
from ..client.errors import BulkJobError, InputError, ResultIntegrityError
from ..client.rest import SalesforceClient
from ..client.soql import query_shape
from .state import MemoryStateStore, StateStore

JOB_KEY = "sfint_bulk_query_job"
PROGRESS_KEY = "sfint_bulk_query_progress"
#: What the stored job was created for: a later run re-attaches only to a job created for the same.
SPEC_KEY = "sfint_bulk_query_spec"
#: The summary of a committed output, kept until the next run of the task.
COMPLETE_KEY = "sfint_bulk_query_complete"
#: Written just before a job is created (when and for what), so a later run can find a job whose id was never saved.
INTENT_KEY = "sfint_bulk_query_intent"
#: The jobs of a split window, by their bounds.
SPLIT_KEY = "sfint_bulk_query_splits"
KEYS = (JOB_KEY, PROGRESS_KEY, SPEC_KEY, COMPLETE_KEY, INTENT_KEY, SPLIT_KEY)
#: How far before a recorded intent a job may carry its creation time (the org's clock against ours).
CLOCK_MARGIN = timedelta(minutes=2)
PROGRESS_EVERY = 10.0


@dataclass(frozen=True)
class QuerySpec:
    """What a job is created for; a saved job is used again only for an equal spec."""

    soql: str
    include_deleted: bool
    output: str
    format: str
    directory: bool
    typed: bool


@dataclass(frozen=True)
class QuerySettings:
    page_size: int = 25_000
    parallel_pages: int = 4
    part_size: int | None = None
    max_split_depth: int = 4
    poll_interval: float = POLL_START
    timeout: float | None = None
    delete_job_on_success: bool = False


class QueryEngine:
    """One Bulk query into ``output``.

    :param client: a signed-in client
    :param spec: the query and where its rows go
    :param output: the output path (an ObjectStoragePath or UPath; a directory when ``spec.directory``)
    :param schema: the Arrow schema of the rows (typed from describe, or text)
    :param settings: pages, parts, splits and waiting
    :param store: where progress lives between runs (None: this process only)
    :param window_query: ``(start, end) -> SOQL`` for a split of the window; None when the query has no window
    :param window: the ``(start, end)`` the query covers, when it has one
    """

    def __init__(
        self,
        client: SalesforceClient,
        spec: QuerySpec,
        output: Any,
        schema: pa.Schema,
        settings: QuerySettings,
        store: StateStore | None = None,
        *,
        window_query: Callable[[datetime, datetime], str] | None = None,
        window: tuple[datetime, datetime] | None = None,
        log: Any = None,
    ) -> None:
        self.client = client
        self.bulk = Bulk2(client)
        self.spec = spec
        self.output_path = output
        self.schema = schema
        self.settings = settings
        self.store: StateStore = store if store is not None else MemoryStateStore()
        self.window_query = window_query
        self.window = window
        self.log = log or logging.getLogger(__name__)
        self.aborted: list[str] = []
        self.running_job: str | None = None

    @property
    def _spec(self) -> dict[str, Any]:
        return asdict(self.spec)

    @property
    def can_split(self) -> bool:
        return self.window_query is not None and self.window is not None and self.settings.max_split_depth > 0

    # --- before a job -------------------------------------------------------------------------------

    def completed(self) -> dict[str, Any] | None:
        """The summary an earlier run recorded after committing this spec's output, or None."""
        done = self.store.get(COMPLETE_KEY)
        if isinstance(done, dict) and done.get("spec") == self._spec:
            self.log.info(
                "an earlier try of this run committed the output of job %s (its success was not recorded): "
                "returning its summary, nothing is queried or written again",
                done["summary"].get("job_id"),
            )
            return dict(done["summary"])
        return None

    def saved_job(self) -> str | None:
        """The job an earlier run created for this spec, when it is worth re-attaching to (running, complete, or
        timed out on a window that can be split); anything else is forgotten. A job created without being
        recorded is found through the recorded intent and aborted (see :meth:`_unrecorded_job`)."""
        if self.store.get(JOB_KEY) and self.store.get(SPEC_KEY) != self._spec:
            self.log.info("the saved job was created for another query, window or output: creating a new one")
            for key in KEYS:
                self.store.delete(key)
        self._unrecorded_job()
        saved = self.store.get(JOB_KEY)
        if not saved:
            return None
        info = self.bulk.job_info("query", str(saved)) if saved else None
        if info is not None and (info.active or info.succeeded or (self.can_split and info.error().is_timeout)):
            self.log.info("re-attaching to job %s (%s), which an earlier try created", saved, info.state)
            return str(saved)
        self.log.info("job %s of an earlier try is %s: creating a new one", saved, info.state if info else "gone")
        for key in (JOB_KEY, PROGRESS_KEY, SPLIT_KEY):
            self.store.delete(key)
        return None

    def _unrecorded_job(self) -> None:
        """An earlier run that recorded its intent but not the job it then created (killed in between, or the
        create's answer lost) left that job running. Bulk jobs do not carry their SOQL, so it cannot be shown to
        be this query's and is not adopted: when exactly one job of this user on this object and operation was
        created since the intent and is still running, it is aborted (it would otherwise be paid for twice over
        its run); anything less certain is left alone and logged."""
        intent = self.store.get(INTENT_KEY)
        if not isinstance(intent, dict):
            return
        self.store.delete(INTENT_KEY)
        if self.store.get(JOB_KEY):  # the job was recorded after all
            return
        user = self.client.user_id()
        if intent.get("spec") != self._spec or user is None:
            return
        since = datetime.fromisoformat(str(intent["at"])) - CLOCK_MARGIN
        operation = "queryAll" if self.spec.include_deleted else "query"
        found = self.bulk.jobs_created_since("query", query_shape(self.spec.soql)[1], operation, since, user)
        active = [j for j in found if j.active]
        if len(found) == 1 and active:
            self.log.warning(
                "job %s was created by an earlier try that could not record it; it cannot be shown to be this "
                "query's, so it is aborted and a new one created",
                active[0].id,
            )
            self.bulk.abort("query", active[0].id)
            self.aborted.append(active[0].id)
        elif found:
            self.log.warning(
                "an earlier try may have created one of these jobs without recording it; they are left as they are: %s",
                ", ".join(f"{j.id} ({j.state})" for j in found),
            )

    def submit(self) -> str:
        """Create the job (the intent recorded first) and record its id and spec."""
        self.store.set(INTENT_KEY, {"at": datetime.now(UTC).isoformat(), "spec": self._spec})
        job = self.bulk.create_query_job(self.spec.soql, include_deleted=self.spec.include_deleted)
        crash_point("query.job_created")
        self.store.set(SPEC_KEY, self._spec)
        self.store.set(JOB_KEY, job.id)
        self.running_job = job.id
        return job.id

    def recorded(self, job_id: str) -> None:
        """The job's id is recorded: the intent is no longer needed."""
        crash_point("query.job_recorded")
        if self.store.get(INTENT_KEY) is not None:
            self.store.delete(INTENT_KEY)
        self.running_job = job_id

    def wait(self, job_id: str, on_poll: Callable[[JobInfo], None] | None = None) -> None:
        """Block until the job ends; a timed-out query on a window that can be split is left to :meth:`collect`."""
        try:
            self._wait_job(job_id, on_poll)
        except BulkJobError as exc:
            if not (exc.is_timeout and self.can_split):
                raise

    def _wait_job(self, job_id: str, on_poll: Callable[[JobInfo], None] | None) -> JobInfo:
        return self.bulk.wait(
            "query", job_id, poll_interval=self.settings.poll_interval, timeout=self.settings.timeout, on_poll=on_poll
        )

    # --- a small query through the REST API ----------------------------------------------------------------

    def read_rest(self, threshold: int | None, first: tuple[Any, Any] | None = None) -> dict[str, Any] | None:
        """Run the query through the REST query API into the output, when it returns at most ``threshold``
        records (None: whatever it returns); else leave the cursor (Salesforce closes it) and return None, for a
        Bulk job to do it. The output and summary are those of the Bulk path (``api: rest``, no job).

        ``first``: ``(pages, first page)`` of this query, already asked for (the rest come from ``pages``)."""
        began = time.monotonic()
        calls_before = self.client.api_calls - (1 if first is not None else 0)
        if first is None:
            pages = self.client.query_pages(
                self.spec.soql, include_deleted=self.spec.include_deleted, exact_numbers=True
            )
            first_page = next(pages)
        else:
            pages, first_page = first
        return self._read_rest_pages(threshold, pages, first_page, began, calls_before)

    def _read_rest_pages(
        self, threshold: int | None, pages: Any, first: Any, began: float, calls_before: int
    ) -> dict[str, Any] | None:
        if threshold is not None and first.total_size > threshold:
            pages.close()
            self.log.info(
                "the query returns %d records, more than rest_threshold=%d: running it as a Bulk job",
                first.total_size,
                threshold,
            )
            return None
        converter = RecordConverter(self.schema)
        output = QueryOutput(
            self.output_path,
            self.spec.format,
            self.schema,
            directory=self.spec.directory,
            token=f"rest-{uuid.uuid4().hex[:16]}",
            part_rows=self.settings.part_size or (1_000_000 if self.spec.directory else None),
        )
        rows = 0
        try:
            for index, page in enumerate(itertools.chain([first], pages)):
                table = converter.table(page.records)
                rows += table.num_rows
                output.write(table, index)
            if rows != first.total_size:
                raise ResultIntegrityError(
                    f"the REST query said totalSize={first.total_size} but its pages held {rows} records"
                )
            crash_point("query.downloaded")
            files = output.commit()
            crash_point("query.output_committed")
        except BaseException:
            output.discard()
            raise
        self.running_job = None
        return {
            "api": "rest",
            "job_id": None,
            "job_ids": [],
            "records": output.rows_written,
            "bytes": sum(p.bytes for p in output.parts),
            "files": files,
            "format": self.spec.format,
            "schema": [{"name": f.name, "type": str(f.type)} for f in self.schema],
            "splits": 0,
            "aborted_jobs": self.aborted,
            "api_calls": self.client.api_calls - calls_before,
            "retries": len(self.client.retries),
            "download_seconds": round(time.monotonic() - began, 3),
        }

    # --- results ------------------------------------------------------------------------------------

    def collect(self, job_id: str, on_poll: Callable[[JobInfo], None] | None = None) -> dict[str, Any]:
        """Download the job's results (or, after a timeout, its window in halves), commit the output and record
        the summary (a later run returns it)."""
        collecting = time.monotonic()
        calls_before = self.client.api_calls
        saved = self.store.get(PROGRESS_KEY)
        progress = saved if isinstance(saved, dict) and saved.get("job_id") == job_id and self.spec.directory else {}
        output = QueryOutput(
            self.output_path,
            self.spec.format,
            self.schema,
            directory=self.spec.directory,
            token=job_id,
            part_rows=self.settings.part_size or (1_000_000 if self.spec.directory else None),
            parts=progress.get("parts"),
        )
        if output.parts:
            self.log.info("resuming job %s after %d committed part(s)", job_id, len(output.parts))
        parser = CsvParser(self.schema)
        job = self.bulk.job_info("query", job_id)
        jobs = [job_id]
        splits = 0
        try:
            if job.succeeded:
                self._download(job, output, parser, progress.get("next_locator"), record=True)
            elif job.error().is_timeout and self.can_split:
                assert self.window is not None
                start, end = self.window
                self.log.warning("job %s timed out on [%s, %s); splitting the window", job_id, start, end)
                more_jobs, splits = self._split(start, end, output, parser, 1, on_poll)
                jobs += more_jobs
            else:
                raise job.error()
            crash_point("query.downloaded")
            files = output.commit()
            crash_point("query.output_committed")
        except BaseException:
            if not self.spec.directory:
                output.discard()  # a single file cannot be resumed: leave nothing behind
            raise
        if self.settings.delete_job_on_success:
            for j in jobs:
                self.bulk.delete("query", j)
        summary = {
            "api": "bulk",
            "job_id": job_id,
            "job_ids": jobs,
            "records": output.rows_written,
            "bytes": sum(p.bytes for p in output.parts),
            "files": files,
            "format": self.spec.format,
            "schema": [{"name": f.name, "type": str(f.type)} for f in self.schema],
            "splits": splits,
            "aborted_jobs": self.aborted,  # created by an earlier try that could not record them
            "api_calls": self.client.api_calls - calls_before,
            "retries": len(self.client.retries),  # requests retried by this run (503, 429, cut connections...)
            "download_seconds": round(time.monotonic() - collecting, 3),
        }
        self.running_job = None
        return summary

    def record_complete(self, summary: dict[str, Any]) -> None:
        """Keep the summary until the next run of the task: a later try after this point returns it."""
        self.store.set(COMPLETE_KEY, {"spec": self._spec, "summary": summary})
        self.store.delete(PROGRESS_KEY)
        crash_point("query.summary_recorded")

    def _download(self, job: JobInfo, output: QueryOutput, parser: CsvParser, locator: str | None, record: bool) -> int:
        start_page = output.pages_committed if record else 0
        rows = sum(p.rows for p in output.parts)
        written_bytes = 0
        began = last_log = time.monotonic()
        pages = self.bulk.download(
            job,
            parser.parse_chunks,
            page_size=self.settings.page_size,
            parallel=self.settings.parallel_pages,
            start_page=start_page,
            locator=locator if start_page else None,
        )
        for page, table in pages:
            closed = output.write(table, page.index)
            rows += page.records
            written_bytes += page.csv_bytes
            if closed is not None and record:
                state = {
                    "job_id": job.id,
                    "parts": [p.as_dict() for p in output.parts],
                    "next_locator": page.next_locator,
                }
                self.store.set(PROGRESS_KEY, state)
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
        self,
        start: datetime,
        end: datetime,
        output: QueryOutput,
        parser: CsvParser,
        depth: int,
        on_poll: Callable[[JobInfo], None] | None,
    ) -> tuple[list[str], int]:
        """Query [start, mid) and [mid, end) as separate jobs into the same output, halving again on timeout. Each
        half's job is recorded by its bounds before it is waited for: a later run re-attaches to it."""
        assert self.window_query is not None
        if depth > self.settings.max_split_depth or (end - start) < timedelta(seconds=2):
            raise InputError(
                f"the query still times out on the window [{start}, {end}) after {depth - 1} split(s); "
                "make it more selective or raise max_split_depth"
            )
        mid = (start + (end - start) / 2).replace(microsecond=0)
        jobs: list[str] = []
        splits = 1
        for lo, hi in ((start, mid), (mid, end)):
            job_id = self._split_job(lo, hi)
            jobs.append(job_id)
            self.running_job = job_id
            self.log.info("window [%s, %s) is job %s (split depth %d)", lo, hi, job_id, depth)
            try:
                done = self._wait_job(job_id, on_poll)
            except BulkJobError as exc:
                if not exc.is_timeout:
                    raise
                more, deeper = self._split(lo, hi, output, parser, depth + 1, on_poll)
                splits += deeper
                jobs += more
                continue
            self._download(done, output, parser, None, record=False)
            crash_point("query.split_downloaded")
        return jobs, splits

    def split_jobs_running(self, job_id: str) -> list[str]:
        """For a caller that waits elsewhere (a deferred task): when ``job_id`` timed out on a window that can be
        split, create (and record) the jobs of its halves, halving again where a half timed out, and return
        those still running; empty once every piece has ended (then :meth:`collect` downloads them in order)."""
        info = self.bulk.job_info("query", job_id)
        if info.succeeded or info.active or not (self.can_split and info.error().is_timeout):
            return []
        assert self.window is not None
        running: list[str] = []

        def walk(start: datetime, end: datetime, depth: int) -> None:
            if depth > self.settings.max_split_depth or (end - start) < timedelta(seconds=2):
                raise InputError(
                    f"the query still times out on the window [{start}, {end}) after {depth - 1} split(s); "
                    "make it more selective or raise max_split_depth"
                )
            mid = (start + (end - start) / 2).replace(microsecond=0)
            for lo, hi in ((start, mid), (mid, end)):
                half = self.bulk.job_info("query", self._split_job(lo, hi))
                if half.active:
                    running.append(half.id)
                elif not half.succeeded:
                    if not half.error().is_timeout:
                        raise half.error()
                    walk(lo, hi, depth + 1)

        walk(*self.window, 1)
        return running

    def _split_job(self, lo: datetime, hi: datetime) -> str:
        """The job of ``[lo, hi)``: the one an earlier run recorded (still running or complete, or timed out: then
        it is split again), else a new one, recorded before anything waits for it."""
        assert self.window_query is not None
        bounds = f"{lo.isoformat()}/{hi.isoformat()}"
        saved = self.store.get(SPLIT_KEY)
        splits = dict(saved) if isinstance(saved, dict) else {}
        if bounds in splits:
            info = self.bulk.job_info("query", splits[bounds])
            if info.active or info.succeeded or info.error().is_timeout:
                return str(splits[bounds])
        job = self.bulk.create_query_job(self.window_query(lo, hi), include_deleted=self.spec.include_deleted)
        splits[bounds] = job.id
        self.store.set(SPLIT_KEY, splits)
        crash_point("query.split_job_recorded")
        return job.id
