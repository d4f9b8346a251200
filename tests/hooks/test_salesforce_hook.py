"""SalesforceHook: connection mapping, bad settings, masking, async access, test_connection, the CLI."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from airflow_provider_sfint.client import forget_sessions
from airflow_provider_sfint.emulator import ADMIN_USERNAME, CLIENT_ID, CLIENT_SECRET, DEFAULT_REFRESH_TOKEN

from ..emulator.helpers import Admin


@pytest.fixture(autouse=True)
def _fresh_sessions() -> Iterator[None]:
    forget_sessions()
    yield
    forget_sessions()


def _set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **conn: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "sfint", **conn}))


def _hook(conn_id: str = "sfint_default") -> Any:
    from airflow_provider_sfint.hooks.salesforce import SalesforceHook

    return SalesforceHook(sfint_conn_id=conn_id)


@pytest.fixture()
def cc_conn(monkeypatch: pytest.MonkeyPatch, emulator_url: str, fresh_org: Admin) -> str:
    _set_conn(
        monkeypatch,
        "sfint_default",
        host=emulator_url,
        extra={"auth_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    )
    return "sfint_default"


def test_hook_attributes() -> None:
    from airflow_provider_sfint.hooks.salesforce import SalesforceHook

    assert SalesforceHook.conn_type == "sfint"
    assert SalesforceHook.default_conn_name == "sfint_default"
    assert SalesforceHook.conn_name_attr == "sfint_conn_id"
    assert SalesforceHook.hook_name == "Salesforce (sfint)"


def test_client_from_connection(cc_conn: str) -> None:
    hook = _hook()
    rows = hook.client.query_all("SELECT Id FROM Account LIMIT 5")
    assert len(rows) == 5
    assert hook.get_conn() is hook.client
    ok, message = hook.test_connection()
    assert ok and "Connected to http://127.0.0.1" in message and "daily API calls remain" in message


def test_prefixed_extra_fields_and_login_url(
    monkeypatch: pytest.MonkeyPatch, emulator_url: str, fresh_org: Admin
) -> None:
    _set_conn(
        monkeypatch,
        "sfint_prefixed",
        extra={
            "extra__sfint__auth_type": "refresh_token",
            "extra__sfint__client_id": CLIENT_ID,
            "extra__sfint__refresh_token": DEFAULT_REFRESH_TOKEN,
            "extra__sfint__login_url": emulator_url,
            "extra__sfint__api_version": "60.0",
        },
    )
    hook = _hook("sfint_prefixed")
    assert hook.config.version == "60.0" and hook.config.auth_type == "refresh_token"
    assert hook.client.login() == emulator_url


def test_jwt_from_key_file(
    monkeypatch: pytest.MonkeyPatch, emulator_url: str, fresh_org: Admin, tmp_path: Path
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    fresh_org._call("POST", "jwt-certificates", json={"pem": public})
    key_file = tmp_path / "sf.key"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    _set_conn(
        monkeypatch,
        "sfint_jwt",
        host=emulator_url,
        login=ADMIN_USERNAME,
        extra={
            "auth_type": "jwt_bearer",
            "client_id": CLIENT_ID,
            "private_key_file": str(key_file),
            "jwt_audience": "https://login.salesforce.com",
        },
    )
    ok, message = _hook("sfint_jwt").test_connection()
    assert ok, message


@pytest.mark.parametrize(
    ("extra", "setting"),
    [
        ({"auth_type": "kerberos"}, "auth_type"),
        ({"auth_type": "jwt_bearer", "client_id": "c"}, "private_key"),
        ({"auth_type": "jwt_bearer", "client_id": "c", "private_key_file": "/nonexistent/key.pem"}, "private_key_file"),
        (
            {
                "auth_type": "client_credentials",
                "client_id": "c",
                "client_secret": "s",
                "login_url": "http://sf.example.com",
            },
            "login_url",
        ),
        (
            {"auth_type": "client_credentials", "client_id": "c", "client_secret": "s", "read_timeout": "soon"},
            "read_timeout",
        ),
        (
            {"auth_type": "client_credentials", "client_id": "c", "client_secret": "s", "verify_tls": "maybe"},
            "verify_tls",
        ),
        (
            {"auth_type": "client_credentials", "client_id": "c", "client_secret": "s", "verify_tls": "false"},
            "verify_tls",
        ),
        ({"auth_type": "access_token", "access_token": "t"}, "instance_url"),
    ],
)
def test_bad_settings_fail_without_retry_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], setting: str
) -> None:
    from airflow_provider_sfint.compat import AirflowFailException

    _set_conn(monkeypatch, "sfint_bad", login="someone@example.com", extra=extra)
    hook = _hook("sfint_bad")
    with pytest.raises(AirflowFailException) as exc:
        hook.client  # noqa: B018
    assert f"'{setting}'" in str(exc.value) and "sfint_bad" in str(exc.value)
    ok, message = hook.test_connection()
    assert not ok and setting in message


def test_test_connection_reports_refused_credentials(
    monkeypatch: pytest.MonkeyPatch, emulator_url: str, fresh_org: Admin
) -> None:
    _set_conn(
        monkeypatch,
        "sfint_wrong",
        host=emulator_url,
        extra={"auth_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": "wrong-secret"},
    )
    ok, message = _hook("sfint_wrong").test_connection()
    assert not ok and "check client_secret" in message and "wrong-secret" not in message


def test_secrets_are_registered_with_the_masker(monkeypatch: pytest.MonkeyPatch, emulator_url: str) -> None:
    try:
        from airflow.sdk._shared.secrets_masker import redact
    except ImportError:  # pragma: no cover - older task SDK layout
        from airflow.sdk.execution_time.secrets_masker import redact  # type: ignore[no-redef]
    _set_conn(
        monkeypatch,
        "sfint_mask",
        host=emulator_url,
        password="a-password-value-123",
        extra={
            "auth_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": "masked-client-secret-42",
            "refresh_token": "masked-refresh-token-77",
        },
    )
    _hook("sfint_mask").config  # noqa: B018
    for secret in ("masked-client-secret-42", "masked-refresh-token-77", "a-password-value-123"):
        assert secret not in str(redact(f"value={secret}"))


def test_async_client_uses_the_async_connection_path(cc_conn: str) -> None:
    async def run() -> int:
        client = await _hook().get_async_client()
        async with client:
            return len([r async for r in client.query("SELECT Id FROM Account LIMIT 3")])

    assert asyncio.run(run()) == 3


def test_no_secret_or_token_in_debug_logs(
    monkeypatch: pytest.MonkeyPatch, emulator_url: str, fresh_org: Admin, caplog: pytest.LogCaptureFixture
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    fresh_org.settings(password_flow=True)
    secrets = {CLIENT_SECRET, DEFAULT_REFRESH_TOKEN, "sfint-emulator-password", *pem.splitlines()[1:-1]}
    connections = {
        "sfint_l1": {
            "host": emulator_url,
            "extra": {"auth_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        },
        "sfint_l2": {
            "host": emulator_url,
            "extra": {"auth_type": "refresh_token", "client_id": CLIENT_ID, "refresh_token": DEFAULT_REFRESH_TOKEN},
        },
        "sfint_l3": {
            "host": emulator_url,
            "login": ADMIN_USERNAME,
            "password": "sfint-emulator-password",
            "extra": {"auth_type": "password", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        },
        "sfint_l4": {
            "host": emulator_url,
            "login": ADMIN_USERNAME,  # a key the org does not know: refused
            "extra": {"auth_type": "jwt_bearer", "client_id": CLIENT_ID, "private_key": pem},
        },
    }
    errors: list[str] = []
    tokens: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for name in ("httpx", "httpcore", "airflow_provider_sfint", "airflow"):
            logging.getLogger(name).setLevel(logging.DEBUG)
        fresh_org.faults({"kind": "503", "path": "/query", "count": 1})
        for conn_id, conn in connections.items():
            _set_conn(monkeypatch, conn_id, **conn)
            hook = _hook(conn_id)
            try:
                hook.client.query_all("SELECT Id FROM Account LIMIT 1")
                session = hook.client.transport.sessions.current()
                assert session is not None
                tokens.append(session.access_token)
            except Exception as exc:
                errors.append(str(exc) + repr(exc))
            _, message = hook.test_connection()
            errors.append(message)
    assert len(tokens) == 3 and len(errors) >= 5
    text = caplog.text + "\n".join(errors)
    assert "retrying GET" in caplog.text  # the logs were really captured at DEBUG
    for secret in [*secrets, *tokens]:
        assert secret not in text


def test_airflow_connections_test_cli(emulator_url: str, fresh_org: Admin, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_SFINT_CLI": json.dumps(
            {
                "conn_type": "sfint",
                "host": emulator_url,
                "extra": {"auth_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
            }
        ),
    }
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    airflow = str(Path(sys.executable).with_name("airflow"))
    out = subprocess.run(
        [airflow, "connections", "test", "sfint_cli"], env=env, capture_output=True, text=True, timeout=180
    )
    assert "Connection success!" in out.stdout, out.stdout + out.stderr


def test_pubsub_client_from_the_connection(
    monkeypatch: pytest.MonkeyPatch, emulator_server: Any, fresh_org: Admin
) -> None:
    """The hook's Pub/Sub client: the connection's endpoint, its session (the org id from the token
    response), plaintext only because the endpoint is loopback and the login URL plain http."""
    import asyncio

    from airflow_provider_sfint.emulator.pytest_plugin import connection_to

    monkeypatch.setenv("AIRFLOW_CONN_SFINT_EVENTS", json.dumps(connection_to(emulator_server)))

    async def topic() -> Any:
        client = await _hook("sfint_events").get_pubsub_client()
        async with client:
            assert client.plaintext and client.endpoint == emulator_server.grpc_target
            return await client.get_topic("/data/AccountChangeEvent")

    info = asyncio.run(topic())
    assert info.can_subscribe and info.tenant_guid == emulator_server.org_id


@pytest.mark.parametrize(
    ("extra", "setting"),
    [({"pubsub_endpoint": "no-port"}, "pubsub_endpoint"), ({"org_id": "001000000000001AAA"}, "org_id")],
)
def test_bad_pubsub_settings_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, emulator_url: str, extra: dict[str, str], setting: str
) -> None:
    from airflow_provider_sfint.compat import AirflowFailException

    _set_conn(
        monkeypatch,
        "sfint_bad_pubsub",
        host=emulator_url,
        extra={"auth_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **extra},
    )
    with pytest.raises(AirflowFailException, match=setting):
        _ = _hook("sfint_bad_pubsub").config
