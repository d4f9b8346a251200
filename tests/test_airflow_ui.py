"""What Airflow's UI shows of the provider, read through Airflow's own API (the API server's app, as the UI calls
it): the connection form's metadata, a task's "Salesforce job" link and where it leads, and the INFO lines of
a task log written by a real executor."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from airflow_provider_sfint.hooks.salesforce import EXTRA_FIELDS

from .emulator.helpers import Admin
from .operators.conftest import conn, load_dag  # noqa: F401  (a fixture and a helper)
from .test_provider_registration import _airflow_before_3_2, _installed


@pytest.fixture(scope="module")
def api(airflow_db: None) -> Iterator[Any]:
    """Airflow's API server app in-process, signed in as the UI's user would be."""
    from fastapi.testclient import TestClient

    with pytest.MonkeyPatch.context() as patch:
        # Only for this client to sign in without a password (the simple auth manager's all-admins mode).
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
        from airflow.api_fastapi.app import create_app

        client = TestClient(create_app())
        token = client.get("/auth/token").json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def test_the_connection_form_metadata(api: Any) -> None:
    response = api.get("/ui/connections/hook_meta")
    assert response.status_code == 200
    (meta,) = [m for m in response.json() if m["connection_type"] == "sfint"]
    assert meta["hook_name"] == "Salesforce (sfint)"
    standard = meta["standard_fields"]
    assert standard["host"]["title"] == "Login URL" and "my.salesforce.com" in standard["host"]["placeholder"]
    assert "access token" in standard["password"]["title"] and standard["port"]["hidden"]
    extra = meta["extra_fields"]
    if extra is None and _airflow_before_3_2() and not _installed("wtforms"):
        pytest.skip("Airflow 3.1 serves connection-form extra fields only with wtforms installed (Airflow's)")
    declared = set(EXTRA_FIELDS) - {"login_url"}  # one Login URL field: the host
    assert set(extra) == declared and {"pubsub_endpoint", "org_id"} <= declared
    assert all(field["schema"].get("title") or field.get("title") for field in extra.values())
    for secret in ("client_secret", "private_key", "refresh_token", "access_token"):
        assert extra[secret]["schema"]["format"] == "password", secret
    if not _airflow_before_3_2():  # 3.1 builds the form from the hook's widgets, which carry no choices
        assert extra["auth_type"]["schema"]["enum"][0] == "jwt_bearer"
    assert "3MVG" in extra["client_id"]["description"]  # hints live in descriptions (no extra-field placeholders)


DAG_SOURCE = """
from datetime import datetime, timezone

from airflow.sdk import DAG

from airflow_provider_sfint.operators.bulk_query import SalesforceBulkQueryOperator

with DAG("sfint_ui_links", schedule="@daily", start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    SalesforceBulkQueryOperator(
        task_id="extract",
        soql="SELECT Id, Name FROM Account",
        incremental_field="SystemModstamp",
        initial_window_start="2000-01-01T00:00:00+00:00",
        output="{out}/accounts.parquet",
        poll_interval=0.2,
        api="bulk",  # the job link is the point here
        sfint_conn_id="{conn}",
    )
    SalesforceBulkQueryOperator(
        task_id="misspelled",
        soql="SELECT Id, Nmae FROM Account",
        output="{out}/never.parquet",
        sfint_conn_id="{conn}",
    )
"""


def _log(api: Any, dag_id: str, run_id: str, task_id: str) -> str:
    response = api.get(
        f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1",
        params={"full_content": "true"},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200, response.text
    return "\n".join(str(line) for line in response.json()["content"])


def test_links_and_task_logs(
    api: Any,
    conn: str,  # noqa: F811
    fresh_org: Admin,
    tmp_path: Any,
    execution_api: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    dag = load_dag("sfint_ui_links", textwrap.dedent(DAG_SOURCE).format(out=tmp_path, conn=conn))
    run = dag.test(logical_date=datetime(2026, 11, 30, tzinfo=UTC), use_executor=True)
    worker_output = capfd.readouterr()  # the workers' own lines (their supervisors log here, not to the file)
    states = {t.task_id: t.state for t in run.get_task_instances()}
    assert states == {"extract": "success", "misspelled": "failed"}, states
    base = f"/api/v2/dags/sfint_ui_links/dagRuns/{run.run_id}/taskInstances"

    links = api.get(f"{base}/extract/links").json()["extra_links"]
    url = links["Salesforce job"]
    page = httpx.get(url)  # the emulator serves the job's page where Setup's would be
    assert page.status_code == 200 and "JobComplete" in page.text and url.endswith(page.text.split("job ")[1][:18])
    assert not api.get(f"{base}/misspelled/links").json()["extra_links"].get("Salesforce job")

    log = _log(api, "sfint_ui_links", run.run_id, "extract")
    assert "window 2000-01-01T00:00:00+00:00 <= SystemModstamp < 2026-11-30T00:00:00+00:00" in log
    assert "committed" in log and "Bulk query job" in log  # INFO lines reach the task log
    failed = _log(api, "sfint_ui_links", run.run_id, "misspelled")
    assert "did you mean Name" in failed
    # No error line about a link the task never had, in its log or in its worker's output.
    assert "XCom not found" not in failed + worker_output.out + worker_output.err
