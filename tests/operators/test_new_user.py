"""What a new user trips over on day two: each case here was met by someone following the README and the docs,
and each now fails (or works) the way the docs say, against the emulator."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_sfint.client import ServerError, TransportError, forget_sessions
from airflow_provider_sfint.compat import AirflowFailException
from airflow_provider_sfint.emulator import CLIENT_ID, CLIENT_SECRET
from airflow_provider_sfint.hooks.salesforce import SalesforceHook
from airflow_provider_sfint.operators.bulk_ingest import SalesforceBulkIngestOperator
from airflow_provider_sfint.operators.bulk_query import SalesforceBulkQueryOperator
from airflow_provider_sfint.sensors.bulk import SalesforceBulkJobSensor

from ..emulator.helpers import Admin
from .conftest import make_context, set_connection


def _query(conn: str, tmp_path: Path, soql: str = "SELECT Id FROM Account") -> SalesforceBulkQueryOperator:
    return SalesforceBulkQueryOperator(
        task_id="q", soql=soql, output=str(tmp_path / "out.parquet"), poll_interval=0.05, sfint_conn_id=conn
    )


def test_ingest_pushes_the_job_id_a_sensor_waits_on(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"Name": ["Sensor 1", "Sensor 2"]}), source)
    context = make_context()
    SalesforceBulkIngestOperator(
        task_id="load", object="Account", operation="insert", source=str(source), sfint_conn_id=conn
    ).execute(context)
    job_id = context["ti"].xcom["sfint_job_id"]
    assert context["ti"].xcom["sfint_job_url"].endswith(job_id)
    done = SalesforceBulkJobSensor(task_id="wait", job_id=job_id, kind="ingest", sfint_conn_id=conn).poke(
        make_context()
    )
    assert done and done.xcom_value["state"] == "JobComplete" and done.xcom_value["records_processed"] == 2


@pytest.mark.parametrize("job_id", ["", None, "None", "  "])
def test_a_sensor_given_no_job_id_fails_at_once(conn: str, job_id: Any) -> None:
    sensor = SalesforceBulkJobSensor(task_id="wait", job_id=job_id, sfint_conn_id=conn)
    with pytest.raises(AirflowFailException, match=r"job_id is empty \(got .*key='sfint_job_id'"):
        sensor.poke(make_context())


def _refused(monkeypatch: pytest.MonkeyPatch, url: str, tmp_path: Path, **extra: Any) -> str:
    set_connection(monkeypatch, "sfint_refused", url, **extra)
    with pytest.raises(AirflowFailException) as caught:
        _query("sfint_refused", tmp_path).execute(make_context())
    return str(caught.value)


def test_refused_credentials_fail_without_retries(
    monkeypatch: pytest.MonkeyPatch, emulator_url: str, fresh_org: Admin, tmp_path: Path
) -> None:
    """A wrong secret, a revoked grant, an unknown user or a dead pre-issued token cannot be fixed by retrying:
    AirflowFailException (Airflow does not retry it), naming the login URL and what to check."""
    message = _refused(monkeypatch, emulator_url, tmp_path, client_secret="not-the-secret")
    assert f"at {emulator_url}/services/oauth2/token refused" in message and "check client_secret" in message
    assert "not-the-secret" not in message and "Not retried" in message

    grant = fresh_org._call("POST", "refresh-tokens", json={"username": "admin@sfint.emulator", "client_id": CLIENT_ID})
    token = grant["refresh_token"]
    assert httpx.post(f"{emulator_url}/services/oauth2/revoke", data={"token": token}).status_code == 200
    message = _refused(monkeypatch, emulator_url, tmp_path, auth_type="refresh_token", refresh_token=token)
    assert "refresh_token login" in message and "refused" in message

    fresh_org.settings(password_flow=True)
    unknown = {"auth_type": "password", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    body = {"conn_type": "sfint", "host": emulator_url, "login": "nobody@sfint.emulator", "password": "x"}
    monkeypatch.setenv("AIRFLOW_CONN_SFINT_REFUSED", json.dumps({**body, "extra": unknown}))
    with pytest.raises(AirflowFailException, match=r"password login .* refused"):
        _query("sfint_refused", tmp_path).execute(make_context())

    dead = fresh_org.token()
    fresh_org._call("POST", "tokens/expire")
    message = _refused(
        monkeypatch, emulator_url, tmp_path, auth_type="access_token", access_token=dead, instance_url=emulator_url
    )
    assert "pre-issued access token is invalid or expired" in message


def test_a_login_server_in_trouble_is_retried(
    monkeypatch: pytest.MonkeyPatch, emulator_url: str, fresh_org: Admin, tmp_path: Path
) -> None:
    """5xx from the token endpoint: retried by the client, then an error Airflow's task retries take up."""
    conn = set_connection(monkeypatch, "sfint_login_5xx", emulator_url, max_attempts=3)
    fresh_org.faults({"kind": "503", "path": "/services/oauth2/token", "count": 2})
    summary = _query(conn, tmp_path).execute(make_context())
    assert summary["records"] > 0 and fresh_org.counters()["requests"]["POST oauth2/token"] == 3

    forget_sessions()
    fresh_org.faults({"kind": "500", "path": "/services/oauth2/token"})
    with pytest.raises(ServerError) as caught:
        _query(conn, tmp_path).execute(make_context())
    assert not isinstance(caught.value, AirflowFailException) and caught.value.status == 500


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_login_host_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    set_connection(monkeypatch, "sfint_nowhere", url, max_attempts=2)
    with pytest.raises(TransportError, match=f"ConnectError on POST {url}/services/oauth2/token"):
        _query("sfint_nowhere", tmp_path).execute(make_context())


def test_test_connection_answers_after_one_attempt(conn: str, fresh_org: Admin) -> None:
    """The UI's Test button: one try, the reason and the URL, not six retries with backoff."""
    fresh_org.faults({"kind": "503", "path": "/services/oauth2/token"})
    fresh_org._call("POST", "counters/reset")
    ok, message = SalesforceHook(sfint_conn_id=conn).test_connection()
    assert not ok and "503" in message
    assert fresh_org.counters()["requests"]["POST oauth2/token"] == 1
    ok, message = SalesforceHook(sfint_conn_id="sfint_nowhere_at_all").test_connection()
    assert not ok and "sfint_nowhere_at_all" in message


def test_the_login_url_is_the_host_field(
    monkeypatch: pytest.MonkeyPatch, emulator_url: str, fresh_org: Admin, tmp_path: Path
) -> None:
    """One Login URL field: the host. A connection saved by the old form (extra login_url = its default 'login')
    reaches the host it names; an extra login_url that disagrees with the host is refused, naming both."""
    set_connection(monkeypatch, "sfint_form", emulator_url, login_url="login")
    assert _query("sfint_form", tmp_path).execute(make_context())["records"] > 0
    set_connection(monkeypatch, "sfint_form", emulator_url, login_url="test")
    with pytest.raises(AirflowFailException, match=r"'login_url'.*host\) is 'http://127\.0\.0\.1.*'test'"):
        _query("sfint_form", tmp_path).execute(make_context())


def test_api_calls_are_what_the_org_counts(conn: str, fresh_org: Admin, tmp_path: Path) -> None:
    """The summary's api_calls matches the org's own count for the task: sign-in is not an API call."""
    forget_sessions()
    before = fresh_org.counters()
    summary = _query(conn, tmp_path).execute(make_context())
    after = fresh_org.counters()
    assert after["token_calls"] == before["token_calls"] + 1  # the task signed in once...
    assert summary["api_calls"] == after["api_usage"] - before["api_usage"]  # ...which the org does not count
