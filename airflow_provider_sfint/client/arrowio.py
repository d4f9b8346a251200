"""Bulk CSV <-> Arrow: describe-typed parsing, and Parquet/CSV/JSONL output committed only when complete.

Parsing always uses ``newlines_in_values=True`` (Salesforce text holds every newline variant), takes
only the empty field as null (``NA``, ``null``, ``#N/A`` stay text) and types each column from describe,
never by inference, so the same SOQL always gives the same schema, whatever the rows hold.

Outputs are written under temporary names next to their destination and renamed into place by
:meth:`QueryOutput.commit`; a failed or killed task never leaves a file that looks finished.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import pathlib
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .crashpoints import crash_point
from .errors import PreflightError, UnknownFieldError, did_you_mean

FORMATS = ("parquet", "csv", "jsonl")
SUCCESS_MARKER = "_SUCCESS"
STAGING_PREFIX = "_sfint_staging_"

_INTEGER_TYPES = frozenset({"int", "long"})
_FLOAT_TYPES = frozenset({"double", "percent"})
_STRING_TYPES = frozenset(
    {"id", "reference", "string", "picklist", "multipicklist", "combobox", "textarea", "phone", "url", "email"}
)


def arrow_type(sf_field: dict[str, Any]) -> pa.DataType:
    """The Arrow type of a describe field (what Bulk CSV text of that field parses to)."""
    t = str(sf_field.get("type", "string")).lower()
    if t == "boolean":
        return pa.bool_()
    if t in _INTEGER_TYPES:
        return pa.int64()
    if t in _FLOAT_TYPES:
        return pa.float64()
    if t == "currency":
        precision = int(sf_field.get("precision") or 18)
        scale = int(sf_field.get("scale") or 0)
        return pa.decimal128(max(1, min(38, precision)), max(0, min(scale, precision)))
    if t == "date":
        return pa.date32()
    if t == "datetime":
        return pa.timestamp("ms", tz="UTC")
    if t == "time":
        return pa.time32("ms")
    return pa.string()


class Describer(Protocol):
    def __call__(self, obj: str) -> dict[str, Any]: ...


@dataclass
class ColumnResolver:
    """Maps query columns (``Name``, ``Account.Owner.Name``) to describe fields, following relationships
    through the related objects' describes (cached by the client)."""

    describe: Describer
    _fields: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def fields(self, obj: str) -> dict[str, dict[str, Any]]:
        key = obj.lower()
        if key not in self._fields:
            self._fields[key] = {str(f["name"]).lower(): f for f in self.describe(obj).get("fields", [])}
        return self._fields[key]

    def resolve(self, obj: str, column: str) -> tuple[str, dict[str, Any]]:
        """(canonical dotted name, describe field) of ``column`` on ``obj``; raises ValueError naming it."""
        parts = column.split(".")
        current = obj
        names = []
        for depth, part in enumerate(parts):
            fields = self.fields(current)
            if depth == len(parts) - 1:
                found = fields.get(part.lower())
                if found is None:
                    hint = did_you_mean(part, (str(f["name"]) for f in fields.values()))
                    raise UnknownFieldError(f"{current} has no field {part!r} (column {column!r}){hint}")
                names.append(str(found["name"]))
                return ".".join(names), found
            rel = next(
                (f for f in fields.values() if str(f.get("relationshipName") or "").lower() == part.lower()), None
            )
            if rel is None or not rel.get("referenceTo"):
                hint = did_you_mean(
                    part, (str(f["relationshipName"]) for f in fields.values() if f.get("relationshipName"))
                )
                raise UnknownFieldError(f"{current} has no relationship {part!r} (column {column!r}){hint}")
            names.append(str(rel["relationshipName"]))
            current = str(rel["referenceTo"][0])
        raise ValueError(f"empty column name in {column!r}")  # pragma: no cover

    def schema(self, obj: str, columns: Iterable[str]) -> pa.Schema:
        """The Arrow schema of ``columns``; every unknown column is reported at once."""
        out = []
        unknown: list[str] = []
        for column in columns:
            try:
                name, f = self.resolve(obj, column)
            except UnknownFieldError as exc:
                unknown.append(str(exc))
                continue
            meta = {b"salesforce_type": str(f.get("type", "")).encode()}
            out.append(pa.field(name, arrow_type(f), nullable=True, metadata=meta))
        if unknown:
            count = f"{len(unknown)} unknown columns: " if len(unknown) > 1 else ""
            raise UnknownFieldError(count + "; ".join(unknown))
        names = [f.name.lower() for f in out]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"the query selects {', '.join(dupes)} more than once")
        return pa.schema(out)


def _time_from_text(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``HH:MM:SS.sssZ`` text as time32[ms]."""

    def part(start: int, stop: int) -> Any:
        return pc.cast(pc.utf8_slice_codeunits(column, start, stop), pa.int32())

    millis = part(9, 12)
    total = pc.add(
        pc.add(pc.multiply(part(0, 2), 3_600_000), pc.multiply(part(3, 5), 60_000)),
        pc.add(pc.multiply(part(6, 8), 1000), pc.if_else(pc.equal(pc.utf8_length(column), 8), 0, millis)),
    )
    return pc.cast(total, pa.time32("ms"))


@dataclass
class CsvParser:
    """Parses Bulk CSV bytes into tables of ``schema`` (header checked, names taken from the schema)."""

    schema: pa.Schema
    delimiter: str = ","

    def __post_init__(self) -> None:
        types: dict[str, pa.DataType] = {}
        self._time_columns = []
        for f in self.schema:
            if pa.types.is_time(f.type):
                types[f.name] = pa.string()
                self._time_columns.append(f.name)
            else:
                types[f.name] = f.type
        self._parse = pacsv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True, double_quote=True)
        self._convert = pacsv.ConvertOptions(
            column_types=types,
            null_values=[""],
            true_values=["true"],
            false_values=["false"],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            include_columns=list(types),
        )
        self._lower = [f.name.lower() for f in self.schema]

    def header(self, body: bytes | pa.Buffer) -> list[str]:
        """The column names on the first line (a quoted name holds no newline)."""
        head = body[: 1 << 16] if isinstance(body, bytes) else body.slice(0, min(body.size, 1 << 16)).to_pybytes()
        end = head.find(b"\n")
        first = head[: end if end >= 0 else len(head)].rstrip(b"\r").decode("utf-8-sig")
        return [c.strip().strip('"') for c in first.split(self.delimiter)] if first else []

    def parse(self, body: bytes | pa.Buffer) -> pa.Table:
        """One page of Bulk CSV (header line first) as a table of the schema."""
        header = self.header(body)
        if not header:  # an empty body: no rows, not even a header
            return self.schema.empty_table()
        if [h.lower() for h in header] != self._lower:
            raise ValueError(f"result columns {header} do not match the query's columns {self.schema.names}")
        # Pages are parsed several at once by the caller; one thread and 1 MiB blocks per page parse faster
        # here than pyarrow's own threads and 16 MiB blocks, at a third of the transient memory (measured).
        read = pacsv.ReadOptions(column_names=self.schema.names, skip_rows=1, block_size=1 << 20, use_threads=False)
        source = pa.BufferReader(body) if isinstance(body, pa.Buffer) else io.BytesIO(body)
        table = pacsv.read_csv(source, read_options=read, parse_options=self._parse, convert_options=self._convert)
        for name in self._time_columns:
            i = table.schema.get_field_index(name)
            table = table.set_column(i, name, _time_from_text(table.column(i)))
        return table.cast(self.schema)

    def parse_chunks(self, chunks: Iterable[bytes]) -> tuple[pa.Table, int]:
        """Parse a page as its chunks arrive, through pyarrow's streaming CSV reader, so the raw page is
        never held whole; returns the table and its row count."""
        stream = _ChunkStream(iter(chunks))
        header = self.header(stream.peek_line())
        if not header:
            return self.schema.empty_table(), 0
        if [h.lower() for h in header] != self._lower:
            raise ValueError(f"result columns {header} do not match the query's columns {self.schema.names}")
        read = pacsv.ReadOptions(column_names=self.schema.names, skip_rows=1, block_size=1 << 20, use_threads=False)
        reader = pacsv.open_csv(stream, read_options=read, parse_options=self._parse, convert_options=self._convert)
        table = reader.read_all()
        for name in self._time_columns:
            i = table.schema.get_field_index(name)
            table = table.set_column(i, name, _time_from_text(table.column(i)))
        return table.cast(self.schema), table.num_rows


class _ChunkStream(io.RawIOBase):
    """A readable file over an iterator of byte chunks (what pyarrow's streaming reader pulls from)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self._offset = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def peek_line(self) -> bytes:
        """The bytes up to and including the first newline (or all, if there is none), not consumed."""
        while b"\n" not in self._buffer and not self._done:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                self._done = True
        return self._buffer

    def readinto(self, target: Any) -> int:
        """Fill ``target`` from as many chunks as it takes (pyarrow asks for whole blocks)."""
        view = memoryview(target).cast("B")
        filled = 0
        while filled < len(view):
            if self._offset >= len(self._buffer):
                if self._done:
                    break
                try:
                    self._buffer, self._offset = next(self._chunks), 0
                except StopIteration:
                    self._done = True
                    break
                continue
            n = min(len(view) - filled, len(self._buffer) - self._offset)
            view[filled : filled + n] = self._buffer[self._offset : self._offset + n]
            self._offset += n
            filled += n
        return filled


# --- writers -------------------------------------------------------------------------------------------


class TableWriter(Protocol):
    def write(self, table: pa.Table) -> None: ...

    def close(self) -> None: ...


class _ParquetWriter:
    def __init__(self, sink: Any, schema: pa.Schema) -> None:
        self._writer = pq.ParquetWriter(sink, schema, compression="snappy")

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._writer.write_table(table)

    def close(self) -> None:
        self._writer.close()


class _CsvWriter:
    """Every string quoted (so CR, LF and the rest survive any reader); null is an empty, unquoted field."""

    def __init__(self, sink: Any, schema: pa.Schema) -> None:
        self._schema = schema
        options = pacsv.WriteOptions(quoting_style="needed")
        self._writer = pacsv.CSVWriter(sink, _csv_schema(schema), write_options=options)

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._writer.write_table(_csv_ready(table))

    def close(self) -> None:
        self._writer.close()


def _csv_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, pa.string()) if _text_rendered(f.type) else f for f in schema])


