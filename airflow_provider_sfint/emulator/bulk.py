"""Bulk API 2.0 (spec sections 4 and 5): ingest and query jobs.

Jobs live in memory; their data lives in files under the emulator's data directory. Uploads are
streamed to disk, ingest CSV is parsed row by row through the same :class:`~.dml.Writer` as REST (so
row errors have REST's codes), and query results are written once, when the job completes, then served
by byte range from an index of row offsets -- the emulator's memory does not grow with job size.
"""

from __future__ import annotations

import base64
import csv
import os
import random
import shutil
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .clock import format_datetime
from .dml import MultipleMatches, ValueTypeError, Writer, coerce, sf_trim
from .errors import ApiError, RecordError, not_found
from .ids import make_id, to18
from .render import csv_renderer
from .routing import Req, Resp, Router
from .schema import FieldDef, ObjectDef
from .soql import CompiledQuery

if TYPE_CHECKING:
    from .app import Emulator

DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
TERMINAL = ("JobComplete", "Failed", "Aborted")
INTERNAL_BATCH = 10_000
LIST_PAGE = 1000
MULTIPLE_CONTENTS = (
    "Found multiple contents for job: {id}, please 'Close' / 'Abort' / 'Delete' the current Job "
    "then create a new Job and make sure you only do 'PUT' once on a given Job."
)


@dataclass
class BulkSettings:
    """Tunable behaviour (admin API ``bulk``)."""

    max_upload_bytes: int = 150 * 1024 * 1024  # counted after base64, as Salesforce does
    processing_delay: float = 0.0  # seconds a job waits before it starts processing
    query_latency: float = 0.0  # seconds a query job waits before it runs
    default_max_records: int = 50_000
    query_timeout_rows: int | None = None  # fault: query jobs returning more rows fail with QUERY_TIMEOUT
    bandwidth_bytes_per_second: int | None = None  # cap per result download (so parallel pages matter)
    lock_parent_field: str | None = None  # with a lock_row fault: a locked row locks its parent for the batch


@dataclass
class Job:
    id: str
    kind: str  # "ingest" | "query"
    operation: str
    object: str
    created_by: str
    created: float
    api_version: str
    delimiter: str = "COMMA"
    line_ending: str = "LF"
    external_id: str | None = None
    assignment_rule_id: str | None = None
    query: str | None = None
    state: str = "Open"
    modified: float = 0.0
    error_message: str | None = None
    processed: int = 0
    failed: int = 0
    total_processing_ms: int = 0
    uploaded: bool = False
    rows: int = 0  # query: rows in the result
    offsets: array = field(default_factory=lambda: array("q"))
    header: bytes = b""
    aborted: threading.Event = field(default_factory=threading.Event)

    def info(self, full: bool = True) -> dict[str, Any]:
        stamp = format_datetime(_utc(self.created))
        body: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": self.created_by,
            "createdDate": stamp,
            "systemModstamp": format_datetime(_utc(self.modified or self.created)),
            "state": self.state,
        }
        if self.external_id:
            body["externalIdFieldName"] = self.external_id
        body.update({"concurrencyMode": "Parallel", "contentType": "CSV", "apiVersion": float(self.api_version)})
        if self.kind == "ingest" and self.state == "Open" and not full:
            body["contentUrl"] = f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches"
        if self.assignment_rule_id:
            body["assignmentRuleId"] = self.assignment_rule_id
        if full:
            body["jobType"] = "V2Ingest" if self.kind == "ingest" else "V2Query"
            if self.kind == "ingest" and self.state == "Open":
                body["contentUrl"] = f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches"
        body.update({"lineEnding": self.line_ending, "columnDelimiter": self.delimiter})
        if full:
            body["numberRecordsProcessed"] = self.processed
            if self.kind == "ingest":
                body["numberRecordsFailed"] = self.failed
            body["retries"] = 0
            body["totalProcessingTime"] = self.total_processing_ms
            if self.kind == "ingest":
                body["apiActiveProcessingTime"] = self.total_processing_ms
                body["apexProcessingTime"] = 0
            else:
                body["isPkChunkingSupported"] = True
            if self.error_message:
                body["errorMessage"] = self.error_message
        return body


