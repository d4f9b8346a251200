"""Hermetic test environment: a temporary AIRFLOW_HOME with SQLite, and a shared emulator.

The environment is set before anything imports airflow. The session emulator is seeded with a
small demo org; tests that write and need a known state use ``fresh_org`` to reset it.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_AIRFLOW_HOME = tempfile.mkdtemp(prefix="sfint-airflow-home-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
# Shared by this process and any API server a test starts (workers of a real executor talk to it).
os.environ["AIRFLOW__API_AUTH__JWT_SECRET"] = "sfint-tests-only-" + "0123456789abcdef" * 4

import httpx  # noqa: E402
import pytest  # noqa: E402

from airflow_provider_sfint.emulator import EmulatorProcess  # noqa: E402

from .emulator.helpers import Admin, SalesforceHttp  # noqa: E402

DEMO_RECORDS = 200
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "recorded"


# --- gRPC and fork -------------------------------------------------------------------------------------------------
# This process runs our gRPC clients (the Pub/Sub tests, triggers that dag.test() runs inline) and also forks: Airflow's
# LocalExecutor forks its workers from it. gRPC's runtime does not survive a fork: a task forked while a channel was
# open here waited forever on a stream, and a forked worker hung LocalExecutor.end() (CI, twice, on the floor Airflow).
# The runtime's threads live exactly as long as a channel does, so the rule is checkable: no fork while they run. The
# hook below records a fork that breaks it, and the test that forked fails, naming the threads; a test that leaves a
# channel open is found at its own teardown rather than as a hang several tests later.
_GRPC_THREADS = ("event_engine", "grpc_global_tim", "lifeguard")
_forks_with_grpc: list[list[str]] = []


def _grpc_threads() -> list[str]:
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            name = Path(f"/proc/self/task/{task}/comm").read_text().strip()
        except OSError:  # the thread ended while we looked
            continue
        if name in _GRPC_THREADS or name.startswith("grpc"):
            names.append(name)
    return sorted(names)


def _before_fork() -> None:
    if threads := _grpc_threads():
        _forks_with_grpc.append(threads)


os.register_at_fork(before=_before_fork)


@pytest.fixture(autouse=True)
def _no_fork_while_grpc_runs() -> Iterator[None]:
    _forks_with_grpc.clear()
    yield
    if _grpc_threads():  # a channel this test opened may be garbage not yet collected: collect it, then look again
        gc.collect()
        time.sleep(0.2)  # gRPC stops its threads shortly after its last channel goes
        if alive := _grpc_threads():
            _forks_with_grpc.append(["left running after the test: " + ", ".join(alive)])
    if _forks_with_grpc:
        forks, _forks_with_grpc[:] = list(_forks_with_grpc), []
        pytest.fail(
            f"gRPC's runtime was running when this process forked ({forks}): close every gRPC channel "
            "(PubSubClient.close(), the test client's close()) before a task runs on the LocalExecutor",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorProcess]:
    """One emulator over plain HTTP on a free loopback port for the whole session, in its own process: tests
    hand tasks to Airflow's LocalExecutor, which forks its workers from this process, and a gRPC server's
    threads here made a forked worker abort ("Fatal Python error: Aborted") and the run hang."""
    with EmulatorProcess(seed="demo", demo_records=DEMO_RECORDS) as server:
        yield server


@pytest.fixture(scope="session")
def emulator_url(emulator_server: EmulatorProcess) -> str:
    return emulator_server.url


@pytest.fixture(scope="session")
def admin(emulator_url: str) -> Iterator[Admin]:
    with Admin(emulator_url) as client:
        yield client


@pytest.fixture()
def fresh_org(admin: Admin) -> Iterator[Admin]:
    """Reset the shared org to the seeded demo state, with no faults and the real time, before and after the test
    (a reset keeps the clock and the timing profile: a test that moved either must not leave it to the next one)."""
    admin._call("PUT", "clock", json={"offset_seconds": 0})
    admin._call("PUT", "profile", json={"name": "instant"})
    admin.reset(seed="demo", records=DEMO_RECORDS)
    yield admin
    admin._call("PUT", "clock", json={"offset_seconds": 0})
    admin._call("PUT", "profile", json={"name": "instant"})
    admin.reset(seed="demo", records=DEMO_RECORDS)


@pytest.fixture()
def sf(emulator_url: str, fresh_org: Admin) -> Iterator[SalesforceHttp]:
    """Raw-HTTP access to the emulator with a client-credentials token, on a freshly reset org."""
    with SalesforceHttp.login(emulator_url) as client:
        yield client


@pytest.fixture(scope="session")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(
        seed="demo", demo_records=DEMO_RECORDS, tls=True, cert_dir=tmp_path_factory.mktemp("tls")
    ) as server:
        yield server


@pytest.fixture(scope="session")
def recorded() -> Path:
    """The real-org fixtures in ../shared; tests that need them skip where the folder is absent, except in CI
    (``CI`` set), where a missing folder fails them: the contract tests must never be skipped silently there."""
    if not SHARED.is_dir():
        message = f"recorded fixtures not found at {SHARED} (they live outside the repository)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must provide them")
        pytest.skip(message)
    return SHARED


def pytest_configure(config: pytest.Config) -> None:
    httpx_logger = __import__("logging").getLogger("httpx")
    httpx_logger.setLevel("WARNING")


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A metadata database for dag.test() (created once per session)."""
    from airflow.utils.db import resetdb

    resetdb(skip_init=False)


@pytest.fixture(scope="module")
def execution_api(airflow_db: None) -> Iterator[str]:
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
    previous = os.environ.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL")
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


S3_CONN = "aws_moto"
BUCKET = "lake"


@pytest.fixture(scope="session")
def s3_lake() -> Iterator[Any]:
    """moto's S3 server on a free loopback port, a bucket, and an Airflow AWS connection pointing at it (for
    ``s3://aws_moto@lake/...`` paths); the filesystem object reads what the tasks wrote."""
    import s3fs  # the dev extra installs both (apache-airflow-providers-amazon[s3fs], moto[server])
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    conn = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
    }
    previous = os.environ.get("AIRFLOW_CONN_AWS_MOTO")
    os.environ["AIRFLOW_CONN_AWS_MOTO"] = json.dumps(conn)
    try:
        fs = s3fs.S3FileSystem(key="testing", secret="testing", client_kwargs={"endpoint_url": endpoint})
        fs.mkdir(BUCKET)
        yield fs
    finally:
        if previous is None:
            os.environ.pop("AIRFLOW_CONN_AWS_MOTO", None)
        else:
            os.environ["AIRFLOW_CONN_AWS_MOTO"] = previous
        server.stop()
