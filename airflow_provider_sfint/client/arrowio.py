"""Bulk CSV <-> Arrow: describe-typed parsing, and Parquet/CSV/JSONL output committed only when complete.

Parsing always uses ``newlines_in_values=True`` (Salesforce text holds every newline variant), takes
only the empty field as null (``NA``, ``null``, ``#N/A`` stay text) and types each column from describe,
never by inference, so the same SOQL always gives the same schema, whatever the rows hold.

Outputs are written under temporary names next to their destination and renamed into place by
:meth:`QueryOutput.commit`; a failed or killed task never leaves a file that looks finished.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

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
                    raise ValueError(f"{current} has no field {part!r} (column {column!r})")
                names.append(str(found["name"]))
                return ".".join(names), found
            rel = next(
                (f for f in fields.values() if str(f.get("relationshipName") or "").lower() == part.lower()), None
            )
            if rel is None or not rel.get("referenceTo"):
                raise ValueError(f"{current} has no relationship {part!r} (column {column!r})")
            names.append(str(rel["relationshipName"]))
            current = str(rel["referenceTo"][0])
        raise ValueError(f"empty column name in {column!r}")  # pragma: no cover

    def schema(self, obj: str, columns: Iterable[str]) -> pa.Schema:
        out = []
        for column in columns:
            name, f = self.resolve(obj, column)
            meta = {b"salesforce_type": str(f.get("type", "")).encode()}
            out.append(pa.field(name, arrow_type(f), nullable=True, metadata=meta))
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
        """Create the location and write and remove a probe file there; raises with what to fix."""
        folder = path if directory else path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".sfint-probe-{uuid.uuid4().hex}"
            with probe.open("wb") as handle:
                handle.write(b"probe")
            probe.unlink()
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

    def commit(self) -> list[str]:
        """Close what is open and move everything to its final name; returns the committed paths."""
        if self._writer is not None or not self.parts:
            if self._writer is None:
                self._open()  # zero rows (or none since the last part): a valid file with the schema
            self._close_part()
        if not self.directory:
            if self.path.exists():
                self.path.unlink()
            self.staging.rename(self.path)
            return [str(self.path)]
        marker = self.path / SUCCESS_MARKER
        if marker.exists():
            marker.unlink()
        suffix = f".{self.fmt}"
        for old in self.path.iterdir():
            if old.name.startswith("part-") and old.name.endswith(suffix):
                old.unlink()
        committed = []
        for part in self.parts:
            target = self.path / part.name
            (self.staging / part.name).rename(target)
            committed.append(str(target))
        manifest = {
            "files": [p.as_dict() for p in self.parts],
            "rows": self.rows_written,
            "format": self.fmt,
            "schema": [{"name": f.name, "type": str(f.type)} for f in self.schema],
        }
        with marker.open("wb") as handle:
            handle.write(json.dumps(manifest, indent=1).encode())
        for leftover in self.path.iterdir():  # ours, and any an abandoned earlier try left behind
            if leftover.name.startswith(STAGING_PREFIX):
                _remove_tree(leftover)
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


def _remove_tree(path: Any) -> None:
    try:
        if not path.exists():
            return
        if path.is_dir():
            for child in path.iterdir():
                _remove_tree(child)
            path.rmdir()
        else:
            path.unlink()
    except FileNotFoundError:
        pass
