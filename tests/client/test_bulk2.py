"""Bulk 2.0 client pieces: recorded job infos parse, polling has no cap, SOQL windows and shapes."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sfint.client.bulk2 import BulkJobError, JobInfo, job_link, poll_delays
from airflow_provider_sfint.client.soql import add_window, query_shape


@pytest.mark.parametrize(
    ("name", "state", "processed", "failed", "message"),
    [
        ("bulk/read-launch-job-account.json", "UploadComplete", 0, 0, None),
        ("bulk/info/in-progress.json", "InProgress", 2000, 0, None),
        ("bulk/info/success.json", "JobComplete", None, None, None),
        ("bulk/info/partial-failure.json", "JobComplete", None, None, None),
        ("bulk/info/complete-failure.json", "Failed", 0, 0, "InvalidBatch : Field name not found"),
    ],
)
def test_recorded_job_infos_parse(
    recorded: Path, name: str, state: str, processed: int | None, failed: int | None, message: str | None
) -> None:
    body = json.loads((recorded / name).read_text())
    info = JobInfo.parse("query" if body["operation"] == "query" else "ingest", body)
    assert info.id == body["id"] and info.state == state and info.api_version == "60.0"
    assert info.object == body["object"]
    if processed is not None:
        assert (info.records_processed, info.records_failed) == (processed, failed)
    else:
        assert info.records_processed == body["numberRecordsProcessed"] > 0
    if message:
        assert info.error_message and info.error_message.startswith(message)
        error = info.error()
        assert isinstance(error, BulkJobError) and message in str(error) and not error.is_timeout
    assert info.active == (state in ("UploadComplete", "InProgress"))


def test_polling_has_no_lifetime_cap() -> None:
    """PEERS 9: jsforce gives up after 30 s and others after minutes; we poll for as long as the job lives."""
    delays = list(itertools.islice(poll_delays(), 10_000))
    assert delays[:3] == [2.0, 3.0, 4.5]
    assert max(delays) == 30.0 and sum(delays) > 86_400  # still polling after a day of waiting


def test_timeout_messages_are_recognised() -> None:
    for message in ("QUERY_TIMEOUT : Your query request was running for too long.", "Retried more than 15 times"):
        assert BulkJobError("x", job_id="750x", job_message=message).is_timeout


def test_job_link() -> None:
    assert job_link("https://acme.my.salesforce.com/", "750Hx") == (
        "https://acme.my.salesforce.com/lightning/setup/AsyncApiJobStatus/page?address=%2F750Hx"
    )


START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, 0, 0, 0, 999000, tzinfo=UTC)
WINDOW = "SystemModstamp >= 2026-01-01T00:00:00Z AND SystemModstamp < 2026-01-02T00:00:00Z"


@pytest.mark.parametrize(
    ("soql", "expected"),
    [
        ("SELECT Id FROM Account", f"SELECT Id FROM Account WHERE {WINDOW}"),
        ("SELECT Id FROM Account WHERE A = 1 OR B = 2", f"SELECT Id FROM Account WHERE (A = 1 OR B = 2) AND {WINDOW}"),
        (
            "SELECT Id FROM Account WHERE Name = 'x WHERE y) ORDER BY' ORDER BY Id LIMIT 5",
            f"SELECT Id FROM Account WHERE (Name = 'x WHERE y) ORDER BY') AND {WINDOW} ORDER BY Id LIMIT 5",
        ),
        (
            "select Id from Account where Id in (select AccountId from Contact where X = 1)",
            f"select Id from Account WHERE (Id in (select AccountId from Contact where X = 1)) AND {WINDOW}",
        ),
        (
            "SELECT Id FROM Account WITH SECURITY_ENFORCED",
            f"SELECT Id FROM Account WHERE {WINDOW} WITH SECURITY_ENFORCED",
        ),
        (
            "SELECT Id FROM Account USING SCOPE Mine WHERE A = 1",
            f"SELECT Id FROM Account USING SCOPE Mine WHERE (A = 1) AND {WINDOW}",
        ),
    ],
)
def test_add_window_combines_with_any_where(soql: str, expected: str) -> None:
    assert add_window(soql, "SystemModstamp", START, END) == expected


def test_add_window_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        add_window("SELECT Id FROM Account", "SystemModstamp", END, START)
    with pytest.raises(ValueError, match="valid"):
        add_window("SELECT Id FROM Account", "x; DELETE", START, END)
    with pytest.raises(ValueError, match="SELECT"):
        add_window("Id FROM", "SystemModstamp", START, END)


def test_query_shape() -> None:
    assert query_shape("SELECT Id, toLabel(Stage__c), Account.Owner.Name FROM Opportunity WHERE X = 'a, b'") == (
        ["Id", "Stage__c", "Account.Owner.Name"],
        "Opportunity",
    )
    columns, _ = query_shape("SELECT COUNT(Id), Name FROM Account GROUP BY Name")
    assert columns[0] == "COUNT(Id)"


def test_the_locator_walk_leaves_no_thread_behind() -> None:
    """The page prefetcher's thread is joined when its consumer stops early, so no thread of ours runs (in
    Arrow's C++ code, say) into interpreter exit."""
    import threading
    import time

    from airflow_provider_sfint.client.bulk2 import ResultPage, _prefetch

    def pages() -> Any:
        for i in range(100):
            time.sleep(0.01)  # a page being fetched and parsed
            yield ResultPage(i, "url", 1, None, 1, 1), i

    walk = _prefetch(pages(), 4)
    assert [n for _, n in (next(walk), next(walk))] == [0, 1]
    walk.close()  # the consumer stops (an error, a cancelled task) with pages still coming
    assert not [t for t in threading.enumerate() if t.name == "sfint-locator-walk"]
