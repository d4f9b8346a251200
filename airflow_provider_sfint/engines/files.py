"""Small files the engines write beside their main output: failed rows with their errors."""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from ..client.arrowio import local_path
from ..client.crashpoints import crash_point


def write_failed_rows(table: pa.Table, path: Any) -> str:
    """Write ``table`` as CSV (values quoted where needed) to ``path`` (a local path, or an ObjectStoragePath on
    any filesystem) so that a half-written file never stands under the final name: on a local disk through a
    temporary file and an atomic ``os.replace``, on an object store as one PUT (an object appears whole or not
    at all). Writing the same rows again gives the same file. Returns the path as text."""
    options = pacsv.WriteOptions(quoting_style="needed")
    local = local_path(path)
    if local is not None:
        folder = os.path.dirname(local) or "."
        os.makedirs(folder, exist_ok=True)  # a local folder only: never a bucket
        # One staging name per target: a write killed before the rename leaves a file that the next write
        # replaces, not one stray file per attempt.
        temporary = os.path.join(folder, f".{os.path.basename(local)}.sfint-tmp")
        try:
            with open(temporary, "wb") as out:
                pacsv.write_csv(table, out, write_options=options)
            crash_point("files.failed_rows_staged")
            os.replace(temporary, local)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
        return str(path)
    with path.open("wb") as out:
        pacsv.write_csv(table, out, write_options=options)
    return str(path)
