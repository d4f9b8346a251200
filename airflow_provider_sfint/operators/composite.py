"""SalesforceCompositeUpsertOperator: small writes through sObject Collections (200 records a call), large
ones handed to the Bulk ingest path, per-record results mapped back to the input by external id."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import pyarrow as pa
from airflow.providers.common.compat.sdk import BaseOperator, ObjectStoragePath

from ..client.arrowio import NULL_POLICIES, iter_source
from ..client.composite import COLLECTION_LIMIT, Collections, RecordResult, json_value
from ..client.errors import NotFoundError, did_you_mean
from ..compat import AirflowFailException
from ..engines.files import write_failed_rows
from ..engines.ingest import STATE_KEY, IngestEngine, IngestSettings, check_failure_limits, over_failure_limit
from ..hooks.salesforce import SalesforceHook
from ..lineage import LineageMixin
from ._settings import engine_run, failed_rows_path, job_announcer, record_ingest_lineage
from ._state import start_execution

DEDUPE_CHOICES = (None, "last")
#: How many offending rows an input error names (the count says how many there are in all).
SHOWN = 5


class SalesforceCompositeUpsertOperator(LineageMixin, BaseOperator):
    """Upsert records by external id with sObject Collections (``PATCH composite/sobjects/{Object}/{Field}``):
    200 records a call, ``max_concurrency`` calls at once, the fewest API calls for small writes. Above
    ``bulk_threshold`` records the same call goes through :class:`SalesforceBulkIngestOperator` (the
    summary's ``path`` says which). Writes happen on the worker; this operator never defers.

    :param object: the sObject (templated)
    :param external_id_field: the External ID (or idLookup) field to match on (templated)
    :param records: a list of dicts, a pandas DataFrame, an Arrow table, or an ObjectStoragePath/URL of
        Parquet, CSV or JSONL (templated when a string)
    :param all_or_none: roll back a whole call of 200 when one record in it fails
    :param batch_size: records per call (at most 200)
    :param max_concurrency: calls in flight (default 4)
    :param bulk_threshold: above this many records, load through Bulk API 2.0 instead (default 2,000)
    :param null_policy: ``leave_unchanged`` (default: a None value is not sent) or ``set_null`` (sent as
        null: the field is cleared)
    :param dedupe: None (default: an external id repeated in the input fails the task before any call)
        or ``"last"`` (the last occurrence wins)
    :param failed_output: where failed records go (CSV with ``sf__ErrorCode`` and ``sf__Error``)
    :param max_failed_records: fail the task when more records fail (default 0)
    :param max_failed_ratio: ... or when a larger share fails (0-1)
    :param sfint_conn_id: the Salesforce connection
    """

    template_fields: Sequence[str] = ("object", "external_id_field", "records", "failed_output", "sfint_conn_id")
    ui_color = "#e1f1fb"

    def __init__(
        self,
        *,
        object: str,
        external_id_field: str,
        records: Any,
        all_or_none: bool = False,
        batch_size: int = COLLECTION_LIMIT,
        max_concurrency: int = 4,
        bulk_threshold: int = 2_000,
        null_policy: str = "leave_unchanged",
        dedupe: str | None = None,
        failed_output: str | None = None,
        max_failed_records: int | None = 0,
        max_failed_ratio: float | None = None,
        sfint_conn_id: str = SalesforceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 1 <= int(batch_size) <= COLLECTION_LIMIT:
            raise ValueError(f"batch_size must be between 1 and {COLLECTION_LIMIT}, got {batch_size}")
        if not 1 <= int(max_concurrency) <= 25:
            raise ValueError(f"max_concurrency must be between 1 and 25, got {max_concurrency}")
        if int(bulk_threshold) < 0:
            raise ValueError(f"bulk_threshold must be 0 or more, got {bulk_threshold}")
        if null_policy not in NULL_POLICIES:
            raise ValueError(f"null_policy must be one of {', '.join(NULL_POLICIES)}, got {null_policy!r}")
        if dedupe not in DEDUPE_CHOICES:
            raise ValueError(f"dedupe must be None or 'last', got {dedupe!r}")
        check_failure_limits(max_failed_records, max_failed_ratio)
        self.object = object
        self.external_id_field = external_id_field
        self.records = records
        self.all_or_none = all_or_none
        self.batch_size = int(batch_size)
        self.max_concurrency = int(max_concurrency)
        self.bulk_threshold = int(bulk_threshold)
        self.null_policy = null_policy
        self.dedupe = dedupe
        self.failed_output = failed_output
        self.max_failed_records = max_failed_records
        self.max_failed_ratio = max_failed_ratio
        self.sfint_conn_id = sfint_conn_id

    @cached_property
    def hook(self) -> SalesforceHook:
        return SalesforceHook(sfint_conn_id=self.sfint_conn_id)

    def _source(self) -> Any:
        return ObjectStoragePath(self.records) if isinstance(self.records, str) else self.records

    def _count(self) -> int:
        source = self._source()
        if isinstance(source, list):
            return len(source)
        if isinstance(source, pa.Table) or hasattr(source, "shape"):
            return int(source.num_rows if isinstance(source, pa.Table) else source.shape[0])
        return sum(batch.num_rows for batch in iter_source(source))

    def _rows(self) -> list[dict[str, Any]]:
        source = self._source()
        if isinstance(source, list):
            if not all(isinstance(r, dict) for r in source):
                raise AirflowFailException("records: a list must hold dicts (one per record)")
            return [dict(r) for r in source]
        return [row for batch in iter_source(source) for row in batch.to_pylist()]

    def _payload(self, row: dict[str, Any]) -> dict[str, Any]:
        """A record as JSON: dotted relationship columns nested (``Account.External_Id__c``), None kept or
        dropped per ``null_policy``."""
        out: dict[str, Any] = {}
        for key, raw in row.items():
            value = json_value(raw)
            if value is None and self.null_policy == "leave_unchanged":
                continue
            if "." in key and not isinstance(value, dict):
                relationship, _, field = key.partition(".")
                out.setdefault(relationship, {})[field] = value
            else:
                out[key] = value
        return out

    def _prepare(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
        """Payloads and their input row numbers; missing and repeated external ids fail before any call, summed
        up (how many, and the first few rows) rather than listed row by row."""
        key = self.external_id_field
        empty: list[int] = []
        repeats: list[str] = []
        first: dict[str, int] = {}
        keep: dict[str, int] = {}
        for i, row in enumerate(rows):
            value = row.get(key)
            if value is None or (isinstance(value, str) and not value.strip()):
                empty.append(i + 1)
                continue
            text = str(value).strip().lower()
            if text in first and self.dedupe is None:
                repeats.append(f"row {i + 1} repeats {value!r} of row {first[text] + 1}")
            first.setdefault(text, i)
            keep[text] = i
        problems: list[str] = []
        if empty:
            shown = ", ".join(str(n) for n in empty[:SHOWN])
            problems.append(
                f"{len(empty)} row(s) have no {key}; first {min(len(empty), SHOWN)}: rows {shown}. Give every record "
                f"its {key}, or filter those rows out upstream"
            )
        if repeats:
            problems.append(
                f"{len(repeats)} row(s) repeat a {key} of an earlier row; first {min(len(repeats), SHOWN)}: "
                f"{'; '.join(repeats[:SHOWN])}. Pass dedupe='last' to keep the last of each"
            )
        if problems:
            raise AirflowFailException(
                f"records for {self.object} cannot be upserted by {key} as they are (no call was made): "
                + " ".join(problems)
            )
        order = sorted(keep.values())
        return [self._payload(rows[i]) for i in order], order

    def execute(self, context: Any) -> dict[str, Any]:
        started = time.monotonic()
        count = self._count()
        if count > self.bulk_threshold:
            self.log.info("%d records > bulk_threshold %d: loading through Bulk API 2.0", count, self.bulk_threshold)
            source = self.records
            if isinstance(source, list):
                source = pa.Table.from_pylist(source)
            return {**self._through_bulk(context, source), "path": "bulk"}
        client = self.hook.client
        calls_before = client.api_calls
        rows = self._rows()
        payloads, row_numbers = self._prepare(rows)
        collections = Collections(client, self.max_concurrency)
        try:
            results = collections.upsert(
                self.object, self.external_id_field, payloads, all_or_none=self.all_or_none, batch_size=self.batch_size
            )
        except NotFoundError as exc:  # the object (or its external id field) is unknown: nothing was written
            raise AirflowFailException(f"{self._not_found(exc)}; no record was written") from exc
        transient = [r for r in results if r.transient]
        retried = len(transient)
        if transient:
            self.log.info("retrying %d records that failed with lock or availability errors", retried)
            again = collections.upsert(
                self.object,
                self.external_id_field,
                [payloads[r.index] for r in transient],
                all_or_none=self.all_or_none,
                batch_size=self.batch_size,
            )
            by_index = {r.index: r for r in results}
            for original, result in zip(transient, again, strict=True):
                by_index[original.index] = RecordResult(
                    original.index, result.id, result.success, result.created, result.errors
                )
            results = [by_index[i] for i in sorted(by_index)]
        failed = [r for r in results if not r.success]
        written = self._write_failed(rows, row_numbers, failed) if failed else None
        summary = {
            "path": "collections",
            "object": self.object,
            "records": len(payloads),
            "succeeded": len(results) - len(failed),
            "failed": len(failed),
            "created": sum(1 for r in results if r.success and r.created),
            "updated": sum(1 for r in results if r.success and r.created is False),
            "retried": retried,
            "failed_output": written,
            "api_calls": client.api_calls - calls_before,
            "retries": len(client.retries),  # requests retried by this task (503, 429, cut connections...)
            "seconds": round(time.monotonic() - started, 3),
        }
        self.log.info("Collections upsert of %s: %s", self.object, summary)
        self._record_rows_lineage(self.records, client.login(), self.object, rows)
        if over_failure_limit(len(failed), len(payloads), self.max_failed_records, self.max_failed_ratio):
            first = "; ".join(
                f"row {row_numbers[r.index] + 1} ({self.external_id_field}="
                f"{rows[row_numbers[r.index]].get(self.external_id_field)!r}): {r.describe_errors()}"
                for r in failed[:3]
            )
            where = f"; failed records are in {written}" if written else ""
            raise AirflowFailException(
                f"{len(failed)} of {len(payloads)} records failed to upsert into {self.object}, over "
                f"max_failed_records={self.max_failed_records} / max_failed_ratio={self.max_failed_ratio}{where}. "
                f"First: {first}"
            )
        return summary

    def _through_bulk(self, context: Any, source: Any) -> dict[str, Any]:
        """The same upsert through the Bulk ingest engine, with its exactly-once progress kept like the Bulk
        operator's (a retry resumes the jobs; a re-run starts afresh)."""
        failed = self.failed_output
        if failed is None and isinstance(source, str | ObjectStoragePath):
            failed = str(source).rstrip("/") + ".failed.csv"
        engine = IngestEngine(
            self.hook.client,
            IngestSettings(
                object=self.object,
                operation="upsert",
                external_id_field=self.external_id_field,
                null_policy=self.null_policy,
                max_failed_records=self.max_failed_records,
                max_failed_ratio=self.max_failed_ratio,
            ),
            ObjectStoragePath(source) if isinstance(source, str) else source,
            start_execution(context, self.retries, (STATE_KEY,), self.log),
            failed_output=failed_rows_path(failed),
            on_job=job_announcer(self, context),
            log=self.log,
        )
        with engine_run(engine):
            summary = engine.completed()
            if summary is None:
                engine.prepare()
                summary = engine.run()
        if engine.plan is not None:
            record_ingest_lineage(self, engine, source)
        return summary

    def _not_found(self, exc: NotFoundError) -> str:
        """What a 404 on the Collections upsert means: the object, or its external id field, is unknown."""
        try:
            fields = {str(f["name"]).lower() for f in self.hook.client.describe(self.object).get("fields", [])}
        except NotFoundError:
            return self.hook.client.unknown_object(self.object)
        if self.external_id_field.lower() not in fields:
            hint = did_you_mean(self.external_id_field, fields)
            return f"{self.object} has no field {self.external_id_field!r} to upsert by{hint}"
        return f"Salesforce answered 404 for the upsert into {self.object} by {self.external_id_field}: {exc}"

    def _write_failed(
        self, rows: list[dict[str, Any]], row_numbers: list[int], failed: list[RecordResult]
    ) -> str | None:
        if not self.failed_output:
            return None
        table = pa.Table.from_pylist(
            [
                {
                    "row": row_numbers[r.index] + 1,
                    "sf__ErrorCode": r.error_code,
                    "sf__Error": r.describe_errors(),
                    **{
                        k: json.dumps(json_value(v)) if isinstance(v, dict | list) else _text(v)
                        for k, v in rows[row_numbers[r.index]].items()
                    },
                }
                for r in failed
            ]
        )
        return write_failed_rows(table, failed_rows_path(self.failed_output))


def _text(value: Any) -> str | None:
    value = json_value(value)
    return None if value is None else str(value)