def _text_rendered(t: pa.DataType) -> bool:
    return pa.types.is_timestamp(t) or pa.types.is_time(t) or pa.types.is_boolean(t)


def _render_text(column: Any, t: pa.DataType) -> Any:
    if pa.types.is_timestamp(t):
        return pc.strftime(column, format="%Y-%m-%dT%H:%M:%SZ")
    if pa.types.is_boolean(t):
        return pc.if_else(column, "true", "false")
    return pc.cast(column, pa.string())


def _csv_ready(table: pa.Table) -> pa.Table:
    """ISO datetimes with Z and milliseconds, lower-case booleans (pyarrow's defaults differ)."""
    for i, f in enumerate(table.schema):
        if _text_rendered(f.type):
            table = table.set_column(i, f.name, _render_text(table.column(i), f.type))
    return table


class _JsonlWriter:
    """One JSON object per line, every column present (null as ``null``); decimals as exact JSON numbers,
    dates and datetimes as ISO strings, text with every character kept (non-ASCII unescaped)."""

    def __init__(self, sink: Any, schema: pa.Schema) -> None:
        self._sink = sink
        self._keys = [json.dumps(name, ensure_ascii=False) + ":" for name in schema.names]

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        columns = [_json_fragments(table.column(i), f.type) for i, f in enumerate(table.schema)]
        keys = self._keys
        rows = zip(*columns, strict=True)
        lines = ["{" + ",".join([k + v for k, v in zip(keys, row, strict=True)]) + "}\n" for row in rows]
        self._sink.write("".join(lines).encode("utf-8"))

    def close(self) -> None:
        pass


_encode_string: Callable[[str], str] = json.JSONEncoder(ensure_ascii=False).encode


def _json_fragments(column: pa.ChunkedArray, t: pa.DataType) -> list[str]:
    if pa.types.is_string(t):
        return ["null" if v is None else _encode_string(v) for v in column.to_pylist()]
    if pa.types.is_floating(t):
        return ["null" if v is None else repr(v) for v in column.to_pylist()]
    if pa.types.is_integer(t) or pa.types.is_decimal(t):
        text = pc.cast(column, pa.string())
    elif pa.types.is_boolean(t):
        text = pc.if_else(column, "true", "false")
    else:  # date, datetime, time: quoted ISO text
        rendered = _render_text(column, t)
        text = pc.binary_join_element_wise('"', rendered, '"', "")
    return ["null" if v is None else v for v in text.to_pylist()]


