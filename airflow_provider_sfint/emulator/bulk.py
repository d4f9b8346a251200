"""Bulk API 2.0 (spec sections 4 and 5): ingest and query jobs.

Jobs live in memory; their data lives in files under the emulator's data directory. Uploads are
streamed to disk, ingest CSV is parsed row by row through the same :class:`~.dml.Writer` as REST (so
row errors have REST's codes), and query results are written once, when the job completes, then served
by byte range from an index of row offsets -- the emulator's memory does not grow with job size.
"""

from __future__ import annotations

import base64
import itertools
import os
import shutil
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .bulk_ingest import IngestRun
from .bulk_jobs import (
    DELIMITERS,
    INTERNAL_BATCH,
    LINE_ENDINGS,
    LIST_PAGE,
    MULTIPLE_CONTENTS,
    OPERATIONS,
    TERMINAL,
    BulkSettings,
    Job,
    JobFailure,
    read_header_line,
)
from .errors import ApiError, not_found
from .ids import make_id, to18
from .profile import OrgPace, sleep_until
from .render import csv_renderer
from .routing import Req, Resp, Router
from .soql import CompiledQuery

if TYPE_CHECKING:
    from .app import Emulator


def encode_locator(offset: int) -> str:
    """An opaque, base64-looking locator (Salesforce's look like ``MTAwMDA``)."""
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def decode_locator(locator: str) -> int | None:
    try:
        text = base64.b64decode(locator + "=" * (-len(locator) % 4), validate=True).decode()
        return int(text) if text.isdigit() else None
    except ValueError:
        return None


