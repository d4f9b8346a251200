"""Every auth flow and documented failure against the emulator; configuration errors; single-flight refresh."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from airflow_provider_sfint.client import (
    AsyncSalesforceClient,
    AuthenticationError,
    ClientConfig,
    ConfigurationError,
    InsecureTransportError,
    SalesforceClient,
    TransportError,
    check_url,
)
from airflow_provider_sfint.emulator import ADMIN_USERNAME, CLIENT_ID, CLIENT_SECRET, DEFAULT_REFRESH_TOKEN

from ..emulator.helpers import Admin


def _pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def jwt_key(admin: Admin) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    admin._call("POST", "jwt-certificates", json={"pem": public})
    return _pem(key)


def _cfg(url: str, **kw: Any) -> ClientConfig:
    base: dict[str, Any] = {"login_url": url, "client_id": CLIENT_ID, "cache_key": "auth-test"}
    base.update(kw)
    return ClientConfig(**base)


def _works(config: ClientConfig) -> str:
    with SalesforceClient(config) as client:
        assert client.limits()["DailyApiRequests"].max > 0
        return client.login()


@dataclasses.dataclass
class Endpoint:
    url: str
    admin: Admin
    verify: bool | str


@pytest.fixture(params=["http", "https"])
def endpoint(
    request: pytest.FixtureRequest, emulator_url: str, fresh_org: Admin, tls_server: Any, jwt_public: str
) -> Iterator[Endpoint]:
    """Each auth flow runs against the plain-HTTP emulator and the TLS one (verifying its certificate)."""
    if request.param == "http":
        yield Endpoint(emulator_url, fresh_org, True)
        return
    cert = str(tls_server.cert_path)
    with Admin(tls_server.url, verify=cert) as admin:
        admin._call("POST", "jwt-certificates", json={"pem": jwt_public})
        yield Endpoint(tls_server.url, admin, cert)
        admin.settings(password_flow=False)


@pytest.fixture(scope="module")
def jwt_public(jwt_key: str) -> str:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(jwt_key.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_jwt_bearer(endpoint: Endpoint, jwt_key: str) -> None:
    config = _cfg(
        endpoint.url,
        auth_type="jwt_bearer",
        username=ADMIN_USERNAME,
        private_key=jwt_key,
        jwt_audience="https://login.salesforce.com",
        verify=endpoint.verify,
    )
    assert _works(config) == endpoint.url


def test_client_credentials(endpoint: Endpoint) -> None:
    config = _cfg(endpoint.url, auth_type="client_credentials", client_secret=CLIENT_SECRET, verify=endpoint.verify)
    assert _works(config) == endpoint.url


def test_refresh_token(endpoint: Endpoint) -> None:
    config = _cfg(
        endpoint.url,
        auth_type="refresh_token",
        refresh_token=DEFAULT_REFRESH_TOKEN,
        client_secret=CLIENT_SECRET,
        verify=endpoint.verify,
    )
    assert _works(config) == endpoint.url


def test_password(endpoint: Endpoint) -> None:
    endpoint.admin.settings(password_flow=True)
    config = _cfg(
        endpoint.url,
        auth_type="password",
        client_secret=CLIENT_SECRET,
        username=ADMIN_USERNAME,
        password="sfint-emulator-password",
        verify=endpoint.verify,
    )
    assert _works(config) == endpoint.url


def test_pre_issued_access_token(endpoint: Endpoint) -> None:
    token = endpoint.admin.token()
    config = ClientConfig(
        auth_type="access_token", access_token=token, instance_url=endpoint.url, cache_key="pre", verify=endpoint.verify
    )
    assert _works(config) == endpoint.url
    endpoint.admin._call("POST", "tokens/expire")
    with SalesforceClient(config) as client, pytest.raises(AuthenticationError, match="cannot be refreshed"):
        client.limits()


def test_https_verification_stays_on(tls_server: Any) -> None:
    config = ClientConfig(
        auth_type="client_credentials",
        login_url=tls_server.url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        cache_key="tls-system-store",
        max_attempts=1,
    )
    with SalesforceClient(config) as client, pytest.raises(TransportError, match=r"CERTIFICATE_VERIFY_FAILED"):
        client.login()


@pytest.mark.parametrize(
    ("overrides", "hint"),
    [
        ({"auth_type": "client_credentials", "client_secret": "wrong"}, "check client_secret"),
        ({"auth_type": "client_credentials", "client_id": "nope", "client_secret": "x"}, "check client_id"),
        ({"auth_type": "refresh_token", "refresh_token": "revoked"}, "issue a new one"),
        (
            {
                "auth_type": "password",
                "client_secret": CLIENT_SECRET,
                "username": ADMIN_USERNAME,
                "password": "sfint-emulator-password",
            },
            "password flow is blocked",
        ),
    ],
)
def test_documented_failures_name_the_fix(
    emulator_url: str, fresh_org: Admin, overrides: dict[str, Any], hint: str
) -> None:
    with SalesforceClient(_cfg(emulator_url, **overrides)) as client, pytest.raises(AuthenticationError) as exc:
        client.login()
    assert hint in str(exc.value)
    assert exc.value.status == 400


def test_jwt_failures(emulator_url: str, fresh_org: Admin, jwt_key: str) -> None:
    other = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    cases = [
        ({"private_key": other}, "invalid assertion"),
        ({"username": "unapproved@sfint.emulator"}, "user hasn't approved this consumer"),
        ({"jwt_audience": "https://acme.example.com"}, "audience is invalid"),
    ]
    for overrides, message in cases:
        config = _cfg(
            emulator_url, **{"auth_type": "jwt_bearer", "username": ADMIN_USERNAME, "private_key": jwt_key, **overrides}
        )
        with SalesforceClient(config) as client, pytest.raises(AuthenticationError) as exc:
            client.login()
        assert message in str(exc.value)
        assert jwt_key not in str(exc.value) and other not in str(exc.value)


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"auth_type": "oauth_magic"}, "auth_type"),
        ({"auth_type": "jwt_bearer", "username": "u"}, "private_key"),
        ({"auth_type": "jwt_bearer", "username": "u", "private_key": "not a key"}, "private_key"),
        ({"auth_type": "client_credentials"}, "client_secret"),
        ({"auth_type": "access_token", "access_token": "t"}, "instance_url"),
        ({"auth_type": "client_credentials", "client_secret": "s", "login_url": "http://example.com"}, "login_url"),
        (
            {"auth_type": "client_credentials", "client_secret": "s", "login_url": "https://evil.example.com"},
            "login_url",
        ),
        ({"auth_type": "client_credentials", "client_secret": "s", "api_version": "v6"}, "api_version"),
        ({"auth_type": "client_credentials", "client_secret": "s", "read_timeout": 0}, "read_timeout"),
        (
            {"auth_type": "client_credentials", "client_secret": "s", "login_url": "login", "verify": False},
            "verify_tls",
        ),
        (
            {"auth_type": "access_token", "access_token": "t", "instance_url": "http://acme.my.salesforce.com"},
            "instance_url",
        ),
    ],
)
def test_bad_settings_fail_at_once_naming_the_setting(overrides: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigurationError) as exc:
        ClientConfig(**{"client_id": "c", "cache_key": "bad", **overrides}).validated()
    assert exc.value.setting == setting
    assert setting in str(exc.value)


def test_insecure_verify_needs_explicit_permission_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    config = ClientConfig(
        auth_type="client_credentials",
        client_id="c",
        client_secret="s",
        login_url="login",
        verify=False,
        allow_insecure=True,
        cache_key="insecure",
    )
    with caplog.at_level("WARNING"):
        config.validated()
    assert "TLS verification is OFF" in caplog.text


def test_instance_url_policy() -> None:
    ok = [
        "https://acme.my.salesforce.com",
        "https://acme--uat.sandbox.my.salesforce.com",
        "https://na1.salesforce.com",
        "https://acme.lightning.force.com",
        "https://x.cloudforce.com",
        "http://127.0.0.1:8765",
        "http://localhost:1",
        "https://[::1]:8443",
    ]
    for url in ok:
        assert check_url(url) == url
    bad = [
        "http://acme.my.salesforce.com",
        "https://salesforce.com.evil.io",
        "https://evil.example.com",
        "ftp://acme.my.salesforce.com",
        "acme.my.salesforce.com",
        "http://10.0.0.1",
    ]
    for url in bad:
        with pytest.raises(InsecureTransportError):
            check_url(url)
    assert check_url("https://sf.internal.example", allowed_hosts=("sf.internal.example",))


def test_token_response_with_foreign_instance_url_is_refused(config: ClientConfig, fresh_org: Admin) -> None:
    for hostile in ("https://evil.example.com", "http://acme.my.salesforce.com"):
        fresh_org.settings(instance_url=hostile)
        with SalesforceClient(config) as client, pytest.raises(InsecureTransportError) as exc:
            client.login()
        assert hostile in str(exc.value)


def test_expiry_seen_by_eight_threads_refreshes_once(config: ClientConfig, fresh_org: Admin) -> None:
    clients = [SalesforceClient(config) for _ in range(8)]
    clients[0].login()
    fresh_org._call("POST", "tokens/expire")
    before = fresh_org.counters()["token_calls"]
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def work(client: SalesforceClient) -> None:
        barrier.wait()
        try:
            client.limits()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert fresh_org.counters()["token_calls"] - before == 1
    for c in clients:
        c.close()


def test_expiry_seen_by_eight_tasks_refreshes_once(config: ClientConfig, fresh_org: Admin) -> None:
    async def run() -> None:
        async with AsyncSalesforceClient(config) as client:
            await client.login()
            fresh_org._call("POST", "tokens/expire")
            before = fresh_org.counters()["token_calls"]
            results = await asyncio.gather(*(client.limits() for _ in range(8)))
            assert len(results) == 8
            assert fresh_org.counters()["token_calls"] - before == 1

    asyncio.run(run())


def test_sessions_are_shared_per_connection_in_a_process(config: ClientConfig, fresh_org: Admin) -> None:
    before = fresh_org.counters()["token_calls"]
    for _ in range(3):
        with SalesforceClient(config) as client:
            client.limits()
    assert fresh_org.counters()["token_calls"] - before == 1


def test_config_repr_hides_secrets() -> None:
    config = ClientConfig(
        auth_type="password",
        client_id="cid",
        client_secret="top-secret-value",
        username="u",
        password="hunter2-plus-token",
        cache_key="r",
    )
    text = repr(config)
    assert "top-secret-value" not in text and "hunter2-plus-token" not in text