_WRITERS: dict[str, Callable[[Any, pa.Schema], TableWriter]] = {
    "parquet": _ParquetWriter,
    "csv": _CsvWriter,
    "jsonl": _JsonlWriter,
}


def open_writer(fmt: str, sink: Any, schema: pa.Schema) -> TableWriter:
    if fmt not in _WRITERS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return _WRITERS[fmt](sink, schema)


# --- committed outputs ------------------------------------------------------------------------------------


class OutputPath(Protocol):
    """What an output location must offer: pathlib.Path, UPath and Airflow's ObjectStoragePath all do."""

    @property
    def name(self) -> str: ...

    @property
    def parent(self) -> Any: ...

    def __truediv__(self, other: str) -> Any: ...

    def open(self, mode: str = ...) -> Any: ...

    def exists(self) -> bool: ...

    def unlink(self) -> None: ...

    def mkdir(self, parents: bool = ..., exist_ok: bool = ...) -> None: ...

    def iterdir(self) -> Iterator[Any]: ...

    def rename(self, target: Any) -> Any: ...


@dataclass
class Part:
    """A closed part file in the staging area: its name there, rows, bytes, and the page it ends after."""

    name: str
    rows: int
    bytes: int
    last_page: int

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rows": self.rows, "bytes": self.bytes, "last_page": self.last_page}


class _CountingSink(io.RawIOBase):
    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n: int = self._handle.write(data)
        n = len(data) if n is None else n
        self.count += n
        return n

    def flush(self) -> None:
        self._handle.flush()


