"""Run the emulator: in a background thread (tests, demos) or in the foreground (the CLI)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

import grpc
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from .app import Emulator
from .profile import get_profile
from .pubsub import PubSubServer


def make_self_signed(directory: str | Path) -> tuple[Path, Path]:
    """Write a self-signed certificate for localhost/127.0.0.1/::1; returns (cert path, key path)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sfint-emulator")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "emulator-cert.pem", directory / "emulator-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def grpc_credentials(cert_path: Path, key_path: Path) -> grpc.ServerCredentials:
    """gRPC server credentials from the HTTPS certificate and key."""
    return grpc.ssl_server_credentials([(key_path.read_bytes(), cert_path.read_bytes())])


#: Idle keep-alive connections stay open this long (uvicorn's 5 s default closed connections that clients
#: without retries, such as simple-salesforce, reuse between polls, failing them where Salesforce would not).
KEEP_ALIVE_SECONDS = 65


class EmulatorServer:
    """An emulator served by uvicorn on a loopback port in a background thread.

    ::

        with EmulatorServer(tls=True) as server:
            print(server.url, server.cert_path, server.grpc_target)

    The Pub/Sub API (gRPC) is served beside it on ``grpc_port`` (a free port unless given), plaintext, or TLS
    with the same certificate when ``tls`` is set.
    """

    def __init__(
        self,
        emulator: Emulator | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        cert_dir: str | Path | None = None,
        log_level: str = "warning",
        grpc_port: int = 0,
        profile: str | None = None,
    ) -> None:
        self.emulator = emulator or Emulator(seed="empty")
        if profile is not None:  # "instant" or "realistic": see docs/emulator.md, "Org profiles"
            self.emulator.apply_profile(get_profile(profile))
        self.host = host
        self.tls = tls
        self.cert_path: Path | None = None
        self.key_path: Path | None = None
        if tls:
            self.cert_path, self.key_path = make_self_signed(cert_dir or self.emulator.data_dir)
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            self.emulator.app,
            log_level=log_level,
            access_log=False,
            lifespan="off",
            ssl_certfile=str(self.cert_path) if tls else None,
            ssl_keyfile=str(self.key_path) if tls else None,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        credentials = grpc_credentials(self.cert_path, self.key_path) if self.cert_path and self.key_path else None
        self.pubsub = PubSubServer(self.emulator, host, grpc_port, credentials)
        self.grpc_port = self.pubsub.port

    @property
    def grpc_target(self) -> str:
        """``host:port`` of the Pub/Sub API, for ``grpc.insecure_channel`` or ``grpc.secure_channel``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.grpc_port}"

    @property
    def org_id(self) -> str:
        """The emulated org's id (the ``tenantid`` of Pub/Sub calls)."""
        return self.emulator.org_id

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def start(self) -> EmulatorServer:
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="sfint-emulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the emulator server did not start within 15 s")
            time.sleep(0.02)
        self.pubsub.start()
        return self

    def stop(self) -> None:
        self.pubsub.stop()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class EmulatorProcess:
    """An emulator in its own process (``python -m airflow_provider_sfint.emulator``), with the surface of
    :class:`EmulatorServer` (``url``, ``grpc_port``, ``grpc_target``, ``cert_path``, ``org_id``).

    ::

        with EmulatorProcess(seed="demo", demo_records=200) as server:
            print(server.url, server.grpc_target)

    Use it where the process that starts the emulator forks: Airflow's LocalExecutor forks its workers, and
    gRPC's server threads do not survive a fork (a forked child can abort or hang). Driven over its HTTP
    admin API (``/__emulator__``) only.
    """

    def __init__(
        self,
        seed: str = "demo",
        demo_records: int | None = None,
        tls: bool = False,
        cert_dir: str | Path | None = None,
        org: str | Path | None = None,
        host: str = "127.0.0.1",
        grpc_port: int = 0,
        log_level: str = "warning",
        startup_timeout: float = 60.0,
        profile: str = "instant",
    ) -> None:
        self.host = host
        self.tls = tls
        self._workdir = Path(tempfile.mkdtemp(prefix="sfint-emulator-"))
        self._ready = self._workdir / "ready.json"
        args = ["--host", host, "--port", "0", "--grpc-port", str(grpc_port), "--seed", seed]
        args += ["--log-level", log_level, "--ready-file", str(self._ready)]
        args += ["--db", str(self._workdir / "org.sqlite"), "--profile", profile]
        if demo_records is not None:
            args += ["--demo-records", str(demo_records)]
        if tls:
            args += ["--tls", "--cert-dir", str(cert_dir or self._workdir)]
        if org is not None:
            args += ["--org", str(org)]
        self._args = args
        self._timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.grpc_port = 0
        self.cert_path: Path | None = None
        self.org_id = ""

    @property
    def grpc_target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.grpc_port}"

    def start(self) -> EmulatorProcess:
        log = (self._workdir / "emulator.log").open("wb")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "airflow_provider_sfint.emulator", *self._args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + self._timeout
        while not self._ready.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                output = (self._workdir / "emulator.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the emulator process did not start within {self._timeout:.0f} s:\n{output}")
            time.sleep(0.05)
        ready = json.loads(self._ready.read_text())
        self.url, self.grpc_port, self.org_id = ready["url"], ready["grpc_port"], ready["org_id"]
        self.cert_path = Path(ready["cert_path"]) if ready["cert_path"] else None
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
