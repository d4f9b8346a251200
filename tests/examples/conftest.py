"""Example DAGs from dags_examples/, run by dag.test() against the emulator with their settings pointed
at a temporary lake and warehouse."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..emulator.helpers import Admin
from ..operators.conftest import conn, load_dag  # noqa: F401  (a fixture and a helper)

EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"


@pytest.fixture()
def example(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    conn: str,  # noqa: F811
    airflow_db: None,
) -> Callable[..., Any]:
    """Load an example DAG with SFINT_* settings for this test (they are read when the DAG is parsed), with no
    runs of it left from earlier tests: an incremental window starts where the previous successful run ended."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        for run in session.query(DagRun).filter(DagRun.dag_id.in_([p.stem for p in EXAMPLES.glob("*.py")])):
            session.delete(run)
    monkeypatch.setenv("SFINT_LAKE", f"file://{tmp_path / 'lake'}")
    monkeypatch.setenv("SFINT_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("SFINT_ERP_DROP", str(tmp_path / "erp"))
    monkeypatch.setenv("SFINT_CONN_ID", conn)
    monkeypatch.setenv("SFINT_RETRIES", "0")

    def load(name: str, **env: str) -> Any:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return load_dag(name, (EXAMPLES / f"{name}.py").read_text())

    return load


@pytest.fixture()
def org(fresh_org: Admin) -> Admin:
    return fresh_org
