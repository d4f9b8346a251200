"""No secret in any log of a full pipeline run at DEBUG, nor in any task summary (XCom)."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airflow_provider_sfint.emulator import CLIENT_SECRET

from ..emulator.helpers import Admin

EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"


def test_full_pipeline_at_debug_leaks_nothing(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    conn: str,
    airflow_db: None,
    fresh_org: Admin,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from ..operators.conftest import load_dag

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for key, value in {
        "SFINT_LAKE": f"file://{tmp_path / 'lake'}",
        "SFINT_WAREHOUSE": str(tmp_path / "wh.duckdb"),
        "SFINT_CONN_ID": conn,
        "SFINT_RETRIES": "0",
        "SFINT_START_DATE": (today - timedelta(days=1)).date().isoformat(),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG",
    }.items():
        monkeypatch.setenv(key, value)
    fresh_org.settings(token_expire_after_requests=5)  # sessions are refreshed during the run: more tokens
    fresh_org.faults({"kind": "503", "path": "/query", "count": 2})  # and retries are logged
    with caplog.at_level(logging.DEBUG):
        for name in ("httpx", "httpcore", "airflow_provider_sfint", "airflow"):
            logging.getLogger(name).setLevel(logging.DEBUG)
        run = load_dag("salesforce_to_warehouse", (EXAMPLES / "salesforce_to_warehouse.py").read_text()).test(
            logical_date=today
        )
    assert {t.state for t in run.get_task_instances()} == {"success"}
    summaries = [str(t.xcom_pull(task_ids=t.task_id)) for t in run.get_task_instances()]
    tokens = fresh_org._call("GET", "tokens")["issued"]  # every access token the emulator issued
    out, err = capfd.readouterr()
    files = [p.read_text(errors="replace") for p in Path(os.environ["AIRFLOW_HOME"]).glob("logs/**/*") if p.is_file()]
    text = "\n".join([caplog.text, out, err, *files, *summaries])
    assert "retrying" in text and len(tokens) >= 2  # DEBUG logs really captured; several sessions issued
    for secret in [CLIENT_SECRET, *tokens]:
        assert secret not in text, "a secret or token appeared in the logs"
