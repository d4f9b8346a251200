"""Example DAGs from dags_examples/, run by dag.test() against the emulator with their settings pointed
at a temporary lake and warehouse."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..emulator.helpers import Admin
from ..operators.conftest import airflow_db, conn, load_dag  # noqa: F401  (fixtures and helper)

EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"


@pytest.fixture()
def example(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    conn: str,  # noqa: F811
    airflow_db: None,  # noqa: F811
) -> Callable[..., Any]:
    """Load an example DAG with SFINT_* settings for this test (they are read when the DAG is parsed)."""
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


@pytest.fixture(scope="module")
def execution_api(airflow_db: None) -> Iterator[str]:  # noqa: F811
    """An Airflow API server on a free loopback port, so dag.test(use_executor=True) can hand tasks to a
    real executor: its worker processes report to the Execution API as in production."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = Path(os.environ["AIRFLOW_HOME"]) / f"api-server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), "api-server", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API server did not start; see {log}:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        previous = os.environ.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL")
        os.environ["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"{url}/execution/"
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        if previous is None:
            os.environ.pop("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", None)
        else:
            os.environ["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = previous
