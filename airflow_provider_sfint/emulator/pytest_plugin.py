"""A pytest plugin for users' own DAG tests: an emulated Salesforce org per test session, as moto serves AWS.

Registered through the ``pytest11`` entry point; it is active only where the ``emulator`` extra is installed
(without it, importing it defines nothing). Fixtures:

- ``sfint_emulator`` (session): the emulator over plain HTTP on a free loopback port;
- ``sfint_emulator_tls`` (session): the same over HTTPS with a self-signed certificate (``.cert_path``);
- ``sfint_org`` (test): the org, reset to its seed before the test; load records, set faults, limits and the
  clock, and read back what a DAG wrote (records, platform events, API calls);
- ``sfint_conn`` (test): an Airflow connection ``sfint_default`` pointing at ``sfint_emulator``, set as
  ``AIRFLOW_CONN_SFINT_DEFAULT`` for the test only; ``sfint_connection`` makes others (TLS, other ids).

Options (command line or ``[pytest]`` ini): ``--sfint-org`` / ``sfint_org`` an org definition YAML of your
own (objects, fields, events, limits; default: the bundled demo org), ``--sfint-seed`` / ``sfint_seed``
``demo`` or ``empty``, ``--sfint-records`` / ``sfint_records`` how many generated Accounts the demo seed
holds (default 200; Contacts, Opportunities and Cases follow).

Imports only the emulator (never the provider's client or Airflow), like the emulator itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

try:
    import httpx

    from . import ADMIN_USERNAME, CLIENT_ID, CLIENT_SECRET, EmulatorProcess, EmulatorServer
    from .schema import load_org
except ImportError:  # the emulator extra is not installed: the plugin stays out of the way
    ENABLED = False
else:
    ENABLED = True

DEFAULT_RECORDS = 200


class EmulatedOrg:
    """The emulated org of a test: its admin API (``/__emulator__``), in the terms a DAG test needs."""

    def __init__(self, server: EmulatorServer | EmulatorProcess, seed: str, records: int) -> None:
        self.server = server
        self.url = server.url
        self.grpc_target = server.grpc_target  # the Pub/Sub API (gRPC), host:port
        self.seed = seed
        self.records_seeded = records
        verify: bool | str = str(server.cert_path) if server.cert_path else True
        self.http = httpx.Client(base_url=f"{server.url}/__emulator__", timeout=120, verify=verify)

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        response = self.http.request(method, path, **kw)
        if response.status_code != 200:
            raise AssertionError(f"emulator admin {method} {path}: {response.status_code} {response.text[:500]}")
        return response.json()

    def reset(self) -> None:
        """Back to the seeded state: records, sessions, faults, limits, counters and the clock."""
        self._call("POST", "reset", json={"seed": self.seed, "records": self.records_seeded})

    def load(self, obj: str, records: list[dict[str, Any]]) -> list[str]:
        """Insert your own records (field API names; system fields may be given, e.g. SystemModstamp); their ids."""
        return list(self._call("POST", f"load/{obj}", json={"records": records})["ids"])

    def generate(self, counts: dict[str, int], seed: int = 7) -> Any:
        """Add generated records, deterministic under ``seed`` (``{"Account": 1000}``)."""
        return self._call("POST", "seed", json={"counts": counts, "seed": seed})

    def records(self, obj: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Every stored record of ``obj`` (what a DAG wrote reads back here)."""
        return list(self._call("GET", f"records/{obj}", params={"include_deleted": str(include_deleted).lower()}))

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """Published platform events, with their payloads and replay ids."""
        return list(self._call("GET", "events", params={"event": event} if event else {}))

    def pubsub(self, **settings: Any) -> dict[str, Any]:
        """Pub/Sub settings and faults (``keepalive_seconds``, ``idle_seconds``, ``cut_stream_after_events``,
        ``unavailable_calls``, ...); with no argument, the current ones and the gRPC port."""
        return dict(self._call("PUT" if settings else "GET", "pubsub", json=settings or None))

    def change_data_capture(self, enable: Sequence[str] = (), disable: Sequence[str] = ()) -> list[str]:
        """Select (or deselect) objects for Change Data Capture; returns the selection."""
        body = {"enable": list(enable), "disable": list(disable)}
        return list(self._call("PUT", "pubsub/cdc", json=body)["cdc_entities"])

    def channels(self) -> list[dict[str, Any]]:
        """Every event channel with its latest replay id, stored events and deliveries."""
        return list(self._call("GET", "pubsub/channels"))

    def gap(self, obj: str, ids: list[str], change_type: str = "GAP_UPDATE") -> None:
        """Gap events for records changed "straight in the database" (subscribers must re-read them)."""
        self._call("POST", "pubsub/gap", json={"object": obj, "ids": ids, "change_type": change_type})

    def undelete(self, obj: str, ids: list[str]) -> list[str]:
        """Restore deleted records from the recycle bin (an UNDELETE change event each)."""
        return list(self._call("POST", "pubsub/undelete", json={"object": obj, "ids": ids})["ids"])

    def api_calls(self) -> int:
        """API calls counted against the org's daily allowance since the last reset."""
        return int(self._call("GET", "counters")["api_usage"])

    def counters(self) -> dict[str, Any]:
        return dict(self._call("GET", "counters"))

    def faults(self, *rules: dict[str, Any], seed: int = 1) -> Any:
        """Make the org misbehave: ``faults({"kind": "503", "rate": 0.05, "path": "/query"})``."""
        return self._call("PUT", "faults", json={"seed": seed, "rules": list(rules)})

    def limits(self, **values: Any) -> Any:
        return self._call("PUT", "limits", json=values)

    def clock(self, now: str) -> Any:
        """Set the org's clock (ISO 8601), for incremental windows."""
        return self._call("PUT", "clock", json={"now": now})

    def token(self, username: str | None = None) -> str:
        """A fresh access token (for pre-issued-token connections)."""
        return str(self._call("POST", "tokens", json={"username": username or ADMIN_USERNAME})["access_token"])

    def connection(self, **extra: Any) -> dict[str, Any]:
        """An Airflow connection to this org (the JSON of ``AIRFLOW_CONN_<ID>``), signing in with client
        credentials."""
        return connection_to(self.server, **extra)

    def close(self) -> None:
        self.http.close()


