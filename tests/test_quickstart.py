"""A new user's first DAG, as docs/index.md gives it: its own Airflow home with Airflow's default configuration,
the documented connection, the DAG file as printed, and `airflow dags test` on two consecutive scheduled days.
Every Account arrives exactly once: the history on the first day, what changed in between on the second."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from .emulator.helpers import Admin, SalesforceHttp

DOCS = Path(__file__).resolve().parents[1] / "docs" / "index.md"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def _documented(name: str = "salesforce_quickstart") -> tuple[str, str]:
    """The DAG file and the connection exactly as the quickstart prints them."""
    text = DOCS.read_text(encoding="utf-8")
    (dag,) = re.findall(rf"```python\n# dags/{name}\.py\n(.*?)```", text, flags=re.S)
    (conn,) = re.findall(r"export AIRFLOW_CONN_SFINT_DEFAULT='(.*?)'", text, flags=re.S)
    return dag, conn


def _stamp(day: datetime, hours: int) -> str:
    return (day + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_the_quickstart_dag_on_two_scheduled_days(tmp_path: Path, emulator_url: str, fresh_org: Admin) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first, second = today - timedelta(days=1), today
    changed = fresh_org.load(
        "Account", [{"Name": f"Changed on day one {n}", "SystemModstamp": _stamp(first, 2 + n)} for n in range(3)]
    )
    dag_code, connection = _documented()
    home = tmp_path / "airflow-sfint"
    (home / "dags").mkdir(parents=True)
    (home / "dags" / "salesforce_quickstart.py").write_text(dag_code, encoding="utf-8")
    # Airflow's defaults, as a user has them: none of this suite's AIRFLOW_* settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW_CONN_SFINT_DEFAULT=connection.replace("http://127.0.0.1:8765", emulator_url),
        SFINT_QUICKSTART_LAKE=str(tmp_path / "lake"),
    )
    assert json.loads(env["AIRFLOW_CONN_SFINT_DEFAULT"])["conn_type"] == "sfint"

    def airflow(*args: str) -> str:
        done = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"airflow {' '.join(args)}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        return done.stdout + done.stderr

    airflow("db", "migrate")
    stamps = {a["Id"]: a["SystemModstamp"] for a in fresh_org.records("Account", include_deleted=True)}
    for day in (first, second):
        out = airflow("dags", "test", "salesforce_quickstart", day.date().isoformat())
        assert "start from the" in out  # the window the operator derived is in the task log
    lake = tmp_path / "lake" / "accounts"
    day_one = pq.read_table(lake / f"{first:%Y%m%d}.parquet").column("Id").to_pylist()
    day_two = pq.read_table(lake / f"{second:%Y%m%d}.parquet").column("Id").to_pylist()
    cut = _stamp(first, 0)
    assert set(day_one) == {i for i, s in stamps.items() if s < cut}
    assert set(day_two) == {i for i, s in stamps.items() if cut <= s < _stamp(second, 0)} and set(changed) <= set(
        day_two
    )
    assert len(day_one) + len(day_two) == len(set(day_one) | set(day_two))  # nothing twice


def test_the_event_driven_quickstart_dag_takes_a_snapshot_then_each_change_once(
    tmp_path: Path, emulator_server: Any, fresh_org: Admin
) -> None:
    dag_code, connection = _documented("salesforce_quickstart_events")
    home = tmp_path / "airflow-sfint"
    (home / "dags").mkdir(parents=True)
    (home / "dags" / "salesforce_quickstart_events.py").write_text(dag_code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    connection = connection.replace("http://127.0.0.1:8765", emulator_server.url)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW_CONN_SFINT_DEFAULT=connection.replace("127.0.0.1:8766", emulator_server.grpc_target),
        SFINT_QUICKSTART_LAKE=str(tmp_path / "lake"),
    )

    def airflow(*args: str) -> str:
        done = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"airflow {' '.join(args)}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        return done.stdout + done.stderr

    airflow("db", "migrate")
    airflow("dags", "test", "salesforce_quickstart_events")
    lake = tmp_path / "lake" / "account_changes" / "Account"
    snapshot = pq.read_table(lake / "part-000001.parquet")
    live = {a["Id"] for a in fresh_org.records("Account", include_deleted=False)}
    assert set(snapshot.column("record_id").to_pylist()) == live
    assert set(snapshot.column("change_type").to_pylist()) == {"SNAPSHOT"}
    with SalesforceHttp.login(emulator_server.url) as sf:
        new = sf.post("sobjects/Account", json={"Name": "Created after the snapshot"}).json()["id"]
    airflow("dags", "test", "salesforce_quickstart_events")
    (row,) = pq.read_table(lake / "part-000002.parquet").to_pylist()
    assert row["record_id"] == new and row["change_type"] == "CREATE" and row["Name"] == "Created after the snapshot"
