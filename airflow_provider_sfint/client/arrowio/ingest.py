"""Ingest planning: input sources read as Arrow batches, columns planned and values checked against describe
before any job, CSV serialisation with the null policy, and byte-exact splitting into upload parts.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import PreflightError, UnknownFieldError, did_you_mean
from .parsing import csv_text_batches
from .types import STRING_TYPES, ColumnResolver
from .writers import OutputPath, local_path

# --- ingest: sources, preflight, serialisation and splitting ---------------------------------------------

NULL_POLICIES = ("leave_unchanged", "set_null")
SET_NULL = "#N/A"
SOURCE_SUFFIXES = (".parquet", ".csv", ".jsonl", ".json", ".ndjson")
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_TEXT_PATTERNS = {
    "boolean": r"^(?i)(true|false|1|0)$",
    "int": r"^[+-]?\d+$",
    "double": _NUMBER,
    "percent": _NUMBER,
    "currency": _NUMBER,
    "date": r"^\d{4}-\d{2}-\d{2}Z?$",
    "datetime": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?$",
    "time": r"^\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?Z?$",
}


def source_files(path: OutputPath) -> list[Any]:
    """The data files of a source: the file itself, or a directory's files (``_*`` and ``.*`` skipped)."""
    if path.name.endswith(SOURCE_SUFFIXES):
        return [path]
    files = sorted(
        (p for p in path.iterdir() if p.name.endswith(SOURCE_SUFFIXES) and not p.name.startswith(("_", "."))),
        key=lambda p: p.name,
    )
    if not files:
        raise FileNotFoundError(f"source {path} holds no .parquet, .csv or .jsonl files")
    return files


def iter_source(source: Any, batch_rows: int = 20_000) -> Iterator[pa.RecordBatch]:
    """Record batches from a pandas DataFrame, an Arrow table, or a Parquet/CSV/JSONL file or directory
    (any ObjectStoragePath), read as a stream: a file source is never held whole."""
    if isinstance(source, pa.Table):
        yield from source.to_batches(batch_rows)
        return
    if type(source).__name__ == "DataFrame" and hasattr(source, "columns"):
        yield from pa.Table.from_pandas(source, preserve_index=False).to_batches(batch_rows)
        return
    for path in source_files(source):
        local = local_path(path)
        with pa.OSFile(local, "rb") if local else path.open("rb") as handle:
            name = path.name.lower()
            if name.endswith(".parquet"):
                # Buffered, not pre-buffered, no threads: pages are read as batches need them.
                parquet = pq.ParquetFile(handle, buffer_size=1 << 20, pre_buffer=False)
                yield from parquet.iter_batches(batch_size=batch_rows, use_threads=False)
            elif name.endswith(".csv"):
                yield from csv_text_batches(handle, batch_rows)
            else:
                import pyarrow.json as pajson

                reader = pajson.open_json(handle, read_options=pajson.ReadOptions(block_size=1 << 20))
                for batch in reader:
                    yield from pa.Table.from_batches([batch]).to_batches(batch_rows)


@dataclass(frozen=True)
class IngestColumn:
    """A CSV header name and the describe field it writes (for ``Rel.ExtId`` columns, the related field)."""

    name: str
    field: dict[str, Any]

    @property
    def sf_type(self) -> str:
        return str(self.field.get("type", "string")).lower()


@dataclass
class IngestPlan:
    """What will be written, checked against describe before any job exists."""

    obj: str
    operation: str
    columns: list[IngestColumn]
    key: str | None  # the column that identifies a row in results (external id or Id)
    source_names: list[str]  # the input's column names, in order, matching ``columns``

    @property
    def header(self) -> list[str]:
        return [c.name for c in self.columns]


