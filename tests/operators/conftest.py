"""Operators run against the session emulator through a real Airflow connection (AIRFLOW_CONN_*)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sfint.client import forget_sessions
from airflow_provider_sfint.emulator import CLIENT_ID, CLIENT_SECRET

from ..emulator.helpers import Admin

CONN_ID = "sfint_test"


class WorkerDied(BaseException):
    """A worker process dying at a chosen moment (raised by :class:`StateStore` when told to)."""


class StateStore:
    """Stands in for Airflow 3.3's task_state_store (get/set/delete of JSON values), surviving 'tries'.

    ``dies_after(key, value)``, when set, is asked after each write; True raises :class:`WorkerDied`, the
    write having landed, as when a worker is killed right after recording a step.
    """

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.history: list[tuple[str, Any]] = []
        self.dies_after: Callable[[str, Any], bool] | None = None

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.values[key])) if key in self.values else default

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = json.loads(json.dumps(value))
        self.history.append((key, value))
        if self.dies_after is not None and self.dies_after(key, value):
            raise WorkerDied

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


class TaskInstance:
    """Records XCom pushes the way a task instance would receive them."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}
        self.stats_tags: dict[str, str] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def make_context(
    store: StateStore | None = None,
    start: datetime = datetime(2020, 1, 1, tzinfo=UTC),
    end: datetime = datetime(2030, 1, 1, tzinfo=UTC),
) -> dict[str, Any]:
    return {
        "ti": TaskInstance(),
        "task_state_store": store,
        "data_interval_start": start,
        "data_interval_end": end,
    }


@pytest.fixture(autouse=True)
def _fresh_sessions() -> Iterator[None]:
    forget_sessions()
    yield
    forget_sessions()


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, url: str, **extra: Any) -> str:
    extra = {"auth_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **extra}
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "sfint", "host": url, "extra": extra})
    )
    return conn_id


@pytest.fixture()
def conn(monkeypatch: pytest.MonkeyPatch, emulator_server: Any, fresh_org: Admin) -> str:
    """The session emulator's connection, its Pub/Sub API included (as the pytest plugin's connection_to)."""
    return set_connection(monkeypatch, CONN_ID, emulator_server.url, pubsub_endpoint=emulator_server.grpc_target)


@pytest.fixture()
def old_api(monkeypatch: pytest.MonkeyPatch, emulator_url: str, fresh_org: Admin) -> str:
    """A connection on API 57.0, before resultPages existed."""
    return set_connection(monkeypatch, "sfint_v57", emulator_url, api_version="57.0")


def load_dag(name: str, source: str) -> Any:
    """DAGs run by dag.test() must live in the dags folder (it syncs the bundle to the database)."""
    from airflow.configuration import conf

    folder = Path(conf.get("core", "dags_folder"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag
