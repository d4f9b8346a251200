"""SalesforceHook: an Airflow connection of type ``sfint`` turned into a client.

The hook maps the connection's fields to :class:`~airflow_provider_sfint.client.ClientConfig`,
registers every secret with Airflow's masker, and hands out sync and async clients. Bad settings
fail at once (``AirflowFailException``, so Airflow does not retry them) with the setting named.
"""

from __future__ import annotations

import dataclasses
import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowNotFoundException
from airflow.sdk import BaseHook

from ..client import (
    AsyncSalesforceClient,
    ClientConfig,
    ConfigurationError,
    LoginRefusedError,
    SalesforceClient,
    SalesforceError,
)
from ..client.auth import AUTH_TYPES, DEFAULT_API_VERSION, DEFAULT_PUBSUB_ENDPOINT
from ..client.pubsub import PubSubClient
from ..compat import AirflowFailException, mask_secret

if TYPE_CHECKING:
    from airflow.sdk import Connection


def _connection_type() -> dict[str, Any]:
    from ..get_provider_info import get_provider_info

    return dict(get_provider_info()["connection-types"][0])


#: Seconds test_connection waits for a TCP/TLS connection (the UI's Test button should answer promptly).
TEST_CONNECT_TIMEOUT = 5.0

#: The extra fields this provider reads: exactly the connection form's declared fields.
# login_url: the Login URL of connections defined before the form had one field (the host is that field now)
EXTRA_FIELDS = frozenset(_connection_type()["conn-fields"]) | {"login_url"}


def _mask(secret: str) -> None:
    mask_secret(secret)
    if "\n" in secret:  # PEM keys: mask each line too, in case a log line splits them
        for line in secret.splitlines():
            if len(line) >= 8:
                mask_secret(line)


def _number(extra: dict[str, Any], name: str, default: float) -> float:
    raw = extra.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ConfigurationError(name, f"{raw!r} is not a number") from None


def _flag(extra: dict[str, Any], name: str, default: bool) -> bool:
    raw = extra.get(name)
    if raw in (None, ""):
        return default
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigurationError(name, f"{raw!r} is not true or false")


def _login_url(host: str | None, legacy: Any) -> str:
    """The connection's Login URL is its host field; ``login_url`` in the extra is still read for connections
    defined as JSON or URI before the form had one field, and refused when it disagrees with the host."""
    host_text = (host or "").strip()
    extra_text = str(legacy or "").strip()
    if host_text and extra_text and extra_text.rstrip("/") != host_text.rstrip("/") and extra_text != "login":
        raise ConfigurationError(
            "login_url",
            f"the Login URL (host) is {host_text!r} but the extra login_url is {extra_text!r}: keep one, in the "
            "Login URL field",
        )
    return host_text or extra_text or "login"


def config_from_connection(
    conn_id: str,
    conn_type: str | None,
    host: str | None,
    login: str | None,
    password: str | None,
    extra: dict[str, Any],
) -> ClientConfig:
    """Map a connection's fields to a validated client configuration (raises ConfigurationError)."""
    if conn_type not in (None, "", "sfint"):
        raise ConfigurationError("conn_type", f"connection {conn_id!r} has type {conn_type!r}, expected 'sfint'")
    auth_type = str(extra.get("auth_type") or "jwt_bearer").strip()
    if auth_type not in AUTH_TYPES:
        raise ConfigurationError("auth_type", f"{auth_type!r} is not one of {', '.join(AUTH_TYPES)}")
    private_key = extra.get("private_key") or None
    key_file = extra.get("private_key_file")
    if key_file and not private_key:
        try:
            private_key = Path(str(key_file)).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError("private_key_file", f"cannot read {key_file}: {exc.strerror or exc}") from None
    verify_raw = extra.get("verify_tls")
    verify: bool | str = True
    if verify_raw not in (None, ""):
        text = str(verify_raw).strip()
        if text.lower() in ("true", "false", "1", "0", "yes", "no"):
            verify = _flag(extra, "verify_tls", True)
        elif Path(text).expanduser().is_file():
            verify = str(Path(text).expanduser())
        else:
            raise ConfigurationError("verify_tls", f"{text!r} is neither true/false nor a readable CA bundle file")
    hosts = extra.get("allowed_hosts") or ()
    if isinstance(hosts, str):
        hosts = tuple(h.strip() for h in hosts.split(",") if h.strip())
    access_token = extra.get("access_token") or (password if auth_type == "access_token" else None)
    return ClientConfig(
        auth_type=auth_type,
        login_url=_login_url(host, extra.get("login_url")),
        client_id=extra.get("client_id") or None,
        client_secret=extra.get("client_secret") or None,
        username=login or None,
        password=password or None if auth_type == "password" else None,
        private_key=private_key,
        refresh_token=extra.get("refresh_token") or None,
        access_token=access_token or None,
        instance_url=extra.get("instance_url") or None,
        api_version=str(extra.get("api_version") or DEFAULT_API_VERSION),
        connect_timeout=_number(extra, "connect_timeout", 10.0),
        read_timeout=_number(extra, "read_timeout", 120.0),
        verify=verify,
        allow_insecure=_flag(extra, "allow_insecure", False),
        allowed_hosts=tuple(hosts),
        jwt_audience=extra.get("jwt_audience") or None,
        max_attempts=int(_number(extra, "max_attempts", 6)),
        max_retry_seconds=_number(extra, "max_retry_seconds", 300.0),
        min_remaining_api_percent=_number(extra, "min_remaining_api_percent", 0.0),
        pubsub_endpoint=str(extra.get("pubsub_endpoint") or DEFAULT_PUBSUB_ENDPOINT).strip(),
        org_id=str(extra.get("org_id")).strip() if extra.get("org_id") else None,
        cache_key=conn_id,
    ).validated()


class SalesforceHook(BaseHook):
    """Interact with Salesforce through an ``sfint`` connection.

    :param sfint_conn_id: the connection id (default ``sfint_default``)
    """

    conn_name_attr = "sfint_conn_id"
    default_conn_name = "sfint_default"
    conn_type = "sfint"
    hook_name = "Salesforce (sfint)"

    # Airflow 3.1 builds connection forms from these hook methods; 3.2+ reads ``conn-fields`` and
    # ``ui-field-behaviour`` from provider info. Both come from the one declaration in get_provider_info.
    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The provider info's ``ui-field-behaviour`` in the hook method's spelling (``hidden_fields``), which
        Airflow 3.1 validates against its schema (it dropped the form's labels and hints otherwise)."""
        return {key.replace("-", "_"): value for key, value in _connection_type()["ui-field-behaviour"].items()}

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        try:  # wtforms ships with the FAB provider, not with a plain Airflow 3.1
            from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
            from wtforms import PasswordField, StringField
        except ImportError:
            return {}
        widgets: dict[str, Any] = {}
        for name, spec in _connection_type()["conn-fields"].items():
            secret = spec["schema"].get("format") == "password"
            field_class, widget = (
                (PasswordField, BS3PasswordFieldWidget) if secret else (StringField, BS3TextFieldWidget)
            )
            widgets[name] = field_class(spec["label"], description=spec.get("description"), widget=widget())
        return widgets

    def __init__(self, sfint_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sfint_conn_id = sfint_conn_id

    def _config(self, conn: Connection) -> ClientConfig:
        raw = conn.extra_dejson if conn.extra else {}
        if isinstance(raw, str):
            raw = json.loads(raw)
        # Older forms store fields as extra__sfint__<name>; accept both spellings.
        extra = {str(k).removeprefix("extra__sfint__"): v for k, v in raw.items()}
        secrets = [extra.get(k) for k in ("client_secret", "private_key", "refresh_token", "access_token")]
        for secret in [conn.password, *secrets]:
            if secret:
                _mask(str(secret))
        unknown = sorted(set(extra) - EXTRA_FIELDS)
        if unknown:
            self.log.warning(
                "connection %s has extra fields this provider does not use: %s", self.sfint_conn_id, ", ".join(unknown)
            )
        try:
            config = config_from_connection(
                self.sfint_conn_id, conn.conn_type, conn.host, conn.login, conn.password, dict(extra)
            )
        except ConfigurationError as exc:
            raise AirflowFailException(f"Salesforce connection {self.sfint_conn_id!r}: {exc}") from exc
        for secret in config.secrets():
            _mask(secret)
        return config

    @cached_property
    def config(self) -> ClientConfig:
        """The connection's client configuration (read with the sync connection call)."""
        try:
            conn = self.get_connection(self.sfint_conn_id)
        except AirflowNotFoundException as exc:
            raise AirflowNotFoundException(
                f"connection {self.sfint_conn_id!r} is not defined: create it (type sfint) in Admin > Connections, "
                f"or set AIRFLOW_CONN_{self.sfint_conn_id.upper()}, or pass another sfint_conn_id"
            ) from exc
        return self._config(conn)

    async def aget_config(self) -> ClientConfig:
        """The configuration for async code (triggers): never the sync connection call in an event loop."""
        aget = getattr(BaseHook, "aget_connection", None)
        if aget is not None:
            conn = await aget(self.sfint_conn_id)
        else:  # Airflow < 3.2: run the sync lookup in a thread
            from asgiref.sync import sync_to_async

            conn = await sync_to_async(self.get_connection)(self.sfint_conn_id)
        return self._config(conn)

    def _login_refused(self, exc: LoginRefusedError) -> BaseException:
        """Credentials refused by the org fail the task at once: a retry with the same ones cannot succeed."""
        return AirflowFailException(
            f"Salesforce connection {self.sfint_conn_id!r}: {exc}. Not retried: fix the connection's credentials"
        )

    @cached_property
    def client(self) -> SalesforceClient:
        """A sync client; sessions are shared with every other client of this connection in the process."""
        client = SalesforceClient(self.config)
        client.transport.on_login_refused = self._login_refused
        return client

    def get_conn(self) -> SalesforceClient:
        return self.client

    async def get_async_client(self) -> AsyncSalesforceClient:
        client = AsyncSalesforceClient(await self.aget_config())
        client.transport.on_login_refused = self._login_refused
        return client

    async def get_pubsub_client(self) -> PubSubClient:
        """A Pub/Sub API client (async: gRPC's asyncio API) signing in with this connection, sharing its
        sessions. Use ``async with`` and close it; the caller's event loop owns it."""
        client = await self.get_async_client()
        return PubSubClient.for_config(client.transport)

    def test_connection(self) -> tuple[bool, str]:
        """Log in and read ``/limits`` (the cheapest counted call); never raises.

        One attempt per request and a short connect timeout: the UI's Test button answers within seconds
        when the org is unreachable, with the URL and the reason, instead of after a task's retries.
        """
        try:
            quick = dataclasses.replace(
                self.config, max_attempts=1, connect_timeout=min(self.config.connect_timeout, TEST_CONNECT_TIMEOUT)
            )
            client = SalesforceClient(quick)
            try:
                limits = client.limits()
                api = limits.get("DailyApiRequests")
                instance = client.login()
            finally:
                client.close()
        except (SalesforceError, AirflowFailException) as exc:
            return False, str(exc)
        except Exception as exc:  # test_connection must report, not raise
            return False, f"{type(exc).__name__}: {exc}"
        remaining = f"; {api.remaining} of {api.max} daily API calls remain" if api else ""
        return True, f"Connected to {instance}{remaining}"
