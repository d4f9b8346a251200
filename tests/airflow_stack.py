"""Airflow as users run it, for the tests that need a real scheduler and triggerer: ``airflow standalone``
(scheduler, triggerer, DAG processor, API server; LocalExecutor) in its own AIRFLOW_HOME with SQLite, in
its own process group, stopped with the group. Default configuration apart from paths, loopback and
unpaused new DAGs."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AirflowStack:
    """``with AirflowStack(home, dags, env) as stack:`` starts Airflow and waits for its API server."""

    def __init__(self, home: Path, dags: Path, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.dags = dags
        self.port = free_port()
        self.log = home / "standalone.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_HOME"))},
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # standalone starts `airflow` subcommands
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> AirflowStack:
        self.home.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [str(BIN / "airflow"), "standalone"],
            env=self.env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_healthy(300)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"airflow standalone exited {self.process.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise AssertionError(f"airflow standalone not healthy after {timeout} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        try:  # what the group left behind (task runners started by the executor)
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def query(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """Rows of the metadata database (read-only, as the UI would show them)."""
        db = sqlite3.connect(f"file:{self.home / 'airflow.db'}?mode=ro", uri=True, timeout=30)
        try:
            db.row_factory = sqlite3.Row
            return [dict(row) for row in db.execute(sql, args)]
        except sqlite3.OperationalError as exc:  # before the migration has created the table
            if "no such table" in str(exc):
                return []
            raise
        finally:
            db.close()

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.query(
            "SELECT run_id, run_type, state, start_date, end_date FROM dag_run WHERE dag_id = ? ORDER BY id", dag_id
        )

    def wait(self, what: str, check: Any, timeout: float = 240.0) -> Any:
        """Poll ``check()`` until it returns something truthy; fail with the log's tail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"airflow standalone exited while waiting for {what}:\n{self.tail()}")
            found = check()
            if found:
                return found
            time.sleep(0.5)
        raise AssertionError(f"no {what} after {timeout} s:\n{self.tail()}")


def connection_env(conn_id: str, url: str, **extra: Any) -> dict[str, str]:
    """``AIRFLOW_CONN_<ID>`` for the emulator at ``url`` (client credentials), with extra settings."""
    from airflow_provider_sfint.emulator import CLIENT_ID, CLIENT_SECRET

    connection = {
        "conn_type": "sfint",
        "host": url,
        "extra": {"auth_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **extra},
    }
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(connection)}
