"""Ingest preflight: the whole input checked before any job exists (every value against its field, every key
present and unique, no row too big for a job of its own), so a load that cannot succeed sends nothing."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import PreflightError
from .ingest import IngestPlan, check_values, csv_header, csv_rows, csv_text


def preflight(
    obj: str,
    plan: IngestPlan,
    batches: Callable[[], Iterator[pa.RecordBatch]],
    max_bytes_per_job: int,
    null_policy: str,
) -> int:
    """First pass over the input: every value and key checked; raises before any job. Returns the rows."""
    problems: list[str] = []
    hashes: array[int] = array("q")
    rows = 0
    for batch in batches():
        problems += check_values(plan, batch, rows)
        problems += oversized_rows(plan, batch, rows, max_bytes_per_job, null_policy)
        if plan.key is not None:
            hashes.frombytes(key_hashes(plan, batch, rows, problems).tobytes())
        rows += batch.num_rows
        if len(problems) > 200:
            break
    if not problems:
        problems += duplicates(plan, hashes, batches)
    if problems:
        raise PreflightError(obj, problems)
    return rows


def oversized_rows(
    plan: IngestPlan, batch: pa.RecordBatch, first_row: int, max_bytes_per_job: int, null_policy: str
) -> list[str]:
    """Rows too big for a job of their own, found before any job starts (not half-way through the upload).
    A cheap upper bound (every byte doubled by quoting) picks the rows worth serialising."""
    limit = max_bytes_per_job
    room = limit - len(csv_header(plan.header))
    bound = pa.array([1] * batch.num_rows, pa.int64())  # the line break
    for source in plan.source_names:
        values = batch.column(batch.schema.get_field_index(source))
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type) or pa.types.is_binary(values.type):
            size = pc.fill_null(pc.binary_length(values), 0)
            bound = pc.add(bound, pc.add(pc.multiply(pc.cast(size, pa.int64()), 2), 3))
        else:
            bound = pc.add(bound, 64)  # numbers, dates and booleans as text, quoted, with a delimiter
    out = []
    for i in pc.indices_nonzero(pc.greater(bound, room)).to_pylist()[:25]:
        size = len(csv_rows(csv_text(plan, batch.slice(i, 1), null_policy)))
        if size > room:
            out.append(
                f"row {first_row + i + 1} is {size:,} bytes as CSV, more than max_bytes_per_job={limit:,} allows "
                "for one job; raise max_bytes_per_job or shorten the row"
            )
    return out


def duplicates(plan: IngestPlan, hashes: array[int], batches: Callable[[], Iterator[pa.RecordBatch]]) -> list[str]:
    """Rows whose key repeats an earlier row's: the 64-bit key hashes (one growing buffer, 8 bytes a row) are
    sorted in place; only if two are equal is the input read again to name the rows."""
    import numpy as np

    if not hashes:
        return []
    ordered = np.frombuffer(hashes, dtype=np.int64)
    ordered.sort()
    same = ordered[1:] == ordered[:-1]
    repeated = set(np.unique(ordered[1:][same]).tolist()) if same.any() else set()
    del ordered, same
    if not repeated:
        return []
    assert plan.key is not None
    source = plan.source_names[plan.header.index(plan.key)]
    first_seen: dict[str, int] = {}
    out: list[str] = []
    row = 0
    for batch in batches():
        values = batch.column(batch.schema.get_field_index(source))
        text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
        for i, value in enumerate(text.to_pylist()):
            if value is not None and hash(value) in repeated:
                if value in first_seen and len(out) < 50:
                    out.append(f"row {row + i + 1}: {plan.key} {value!r} repeats row {first_seen[value]}")
                first_seen.setdefault(value, row + i + 1)
        row += len(text)
    return out


def key_hashes(plan: IngestPlan, batch: pa.RecordBatch, first_row: int, out: list[str]) -> Any:
    """64-bit hashes of the batch's keys (8 bytes a row, so millions of rows cost little); empty keys are
    reported."""
    import numpy as np

    assert plan.key is not None
    source = plan.source_names[plan.header.index(plan.key)]
    values = batch.column(batch.schema.get_field_index(source))
    text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
    empty = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(text), ""), True)
    for i in pc.indices_nonzero(empty).to_pylist()[: max(0, 50 - len(out))]:
        out.append(f"row {first_row + i + 1}: the key column {source!r} is empty")
    keys = text.to_pylist()
    return np.fromiter((hash(k) for k in keys), dtype=np.int64, count=len(keys))
