"""Consecutive days of the main job on the default timetable: every record changed in the range lands
exactly once, including a burst of records sharing one SystemModstamp on an interval boundary (and one millisecond
either side of it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ..emulator.helpers import Admin


def _stored(stamp: datetime) -> str:
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _ids(tmp_path: Path, day: datetime) -> list[str]:
    path = tmp_path / "lake" / "raw" / "account" / f"{day:%Y%m%dT%H%M%SZ}.parquet"
    return pq.read_table(path).column("Id").to_pylist()


def test_consecutive_days_on_the_default_timetable(example: Any, org: Admin, tmp_path: Path) -> None:
    """Four scheduled days of the main job under Airflow 3's default timetable for "@daily" (zero-length data
    intervals), as the scheduler or `airflow backfill create` runs them: the first loads the history, each
    next one exactly what changed since the previous one, with bursts of shared SystemModstamps on the
    boundaries and one millisecond either side of them."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = [today - timedelta(days=n) for n in (12, 11, 10, 9)]
    ms = timedelta(milliseconds=1)
    burst = [days[1]] * 40 + [days[1] - ms] * 5 + [days[1] + ms] * 5 + [days[2]] * 20 + [days[3] - ms] * 3
    burst += [days[0]] * 7 + [days[0] - ms] * 2
    org.load("Account", [{"Name": f"Burst {i}", "SystemModstamp": _stored(s)} for i, s in enumerate(burst)])
    bounds = [datetime(1990, 1, 1, tzinfo=UTC), *days]
    expected: dict[int, set[str]] = {k: set() for k in range(4)}
    for a in org.records("Account", include_deleted=True):
        stamp = datetime.fromisoformat(a["SystemModstamp"].replace("Z", "+00:00"))
        for k in range(4):
            if bounds[k] <= stamp < bounds[k + 1]:
                expected[k].add(a["Id"])
    assert (len(expected[1]) >= 12, len(expected[2]) >= 45, len(expected[3]) >= 23) == (True,) * 3  # bursts

    dag = example("salesforce_to_warehouse", SFINT_START_DATE=(today - timedelta(days=30)).date().isoformat())
    for k in range(4):
        run = dag.test(logical_date=days[k])
        assert run.data_interval_start == run.data_interval_end == days[k]  # what users get by default
        assert {t.state for t in run.get_task_instances()} == {"success"}
    seen: list[str] = []
    for k in range(4):
        ids = _ids(tmp_path, days[k])
        assert set(ids) == expected[k], f"day {k}"
        seen += ids
    assert len(seen) == len(set(seen)) == sum(len(v) for v in expected.values())  # no duplicates, no gaps


def test_a_failed_day_is_covered_by_the_next(example: Any, org: Admin, tmp_path: Path, conn: str) -> None:
    """A day whose run fails leaves no gap: the next successful run starts where the last successful one
    ended, so its window covers the failed day too."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = [today - timedelta(days=n) for n in (6, 5, 4)]
    org.load("Account", [{"Name": f"Day {i}", "SystemModstamp": _stored(days[i] - timedelta(hours=3))} for i in (1, 2)])
    start = (today - timedelta(days=30)).date().isoformat()
    dag = example("salesforce_to_warehouse", SFINT_START_DATE=start)
    assert {t.state for t in dag.test(logical_date=days[0]).get_task_instances()} == {"success"}
    broken = example("salesforce_to_warehouse", SFINT_START_DATE=start, SFINT_CONN_ID="sfint_missing")
    failed = broken.test(logical_date=days[1])
    assert failed.state == "failed"
    changed = {  # before the run: its own write-back moves SystemModstamps to now
        a["Id"]
        for a in org.records("Account", include_deleted=True)
        if days[0] <= datetime.fromisoformat(a["SystemModstamp"].replace("Z", "+00:00")) < days[2]
    }
    dag = example("salesforce_to_warehouse", SFINT_START_DATE=start, SFINT_CONN_ID=conn)
    assert {t.state for t in dag.test(logical_date=days[2]).get_task_instances()} == {"success"}
    assert len(changed) >= 2 and set(_ids(tmp_path, days[2])) == changed
