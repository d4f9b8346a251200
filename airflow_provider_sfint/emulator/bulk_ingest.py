"""Processing one Bulk ingest job's upload: the CSV stream-parsed, each row applied through the same writer as
REST (so row errors carry REST's codes), and the successful, failed and unprocessed results written."""

from __future__ import annotations

import csv
import random
from typing import TYPE_CHECKING, Any

from .dml import MultipleMatches, ValueTypeError, Writer, coerce, sf_trim
from .errors import ApiError, RecordError
from .ids import to18
from .schema import FieldDef, ObjectDef

if TYPE_CHECKING:
    from .bulk import Bulk
from .bulk_jobs import DELIMITERS, INTERNAL_BATCH, LINE_ENDINGS, Job, JobFailure, read_header_line

#: references whose targets a write does not lock (the users in system fields, the record type)
UNLOCKED_REFERENCES = frozenset({"OwnerId", "CreatedById", "LastModifiedById", "RecordTypeId", "MasterRecordId"})


def _key(value: str) -> str:
    """A record id as its lock's key (15 and 18 characters name the same record); empty for anything else."""
    return value[:15] if len(value) in (15, 18) and value.isalnum() else ""


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
        header_line = read_header_line(upload)
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
                events=self.em.events,
                origin=f"com/salesforce/api/bulk/{job.api_version}",
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
        # the parents this batch's rows refer to are locked while it is processed; those another job's batch
        # keeps locked past the lock wait fail their rows, as in an org
        reference_cols = self._reference_columns(columns)
        wanted = {_key(row[i]) for _, row in batch for i in reference_cols if i < len(row) and _key(row[i])}
        busy = self.bulk.lock_parents(job, wanted)
        try:
            self._apply_locked(batch, columns, writer, ok_out, bad_out, results, parent_col, locked_parents, busy)
        finally:
            self.bulk.unlock_parents(job)

    def _reference_columns(self, columns: list[tuple[str, FieldDef | None, Any]]) -> list[int]:
        """Columns holding the ids of parent records (lookups and master-detail, not the system users)."""
        return [
            i
            for i, (kind, f, _) in enumerate(columns)
            if kind == "field" and f is not None and f.type == "reference" and f.name not in UNLOCKED_REFERENCES
        ]

    def _apply_locked(
        self,
        batch: list[tuple[int, list[str]]],
        columns: list[tuple[str, FieldDef | None, Any]],
        writer: Writer,
        ok_out: Any,
        bad_out: Any,
        results: list[tuple[bool, list[str]]],
        parent_col: int | None,
        locked_parents: set[str],
        busy: set[str],
    ) -> None:
        job = self.job
        em = self.em
        reference_cols = self._reference_columns(columns) if busy else []
        deferred = job.operation == "insert" and not self.obj.is_event
        self._matches = None
        names = [f.name if f is not None and kind == "field" else "" for kind, f, _ in columns]
        # rows sharing a key in one batch all fail (never applied one after the other), and stay out of the
        # upsert's prefetch and the deferred inserts
        repeated = self._repeated(batch, columns)
        clean = [entry for pos, entry in enumerate(batch) if pos not in repeated] if repeated else batch
        with em.store.transaction():
            em.events.bulk_transaction()
            if deferred:  # validated row by row as REST does; inserted together at the end of the batch
                writer.begin_deferred(self.obj, [dict(zip(names, row, strict=False)) for _, row in batch], len(batch))
            elif job.operation == "upsert":
                creates = self._prefetch_upsert(clean, columns)
                if creates is not None:  # new records are inserted together, as for insert
                    deferred = True
                    writer.begin_deferred(
                        self.obj, [dict(zip(names, row, strict=False)) for row in creates], len(creates)
                    )
            for pos, (_, row) in enumerate(batch):
                if pos in repeated:
                    results.append((False, ["", repeated[pos], *row]))
                    continue
                held = next((row[i] for i in reference_cols if i < len(row) and _key(row[i]) in busy), None)
                if held is not None:
                    message = f"unable to obtain exclusive access to this record or 1 records: {held}"
                    results.append((False, ["", f"UNABLE_TO_LOCK_ROW:{message}:--", *row]))
                    continue
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
                    results.append((False, ["", sf_error(exc.status_code, exc.message, exc.fields), *row]))
                except ApiError as exc:
                    results.append((False, ["", sf_error(exc.error_code, exc.message, None), *row]))
            if deferred:
                writer.flush_deferred(self.obj)
        rng = random.Random(f"{job.id}:{batch[0][0]}")
        order = list(range(len(results)))
        rng.shuffle(order)  # Salesforce does not keep input order in results
        for i in order:
            success, values = results[i]
            (ok_out if success else bad_out).writerow(values)
        self.bulk.pace_ingest(job, len(results))  # the batch is "processed" (and its parents locked) meanwhile
        job.processed += len(results)
        job.failed += sum(1 for success, _ in results if not success)

    def _ext_key(self, ext: FieldDef, value: Any) -> Any:
        value = coerce(ext, value)
        return value.lower() if isinstance(value, str) and not ext.case_sensitive else value

    def _repeated(
        self, batch: list[tuple[int, list[str]]], columns: list[tuple[str, FieldDef | None, Any]]
    ) -> dict[int, str]:
        """The positions of rows whose key (the Id of an update or delete, the external id of an upsert) another
        row of the batch repeats, with the error each fails with: Salesforce fails them all rather than applying
        them in an order it does not promise."""
        op = self.job.operation
        key_field = self.obj.field(self.job.external_id or "") if op == "upsert" else self.obj.field("Id")
        if op not in ("upsert", "update", "delete", "hardDelete") or key_field is None:
            return {}
        at = next((i for i, (kind, f, _) in enumerate(columns) if kind == "field" and f is key_field), None)
        if at is None:
            return {}
        positions: dict[Any, list[int]] = {}
        for pos, (_, row) in enumerate(batch):
            if len(row) != len(columns) or not row[at]:
                continue
            value = row[at]
            if key_field.name == "Id":
                key: Any = to18(value) or value
            else:
                try:
                    key = self._ext_key(key_field, value)
                except ValueTypeError:
                    continue  # the row fails on its value anyway
            positions.setdefault(key, []).append(pos)
        out: dict[int, str] = {}
        for found in positions.values():
            if len(found) < 2:
                continue
            for pos in found:
                value = batch[pos][1][at]
                if op == "upsert" and key_field.name != "Id":
                    message = f"Duplicate external id specified: {value}"
                    error = sf_error("DUPLICATE_EXTERNAL_ID", message, [key_field.name])
                else:
                    error = sf_error("DUPLICATE_VALUE", f"Duplicate id in list: {value}", None)
                out[pos] = error
        return out

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
        if op == "insert" and self.obj.is_event:  # publishing platform events through Bulk
            return writer.publish(self.obj, body)[0], True
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


def sf_error(code: str, message: str, fields: list[str] | None) -> str:
    """A failed row's ``sf__Error``: ``CODE:message:Field1,Field2 --``, or ``CODE:message:--`` without fields."""
    return f"{code}:{message}:{','.join(fields)} --" if fields else f"{code}:{message}:--"