def _utc(ts: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, tz=UTC)


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

    def reset(self) -> None:
        for job in self.jobs.values():
            job.aborted.set()
        self.jobs.clear()
        shutil.rmtree(self.root, ignore_errors=True)
        self.settings = BulkSettings()

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
            threading.Thread(target=self._run_ingest, args=(job,), name=f"ingest-{job.id}", daemon=True).start()
        else:
            raise ApiError(400, "INVALIDJOBSTATE", f"Invalid state transition for job {job.id}: {job.state} -> {state}")
        job.modified = self.em.clock.time()
        info = job.info(full=False)
        for key in ("contentUrl", "lineEnding", "columnDelimiter"):  # as the recorded UploadComplete answer
            info.pop(key, None)
        return Resp.json(200, info)

    def _run_job(self, job: Job, delay: float, work: Callable[[], None]) -> None:
        """The lifecycle both job kinds share: wait, InProgress, work, then JobComplete or Failed."""
        started = time.monotonic()
        try:
            if delay:
                time.sleep(delay)
            if job.aborted.is_set():
                return
            job.state = "InProgress"
            job.modified = self.em.clock.time()
            work()
            if not job.aborted.is_set() and job.state == "InProgress":
                job.state = "JobComplete"
        except JobFailure as exc:
            job.state = "Failed"
            job.error_message = str(exc)
        except Exception as exc:  # a bug of ours: the job fails visibly instead of hanging InProgress
            job.state = "Failed"
            job.error_message = f"InternalServerError : {type(exc).__name__}: {exc}"
        finally:
            job.total_processing_ms = int((time.monotonic() - started) * 1000)
            job.modified = self.em.clock.time()

    def _run_ingest(self, job: Job) -> None:
        self._run_job(job, self.settings.processing_delay, IngestRun(self, job).run)

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
        if job.state not in (*TERMINAL, "UploadComplete") or (kind == "ingest" and job.state == "UploadComplete"):
            raise ApiError(
                400,
                "INVALIDJOBSTATE",
                f"Job {job.id} is {job.state}; only a completed, failed or aborted job can be deleted",
            )
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
        return Resp.json(200, self.job(req, kind).info())

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
        def work() -> None:
            self._write_query_result(job, cq)
            limit = self.settings.query_timeout_rows
            if limit is not None and job.rows > limit and not job.aborted.is_set():
                raise JobFailure(
                    "QUERY_TIMEOUT : Your query request was running for too long. Query more "
                    "selectively or split it into smaller time windows."
                )
            job.processed = job.rows

        self._run_job(job, self.settings.query_latency, work)

    def _write_query_result(self, job: Job, cq: CompiledQuery) -> None:
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
            for rows in self._query_rows(cq):
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
        store = self.em.store
        sql = cq.sql(paged=True)
        with store.lock:
            cur = store.conn.execute(sql, cq.all_params())
            rows = cur.fetchmany(INTERNAL_BATCH)
        while rows:
            yield rows
            with store.lock:
                rows = cur.fetchmany(INTERNAL_BATCH)

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
            bandwidth=self.settings.bandwidth_bytes_per_second,
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


class JobFailure(Exception):
    """The whole job fails with this errorMessage (an unknown header field, QUERY_TIMEOUT, ...)."""


def _results_header(job: Job, which: str, upload: Path) -> str:
    original = _read_header_line(upload) if upload.exists() else ""
    newline = LINE_ENDINGS[job.line_ending]
    d = DELIMITERS[job.delimiter]
    if which == "successfulResults":
        return f'"sf__Id"{d}"sf__Created"{d}{original}{newline}' if original else ""
    if which == "failedResults":
        return f'"sf__Id"{d}"sf__Error"{d}{original}{newline}' if original else ""
    return f"{original}{newline}" if original else ""


