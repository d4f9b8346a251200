"""SalesforceBulkJobSensor in poke, reschedule and deferrable modes through dag.test(), failures and soft_fail."""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_provider_sfint.client.bulk2 import Bulk2
from airflow_provider_sfint.client.errors import SalesforceError
from airflow_provider_sfint.compat import AirflowFailException
from airflow_provider_sfint.hooks.salesforce import SalesforceHook
from airflow_provider_sfint.sensors.bulk import SalesforceBulkJobSensor

from ..emulator.helpers import Admin
from .conftest import load_dag, make_context

DAG_FILE = """
import os
from datetime import datetime, timezone

from airflow.sdk import DAG

from airflow_provider_sfint.sensors.bulk import SalesforceBulkJobSensor

common = dict(job_id=os.environ.get("SFINT_TEST_JOB", "750x"), kind="query", timeout=60,
              sfint_conn_id=os.environ.get("SFINT_TEST_CONN", "sfint_default"))
with DAG("sfint_bulk_sensor_modes", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    SalesforceBulkJobSensor(task_id="poke", mode="poke", poke_interval=0.2, **common)
    SalesforceBulkJobSensor(task_id="reschedule", mode="reschedule", poke_interval=1, **common)
    SalesforceBulkJobSensor(task_id="deferred", deferrable=True, trigger_poll_interval=0.2, **common)
"""


def _job(conn: str) -> str:
    return Bulk2(SalesforceHook(sfint_conn_id=conn).client).create_query_job("SELECT Id FROM Account").id


def test_sensor_in_all_three_modes(
    conn: str, fresh_org: Admin, airflow_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh_org.set("timing", query_startup_s=2.0)  # still running at the first poke in every mode
    job_id = _job(conn)
    monkeypatch.setenv("SFINT_TEST_JOB", job_id)
    monkeypatch.setenv("SFINT_TEST_CONN", conn)
    run = load_dag("sfint_bulk_sensor_modes", DAG_FILE).test()
    states = {t.task_id: t.state for t in run.get_task_instances()}
    assert states == {"poke": "success", "reschedule": "success", "deferred": "success"}, states
    summary = next(t for t in run.get_task_instances() if t.task_id == "deferred").xcom_pull(task_ids="deferred")
    assert summary["job_id"] == job_id and summary["state"] == "JobComplete"


def test_failed_job_fails_the_sensor_and_soft_fail_skips(conn: str, fresh_org: Admin) -> None:
    from airflow.providers.common.compat.sdk import AirflowSkipException

    fresh_org.set("bulk", query_timeout_rows=1)
    job_id = _job(conn)
    bulk = Bulk2(SalesforceHook(sfint_conn_id=conn).client)
    deadline = time.monotonic() + 10
    while bulk.job_info("query", job_id).state != "Failed" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert bulk.job_info("query", job_id).state == "Failed"
    sensor = SalesforceBulkJobSensor(task_id="s", job_id=job_id, kind="query", sfint_conn_id=conn, poke_interval=0.1)
    with pytest.raises(AirflowFailException, match="QUERY_TIMEOUT"):
        sensor.execute(make_context())
    soft = SalesforceBulkJobSensor(
        task_id="s2", job_id=job_id, kind="query", sfint_conn_id=conn, poke_interval=0.1, soft_fail=True
    )
    with pytest.raises(AirflowSkipException):
        soft.execute(make_context())


@pytest.mark.parametrize(
    ("event", "error", "message"),
    [
        (None, SalesforceError, "unexpected trigger event None"),
        ({"status": "odd"}, SalesforceError, "unexpected trigger event"),
        ({"status": "error", "message": "boom"}, AirflowFailException, "error  boom"),
        ({"status": "timeout"}, AirflowFailException, ": timeout"),
    ],
)
def test_execute_complete_refuses_anything_but_success(
    conn: str, fresh_org: Admin, event: Any, error: type[Exception], message: str
) -> None:
    sensor = SalesforceBulkJobSensor(task_id="s", job_id=_job(conn), kind="query", sfint_conn_id=conn)
    with pytest.raises(error, match=message):
        sensor.execute_complete(make_context(), event)


def test_bad_settings_name_themselves(conn: str, fresh_org: Admin) -> None:
    with pytest.raises(AirflowFailException, match="kind must be one of"):
        SalesforceBulkJobSensor(task_id="s", job_id="750x", kind="other", sfint_conn_id=conn).poke(make_context())
    with pytest.raises(AirflowFailException, match="does not exist"):
        SalesforceBulkJobSensor(task_id="s", job_id="750Hx0000000999IAA", sfint_conn_id=conn).poke(make_context())


def test_each_poke_sets_the_next_from_the_jobs_age(conn: str, fresh_org: Admin) -> None:
    fresh_org.set("timing", query_startup_s=30)  # running for the whole test
    job_id = _job(conn)
    poke = SalesforceBulkJobSensor(task_id="p", job_id=job_id, kind="query", sfint_conn_id=conn)
    assert poke.poke_interval == 30  # the longest wait, unless given
    assert poke.poke(make_context()) is False and poke.poke_interval == 1.0  # a young job: looked at again soon
    rescheduled = SalesforceBulkJobSensor(
        task_id="r", job_id=job_id, kind="query", mode="reschedule", sfint_conn_id=conn
    )
    assert rescheduled.poke(make_context()) is False and rescheduled.poke_interval == 5.0  # each poke a task start
    backoff = SalesforceBulkJobSensor(
        task_id="b", job_id=job_id, kind="query", exponential_backoff=True, poke_interval=7, sfint_conn_id=conn
    )
    assert backoff.poke(make_context()) is False and backoff.poke_interval == 7  # Airflow's own backoff, untouched
    Bulk2(SalesforceHook(sfint_conn_id=conn).client).abort("query", job_id)
