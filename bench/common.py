"""Shared by the benchmarks: run the emulator in its own process, measure a process's peak memory."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, verify: bool | str = True) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/services/data/", verify=verify)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"the emulator at {url} did not start")


def rss_mb(pid: int | str = "self") -> float:
    """Peak resident memory (VmHWM) of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


class EmulatorProcess:
    """``python -m airflow_provider_sfint.emulator`` on a free port, in its own process group (its own GIL),
    so the client being measured does not share a core's interpreter with the server."""

    def __init__(self, *, tls: bool = False, cert_dir: Path | None = None, extra_args: list[str] | None = None) -> None:
        self.port = free_port()
        self.extra_args = list(extra_args or [])
        self.tls = tls
        self.cert_dir = cert_dir
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.verify: bool | str = str(cert_dir / "emulator-cert.pem") if tls and cert_dir else True
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> EmulatorProcess:
        command = [sys.executable, "-m", "airflow_provider_sfint.emulator", "--seed", "empty", "--port", str(self.port)]
        command += self.extra_args
        if self.tls:
            assert self.cert_dir is not None
            command += ["--tls", "--cert-dir", str(self.cert_dir)]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        if self.tls:
            while not Path(str(self.verify)).exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        wait_until_up(self.url, self.verify)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(30)

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def admin(self, method: str, path: str, **kw: Any) -> Any:
        response = httpx.request(method, f"{self.url}/__emulator__/{path}", verify=self.verify, timeout=3600, **kw)
        response.raise_for_status()
        return response.json()


def token(url: str, verify: bool | str) -> dict[str, Any]:
    """A client-credentials token from the emulator (its default connected app)."""
    response = httpx.post(
        f"{url}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "sfint-emulator",
            "client_secret": "sfint-emulator-secret",
        },
        verify=verify,
    )
    response.raise_for_status()
    return dict(response.json())


def run_child(command: list[str]) -> dict[str, Any]:
    """Run one measured tool in its own process; its last ``RESULT {json}`` line, or ``{"error": ...}``."""
    process = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    if process.returncode or not lines:
        print(process.stdout[-2000:], process.stderr[-4000:], file=sys.stderr)
        return {"error": (process.stderr or process.stdout)[-500:]}
    return dict(json.loads(lines[-1][len("RESULT ") :]))


def write_result(out: str, result: dict[str, Any], shown: Any) -> None:
    """Write a benchmark's result JSON to ``out`` (creating its folder) and print ``shown``."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(shown, indent=2))
