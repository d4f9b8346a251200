"""Prompt completion (issue 19 item 3) against the emulator's timing: a job's end is noticed soon, at few polls.

The emulator's timing is a lower bound on each job's duration; the bounds below are generous (this machine is
noisy): they catch a client that waits 30 s for a 5 s job, not a tenth of a second."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from airflow_provider_sfint.client import SalesforceClient
from airflow_provider_sfint.client.bulk2 import Bulk2, JobInfo

from ..emulator.helpers import Admin


def _stamp(info: JobInfo, key: str = "systemModstamp") -> float:
    return datetime.fromisoformat(str(info.raw[key]).replace("+0000", "+00:00")).timestamp()


def test_an_ingest_job_is_noticed_soon_after_it_ends(
    client: SalesforceClient, fresh_org: Admin, tmp_path: Path
) -> None:
    fresh_org.set("timing", ingest_startup_s=0.5, ingest_rows_per_s=8_000)  # 50,000 rows: about 7 s
    rows = 50_000
    path = tmp_path / "accounts.csv"
    path.write_text("Name\n" + "".join(f"Polled {i}\n" for i in range(rows)))
    bulk = Bulk2(client)
    job = bulk.create_ingest_job("Account", "insert")
    assert bulk.upload(job.id, str(path))
    bulk.mark_upload_complete(job.id)
    seen: list[JobInfo] = []
    info = bulk.wait("ingest", job.id, on_poll=seen.append, total_records=rows)
    noticed = time.time()
    assert info.records_processed == rows
    elapsed = _stamp(info) - _stamp(info, "createdDate")
    assert len(seen) <= 16, [s.records_processed for s in seen]  # about 10 regular looks plus a few predicted
    assert noticed - _stamp(info) <= 4.0, f"noticed {noticed - _stamp(info):.1f} s after a {elapsed:.1f} s job"


def test_a_query_job_is_noticed_within_a_tenth_of_its_age(client: SalesforceClient, fresh_org: Admin) -> None:
    accounts = len(fresh_org.records("Account", include_deleted=False))
    fresh_org.set("timing", query_startup_s=1.0, query_rows_per_s=accounts / 12)  # about 13 s
    bulk = Bulk2(client)
    job = bulk.create_query_job("SELECT Id FROM Account")
    seen: list[JobInfo] = []
    info = bulk.wait("query", job.id, on_poll=seen.append)
    noticed = time.time()
    assert info.state == "JobComplete" and len(seen) >= 5  # it really waited, looking again and again
    assert len(seen) <= 14  # 1 s apart for the first 10 s, then a tenth of the age
    assert noticed - _stamp(info) <= 4.0