def connection_to(server: EmulatorServer | EmulatorProcess, **extra: Any) -> dict[str, Any]:
    """An Airflow connection to ``server`` (as the JSON of ``AIRFLOW_CONN_<ID>``) signing in with client
    credentials; over TLS it trusts the emulator's own certificate, and nothing else, for that host."""
    settings: dict[str, Any] = {"auth_type": "client_credentials", "client_id": CLIENT_ID}
    settings["client_secret"] = CLIENT_SECRET
    settings["pubsub_endpoint"] = server.grpc_target
    if server.cert_path:
        settings["verify_tls"] = str(server.cert_path)
    return {"conn_type": "sfint", "host": server.url, "extra": {**settings, **extra}}


def pytest_addoption(parser: pytest.Parser) -> None:
    if not ENABLED:
        return
    group = parser.getgroup("sfint", "Salesforce emulator (airflow-provider-sfint)")
    for name, help_text in (
        ("org", "an org definition YAML of your own (default: the bundled demo org)"),
        ("seed", "'demo' (generated records, the default) or 'empty'"),
        ("records", f"generated Accounts in the demo seed (default {DEFAULT_RECORDS})"),
    ):
        group.addoption(f"--sfint-{name}", dest=f"sfint_{name}", default=None, help=help_text)
        parser.addini(f"sfint_{name}", help_text, default=None)


def _option(config: pytest.Config, name: str, default: Any) -> Any:
    value = config.getoption(f"sfint_{name}", default=None) or config.getini(f"sfint_{name}")
    return value if value not in (None, "", []) else default


def _server(config: pytest.Config, tls: bool, cert_dir: Path) -> EmulatorProcess:
    """The emulator in its own process: DAG tests hand tasks to a LocalExecutor that forks its workers from the
    test process, and a gRPC server's threads do not survive a fork."""
    org_file = _option(config, "org", None)
    if org_file is not None and not Path(org_file).is_file():
        raise pytest.UsageError(f"--sfint-org / sfint_org: {org_file!r} is not a file (an org definition YAML)")
    load_org(org_file)  # a broken definition fails here, with its own message, not as a silent start-up failure
    return EmulatorProcess(
        seed=str(_option(config, "seed", "demo")),
        demo_records=int(_option(config, "records", DEFAULT_RECORDS)),
        tls=tls,
        cert_dir=cert_dir if tls else None,
        org=org_file,
    )


if ENABLED:

    def _serving(config: pytest.Config, tls: bool, factory: pytest.TempPathFactory) -> Iterator[Any]:
        with _server(config, tls, factory.mktemp("sfint-tls" if tls else "sfint")) as server:
            yield server

    @pytest.fixture(scope="session")
    def sfint_emulator(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
        """The emulated org over plain HTTP on a free loopback port, for the whole session."""
        yield from _serving(pytestconfig, False, tmp_path_factory)

    @pytest.fixture(scope="session")
    def sfint_emulator_tls(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
        """The emulated org over HTTPS (a self-signed certificate at ``.cert_path``), for the whole session."""
        yield from _serving(pytestconfig, True, tmp_path_factory)

    @pytest.fixture()
    def sfint_org(sfint_emulator: Any, pytestconfig: pytest.Config) -> Iterator[EmulatedOrg]:
        """The org, reset to its seed before the test: load records, set faults, read back what the DAG did."""
        org = EmulatedOrg(
            sfint_emulator,
            str(_option(pytestconfig, "seed", "demo")),
            int(_option(pytestconfig, "records", DEFAULT_RECORDS)),
        )
        org.reset()
        yield org
        org.close()

    @pytest.fixture()
    def sfint_connection(
        monkeypatch: pytest.MonkeyPatch, sfint_org: EmulatedOrg, request: pytest.FixtureRequest
    ) -> Callable[..., str]:
        """Define a connection for this test: ``sfint_connection("sfint_default", tls=False, **extra)`` sets
        ``AIRFLOW_CONN_<ID>`` pointing at the emulator and returns the id."""

        def define(conn_id: str = "sfint_default", tls: bool = False, **extra: Any) -> str:
            server = request.getfixturevalue("sfint_emulator_tls") if tls else sfint_org.server
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection_to(server, **extra)))
            return conn_id

        return define

    @pytest.fixture()
    def sfint_conn(sfint_connection: Callable[..., str]) -> str:
        """``sfint_default``, pointing at the emulator for this test (client credentials)."""
        return sfint_connection()
