"""Airflow as a distributed deployment runs it, on one machine: PostgreSQL as the metadata database, Redis as
the Celery broker, moto's S3 server as the object store, and Airflow's components as separate processes
(API server, scheduler, triggerer, DAG processor, and Celery workers each in its own working directory and
AIRFLOW_HOME with its own copy of the DAG files). Every server listens on a free loopback port and is
stopped afterwards. PostgreSQL and Redis come from the Debian packages (``make test-distributed`` installs
them when missing)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ..airflow_stack import free_port

BIN = Path(sys.executable).parent
JWT_SECRET = "sfint-distributed-tests-" + "fedcba9876543210" * 4


def _debian_binary(name: str) -> str:
    """A PostgreSQL server binary (``initdb``, ``pg_ctl``): Debian keeps them under /usr/lib/postgresql/<v>/bin."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), "")
    if not found:
        raise RuntimeError(f"{name} not found: install PostgreSQL (make test-distributed installs the Debian package)")
    return found


class Service:
    """A server process in its own process group, its output in a log file."""

    def __init__(self, name: str, log: Path) -> None:
        self.name = name
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        try:  # whatever the group left behind (task processes, Celery's pool)
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} ---\n" + "\n".join(text.splitlines()[-lines:])


def wait_for(what: str, check: Callable[[], Any], timeout: float, services: list[Service]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [s for s in services if not s.alive()]
        if dead:
            raise AssertionError(f"{dead[0].name} exited while waiting for {what}:\n" + dead[0].tail())
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"no {what} after {timeout} s:\n" + "\n".join(s.tail(15) for s in services))


class Postgres:
    """A throwaway PostgreSQL cluster (initdb, trust auth on loopback) with an ``airflow`` database, in a
    directory of its own (the ``postgres`` user must reach it when the tests run as root)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sfint-postgres-"))
        self.data = self.root / "pgdata"
        self.port = free_port()
        self.service = Service("postgres", self.root / "postgres.log")
        # initdb refuses to run as root: the Debian package's ``postgres`` user owns the cluster then
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/airflow"

    def start(self) -> Postgres:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.as_user:
            shutil.chown(self.root, "postgres")
            self.service.log.touch()
            shutil.chown(self.service.log, "postgres")
        done = subprocess.run(
            [*self.as_user, _debian_binary("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--no-sync"],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        self.service.start(
            [*self.as_user, _debian_binary("postgres"), "-D", str(self.data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}",
             "-c", "fsync=off", "-c", "max_connections=200"],
        )  # fmt: skip
        import psycopg2

        def ready() -> bool:
            try:
                psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres").close()
                return True
            except psycopg2.OperationalError:
                return False

        wait_for("PostgreSQL accepting connections", ready, 60, [self.service])
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE airflow")
        conn.close()
        return self

    def stop(self) -> None:
        self.service.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class Redis:
    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.service = Service("redis", root / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server not found: install Redis (make test-distributed installs it)")
        self.service.start(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        )
        import redis

        def ready() -> bool:
            try:
                return bool(redis.Redis(host="127.0.0.1", port=self.port).ping())
            except redis.ConnectionError:
                return False

        wait_for("Redis answering PING", ready, 30, [self.service])
        return self

    def stop(self) -> None:
        self.service.stop()


class MotoS3:
    """moto's S3 server in its own process, and a bucket."""

    def __init__(self, root: Path, bucket: str) -> None:
        self.port = free_port()
        self.bucket = bucket
        self.service = Service("moto", root / "moto.log")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoS3:
        self.service.start([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)])

        def ready() -> bool:
            try:
                return httpx.get(f"{self.endpoint}/moto-api/", timeout=2).status_code < 500
            except httpx.HTTPError:
                return False

        wait_for("moto's S3 server", ready, 60, [self.service])
        self.fs().mkdir(self.bucket)
        return self

    def fs(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(key="testing", secret="testing", client_kwargs={"endpoint_url": self.endpoint})

    def stop(self) -> None:
        self.service.stop()


class CeleryCluster:
    """Airflow's components as separate processes on CeleryExecutor; ``workers`` Celery workers, each in its own
    directory (its AIRFLOW_HOME, working directory, DAG files copy and log server port)."""

    def __init__(
        self, root: Path, dags: Path, postgres: Postgres, redis: Redis, env: dict[str, str], workers: int = 2
    ) -> None:
        self.root = root
        self.dags = dags
        self.api_port = free_port()
        self.base = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_HOME"))},
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url,
            "AIRFLOW__CELERY__BROKER_URL": redis.url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + postgres.url,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET,
            "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "5",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **env,
        }
        self.control = self._home("control")
        self.services: list[Service] = []
        self.workers = [self._home(f"worker{i + 1}") for i in range(workers)]

    def _home(self, name: str) -> dict[str, Any]:
        home = self.root / name
        return {
            "name": name,
            "home": home,
            "env": {
                **self.base,
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            },
        }

    def _airflow(self, where: dict[str, Any], name: str, *args: str) -> Service:
        service = Service(f"{where['name']} {name}", where["home"] / f"{name}.log")
        service.start([str(BIN / "airflow"), *args], env=where["env"], cwd=where["home"])
        self.services.append(service)
        return service

    def start(self) -> CeleryCluster:
        for where in [self.control, *self.workers]:
            shutil.copytree(self.dags, where["home"] / "dags")
        subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"], env=self.control["env"], cwd=self.control["home"], check=True,
            stdout=(self.control["home"] / "migrate.log").open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._airflow(self.control, "api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.api_port))
        self._airflow(self.control, "scheduler", "scheduler")
        self._airflow(self.control, "triggerer", "triggerer")
        self._airflow(self.control, "dag-processor", "dag-processor")
        for where in self.workers:
            self._airflow(where, "worker", "celery", "worker", "--celery-hostname", f"{where['name']}@%h")

        def healthy() -> bool:
            try:
                url = f"http://127.0.0.1:{self.api_port}/api/v2/monitor/health"
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        self.wait("a healthy API server", healthy, 300)
        return self

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 300) -> Any:
        return wait_for(what, check, timeout, self.services)

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "airflow"), *args], env=self.control["env"], cwd=self.control["home"],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        if done.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()

    def tails(self) -> str:
        return "\n".join(s.tail(30) for s in self.services)
