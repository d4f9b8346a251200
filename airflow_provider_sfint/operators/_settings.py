"""What the operators share: the wait settings, and writing failed rows where the user asked."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv


def check_waiting(poll_interval: float, timeout: float | None, min_remaining_api_percent: float | None) -> None:
    """Raise ValueError naming the setting that cannot work."""
    if float(poll_interval) <= 0:
        raise ValueError(f"poll_interval must be positive seconds, got {poll_interval}")
    if timeout is not None and float(timeout) <= 0:
        raise ValueError(f"timeout must be positive seconds or None, got {timeout}")
    if min_remaining_api_percent is not None and not 0 <= float(min_remaining_api_percent) < 100:
        raise ValueError(f"min_remaining_api_percent must be in [0, 100), got {min_remaining_api_percent}")


def write_failed_rows(table: pa.Table, target: str) -> str:
    """Write ``table`` as CSV (every text value quoted) to ``target`` (any ObjectStoragePath URL) through a
    staging name, so a half-written file never stands under the final name; returns the path."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    path: Any = ObjectStoragePath(str(target))
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name}.sfint-tmp"
    with staging.open("wb") as handle:
        pacsv.write_csv(table, handle, write_options=pacsv.WriteOptions(quoting_style="needed"))
    if path.exists():
        path.unlink()
    staging.rename(path)
    return str(path)