def plan_ingest(
    resolver: ColumnResolver,
    obj: str,
    operation: str,
    source_columns: list[str],
    *,
    external_id_field: str | None = None,
    column_mapping: dict[str, str] | None = None,
) -> IngestPlan:
    """Map input columns to fields and check them for ``operation``; raises :class:`PreflightError`."""
    mapping = column_mapping or {}
    unknown_sources = sorted(set(mapping) - set(source_columns))
    problems = [f"column_mapping names {c!r}, which the input does not have" for c in unknown_sources]
    fields = resolver.fields(obj)
    columns: list[IngestColumn] = []
    for source in source_columns:
        target = mapping.get(source, source)
        try:
            name, f = resolver.resolve(obj, target)
        except UnknownFieldError:
            hint = did_you_mean(target, (str(x["name"]) for x in fields.values()))
            problems.append(
                f"column {source!r}: {obj} has no field {target!r}{hint or '; map it with column_mapping or drop it'}"
            )
            continue
        if "." in name:
            rel = name.split(".")[0]
            if len(name.split(".")) != 2:
                problems.append(f"column {source!r}: only one relationship level can be written ({name})")
            elif not (f.get("externalId") or f.get("idLookup")):
                problems.append(
                    f"column {source!r}: {name} must end in an external id or idLookup field of the "
                    f"related object to set the {rel} relationship"
                )
            columns.append(IngestColumn(name, f))
            continue
        if operation in ("delete", "hardDelete") and name != "Id":
            problems.append(f"column {source!r}: {operation} takes only the Id column; drop {name}")
        elif operation == "insert" and not f.get("createable"):
            problems.append(f"column {source!r}: {obj}.{name} is not createable")
        elif operation == "update" and name != "Id" and not f.get("updateable"):
            problems.append(f"column {source!r}: {obj}.{name} is not updateable")
        elif operation == "upsert" and name != external_id_field and not (f.get("createable") or f.get("updateable")):
            problems.append(f"column {source!r}: {obj}.{name} is neither createable nor updateable")
        columns.append(IngestColumn(name, f))
    names = [c.name for c in columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    problems += [f"two input columns write {n}" for n in dupes]
    key: str | None = None
    if operation == "upsert":
        if not external_id_field:
            problems.append("upsert needs external_id_field")
        else:
            ext = fields.get(external_id_field.lower())
            if ext is None:
                problems.append(f"external_id_field {external_id_field!r}: {obj} has no such field")
            elif not (ext.get("externalId") or ext.get("idLookup")):
                problems.append(
                    f"external_id_field {external_id_field!r}: {obj}.{ext['name']} is not an External ID or "
                    "idLookup field, so Salesforce cannot match rows on it"
                )
            elif str(ext["name"]) not in names:
                problems.append(f"external_id_field {ext['name']!r} is not a column of the input")
            else:
                key = str(ext["name"])
    elif operation in ("update", "delete", "hardDelete"):
        key = "Id"
        if "Id" not in names:
            problems.append(f"{operation} needs an Id column")
    if operation == "insert":
        for f in fields.values():
            required = (
                f.get("createable")
                and not f.get("nillable", True)
                and not f.get("defaultedOnCreate")
                and str(f.get("type")) != "boolean"
            )
            if required and str(f["name"]) not in names:
                problems.append(f"{obj}.{f['name']} is required for insert and is not a column of the input")
    if problems:
        raise PreflightError(obj, problems)
    kept = [s for s in source_columns if _kept(resolver, obj, mapping.get(s, s))]
    return IngestPlan(obj, operation, columns, key, kept)


def _kept(resolver: ColumnResolver, obj: str, target: str) -> bool:
    try:
        resolver.resolve(obj, target)
    except ValueError:
        return False
    return True


def check_values(plan: IngestPlan, batch: pa.RecordBatch, first_row: int) -> list[str]:
    """Values of ``batch`` that cannot be their field's type (row numbers count from 1 over the input)."""
    problems: list[str] = []
    for column, source in zip(plan.columns, plan.source_names, strict=True):
        values = batch.column(batch.schema.get_field_index(source))
        t = column.sf_type
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            bad = pc.equal(values, SET_NULL)
            pattern = _TEXT_PATTERNS.get(t)
            if pattern is not None:
                nonblank = pc.not_equal(pc.utf8_trim_whitespace(values), "")
                bad = pc.or_(bad, pc.and_(nonblank, pc.invert(pc.match_substring_regex(values, pattern))))
            length = column.field.get("length")
            if t in STRING_TYPES and length:
                bad = pc.or_(bad, pc.greater(pc.utf8_length(values), int(length)))
            rows = pc.indices_nonzero(pc.fill_null(bad, False)).to_pylist()
            for i in rows[:5]:
                value = values[i].as_py()
                if value == SET_NULL:
                    why = "is the literal text #N/A, which Bulk CSV can only read as 'set null'"
                elif t in STRING_TYPES:
                    why = f"is {len(value)} characters, over the field's {length}"
                else:
                    why = f"is not a valid {t}"
                problems.append(f"row {first_row + i + 1}, column {source!r}: {value[:60]!r} {why}")
            if len(rows) > 5:
                problems.append(f"column {source!r}: {len(rows) - 5} more rows like these")
        elif not _arrow_fits(values.type, t):
            problems.append(f"column {source!r} holds {values.type} values, which cannot be {column.name} ({t})")
    return problems


def _arrow_fits(arrow: pa.DataType, sf_type: str) -> bool:
    if pa.types.is_null(arrow):
        return True
    if sf_type == "boolean":
        return pa.types.is_boolean(arrow)
    if sf_type in ("int", "double", "percent", "currency"):
        return pa.types.is_integer(arrow) or pa.types.is_floating(arrow) or pa.types.is_decimal(arrow)
    if sf_type == "date":
        return pa.types.is_date(arrow) or pa.types.is_timestamp(arrow)
    if sf_type == "datetime":
        return pa.types.is_timestamp(arrow) or pa.types.is_date(arrow)
    if sf_type == "time":
        return pa.types.is_time(arrow)
    return not pa.types.is_nested(arrow) and not pa.types.is_binary(arrow)


def _plain_number(text: str) -> str:
    """``1e-05`` -> ``0.00001``: Salesforce CSV numbers are written without an exponent."""
    return format(Decimal(text), "f")


def csv_text(plan: IngestPlan, batch: pa.RecordBatch, null_policy: str) -> pa.Table:
    """``batch`` as the text Salesforce reads: ISO dates, datetimes with milliseconds and Z, true/false,
    numbers without exponent; null as ``#N/A`` (set null) or empty (leave unchanged) per ``null_policy``."""
    fill = SET_NULL if null_policy == "set_null" else ""
    out = []
    for column, source in zip(plan.columns, plan.source_names, strict=True):
        values = batch.column(batch.schema.get_field_index(source))
        t = values.type
        if pa.types.is_timestamp(t):
            if t.tz is None:
                values = pc.assume_timezone(values, "UTC")
            text = pc.strftime(pc.cast(values, pa.timestamp("ms", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")
            if column.sf_type == "date":
                text = pc.utf8_slice_codeunits(text, 0, 10)
        elif pa.types.is_date(t):
            text = pc.strftime(values, format="%Y-%m-%d")
            if column.sf_type == "datetime":
                text = pc.binary_join_element_wise(text, "T00:00:00.000Z", "")
        elif pa.types.is_boolean(t):
            text = pc.if_else(values, "true", "false")
        elif pa.types.is_time(t):
            text = pc.binary_join_element_wise(pc.cast(pc.cast(values, pa.time32("ms")), pa.string()), "Z", "")
        elif pa.types.is_floating(t):
            text = pc.cast(values, pa.string())
            exponent = pc.fill_null(pc.match_substring(text, "e"), False)
            if pc.any(exponent).as_py():
                items = text.to_pylist()
                flags = exponent.to_pylist()
                text = pa.array([_plain_number(v) if f else v for v, f in zip(items, flags, strict=True)], pa.string())
        elif pa.types.is_null(t):
            text = pa.nulls(len(values), pa.string())
        else:
            text = pc.cast(values, pa.string())
        if column.sf_type in ("date", "datetime", "time", "boolean", "int", "double", "percent", "currency"):
            text = pc.if_else(pc.equal(pc.utf8_trim_whitespace(text), ""), pa.scalar(None, pa.string()), text)
        out.append(pc.fill_null(text, fill))
    return pa.Table.from_arrays(out, names=plan.header)


def csv_header(names: list[str]) -> bytes:
    return (",".join('"' + n.replace('"', '""') + '"' for n in names) + "\n").encode("utf-8")


def csv_rows(table: pa.Table) -> bytes:
    """Rows only (no header), every value quoted, LF line endings."""
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, write_options=pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
    return sink.getvalue().to_pybytes()


@dataclass
class UploadPart:
    """One job's worth of CSV, spooled to a local file: ``rows`` records, ``bytes`` in all."""

    index: int
    path: str
    rows: int
    bytes: int
    digest: str


class PartSplitter:
    """Cuts CSV text into parts of at most ``max_bytes`` (header included) on row boundaries, spooled to
    ``folder``; :meth:`add` takes tables of text, :meth:`finish` returns the parts."""

    def __init__(self, folder: str, header: list[str], max_bytes: int, rows_per_slice: int = 2000) -> None:
        self.folder = folder
        self.header = csv_header(header)
        self.max_bytes = max_bytes
        self.rows_per_slice = rows_per_slice
        self.parts: list[UploadPart] = []
        self._handle: Any = None
        self._rows = 0
        self._bytes = 0
        self._hash: Any = None

    def _open(self) -> None:
        path = os.path.join(self.folder, f"part-{len(self.parts):05d}.csv")
        self._handle = open(path, "wb")  # noqa: SIM115 - closed in _close
        self._handle.write(self.header)
        self._hash = hashlib.sha256(self.header)
        self._rows, self._bytes = 0, len(self.header)

    def _close(self) -> None:
        if self._handle is None:
            return
        self._handle.close()
        path = self._handle.name
        self.parts.append(UploadPart(len(self.parts), path, self._rows, self._bytes, self._hash.hexdigest()))
        self._handle = None

    def add(self, table: pa.Table, first_row: int = 0) -> None:
        if table.num_rows and self._handle is not None:  # the common case: the whole batch fits
            data = csv_rows(table)
            if self._bytes + len(data) <= self.max_bytes:
                self._handle.write(data)
                self._hash.update(data)
                self._rows += table.num_rows
                self._bytes += len(data)
                return
        start = 0
        while start < table.num_rows:
            chunk = table.slice(start, self.rows_per_slice)
            data = csv_rows(chunk)
            if len(self.header) + len(data) > self.max_bytes:  # too big even for a part of its own
                if chunk.num_rows == 1:
                    raise PreflightError(
                        "this job",
                        [f"row {first_row + start + 1} alone is {len(data)} bytes, over max_bytes_per_job"],
                    )
                self.rows_per_slice = max(1, chunk.num_rows // 2)
                continue
            if self._handle is not None and self._bytes + len(data) > self.max_bytes:
                self._close()
            if self._handle is None:
                self._open()
            self._handle.write(data)
            self._hash.update(data)
            self._rows += chunk.num_rows
            self._bytes += len(data)
            start += chunk.num_rows

    def finish(self) -> list[UploadPart]:
        self._close()
        return self.parts
