"""Bulk API 2.0 jobs as the emulator keeps them: their settings, state and info body, and the failures that end
a whole job."""

from __future__ import annotations

import threading
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .clock import format_datetime

if TYPE_CHECKING:
    pass


def _utc(ts: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, tz=UTC)


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
    """Tunable behaviour (admin API ``bulk``); how long jobs take is the org's timing (``profile.Timing``)."""

    max_upload_bytes: int = 150 * 1024 * 1024  # counted after base64, as Salesforce does
    default_max_records: int = 50_000
    query_timeout_rows: int | None = None  # fault: query jobs returning more rows fail with QUERY_TIMEOUT
    lock_parent_field: str | None = None  # with a lock_row fault: a locked row locks its parent for the batch
    # A batch locks the parents its rows refer to while it is processed; a row of another job whose parent stays
    # locked longer than this fails UNABLE_TO_LOCK_ROW (Salesforce waits up to 10 s for a record lock)
    lock_wait_s: float = 10.0


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
    running_since: float = 0.0  # time.monotonic() when the job went InProgress
    # wall-clock (time.time(), not the org's clock) instants for the admin API's job timings
    created_at: float = field(default_factory=time.time)
    running_at: float = 0.0
    ended_at: float = 0.0
    noticed_at: float = 0.0

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


class JobFailure(Exception):
    """The whole job fails with this errorMessage (an unknown header field, QUERY_TIMEOUT, ...)."""


def read_header_line(upload: Path) -> str:
    with open(upload, encoding="utf-8-sig", newline="") as handle:
        line = handle.readline()
    return line.rstrip("\r\n")
