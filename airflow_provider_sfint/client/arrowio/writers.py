"""Arrow -> Parquet, CSV and JSONL files, and query outputs committed only when complete (``QueryOutput``): parts
under staging names, a manifest written last as the switch, the previous version removed after it.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..crashpoints import crash_point

FORMATS = ("parquet", "csv", "jsonl")
SUCCESS_MARKER = "_SUCCESS"
STAGING_PREFIX = "_sfint_staging_"

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