class QueryOutput:
    """Where query results go: one file, or a directory of part files (``output`` ending in ``/``).

    Rows are written to a staging name (``.<name>.sfint-<token>.tmp`` beside a file; a
    ``_sfint_staging_<token>/`` folder inside a directory) and only :meth:`commit` puts them under their
    final names; a directory gets a ``_SUCCESS`` manifest last. Closed parts survive a crash and are
    listed in :attr:`parts`, so a retried task can go on from the page after the last closed part.

    :param path: the destination
    :param fmt: parquet, csv or jsonl
    :param schema: the Arrow schema every part gets (also for zero rows)
    :param directory: write part files into ``path`` rather than one file at ``path``
    :param part_rows: rows per part file (closed at the first page boundary at or past it)
    :param token: names the staging area (the job id, so a retry of the same job finds it)
    :param parts: parts already closed by an earlier try of the same job
    """

    def __init__(
        self,
        path: OutputPath,
        fmt: str,
        schema: pa.Schema,
        *,
        directory: bool,
        token: str,
        part_rows: int | None = None,
        parts: list[dict[str, Any]] | None = None,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        self.path = path
        self.fmt = fmt
        self.schema = schema
        self.directory = directory
        self.part_rows = part_rows
        self.token = token
        self.parts = [Part(**p) for p in parts or []]
        self._writer: TableWriter | None = None
        self._handle: Any = None
        self._sink: _CountingSink | None = None
        self._rows = 0
        self._last_page = -1
        if directory:
            self.staging: Any = path / f"{STAGING_PREFIX}{token}"
        else:
            self.staging = path.parent / f".{path.name}.sfint-{token}.tmp"

    @staticmethod
    def check_writable(path: OutputPath, directory: bool) -> None:
        """Write and remove a probe file where the output goes; raises naming the location and the real cause.

        Only a local folder is created; on an object store nothing is created first (a misspelled bucket must
        fail here, never be made), and the probe itself makes the prefix.
        """
        folder = path if directory else path.parent
        raw = getattr(path, "protocol", None) or "file"  # fsspec protocols may be a tuple of names
        protocol = str(raw[0] if isinstance(raw, tuple | list) else raw)
        try:
            if protocol in ("file", "local"):
                folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".sfint-probe-{uuid.uuid4().hex}"
            with probe.open("wb") as handle:
                handle.write(b"probe")
            probe.unlink()
        except ImportError as exc:
            raise PermissionError(
                f"output location {folder}: the filesystem for {protocol}:// is not installed ({exc}); for S3 install "
                "apache-airflow-providers-amazon[s3fs], for GCS apache-airflow-providers-google (no Salesforce job "
                "was created)"
            ) from exc
        except FileNotFoundError as exc:
            where = "the bucket or container does not exist or is not visible" if protocol != "file" else "missing"
            raise PermissionError(
                f"output location {folder}: {where} ({type(exc).__name__}: {exc}); fix the path (buckets are never "
                "created for you; no Salesforce job was created)"
            ) from exc
        except Exception as exc:
            raise PermissionError(
                f"output location {folder} is not writable ({type(exc).__name__}: {exc}); fix the path or its "
                "permissions (no Salesforce job was created)"
            ) from exc

    @property
    def rows_written(self) -> int:
        return sum(p.rows for p in self.parts) + self._rows

    @property
    def pages_committed(self) -> int:
        """Pages fully inside closed parts (a retry resumes after them)."""
        return self.parts[-1].last_page + 1 if self.parts and self.directory else 0

    def _part_name(self, n: int) -> str:
        return f"part-{n:05d}.{self.fmt}"

    def _open(self) -> None:
        if self.directory:
            self.staging.mkdir(parents=True, exist_ok=True)
            target = self.staging / self._part_name(len(self.parts))
        else:
            target = self.staging
        self._handle = target.open("wb")
        self._sink = _CountingSink(self._handle)
        self._writer = open_writer(self.fmt, self._sink, self.schema)
        self._rows = 0

    def write(self, table: pa.Table, page: int) -> Part | None:
        """Write one page's rows; returns the part closed by it, if any (persist it for resume)."""
        if self._writer is None:
            self._open()
        assert self._writer is not None
        self._writer.write(table)
        self._rows += table.num_rows
        self._last_page = page
        if self.directory and self.part_rows and self._rows >= self.part_rows:
            return self._close_part()
        return None

    def _close_part(self) -> Part:
        assert self._writer is not None and self._sink is not None
        self._writer.close()
        self._handle.close()
        part = Part(self._part_name(len(self.parts)), self._rows, self._sink.count, self._last_page)
        self.parts.append(part)
        self._writer = self._handle = self._sink = None
        self._rows = 0
        return part

    def final_name(self, part: Part) -> str:
        """A committed part's name: unique to the job (``part-00003-<job>.parquet``), so a new version of the
        dataset is written beside the live one and never over it."""
        stem, _, suffix = part.name.rpartition(".")
        return f"{stem}-{self.token}.{suffix}"

    def commit(self) -> list[str]:
        """Close what is open and put everything under its final name; returns the committed paths.

        Safe to run again from any point where an earlier try stopped (a kill mid-commit, or after it):
        a part already moved is not moved again, and nothing committed is deleted before the new version is
        complete. For a directory, the ``_SUCCESS`` manifest, written last in one piece, is the switch from the
        previous version to this one; the previous version's parts are deleted only after it. On object stores
        (where a rename is a copy and a delete) readers that go through the manifest never see a mix.
        """
        if self._writer is not None or not self.parts:
            if self._writer is None:
                self._open()  # zero rows (or none since the last part): a valid file with the schema
            self._close_part()
        if not self.directory:
            if _exists(self.staging):
                self.staging.rename(self.path)  # replaces the previous file in one step; never deleted first
            elif not _exists(self.path):
                raise FileNotFoundError(f"neither the staged output {self.staging} nor {self.path} exists")
            return [str(self.path)]
        committed = []
        for part in self.parts:
            staged, target = self.staging / part.name, self.path / self.final_name(part)
            if _exists(staged):
                if _exists(target):  # an earlier try copied it and was stopped before removing the source
                    staged.unlink()
                else:
                    staged.rename(target)
                    crash_point("commit.part_moved")
            elif not _exists(target):
                raise FileNotFoundError(
                    f"part {part.name} of job {self.token} is neither staged in {self.staging} nor committed as "
                    f"{target}: the output cannot be completed; clear the task to run the query again"
                )
            committed.append(str(target))
        manifest = {
            "files": [{**p.as_dict(), "name": self.final_name(p)} for p in self.parts],
            "rows": self.rows_written,
            "format": self.fmt,
            "job": self.token,
            "schema": [{"name": f.name, "type": str(f.type)} for f in self.schema],
        }
        marker = self.path / SUCCESS_MARKER
        with marker.open("wb") as handle:  # one object, written whole: the switch to this version
            handle.write(json.dumps(manifest, indent=1).encode())
        crash_point("commit.manifest_written")
        current = {self.final_name(p) for p in self.parts}
        suffix = f".{self.fmt}"
        for old in self.path.iterdir():  # the previous version's parts, and abandoned tries' staging
            previous = old.name.startswith("part-") and old.name.endswith(suffix) and old.name not in current
            if previous or old.name.startswith(STAGING_PREFIX):
                _remove_tree(old)
        return committed

    def discard(self) -> None:
        """Remove staged data (after a failure that a retry cannot resume)."""
        if self._writer is not None:
            try:
                self._writer.close()
                self._handle.close()
            except Exception:
                pass
            self._writer = None
        _remove_tree(self.staging)
        self.parts = []


def _exists(path: Any) -> bool:
    try:
        return bool(path.exists())
    except FileNotFoundError:
        return False


def _remove_tree(path: Any) -> None:
    """Remove a file or a folder with everything in it. Tolerates object stores, where a "folder" vanishes with
    its last object (so it may be gone, or never have existed as such, by the time it is removed)."""
    try:
        if path.is_dir():
            for child in list(path.iterdir()):
                _remove_tree(child)
            try:
                path.rmdir()
            except (FileNotFoundError, NotADirectoryError):
                pass
        elif _exists(path):
            path.unlink()
    except FileNotFoundError:
        pass


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


def text_csv_options(names: list[str]) -> dict[str, Any]:
    """pyarrow CSV options that read every column as text, exactly as written: a header line skipped,
    newlines inside quoted values kept, and only the empty field taken as null."""
    return {
        "read_options": pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 20, use_threads=False),
        "parse_options": pacsv.ParseOptions(newlines_in_values=True),
        "convert_options": pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    }


