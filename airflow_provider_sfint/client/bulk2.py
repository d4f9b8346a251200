"""Bulk API 2.0: job lifecycle (create, wait, abort, delete) and query result pages.

Requests are built by plain functions shared by the sync :class:`Bulk2` and the async helpers used by
triggers. Result pages come from ``resultPages`` (API 58+, several at once) or from the locator walk,
and every page is checked before anyone sees its rows: ``Sforce-NumberOfRecords`` must match the rows
parsed, a missing or repeated locator is an error (several peers loop forever on those), and a page
that arrives short is fetched again from its own URL.

A little over 600 lines because the request builders, the sync client and the async helpers belong together:
both clients send what the same builders make, and splitting them would separate a request from its parser.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from queue import Empty, Full, Queue
from typing import Any, TypeVar

import httpx

from .auth import ClientConfig
from .errors import (
    BulkJobError,
    BulkJobTimeout,
    NotFoundError,
    ResultIntegrityError,
    SalesforceError,
)
from .rest import AsyncSalesforceClient, SalesforceClient
from .transport import ApiRequest

log = logging.getLogger(__name__)
T = TypeVar("T")

KINDS = ("query", "ingest")
ACTIVE_STATES = frozenset({"Open", "UploadComplete", "InProgress"})
TERMINAL_STATES = frozenset({"JobComplete", "Failed", "Aborted"})
RESULT_PAGES_MIN_VERSION = 58.0
POLL_START, POLL_CAP = 1.0, 30.0
#: a running job is looked at again after this share of its age (bounded by the shortest and longest delays)
POLL_FRACTION = 0.1
CHUNK = 1 << 16


@dataclass(frozen=True)
class JobInfo:
    """The fields of a Bulk 2.0 job that callers act on; ``raw`` keeps the whole answer."""

    id: str
    kind: str
    state: str
    operation: str
    object: str
    api_version: str
    records_processed: int
    records_failed: int
    error_message: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, kind: str, body: dict[str, Any]) -> JobInfo:
        version = body.get("apiVersion")
        return cls(
            id=str(body["id"]),
            kind=kind,
            state=str(body.get("state", "")),
            operation=str(body.get("operation", "")),
            object=str(body.get("object", "")),
            api_version=f"{float(version):.1f}" if version not in (None, "") else "",
            records_processed=int(body.get("numberRecordsProcessed") or 0),
            records_failed=int(body.get("numberRecordsFailed") or 0),
            error_message=body.get("errorMessage") or None,
            raw=dict(body),
        )

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "JobComplete"

    def error(self) -> BulkJobError:
        detail = f": {self.error_message}" if self.error_message else ""
        return BulkJobError(
            f"Bulk {self.kind} job {self.id} on {self.object or '?'} ended {self.state}{detail}",
            job_id=self.id,
            state=self.state,
            job_message=self.error_message,
        )


@dataclass(frozen=True)
class ResultPage:
    """One page of query results, received whole and checked (its rows are handed over separately).

    :param index: its position in the result (0-based)
    :param url: where it was fetched from (fetching it again gives the same rows)
    :param records: ``Sforce-NumberOfRecords``
    :param next_locator: ``Sforce-Locator`` (``None`` on the last page)
    :param wire_bytes: bytes on the wire (compressed when gzip was used)
    :param csv_bytes: bytes of CSV after decompression
    """

    index: int
    url: str
    records: int
    next_locator: str | None
    wire_bytes: int
    csv_bytes: int


def _page(response: httpx.Response, index: int, url: str, records: int, locator: str | None, csv: int) -> ResultPage:
    return ResultPage(index, url, records, locator, response.num_bytes_downloaded, csv)


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"Bulk job kind must be one of {KINDS}, got {kind!r}")
    return kind


def _check_id(job_id: str) -> str:
    if not job_id or not job_id.isalnum():
        raise ValueError(f"{job_id!r} is not a Bulk job id")
    return job_id


def jobs_path(config: ClientConfig, kind: str, *parts: str) -> str:
    return "/".join([f"/services/data/v{config.version}/jobs/{_check_kind(kind)}", *parts])


def create_query_request(config: ClientConfig, soql: str, include_deleted: bool) -> ApiRequest:
    body = {
        "operation": "queryAll" if include_deleted else "query",
        "query": soql,
        "contentType": "CSV",
        "columnDelimiter": "COMMA",
        "lineEnding": "LF",
    }
    return ApiRequest("POST", jobs_path(config, "query"), json=body)


def job_info_request(config: ClientConfig, kind: str, job_id: str) -> ApiRequest:
    return ApiRequest("GET", jobs_path(config, kind, _check_id(job_id)))


def abort_request(config: ClientConfig, kind: str, job_id: str) -> ApiRequest:
    return ApiRequest("PATCH", jobs_path(config, kind, _check_id(job_id)), json={"state": "Aborted"}, idempotent=True)


def delete_request(config: ClientConfig, kind: str, job_id: str) -> ApiRequest:
    return ApiRequest("DELETE", jobs_path(config, kind, _check_id(job_id)))


class PollPlan:
    """When to look at a running job again, so that its end is noticed promptly at a bounded cost.

    The delay is a tenth of the job's age (``fraction``), at least ``min_interval`` and at most ``max_interval``:
    a job that ends is noticed within about 10% of its running time (plus one request), and a job costs about
    10 polls in its first 10 s, 36 more up to 5 minutes, then one per ``max_interval`` (with the defaults,
    about 156 polls in its first hour and 120 in each hour after). The age counts from when the wait began
    (``started``), or with ``from_created`` from the job's ``createdDate`` when that is earlier and not in the
    future (for a waiter that comes and goes, such as a rescheduled sensor; the org's clock is then trusted).

    When the job's total is known (an ingest job: the rows uploaded) and ``numberRecordsProcessed`` moved since
    the last look, the rate seen so far predicts the end, and the next look comes then if that is sooner. Each
    early look that finds the job still running doubles the shortest delay a prediction may ask for (1 s, 2 s,
    4 s, ...), so predictions add at most about six polls to a job's whole life.
    """

    def __init__(
        self,
        min_interval: float = POLL_START,
        max_interval: float = POLL_CAP,
        fraction: float = POLL_FRACTION,
        total_records: int | None = None,
        clock: Callable[[], float] = time.time,
        started: float | None = None,
        from_created: bool = False,
    ) -> None:
        if min_interval <= 0 or max_interval <= 0 or fraction <= 0:
            raise ValueError("poll intervals and the fraction must be positive")
        self.min_interval = float(min_interval)
        self.max_interval = max(float(max_interval), self.min_interval)
        self.fraction = float(fraction)
        self.total_records = total_records
        self.clock = clock
        self.started = clock() if started is None else float(started)
        self.from_created = from_created
        self.polls = 0
        self._first: tuple[float, int] | None = None  # (time, processed) at the first look while InProgress
        self._last_processed = -1
        self._early = False  # the last delay was a prediction's
        self._misses = 0  # predictions that found the job still running

    def age(self, info: JobInfo | None, now: float) -> float:
        anchor = self.started
        created = None
        if self.from_created and info is not None:
            created = _parse_datetime(str(info.raw.get("createdDate") or ""))
        if created is not None and created.timestamp() <= now:
            anchor = min(anchor, created.timestamp())
        return max(now - anchor, 0.0)

    def regular(self, info: JobInfo | None, now: float) -> float:
        return min(self.max_interval, max(self.min_interval, self.fraction * self.age(info, now)))

    def next_delay(self, info: JobInfo | None = None) -> float:
        """The delay before the next look, given what this look saw."""
        self.polls += 1
        now = self.clock()
        delay = self.regular(info, now)
        if self._early:  # called again: the predicted end had not come
            self._misses += 1
            self._early = False
        if info is None or info.state != "InProgress" or not self.total_records:
            return delay
        processed = info.records_processed
        moved = processed > self._last_processed >= 0
        self._last_processed = processed
        if self._first is None:
            self._first = (now, processed)
            return delay
        first_at, first_processed = self._first
        if not moved or processed <= first_processed or now <= first_at:
            return delay
        rate = (processed - first_processed) / (now - first_at)
        predicted = max(self.total_records - processed, 0) / rate + 0.1
        floor = self.min_interval * 2**self._misses
        if predicted >= delay or floor >= delay:
            return delay
        self._early = True
        return max(predicted, floor)


def _parse_datetime(text: str) -> datetime | None:
    """Salesforce's ``2026-11-30T08:00:00.000+0000`` (or ``Z``) as an aware datetime; None when unreadable."""
    value = text.strip().replace("Z", "+00:00")
    if len(value) > 5 and value[-5] in "+-" and value[-3] != ":":
        value = f"{value[:-2]}:{value[-2:]}"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


class ResultPagesUnavailable(Exception):
    """``resultPages`` answered without its list of pages (a proxy, or an org that does not offer it)."""


def job_link(instance_url: str, job_id: str) -> str:
    """The job's page in Setup (Bulk Data Load Jobs)."""
    return f"{instance_url.rstrip('/')}/lightning/setup/AsyncApiJobStatus/page?address=%2F{job_id}"


def _page_headers(response: httpx.Response, url: str) -> tuple[int, str | None]:
    count = response.headers.get("Sforce-NumberOfRecords")
    if count is None or not count.strip().isdigit():
        raise ResultIntegrityError(f"result page {url} has no valid Sforce-NumberOfRecords header ({count!r})")
    locator = response.headers.get("Sforce-Locator")
    if locator is None:
        raise ResultIntegrityError(
            f"result page {url} has no Sforce-Locator header; cannot tell whether more pages follow, "
            "so stopping here would risk silently dropping rows"
        )
    return int(count), None if locator.strip() in ("", "null") else locator.strip()


def _results_url(config: ClientConfig, job_id: str, locator: str | None, page_size: int | None) -> str:
    params = {}
    if locator:
        params["locator"] = locator
    if page_size:
        params["maxRecords"] = str(page_size)
    query = str(httpx.QueryParams(params))
    return jobs_path(config, "query", job_id, "results") + (f"?{query}" if query else "")


# --- ingest requests ------------------------------------------------------------------------------------------------

INGEST_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
RESULT_KINDS = ("successfulResults", "failedResults", "unprocessedrecords")
MAX_UPLOAD_BYTES = 100_000_000  # Salesforce's advice; the hard cap is 150 MB after base64


def create_ingest_request(
    config: ClientConfig,
    obj: str,
    operation: str,
    external_id_field: str | None = None,
    assignment_rule_id: str | None = None,
) -> ApiRequest:
    if operation not in INGEST_OPERATIONS:
        raise ValueError(f"operation must be one of {', '.join(INGEST_OPERATIONS)}, got {operation!r}")
    body: dict[str, Any] = {
        "object": obj,
        "operation": operation,
        "contentType": "CSV",
        "columnDelimiter": "COMMA",
        "lineEnding": "LF",
    }
    if operation == "upsert":
        if not external_id_field:
            raise ValueError("upsert needs an external id field")
        body["externalIdFieldName"] = external_id_field
    if assignment_rule_id:
        body["assignmentRuleId"] = assignment_rule_id
    return ApiRequest("POST", jobs_path(config, "ingest"), json=body)


def parse_row_error(text: str) -> tuple[str, str, list[str]]:
    """``CODE:message:Field1,Field2 --`` (as in ``sf__Error``) as (code, message, fields)."""
    body = text.strip()
    if body.endswith("--"):
        body = body[:-2].rstrip()
    code, _, rest = body.partition(":")
    message, _, fields = rest.rpartition(":")
    if not message:  # no fields part
        message, fields = rest, ""
    return code.strip(), message.strip(), [f.strip() for f in fields.split(",") if f.strip()]


class Bulk2:
    """Bulk API 2.0 on a :class:`SalesforceClient` (same session, retries, limits and call count)."""

    def __init__(self, client: SalesforceClient) -> None:
        self.client = client
        self.config = client.config

    def _send(self, request: ApiRequest) -> httpx.Response:
        return self.client.transport.send(request)

    # --- lifecycle ----------------------------------------------------------------------------------

    def create_query_job(self, soql: str, *, include_deleted: bool = False) -> JobInfo:
        """Create a query job. Salesforce rejects bad SOQL here (400) or fails the job later; both raise."""
        return JobInfo.parse("query", self._send(create_query_request(self.config, soql, include_deleted)).json())

    def jobs_created_since(self, kind: str, obj: str, operation: str, since: datetime, user_id: str) -> list[JobInfo]:
        """The ``kind`` jobs on ``obj`` with ``operation`` that ``user_id`` created at or after ``since``, oldest
        first (every page of the job list; used to find a job whose creation answer was lost)."""
        found: list[JobInfo] = []
        path: str | None = jobs_path(self.config, kind)
        while path:
            page = self.client.request("GET", path)
            for record in page.get("records") or []:
                job = JobInfo.parse(kind, record)
                created = _parse_datetime(str(record.get("createdDate") or ""))
                if (
                    job.object.lower() == obj.lower()
                    and job.operation == operation
                    and record.get("createdById") == user_id
                    and created is not None
                    and created >= since
                ):
                    found.append(job)
            path = None if page.get("done", True) else page.get("nextRecordsUrl")
        return sorted(found, key=lambda j: str(j.raw.get("createdDate")))

    def job_info(self, kind: str, job_id: str) -> JobInfo:
        return JobInfo.parse(kind, self._send(job_info_request(self.config, kind, job_id)).json())

    def wait(
        self,
        kind: str,
        job_id: str,
        *,
        poll_interval: float = POLL_START,
        max_poll_interval: float = POLL_CAP,
        timeout: float | None = None,
        on_poll: Callable[[JobInfo], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        total_records: int | None = None,
    ) -> JobInfo:
        """Poll until the job is JobComplete (returned), Failed or Aborted (raised), or ``timeout`` passes.

        Looks again after a tenth of the job's age, between ``poll_interval`` and ``max_poll_interval`` seconds,
        sooner when ``total_records`` (an ingest job's uploaded rows) and its progress predict the end: see
        :class:`PollPlan`. No cap on the job's lifetime unless ``timeout`` is given: long jobs are normal.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        plan = PollPlan(poll_interval, max_poll_interval, total_records=total_records)
        while True:
            info = self.job_info(kind, job_id)
            if on_poll is not None:
                on_poll(info)
            if info.succeeded:
                return info
            if info.state in TERMINAL_STATES:
                raise info.error()
            delay = plan.next_delay(info)
            if deadline is not None and time.monotonic() + delay > deadline:
                raise BulkJobTimeout(
                    f"Bulk {kind} job {job_id} is still {info.state} after {timeout:g} s (the job keeps running)",
                    job_id=job_id,
                    state=info.state,
                )
            sleep(delay)

    def abort(self, kind: str, job_id: str) -> JobInfo | None:
        """Abort a job that is still open or running; returns None when it had already ended."""
        try:
            return JobInfo.parse(kind, self._send(abort_request(self.config, kind, job_id)).json())
        except SalesforceError as exc:
            if exc.status in (400, 404, 409):  # already terminal, or gone
                log.info("Bulk %s job %s not aborted: %s", kind, job_id, exc.message)
                return None
            raise

    def delete(self, kind: str, job_id: str) -> None:
        try:
            self._send(delete_request(self.config, kind, job_id))
        except NotFoundError:
            pass

    # --- query results ------------------------------------------------------------------------------

    def result_page_urls(self, job: JobInfo, page_size: int | None = None) -> Iterator[str]:
        """Result URLs from ``resultPages`` (5 per call), in order; raises on a repeated URL.

        Reads ``nextRecordsUrl`` and the ``nextRecordUrl`` spelling of one documentation table.
        """
        params = f"?maxRecords={page_size}" if page_size else ""
        url: str | None = jobs_path(self.config, "query", _check_id(job.id), "resultPages") + params
        seen_links: set[str] = set()
        seen_pages: set[str] = set()
        while url:
            if url in seen_links:
                raise ResultIntegrityError(f"resultPages for job {job.id} links back to {url}; refusing to loop")
            seen_links.add(url)
            body = self._send(ApiRequest("GET", url)).json()
            if not isinstance(body, dict) or not isinstance(body.get("resultPages"), list):
                if not seen_pages:  # nothing read yet: the caller can follow the locator chain instead
                    raise ResultPagesUnavailable(f"resultPages for job {job.id} answered without its list of pages")
                raise ResultIntegrityError(f"resultPages for job {job.id} stopped listing pages at {url}")
            for entry in body["resultPages"]:
                page_url = str(entry["resultUrl"])
                if page_url in seen_pages:
                    raise ResultIntegrityError(f"resultPages for job {job.id} lists {page_url} twice")
                seen_pages.add(page_url)
                yield page_url
            done = bool(body.get("done", True))
            url = body.get("nextRecordsUrl") or body.get("nextRecordUrl")
            if done:
                break
            if not url:
                raise ResultIntegrityError(f"resultPages for job {job.id} says done=false without a next link")

    def supports_result_pages(self) -> bool:
        return float(self.config.version) >= RESULT_PAGES_MIN_VERSION

    def fetch_page(
        self, url: str, index: int, parse: Callable[[Iterator[bytes]], tuple[T, int]]
    ) -> tuple[ResultPage, T]:
        """GET one result page and parse it as it arrives; a page that is cut, does not parse, or whose row
        count differs from ``Sforce-NumberOfRecords`` is fetched again (twice) before
        :class:`ResultIntegrityError`.

        ``parse`` takes the body's chunks (decompressed) and returns the parsed page and its row count;
        nothing of a page reaches the caller before all of it has arrived and been counted.
        """

        def consume(response: httpx.Response) -> tuple[ResultPage, T | None, str]:
            records, locator = _page_headers(response, url)
            size = [0]

            def chunks() -> Iterator[bytes]:
                for chunk in response.iter_bytes(CHUNK):
                    size[0] += len(chunk)
                    yield chunk

            try:
                parsed, rows = parse(chunks())
            except httpx.HTTPError:
                raise  # cut mid-body: the transport retries the request
            except Exception as exc:  # a body that does not parse: fetch it again below
                return _page(response, index, url, records, locator, size[0]), None, str(exc)[:200]
            page = _page(response, index, url, records, locator, size[0])
            if rows != records:
                return page, None, f"had {rows} rows where Sforce-NumberOfRecords said {records}"
            return page, parsed, ""

        problem = ""
        for attempt in range(3):
            page, parsed, problem = self.client.transport.send_streaming(
                ApiRequest("GET", url, headers={"Accept": "text/csv"}), consume
            )
            if not problem:
                return page, parsed  # type: ignore[return-value]
            log.warning("result page %d (%s) %s; fetching it again (attempt %d)", index, url, problem, attempt + 2)
        raise ResultIntegrityError(f"result page {index} ({url}) {problem}, three times; giving up")

    def locator_walk(
        self,
        job: JobInfo,
        page_size: int | None,
        parse: Callable[[Iterator[bytes]], tuple[T, int]],
        *,
        locator: str | None = None,
        index: int = 0,
    ) -> Iterator[tuple[ResultPage, T]]:
        """Pages one after another by ``Sforce-Locator`` (any API version), optionally from a saved
        ``locator``; a repeated locator raises instead of looping."""
        seen: set[str] = set()
        while True:
            page, parsed = self.fetch_page(_results_url(self.config, job.id, locator, page_size), index, parse)
            yield page, parsed
            if page.next_locator is None:
                return
            if page.next_locator in seen or page.next_locator == locator:
                raise ResultIntegrityError(
                    f"job {job.id} returned locator {page.next_locator} twice; refusing to loop over the same pages"
                )
            seen.add(page.next_locator)
            locator = page.next_locator
            index += 1

    def download(
        self,
        job: JobInfo,
        parse: Callable[[Iterator[bytes]], tuple[T, int]],
        *,
        page_size: int | None = None,
        parallel: int = 4,
        start_page: int = 0,
        locator: str | None = None,
    ) -> Iterator[tuple[ResultPage, T]]:
        """Every result page of a JobComplete query job, parsed, in order, from ``start_page`` on.

        With ``resultPages`` (API 58+) up to ``parallel`` pages are fetched and parsed at once; below
        58, or where the org does not offer it, pages follow the locator chain (from ``locator`` when
        resuming) with the next page fetched while the caller writes the current one. At most
        ``parallel`` parsed pages are held, so memory is bounded by ``parallel x page size``. The
        total is checked against the job's ``numberRecordsProcessed`` at the end.
        """
        if parallel < 1:
            raise ValueError(f"parallel must be at least 1, got {parallel}")
        if not job.succeeded:
            raise BulkJobError(f"job {job.id} is {job.state}, not JobComplete", job_id=job.id, state=job.state)
        pages: Iterator[tuple[ResultPage, T]] | None = None
        if self.supports_result_pages() and locator is None:
            urls = self.result_page_urls(job, page_size)
            try:
                first = next(urls, None)
            except (NotFoundError, ResultPagesUnavailable) as exc:
                log.info("resultPages is not available here (%s); following the locator chain", exc)
            else:
                all_urls = itertools.chain([] if first is None else [first], urls)
                pages = _ordered_parallel(
                    ((i, u) for i, u in enumerate(all_urls) if i >= start_page),
                    lambda item: self.fetch_page(item[1], item[0], parse),
                    parallel,
                )
        if pages is None:
            if start_page and locator is None:
                raise ValueError("resuming a locator walk needs the locator of the first page to fetch")
            pages = _prefetch(self.locator_walk(job, page_size, parse, locator=locator, index=start_page), parallel)
        total = 0
        try:
            for page, parsed in pages:
                total += page.records
                yield page, parsed
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()
        if start_page == 0 and total != job.records_processed:
            raise ResultIntegrityError(
                f"job {job.id} reported {job.records_processed} records but its result pages hold {total}"
            )

    # --- ingest -------------------------------------------------------------------------------------

    def create_ingest_job(
        self,
        obj: str,
        operation: str,
        *,
        external_id_field: str | None = None,
        assignment_rule_id: str | None = None,
    ) -> JobInfo:
        request = create_ingest_request(self.config, obj, operation, external_id_field, assignment_rule_id)
        return JobInfo.parse("ingest", self._send(request).json())

    def upload(self, job_id: str, path: str) -> bool:
        """PUT one CSV file as the job's data; returns False when the job already holds data (an earlier
        try's upload arrived), which is the only safe reading of Salesforce's "Found multiple contents"."""

        def stream() -> Iterator[bytes]:  # read as sent: a part is never held in memory whole
            with open(path, "rb") as handle:
                yield from iter(lambda: handle.read(1 << 20), b"")

        request = ApiRequest(
            "PUT",
            jobs_path(self.config, "ingest", _check_id(job_id), "batches"),
            content=stream,
            headers={"Content-Type": "text/csv", "Content-Length": str(os.path.getsize(path))},
            idempotent=False,  # a second PUT is refused; an ambiguous first one is resolved below
        )
        try:
            self._send(request)
        except SalesforceError as exc:
            if "multiple contents" in exc.message.lower():
                return False
            raise
        return True

    def mark_upload_complete(self, job_id: str) -> JobInfo:
        """PATCH the ingest job to ``UploadComplete`` (its data is all sent: Salesforce starts processing it); a
        job already past Open is returned as it is."""
        request = ApiRequest(
            "PATCH",
            jobs_path(self.config, "ingest", _check_id(job_id)),
            json={"state": "UploadComplete"},
            idempotent=True,
        )
        try:
            return JobInfo.parse("ingest", self._send(request).json())
        except SalesforceError as exc:
            if exc.status not in (400, 409):
                raise
            info = self.job_info("ingest", job_id)
            if info.state == "Open":
                raise
            return info

    def download_results(self, job_id: str, which: str, target: str) -> int:
        """Stream one results file of a job to ``target``; returns its bytes."""
        if which not in RESULT_KINDS:
            raise ValueError(f"which must be one of {RESULT_KINDS}, got {which!r}")
        url = jobs_path(self.config, "ingest", _check_id(job_id), which) + "/"

        def consume(response: httpx.Response) -> int:
            size = 0
            with open(target, "wb") as out:
                for chunk in response.iter_bytes(CHUNK):
                    out.write(chunk)
                    size += len(chunk)
            return size

        return self.client.transport.send_streaming(ApiRequest("GET", url, headers={"Accept": "text/csv"}), consume)


def _ordered_parallel(
    items: Iterator[tuple[int, str]], work: Callable[[tuple[int, str]], tuple[ResultPage, T]], parallel: int
) -> Iterator[tuple[ResultPage, T]]:
    """Run ``work`` on up to ``parallel`` items at once and yield the results in input order."""
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="sfint-page") as pool:
        window: deque[Future[tuple[ResultPage, T]]] = deque()
        try:
            for item in items:
                window.append(pool.submit(work, item))
                if len(window) >= parallel:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        finally:
            for future in window:
                future.cancel()


def _prefetch(source: Iterator[tuple[ResultPage, T]], depth: int) -> Iterator[tuple[ResultPage, T]]:
    """Pull ``source`` in a thread, at most ``depth`` items ahead of the consumer."""
    queue: Queue[tuple[str, Any]] = Queue(maxsize=max(1, depth - 1))
    stop = threading.Event()

    def pump() -> None:
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        queue.put(("item", item), timeout=0.2)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            queue.put(("error", exc))

    # Not a daemon, and joined: a thread left running into interpreter exit while it parses a page in Arrow's
    # C++ code can abort the process ("terminate called without an active exception") after the work is done.
    thread = threading.Thread(target=pump, name="sfint-locator-walk")
    thread.start()
    try:
        while True:
            kind, value = queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # it stops after the page in hand; keep its queue from blocking it meanwhile
            try:
                queue.get(timeout=0.05)
            except Empty:
                pass
            thread.join(timeout=0.05)


# --- async (triggers) ------------------------------------------------------------------------------------


async def ajob_info(client: AsyncSalesforceClient, kind: str, job_id: str) -> JobInfo:
    response = await client.transport.asend(job_info_request(client.config, kind, job_id))
    return JobInfo.parse(kind, response.json())


async def aabort(client: AsyncSalesforceClient, kind: str, job_id: str) -> None:
    try:
        await client.transport.asend(abort_request(client.config, kind, job_id))
    except SalesforceError as exc:
        if exc.status not in (400, 404, 409):
            raise
