"""A backfill of the main job, interval by interval: every record changed in the range lands exactly once,
including a burst of records sharing one SystemModstamp on an interval boundary (and one millisecond
either side of it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ..emulator.helpers import Admin


def _stored(stamp: datetime) -> str:
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def test_three_intervals_no_gaps_no_duplicates(example: Any, org: Admin, tmp_path: Path) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = [today - timedelta(days=n) for n in (12, 11, 10, 9)]  # three intervals: days[0..1), [1..2), [2..3)
    ms = timedelta(milliseconds=1)
    burst = [days[1]] * 40 + [days[1] - ms] * 5 + [days[1] + ms] * 5 + [days[2]] * 20 + [days[3] - ms] * 3
    org.load("Account", [{"Name": f"Burst {i}", "SystemModstamp": _stored(s)} for i, s in enumerate(burst)])
    expected: dict[int, set[str]] = {0: set(), 1: set(), 2: set()}
    for a in org.records("Account", include_deleted=True):
        stamp = datetime.fromisoformat(a["SystemModstamp"].replace("Z", "+00:00"))
        for k in range(3):
            if days[k] <= stamp < days[k + 1]:
                expected[k].add(a["Id"])
    assert (len(expected[0]) >= 5, len(expected[1]) >= 45, len(expected[2]) >= 23) == (True,) * 3  # bursts

    # The DAG starts well before the range, so no interval here is its first (no history load).
    dag = example("salesforce_to_warehouse", SFINT_START_DATE=(today - timedelta(days=30)).date().isoformat())
    for k in range(3):  # what `airflow backfill create --from-date .. --to-date ..` runs, in order
        run = dag.test(logical_date=days[k + 1])
        assert (run.data_interval_start, run.data_interval_end) == (days[k], days[k + 1])
        assert {t.state for t in run.get_task_instances()} == {"success"}
    seen: list[str] = []
    for k in range(3):
        path = tmp_path / "lake" / "raw" / "account" / f"{days[k + 1]:%Y%m%dT%H%M%SZ}.parquet"
        ids = pq.read_table(path).column("Id").to_pylist()
        assert set(ids) == expected[k], f"interval {k}"
        seen += ids
    assert len(seen) == len(set(seen)) == sum(len(v) for v in expected.values())  # no duplicates, no gaps