def read_text_csv(path: str) -> pa.Table:
    """A whole (small) CSV file as text columns, e.g. a job's failed results."""
    with open(path, "rb") as handle:
        batches = list(_csv_text_batches(handle, 1 << 20))
    return pa.Table.from_batches(batches) if batches else pa.table({})


def _csv_text_batches(handle: Any, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """A CSV file as batches of text columns: values stay exactly as written (no type guessing, and only
    the empty field is null)."""
    stream = _ChunkStream(iter(lambda: handle.read(1 << 16), b""))
    head = stream.peek_line()
    end = head.find(b"\n")
    first = head[: end if end >= 0 else len(head)].decode("utf-8-sig").rstrip("\r")
    names = next(csv.reader([first])) if first.strip() else []
    if not names:
        return
    reader = pacsv.open_csv(stream, **text_csv_options(names))
    for batch in reader:
        yield from pa.Table.from_batches([batch]).to_batches(batch_rows)


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
                yield from _csv_text_batches(handle, batch_rows)
            else:
                import pyarrow.json as pajson

                reader = pajson.open_json(handle, read_options=pajson.ReadOptions(block_size=1 << 20))
                for batch in reader:
                    yield from pa.Table.from_batches([batch]).to_batches(batch_rows)


def local_path(path: Any) -> str | None:
    """A local path's plain text form (pyarrow reads it natively, ``os.replace`` renames it atomically); None for
    a path on another filesystem. Takes text, ``pathlib`` paths and ObjectStoragePath/UPath (``file://`` or none)."""
    protocol = getattr(path, "protocol", None)  # checked first: some UPath versions are also PurePaths
    if protocol is not None:
        if protocol in ("file", "local", "") and isinstance(getattr(path, "path", None), str):
            return str(path.path)
        return None
    if isinstance(path, str | os.PathLike):
        return str(pathlib.Path(path))
    return None


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
            if t in _STRING_TYPES and length:
                bad = pc.or_(bad, pc.greater(pc.utf8_length(values), int(length)))
            rows = pc.indices_nonzero(pc.fill_null(bad, False)).to_pylist()
            for i in rows[:5]:
                value = values[i].as_py()
                if value == SET_NULL:
                    why = "is the literal text #N/A, which Bulk CSV can only read as 'set null'"
                elif t in _STRING_TYPES:
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