class Bulk:
    """All Bulk API 2.0 jobs of one emulated org."""

    def __init__(self, em: Emulator) -> None:
        self.em = em
        self.settings = BulkSettings()
        self.jobs: dict[str, Job] = {}
        self.counter = 0
        self.lock = threading.Lock()
        self.root = Path(em.data_dir) / "bulk"
        self.org_pace = OrgPace()
        self.parent_locks: dict[str, str] = {}  # parent record id -> the job whose batch holds its lock
        self.lock_changed = threading.Condition()

    def reset(self) -> None:
        for job in self.jobs.values():
            job.aborted.set()
        self.jobs.clear()
        shutil.rmtree(self.root, ignore_errors=True)
        self.settings = BulkSettings()
        self.org_pace.reset()
        with self.lock_changed:
            self.parent_locks.clear()
            self.lock_changed.notify_all()

    def folder(self, job: Job) -> Path:
        path = self.root / job.id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def new_id(self) -> str:
        with self.lock:
            self.counter += 1
            return make_id("750", self.counter)

    def job(self, req: Req, kind: str) -> Job:
        job = self.jobs.get(to18(req.params["job"]) or req.params["job"])
        if job is None or job.kind != kind:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    # --- ingest -------------------------------------------------------------------------------

    def create_ingest(self, req: Req) -> Resp:
        body = req.json_object()
        obj = self.em.org.get(str(body.get("object", "")))
        operation = str(body.get("operation", ""))
        if obj is None:
            raise ApiError(
                400,
                "INVALIDJOB",
                f"InvalidJob : Invalid sObject type: {body.get('object')}"
                if body.get("object")
                else "InvalidJob : object is required",
            )
        if operation not in OPERATIONS:
            raise ApiError(
                400,
                "INVALIDJOB",
                f"InvalidJob : Invalid operation: {operation!r}; expected one of {', '.join(OPERATIONS)}",
            )
        if obj.is_event and operation != "insert":
            raise ApiError(
                400,
                "INVALIDJOB",
                f"InvalidJob : Platform event {obj.name} can only be published (operation insert), not {operation}",
            )
        external = body.get("externalIdFieldName")
        if operation == "upsert":
            ext = obj.field(str(external or ""))
            if not external:
                raise ApiError(400, "INVALIDJOB", "InvalidJob : External ID was blank for upsert")
            if ext is None or not (ext.external_id or ext.id_lookup):
                raise ApiError(
                    400,
                    "INVALIDJOB",
                    f"InvalidJob : Field {external} is not an external id or id lookup field on {obj.name}",
                )
            external = ext.name
        content_type = body.get("contentType", "CSV")
        if content_type != "CSV":
            raise ApiError(400, "INVALIDJOB", f"InvalidJob : Invalid contentType: {content_type}; only CSV")
        delimiter, line_ending = self._format(body)
        job = Job(
            self.new_id(),
            "ingest",
            operation,
            obj.name,
            req.user_id,
            self.em.clock.time(),
            req.version,
            delimiter,
            line_ending,
            external if operation == "upsert" else None,
            body.get("assignmentRuleId"),
        )
        job.modified = job.created
        self.jobs[job.id] = job
        return Resp.json(200, job.info(full=False))

    def _format(self, body: dict[str, Any]) -> tuple[str, str]:
        delimiter = str(body.get("columnDelimiter", "COMMA"))
        if delimiter not in DELIMITERS:
            raise ApiError(
                400,
                "INVALIDJOB",
                f"InvalidJob : Invalid columnDelimiter: {delimiter}; expected one of {', '.join(DELIMITERS)}",
            )
        line_ending = str(body.get("lineEnding", "LF"))
        if line_ending not in LINE_ENDINGS:
            raise ApiError(400, "INVALIDJOB", f"InvalidJob : Invalid lineEnding: {line_ending}; expected LF or CRLF")
        return delimiter, line_ending

    def upload(self, req: Req) -> Resp:
        job = self.job(req, "ingest")
        if job.uploaded:
            raise ApiError(400, "INVALIDJOB", MULTIPLE_CONTENTS.format(id=job.id))
        if job.state != "Open":
            raise ApiError(400, "INVALIDJOBSTATE", f"Unable to upload data: job {job.id} is {job.state}, not Open")
        target = self.folder(job) / "upload.csv"
        if req.upload is not None:
            size = req.upload.stat().st_size
            if size * 4 / 3 > self.settings.max_upload_bytes:
                req.upload.unlink(missing_ok=True)
                raise ApiError(
                    413,
                    "EXCEEDED_MAX_SIZE_REQUEST",
                    f"The upload is {size} bytes; jobs accept at most "
                    f"{self.settings.max_upload_bytes} bytes counted after base64 encoding",
                )
            os.replace(req.upload, target)
        else:
            if len(req.body) * 4 / 3 > self.settings.max_upload_bytes:
                raise ApiError(413, "EXCEEDED_MAX_SIZE_REQUEST", "upload too large")
            target.write_bytes(req.body)
        job.uploaded = True
        job.modified = self.em.clock.time()
        return Resp(201, None)

    def patch_state(self, req: Req, kind: str) -> Resp:
        job = self.job(req, kind)
        state = req.json_object().get("state")
        if state == "Aborted":
            if job.state in TERMINAL:
                raise ApiError(400, "INVALIDJOBSTATE", f"Job {job.id} is {job.state}; it can no longer be aborted")
            job.aborted.set()
            job.state = "Aborted"
        elif state == "UploadComplete" and kind == "ingest":
            if job.state != "Open":
                raise ApiError(
                    400,
                    "INVALIDJOBSTATE",
                    f"Job {job.id} is {job.state}; only an Open job can be closed with UploadComplete",
                )
            job.state = "UploadComplete"
        else:
            raise ApiError(400, "INVALIDJOBSTATE", f"Invalid state transition for job {job.id}: {job.state} -> {state}")
        job.modified = self.em.clock.time()
        # the answer is the state this call set (UploadComplete), taken before processing can move it on
        info = job.info(full=False)
        for key in ("contentUrl", "lineEnding", "columnDelimiter"):  # as the recorded UploadComplete answer
            info.pop(key, None)
        if state == "UploadComplete":
            threading.Thread(target=self._run_ingest, args=(job,), name=f"ingest-{job.id}", daemon=True).start()
        return Resp.json(200, info)

    def _run_job(
        self, job: Job, delay: float, work: Callable[[], None], begin: Callable[[], None] | None = None
    ) -> None:
        """The lifecycle both job kinds share: wait, ``begin``, InProgress, work, then JobComplete or Failed."""
        started = time.monotonic()
        try:
            if delay and not sleep_until(started + delay, job.aborted.is_set):
                return
            if job.aborted.is_set():
                return
            if begin is not None:
                begin()
            job.state = "InProgress"
            job.modified = self.em.clock.time()
            job.running_since = time.monotonic()
            job.running_at = time.time()
            work()
            if not job.aborted.is_set() and job.state == "InProgress":
                job.ended_at = time.time()  # before the state: a look that sees the end finds it set
                job.state = "JobComplete"
        except JobFailure as exc:
            job.ended_at = time.time()
            job.error_message = str(exc)
            job.state = "Failed"
        except Exception as exc:  # a bug of ours: the job fails visibly instead of hanging InProgress
            job.ended_at = time.time()
            job.error_message = f"InternalServerError : {type(exc).__name__}: {exc}"
            job.state = "Failed"
        finally:
            job.total_processing_ms = int((time.monotonic() - started) * 1000)
            job.modified = self.em.clock.time()
            job.ended_at = job.ended_at or time.time()

    def _run_ingest(self, job: Job) -> None:
        self._run_job(job, self.em.timing.ingest_startup_s, IngestRun(self, job).run)

    def lock_parents(self, job: Job, parents: set[str]) -> set[str]:
        """Take the locks of ``parents`` for a batch of ``job``, waiting up to ``lock_wait_s`` for those another
        job's batch holds; returns the parents still locked by others (their rows fail UNABLE_TO_LOCK_ROW)."""
        if not parents:
            return set()
        deadline = time.monotonic() + max(0.0, float(self.settings.lock_wait_s))
        with self.lock_changed:
            while True:
                busy = {p for p in parents if self.parent_locks.get(p, job.id) != job.id}
                left = deadline - time.monotonic()
                if not busy or left <= 0 or job.aborted.is_set():
                    break
                self.lock_changed.wait(min(left, 0.5))
            for parent in parents - busy:
                self.parent_locks[parent] = job.id
        return busy

    def unlock_parents(self, job: Job) -> None:
        with self.lock_changed:
            for parent in [p for p, holder in self.parent_locks.items() if holder == job.id]:
                del self.parent_locks[parent]
            self.lock_changed.notify_all()

    def pace_ingest(self, job: Job, records: int) -> None:
        """Hold a processed batch back until the org's timing says it is done: the job's own rate and the share
        of the org's capacity it booked (concurrent jobs share ``ingest_org_rows_per_s``)."""
        timing = self.em.timing
        now = time.monotonic()
        due = now
        if timing.ingest_rows_per_s:
            due = job.running_since + (job.processed + records) / timing.ingest_rows_per_s
        due = max(due, self.org_pace.book(records, timing.ingest_org_rows_per_s, now))
        sleep_until(due, job.aborted.is_set)

    def results(self, req: Req, which: str) -> Resp:
        job = self.job(req, "ingest")
        if which == "unprocessedrecords" and job.state not in ("Failed", "Aborted"):
            path = None
        elif job.state not in TERMINAL:
            raise ApiError(
                400,
                "INVALIDJOBSTATE",
                f"Job {job.id} is {job.state}; results are available once it is JobComplete, Failed or Aborted",
            )
        else:
            path = self.root / job.id / f"{which}.csv"
        if path is None or not path.exists():
            header = _results_header(job, which, self.root / job.id / "upload.csv")
            return Resp(200, header, content_type="text/csv")
        return Resp(200, None, content_type="text/csv", file_parts=[(str(path), 0, path.stat().st_size)])

    def delete(self, req: Req, kind: str) -> Resp:
        job = self.job(req, kind)
        if job.state not in (*TERMINAL, "UploadComplete"):
            raise ApiError(
                400,
                "INVALIDJOBSTATE",
                f"Job {job.id} is {job.state}; only an UploadComplete, completed, failed or aborted job can be deleted",
            )
        job.aborted.set()  # an UploadComplete job not yet processing never starts
        del self.jobs[job.id]
        shutil.rmtree(self.root / job.id, ignore_errors=True)
        return Resp(204)

    def list_jobs(self, req: Req, kind: str) -> Resp:
        job_type = req.arg("jobType")
        jobs = [
            j
            for j in self.jobs.values()
            if (kind == "ingest" and j.kind == "ingest") or (kind == "query" and j.kind == "query")
        ]
        if job_type:
            expected = {"V2Ingest": "ingest", "V2Query": "query"}.get(job_type)
            jobs = [j for j in jobs if j.kind == expected] if expected else []
        start = decode_locator(req.arg("queryLocator") or "") or 0
        page = jobs[start : start + LIST_PAGE]
        done = start + LIST_PAGE >= len(jobs)
        body: dict[str, Any] = {"done": done, "records": [j.info() for j in page]}
        if not done:
            body["nextRecordsUrl"] = (
                f"/services/data/v{req.version}/jobs/{kind}?queryLocator={encode_locator(start + LIST_PAGE)}"
            )
        else:
            body["nextRecordsUrl"] = None
        return Resp.json(200, body)

    def info(self, req: Req, kind: str) -> Resp:
        job = self.job(req, kind)
        body = job.info()
        if job.ended_at and not job.noticed_at and body["state"] in TERMINAL:
            job.noticed_at = time.time()  # the first look that saw the end (the admin API's notice delay)
        return Resp.json(200, body)

    def timings(self) -> list[dict[str, Any]]:
        """Per job: when it was created, ran, ended and was first seen ended (Unix seconds; admin API)."""
        return [
            {
                "id": job.id,
                "kind": job.kind,
                "object": job.object,
                "state": job.state,
                "records": job.processed,
                "created": job.created_at,
                "running": job.running_at or None,
                "ended": job.ended_at or None,
                "noticed": job.noticed_at or None,
                "notice_delay_s": round(job.noticed_at - job.ended_at, 3) if job.noticed_at else None,
            }
            for job in list(self.jobs.values())
        ]

    # --- query ----------------------------------------------------------------------------------

    def create_query(self, req: Req) -> Resp:
        body = req.json_object()
        operation = body.get("operation", "query")
        if operation not in ("query", "queryAll"):
            raise ApiError(
                400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation!r}; expected query or queryAll"
            )
        soql = body.get("query")
        if not soql:
            raise ApiError(400, "INVALIDJOB", "InvalidJob : query is required")
        delimiter, line_ending = self._format(body)
        cq = self.em.queries.compile(str(soql), operation == "queryAll")
        unsupported = bulk_unsupported(cq)
        if unsupported:
            raise ApiError(
                400, "API_ERROR", f"FeatureNotEnabled : {unsupported} is not supported by Bulk API 2.0 query"
            )
        job = Job(
            self.new_id(),
            "query",
            operation,
            cq.obj.name,
            req.user_id,
            self.em.clock.time(),
            req.version,
            delimiter,
            line_ending,
            query=str(soql),
            state="UploadComplete",
        )
        job.modified = job.created
        self.jobs[job.id] = job
        self.em.limits.bulk_query_jobs_used += 1
        created = job.info(full=False)  # before the worker can move the job on
        threading.Thread(target=self._run_query, args=(job, cq), name=f"query-{job.id}", daemon=True).start()
        return Resp.json(200, created)

    def _run_query(self, job: Job, cq: CompiledQuery) -> None:
        snapshot: list[Iterator[list[tuple[Any, ...]]]] = []

        def begin() -> None:  # the rows are those committed when the job goes InProgress
            rows = self._query_rows(cq)
            snapshot.append(itertools.chain([next(rows, [])], rows))

        def work() -> None:
            self._write_query_result(job, cq, snapshot[0])
            limit = self.settings.query_timeout_rows
            if limit is not None and job.rows > limit and not job.aborted.is_set():
                raise JobFailure(
                    "QUERY_TIMEOUT : Your query request was running for too long. Query more "
                    "selectively or split it into smaller time windows."
                )
            rate = self.em.timing.query_rows_per_s
            if rate:  # the result is the snapshot taken when the job started; it takes rows / rate to "run"
                sleep_until(job.running_since + job.rows / rate, job.aborted.is_set)
            job.processed = job.rows

        try:
            self._run_job(job, self.em.timing.query_startup_s, work, begin)
        finally:
            for rows in snapshot:
                for _ in rows:  # an aborted job's reader is closed too
                    pass

    def _write_query_result(self, job: Job, cq: CompiledQuery, batches: Iterator[list[tuple[Any, ...]]]) -> None:
        """Write every result row once, quoting every value, and index each record's byte offset."""
        delimiter = DELIMITERS[job.delimiter]
        newline = LINE_ENDINGS[job.line_ending]

        def line(values: list[str]) -> bytes:
            return (delimiter.join('"' + v.replace('"', '""') + '"' for v in values) + newline).encode("utf-8")

        job.header = line([name for name, _ in cq.columns])
        fields = [f for _, f in cq.columns]
        pairs = [(csv_renderer(f), i) for f, i in zip(fields, cq.column_index, strict=True)]
        offsets = array("q")
        position = 0
        with open(self.folder(job) / "result.csv", "wb") as out:
            for rows in batches:
                if job.aborted.is_set():
                    return
                parts = []
                for row in rows:
                    data = line([render(row[i]) for render, i in pairs])
                    offsets.append(position)
                    position += len(data)
                    parts.append(data)
                out.write(b"".join(parts))
        job.offsets = offsets
        job.rows = len(offsets)
        self.em.limits.bulk_query_storage_mb_used += -(-position // 1_000_000)

    def _query_rows(self, cq: CompiledQuery) -> Iterator[list[tuple[Any, ...]]]:
        """The rows as of the moment the job starts: a read transaction on a connection of its own sees the
        records committed then, and nothing written while the job runs (the writers go on meanwhile)."""
        conn = self.em.store.reader()
        try:
            conn.execute("BEGIN")
            cur = conn.execute(cq.sql(paged=True), cq.all_params())
            while rows := cur.fetchmany(INTERNAL_BATCH):
                yield rows
        finally:
            conn.close()

    def query_results(self, req: Req) -> Resp:
        job = self.job(req, "query")
        if job.api_version != req.version:
            raise ApiError(
                409,
                "API_VERSION_MISMATCH",
                f"Job {job.id} was created with API version {job.api_version}; fetch its results with the same version",
            )
        if job.state != "JobComplete":
            raise ApiError(
                412,
                "JOB_NOT_COMPLETE",
                f"can only download query results of successfully completed bulk job; job {job.id} is {job.state}",
            )
        locator = req.arg("locator")
        start = 0
        if locator:
            decoded = decode_locator(locator)
            if decoded is None or decoded > job.rows:
                raise ApiError(400, "INVALID_LOCATOR", f"Invalid locator: {locator}")
            start = decoded
        max_records = req.arg("maxRecords")
        size = self.settings.default_max_records
        if max_records:
            if not max_records.isdigit() or int(max_records) < 1:
                raise ApiError(400, "INVALIDJOB", f"maxRecords must be a positive integer, got {max_records}")
            size = int(max_records)
        end = min(job.rows, start + size)
        path = self.root / job.id / "result.csv"
        size_on_disk = path.stat().st_size
        first = job.offsets[start] if start < job.rows else size_on_disk
        last = job.offsets[end] if end < job.rows else size_on_disk
        headers = {
            "Sforce-NumberOfRecords": str(end - start),
            "Sforce-Locator": encode_locator(end) if end < job.rows else "null",
        }
        faults = self.em.faults.result_faults(req.method, "/" + req.path)
        if "result_no_locator" in faults:
            del headers["Sforce-Locator"]
        if "result_repeat_locator" in faults and end < job.rows:
            headers["Sforce-Locator"] = encode_locator(start)  # points back at this very page
        if "result_short_page" in faults and end - start > 1:
            last = job.offsets[end - 1]  # the page ends one record early, with a well-formed body
        return Resp(
            200,
            None,
            content_type="text/csv",
            headers=headers,
            file_parts=[job.header, (str(path), first, last)],
        )

    def result_pages(self, req: Req) -> Resp:
        if req.version_float < 58:
            raise not_found()
        job = self.job(req, "query")
        if job.api_version != req.version:
            raise ApiError(409, "API_VERSION_MISMATCH", f"Job {job.id} was created with API version {job.api_version}")
        if job.state != "JobComplete":
            raise ApiError(412, "JOB_NOT_COMPLETE", f"Job {job.id} is {job.state}")
        if "result_pages_no_list" in self.em.faults.result_faults(req.method, "/" + req.path):
            return Resp.json(200, {"done": True})  # a proxy or an org answering without the list of pages
        size = int(req.arg("maxRecords") or self.settings.default_max_records)
        start = decode_locator(req.arg("locator") or "") or 0
        base = f"/services/data/v{req.version}/jobs/query/{job.id}"
        pages: list[dict[str, str]] = []
        offset = start
        while offset < job.rows and len(pages) < 5:
            locator = f"locator={encode_locator(offset)}&" if offset else ""
            pages.append({"resultUrl": f"{base}/results?{locator}maxRecords={size}"})
            offset += size
        if job.rows == 0 and start == 0:
            pages.append({"resultUrl": f"{base}/results?maxRecords={size}"})
        done = offset >= job.rows
        body: dict[str, Any] = {"resultPages": pages, "done": done}
        body["nextRecordsUrl"] = (
            None if done else f"{base}/resultPages?locator={encode_locator(offset)}&maxRecords={size}"
        )
        return Resp.json(200, body)


def _results_header(job: Job, which: str, upload: Path) -> str:
    original = read_header_line(upload) if upload.exists() else ""
    newline = LINE_ENDINGS[job.line_ending]
    d = DELIMITERS[job.delimiter]
    if which == "successfulResults":
        return f'"sf__Id"{d}"sf__Created"{d}{original}{newline}' if original else ""
    if which == "failedResults":
        return f'"sf__Id"{d}"sf__Error"{d}{original}{newline}' if original else ""
    return f"{original}{newline}" if original else ""


def bulk_unsupported(cq: CompiledQuery) -> str | None:
    """The Bulk-unsupported construct in a query, if any (rejected at job creation)."""
    if cq.aggregate or cq.count_only:
        return "GROUP BY or an aggregate function"
    if cq.has_offset:
        return "OFFSET"
    if cq.has_fields_fn:
        return "FIELDS()"
    if cq.has_typeof:
        return "TYPEOF"
    if cq.has_subquery:
        return "a parent-to-child (nested) subquery"
    for name, f in cq.columns:
        if f.compound:
            return f"the compound field {name} (select its components)"
        if f.type == "base64":
            return f"the base64 field {name}"
    return None


def register(router: Router, em: Emulator) -> None:
    bulk = em.bulk
    router.add("jobs/ingest", POST=bulk.create_ingest, GET=lambda req: bulk.list_jobs(req, "ingest"))
    router.add(
        "jobs/ingest/{job}",
        GET=lambda req: bulk.info(req, "ingest"),
        PATCH=lambda req: bulk.patch_state(req, "ingest"),
        DELETE=lambda req: bulk.delete(req, "ingest"),
    )
    router.add("jobs/ingest/{job}/batches", PUT=bulk.upload)
    router.add("jobs/ingest/{job}/successfulResults", GET=lambda req: bulk.results(req, "successfulResults"))
    router.add("jobs/ingest/{job}/failedResults", GET=lambda req: bulk.results(req, "failedResults"))
    router.add_ci("jobs/ingest/{job}/unprocessedrecords", GET=lambda req: bulk.results(req, "unprocessedrecords"))
    router.add("jobs/query", POST=bulk.create_query, GET=lambda req: bulk.list_jobs(req, "query"))
    router.add(
        "jobs/query/{job}",
        GET=lambda req: bulk.info(req, "query"),
        PATCH=lambda req: bulk.patch_state(req, "query"),
        DELETE=lambda req: bulk.delete(req, "query"),
    )
    router.add("jobs/query/{job}/results", GET=bulk.query_results)
    router.add("jobs/query/{job}/resultPages", GET=bulk.result_pages)
