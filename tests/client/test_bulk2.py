"""Bulk 2.0 client pieces: recorded job infos parse, polling has no cap, SOQL windows and shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sfint.client.bulk2 import BulkJobError, JobInfo, PollPlan, job_link
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


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _running(processed: int = 0, state: str = "InProgress") -> JobInfo:
    return JobInfo.parse("ingest", {"id": "750x", "state": state, "numberRecordsProcessed": processed})


def _polls(duration: float, total: int | None = None, rate: float = 0.0, step: int = 10_000) -> tuple[float, int]:
    """Poll a simulated job that ends ``duration`` s after creation; (notice delay, polls) with the default plan.
    With ``total``, the job processes ``rate`` rows/s, reported in steps of ``step`` rows."""
    clock = FakeClock()
    end = clock.now + duration
    plan = PollPlan(total_records=total, clock=clock, started=clock.now)
    while clock.now < end:
        done = int(min(total or 0, rate * (duration - (end - clock.now))) // step * step)
        clock.now += plan.next_delay(_running(done))
    return clock.now - end, plan.polls


def test_polling_has_no_lifetime_cap_and_a_bounded_cost() -> None:
    """PEERS 9: jsforce gives up after 30 s and others after minutes; we poll for as long as the job lives, at a
    cost bounded per hour of job time."""
    _, day = _polls(86_400)
    _, hour = _polls(3_600)
    _, two_hours = _polls(7_200)
    assert 140 <= hour <= 170  # 10 in the first 10 s, 36 up to 5 minutes, then one each 30 s
    assert two_hours - hour == pytest.approx(120, abs=2)
    assert day == pytest.approx(hour + 23 * 120, abs=5)  # still polling after a day of waiting


@pytest.mark.parametrize("duration", [0.5, 3, 9.5, 45, 300, 1_000, 3_600, 20_000])
def test_a_finished_job_is_noticed_within_a_tenth_of_its_age_plus_a_second(duration: float) -> None:
    notice, _ = _polls(duration)
    assert notice <= min(0.1 * duration, 30) + 1.0


def test_progress_predicts_the_end_of_an_ingest_job() -> None:
    # 1,000,000 rows at 2,500 rows/s (400 s), progress reported per 10,000 rows
    regular_notice, regular_polls = _polls(400)
    notice, polls = _polls(400, total=1_000_000, rate=2_500)
    assert notice < regular_notice and notice <= 5.0  # progress comes in steps of 4 s here
    assert polls <= regular_polls + 6
    # predictions that keep failing (the job crawls near its end) back off: 1 s, 2 s, 4 s, ... then the regular 30 s
    clock = FakeClock()
    plan = PollPlan(total_records=1_000, clock=clock, started=clock.now - 1_000)
    plan.next_delay(_running(10))
    delays = []
    for processed in range(990, 1_000):
        clock.now += 1
        delays.append(plan.next_delay(_running(processed)))
    assert delays[:5] == pytest.approx([1.0, 2.0, 4.0, 8.0, 16.0], abs=0.2) and delays[5:] == [30.0] * 5


def test_the_plan_counts_a_jobs_age_from_its_creation() -> None:
    clock = FakeClock()
    stamp = datetime.fromtimestamp(clock.now - 200, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    older = JobInfo.parse("query", {"id": "750x", "state": "InProgress", "createdDate": stamp})
    assert PollPlan(clock=clock, from_created=True).next_delay(older) == pytest.approx(20.0, abs=0.01)
    assert PollPlan(clock=clock).next_delay(older) == 1.0  # by default the age counts from the wait's start
    future = JobInfo.parse("query", {"id": "750x", "state": "InProgress", "createdDate": "2099-01-01T00:00:00Z"})
    assert PollPlan(clock=clock, from_created=True).next_delay(future) == 1.0  # an org clock ahead is not trusted


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