def _read_header_line(upload: Path) -> str:
    with open(upload, encoding="utf-8-sig", newline="") as handle:
        line = handle.readline()
    return line.rstrip("\r\n")


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
    return None


class IngestRun:
    """Processes one ingest job's upload: stream-parse, apply each row, write results."""

    def __init__(self, bulk: Bulk, job: Job) -> None:
        self.bulk = bulk
        self.job = job
        self.em = bulk.em
        self.obj: ObjectDef = self.em.org.objects[job.object]
        self.folder = bulk.folder(job)
        self._matches: tuple[FieldDef, dict[Any, list[str]]] | None = None  # an upsert batch's prefetched ids

    def run(self) -> None:
        job = self.job
        upload = self.folder / "upload.csv"
        if not upload.exists():
            raise JobFailure("InvalidBatch : Empty batch: no data was uploaded before UploadComplete")
        delimiter = DELIMITERS[job.delimiter]
        newline = LINE_ENDINGS[job.line_ending]
        header_line = _read_header_line(upload)
        with open(upload, encoding="utf-8-sig", newline="", errors="strict") as handle:
            reader = csv.reader(handle, delimiter=delimiter, strict=True)
            try:
                header = next(reader)
            except StopIteration:
                raise JobFailure("InvalidBatch : Empty batch: the CSV has no header row") from None
            columns = self._columns(header)
            writer = Writer(
                self.em.org,
                self.em.store,
                self.em.clock,
                job.created_by,
                raw_type_errors=True,
                lock_fault=lambda: self.em.faults.lock_fault("POST", f"/jobs/ingest/{job.id}/rows"),
            )
            ok_path, bad_path = self.folder / "successfulResults.csv", self.folder / "failedResults.csv"
            with (
                open(ok_path, "w", encoding="utf-8", newline="") as ok_file,
                open(bad_path, "w", encoding="utf-8", newline="") as bad_file,
            ):
                ok_file.write(f'"sf__Id"{delimiter}"sf__Created"{delimiter}{header_line}{newline}')
                bad_file.write(f'"sf__Id"{delimiter}"sf__Error"{delimiter}{header_line}{newline}')
                ok_out = csv.writer(ok_file, delimiter=delimiter, lineterminator=newline, quoting=csv.QUOTE_ALL)
                bad_out = csv.writer(bad_file, delimiter=delimiter, lineterminator=newline, quoting=csv.QUOTE_ALL)
                batch: list[tuple[int, list[str]]] = []
                index = 0
                try:
                    for row in reader:
                        batch.append((index, row))
                        index += 1
                        if len(batch) == INTERNAL_BATCH:
                            self._apply(batch, columns, header, writer, ok_out, bad_out)
                            batch = []
                            if job.aborted.is_set():
                                break
                except csv.Error as exc:
                    raise JobFailure(f"InvalidBatch : Failed to parse CSV at row {index + 2}: {exc}") from None
                if batch and not job.aborted.is_set():
                    self._apply(batch, columns, header, writer, ok_out, bad_out)

    def _columns(self, header: list[str]) -> list[tuple[str, FieldDef | None, Any]]:
        """For each header column: (kind, field, extra): kind 'field' or 'ref' (relationship by external id)."""
        out: list[tuple[str, FieldDef | None, Any]] = []
        for name in header:
            name = name.strip()
            if "." in name:
                rel, _, ext_name = name.partition(".")
                if ":" in rel:
                    rel = rel.split(":", 1)[1]
                ref = self.obj.relationship(rel)
                target = self.em.org.get(ref.reference_to[0]) if ref else None
                ext = target.field(ext_name) if target else None
                if ref is None or ext is None or not (ext.external_id or ext.id_lookup):
                    raise JobFailure(f"InvalidBatch : Field name not found : {name}")
                out.append(("ref", ref, (rel, ext.name)))
                continue
            f = self.obj.field(name)
            if f is None:
                raise JobFailure(f"InvalidBatch : Field name not found : {name}")
            out.append(("field", f, None))
        op = self.job.operation
        names = {f.name for kind, f, _ in out if kind == "field" and f is not None}
        if op in ("update", "delete", "hardDelete") and "Id" not in names:
            raise JobFailure(f"InvalidBatch : Field name not found : Id (the {op} operation needs an Id column)")
        if op == "upsert" and self.job.external_id not in names:
            raise JobFailure(f"InvalidBatch : Field name not found : {self.job.external_id}")
        return out

    def _apply(
        self,
        batch: list[tuple[int, list[str]]],
        columns: list[tuple[str, FieldDef | None, Any]],
        header: list[str],
        writer: Writer,
        ok_out: Any,
        bad_out: Any,
    ) -> None:
        job = self.job
        em = self.em
        em.limits.bulk_batches_used += 1
        em.limits.ingest_records_used += len(batch)
        if em.limits.ingest_records_used > em.limits.ingest_records_max:
            raise JobFailure("InvalidBatch : Max number of records processed in 24 hours exceeded")
        results: list[tuple[bool, list[str]]] = []
        parent_col = self._parent_column(columns)
        locked_parents: set[str] = set()
        deferred = job.operation == "insert"
        self._matches = None
        names = [f.name if f is not None and kind == "field" else "" for kind, f, _ in columns]
        with em.store.transaction():
            if deferred:  # validated row by row as REST does; inserted together at the end of the batch
                writer.begin_deferred(self.obj, [dict(zip(names, row, strict=False)) for _, row in batch], len(batch))
            elif job.operation == "upsert":
                creates = self._prefetch_upsert(batch, columns)
                if creates is not None:  # new records are inserted together, as for insert
                    deferred = True
                    writer.begin_deferred(
                        self.obj, [dict(zip(names, row, strict=False)) for row in creates], len(creates)
                    )
            for _, row in batch:
                parent = row[parent_col] if parent_col is not None and len(row) == len(columns) else ""
                if parent and parent in locked_parents:
                    results.append(
                        (
                            False,
                            [
                                "",
                                f"UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this "
                                f"record or 1 records: {parent}:--",
                                *row,
                            ],
                        )
                    )
                    continue
                if len(row) != len(columns):
                    results.append(
                        (
                            False,
                            [
                                "",
                                f"INVALID_FIELD:Wrong number of columns: expected {len(columns)}, found {len(row)}:--",
                                *row,
                            ],
                        )
                    )
                    continue
                try:  # each write is one statement issued after validation: no per-row savepoint needed
                    record_id, created = self._row(row, columns, writer)
                    results.append((True, [record_id, "true" if created else "false", *row]))
                except RecordError as exc:
                    if exc.status_code == "UNABLE_TO_LOCK_ROW" and parent:
                        locked_parents.add(parent)  # contention on a shared parent locks its other children too
                    fields = ",".join(exc.fields or [])
                    results.append((False, ["", f"{exc.status_code}:{exc.message}:{fields} --", *row]))
                except ApiError as exc:
                    results.append((False, ["", f"{exc.error_code}:{exc.message}:--", *row]))
            if deferred:
                writer.flush_deferred(self.obj)
        rng = random.Random(f"{job.id}:{batch[0][0]}")
        order = list(range(len(results)))
        rng.shuffle(order)  # Salesforce does not keep input order in results
        for i in order:
            success, values = results[i]
            (ok_out if success else bad_out).writerow(values)
        job.processed += len(results)
        job.failed += sum(1 for success, _ in results if not success)

    def _ext_key(self, ext: FieldDef, value: Any) -> Any:
        value = coerce(ext, value)
        return value.lower() if isinstance(value, str) and not ext.case_sensitive else value

    def _prefetch_upsert(
        self, batch: list[tuple[int, list[str]]], columns: list[tuple[str, FieldDef | None, Any]]
    ) -> list[list[str]] | None:
        """Look up a batch's external ids in one query per 500 and return the rows that will be created;
        None (row-by-row upserts) when an id repeats within the batch, so the rows apply in order."""
        ext = self.obj.field(self.job.external_id or "")
        if ext is None or ext.name == "Id":
            return None
        at = next((i for i, (kind, f, _) in enumerate(columns) if kind == "field" and f is ext), None)
        if at is None:
            return None
        try:
            keyed = [(self._ext_key(ext, row[at]), row) for _, row in batch if len(row) == len(columns) and row[at]]
        except ValueTypeError:
            return None
        keys = [k for k, _ in keyed if k is not None]
        if len(set(keys)) != len(keys):
            return None
        matches: dict[Any, list[str]] = {}
        values = [coerce(ext, row[at]) for _, row in keyed]
        for start in range(0, len(values), 500):
            chunk = values[start : start + 500]
            marks = ",".join("?" * len(chunk))
            _, hits = self.em.store.query(
                f'SELECT "{ext.name}", "Id" FROM {self.obj.table} WHERE "{ext.name}" IN ({marks}) '
                'AND "IsDeleted" = 0 ORDER BY rid',
                chunk,
            )
            for value, record_id in hits:
                matches.setdefault(self._ext_key(ext, value), []).append(record_id)
        self._matches = (ext, matches)
        return [row for key, row in keyed if key not in matches]

    def _parent_column(self, columns: list[tuple[str, FieldDef | None, Any]]) -> int | None:
        name = self.bulk.settings.lock_parent_field
        if not name:
            return None
        for i, (_, f, extra) in enumerate(columns):
            if f is not None and (f.name.lower() == name.lower() or (extra and extra[0].lower() == name.lower())):
                return i
        return None

    def _row(self, row: list[str], columns: list[tuple[str, FieldDef | None, Any]], writer: Writer) -> tuple[str, bool]:
        op = self.job.operation
        body: dict[str, Any] = {}
        record_id = ""
        for value, (kind, f, extra) in zip(row, columns, strict=True):
            assert f is not None
            if kind == "ref":
                rel, ext_name = extra
                if value == "":
                    continue
                body[rel] = None if value == "#N/A" else {ext_name: value}
                continue
            if f.name == "Id":
                record_id = value
                continue
            if value == "":
                continue  # empty leaves the field unchanged (and unset on insert); #N/A sets null
            if value == "#N/A":
                body[f.name] = None
                continue
            body[f.name] = value
        try:
            return self._write(op, body, record_id, writer)
        except ValueTypeError as exc:
            col = next(i for i, (_, f, _) in enumerate(columns) if f is exc.field)
            raise RecordError(
                "INVALID_FIELD",
                f"Failed to deserialize field at col {col}. Due to, '{exc.value}' is "
                f"not a valid value for the type {exc.field.describe()['soapType']}",
                [exc.field.name],
            ) from None

    def _write(self, op: str, body: dict[str, Any], record_id: str, writer: Writer) -> tuple[str, bool]:
        if op == "insert":
            return writer.create(self.obj, body), True
        if op == "update":
            return writer.update(self.obj, record_id, body), False
        if op == "upsert":
            assert self.job.external_id is not None
            ext_value = body.pop(self.job.external_id, None)
            if ext_value is None:
                raise RecordError("MISSING_ARGUMENT", f"{self.job.external_id} not specified", [self.job.external_id])
            try:
                known = None
                if self._matches is not None and sf_trim(str(ext_value)) is not None:
                    ext, matches = self._matches
                    known = matches.get(self._ext_key(ext, ext_value), [])  # looked up with the batch
                result = writer.upsert(self.obj, self.job.external_id, ext_value, body, known=known)
            except MultipleMatches as exc:
                raise RecordError(
                    "DUPLICATE_EXTERNAL_ID",
                    f"{self.job.external_id}: more than one record found for external id field: {exc.ids}",
                    [self.job.external_id],
                ) from None
            return result.id, result.created
        return writer.delete(self.obj, record_id, hard=op == "hardDelete"), False


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
