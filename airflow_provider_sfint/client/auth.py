"""Authentication: settings, URL policy, OAuth token requests per flow, and the shared session.

Protocol work is plain functions (:func:`token_request`, :func:`parse_token_response`); the sync and
async transports only send them. Sessions are cached per connection and process, and refreshed once
however many threads or tasks noticed the expiry.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt

from .errors import ConfigurationError, InsecureTransportError, LoginRefusedError

log = logging.getLogger(__name__)

AUTH_TYPES = ("jwt_bearer", "client_credentials", "refresh_token", "password", "access_token")
SALESFORCE_DOMAINS = ("salesforce.com", "force.com", "cloudforce.com", "salesforce.mil", "sfcrmproducts.cn")
LOGIN_ALIASES = {"login": "https://login.salesforce.com", "test": "https://test.salesforce.com"}
JWT_LIFETIME_SECONDS = 180  # Salesforce wants exp within 3 minutes
DEFAULT_API_VERSION = "62.0"

_HINTS = {
    "audience is invalid": "set jwt_audience, or use login_url 'login' (production) or 'test' (sandbox)",
    "user hasn't approved this consumer": "pre-authorise the user's profile or permission set in the connected "
    "app's OAuth policies ('Admin approved users are pre-authorized')",
    "invalid assertion": "check that private_key matches the certificate uploaded to the connected app",
    "expired authorization code": "the machine clock may be wrong: the JWT exp claim was already in the past",
    "expired access/refresh token": "the refresh token was revoked or expired; issue a new one",
    "client identifier invalid": "check client_id (the connected app's consumer key)",
    "invalid client credentials": "check client_secret (the connected app's consumer secret)",
    "authentication failure": "check the username and the password with the security token appended; the "
    "password flow is blocked in orgs created since Summer '23",
    "request not supported on this domain": "client credentials must be posted to the org's My Domain URL, "
    "not login/test.salesforce.com",
}


DEFAULT_PUBSUB_ENDPOINT = "api.pubsub.salesforce.com:7443"


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_salesforce_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in SALESFORCE_DOMAINS)


def check_url(url: str, *, allowed_hosts: tuple[str, ...] = (), what: str = "instance URL") -> str:
    """Accept https on a Salesforce domain or an allowed host, and http(s) only to loopback; else raise."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not parts.scheme or not host:
        raise InsecureTransportError(f"{what} {url!r} is not an absolute URL")
    if is_loopback(host) and parts.scheme in ("http", "https"):
        return url.rstrip("/")
    if parts.scheme != "https":
        raise InsecureTransportError(f"{what} {url!r} is not https; plain http is only allowed to loopback hosts")
    if is_salesforce_host(host) or host.lower() in {h.lower() for h in allowed_hosts}:
        return url.rstrip("/")
    raise InsecureTransportError(
        f"{what} {url!r} is not on a Salesforce domain ({', '.join(SALESFORCE_DOMAINS)}); if it is yours, add "
        f"its host to the connection's allowed_hosts"
    )


def resolve_login_url(value: str | None, allowed_hosts: tuple[str, ...] = ()) -> str:
    """``login`` / ``test`` / a host / a URL -> the login base URL."""
    text = (value or "login").strip()
    if text.lower() in LOGIN_ALIASES:
        return LOGIN_ALIASES[text.lower()]
    if "://" not in text:
        text = "https://" + text
    try:
        return check_url(text, allowed_hosts=allowed_hosts, what="login URL")
    except InsecureTransportError as exc:
        raise ConfigurationError("login_url", exc.message) from None


@dataclass(frozen=True)
class ClientConfig:
    """Everything the client needs to reach one org. Secrets never appear in ``repr``.

    :param auth_type: jwt_bearer, client_credentials, refresh_token, password or access_token
    :param login_url: ``login``, ``test``, a My Domain host or URL, or the emulator's URL
    :param client_id: the connected app's consumer key
    :param client_secret: the consumer secret (client credentials, refresh token, password flows)
    :param username: the user (JWT ``sub``; password flow)
    :param password: the password with the security token appended (password flow)
    :param private_key: PEM RSA key that signs JWT assertions
    :param refresh_token: for the refresh token flow
    :param access_token: a pre-issued access token (access_token auth type)
    :param instance_url: the org's URL; required with access_token, otherwise from the token response
    :param api_version: REST API version, e.g. ``62.0``
    :param connect_timeout: seconds to connect
    :param read_timeout: seconds to wait for data
    :param verify: True, or a CA bundle path; False only for loopback unless ``allow_insecure``
    :param allow_insecure: explicit, logged permission to skip TLS verification for other hosts
    :param allowed_hosts: extra hosts trusted as instance or login hosts (https only)
    :param jwt_audience: overrides the JWT ``aud`` claim
    :param max_attempts: attempts per request, retries included
    :param max_retry_seconds: total time a request may spend retrying
    :param min_remaining_api_percent: budget check threshold used by operators
    :param cache_key: identifies the connection; sessions are shared per key within a process
    :param pubsub_endpoint: ``host:port`` of the Pub/Sub API (gRPC)
    :param org_id: the org id (``00D...``) for the Pub/Sub API when the token response cannot say (a
        pre-issued access token)
    """

    auth_type: str
    login_url: str = "login"
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    instance_url: str | None = None
    api_version: str = DEFAULT_API_VERSION
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    verify: bool | str = True
    allow_insecure: bool = False
    allowed_hosts: tuple[str, ...] = ()
    jwt_audience: str | None = None
    max_attempts: int = 6
    max_retry_seconds: float = 300.0
    min_remaining_api_percent: float = 0.0
    cache_key: str = ""
    pubsub_endpoint: str = DEFAULT_PUBSUB_ENDPOINT
    org_id: str | None = None

    def validated(self) -> ClientConfig:
        """Check every setting; raise :class:`ConfigurationError` naming the first bad one."""
        if self.auth_type not in AUTH_TYPES:
            raise ConfigurationError("auth_type", f"{self.auth_type!r} is not one of {', '.join(AUTH_TYPES)}")
        needs: dict[str, tuple[str, ...]] = {
            "jwt_bearer": ("client_id", "username", "private_key"),
            "client_credentials": ("client_id", "client_secret"),
            "refresh_token": ("client_id", "refresh_token"),
            "password": ("client_id", "client_secret", "username", "password"),
            "access_token": ("access_token", "instance_url"),
        }
        for name in needs[self.auth_type]:
            if not getattr(self, name):
                raise ConfigurationError(name, f"required for auth_type {self.auth_type!r} but not set")
        version = self.api_version.removeprefix("v")
        try:
            major, minor = version.split(".")
            if not (major.isdigit() and minor.isdigit() and 20 <= int(major) < 100):
                raise ValueError
        except ValueError:
            raise ConfigurationError("api_version", f"{self.api_version!r} is not a version like 62.0") from None
        for name in ("connect_timeout", "read_timeout", "max_retry_seconds"):
            if float(getattr(self, name)) <= 0:
                raise ConfigurationError(name, "must be a positive number of seconds")
        if self.max_attempts < 1:
            raise ConfigurationError("max_attempts", "must be at least 1")
        if not 0 <= self.min_remaining_api_percent < 100:
            raise ConfigurationError("min_remaining_api_percent", "must be between 0 and 100")
        login = resolve_login_url(self.login_url, self.allowed_hosts)
        if self.instance_url:
            try:
                check_url(self.instance_url, allowed_hosts=self.allowed_hosts)
            except InsecureTransportError as exc:
                raise ConfigurationError("instance_url", exc.message) from None
        if self.private_key and self.auth_type == "jwt_bearer":
            from cryptography.hazmat.primitives.serialization import load_pem_private_key

            try:
                load_pem_private_key(self.private_key.encode(), password=None)
            except (ValueError, TypeError):
                raise ConfigurationError("private_key", "is not an unencrypted PEM private key") from None
        if self.verify is False and not self.allow_insecure:
            hosts = [urlsplit(login).hostname or ""] + (
                [urlsplit(self.instance_url).hostname or ""] if self.instance_url else []
            )
            if not all(is_loopback(h) for h in hosts):
                raise ConfigurationError(
                    "verify_tls",
                    "TLS verification can only be turned off for loopback hosts; "
                    "set allow_insecure as well to do it anyway",
                )
        host, _, port = self.pubsub_endpoint.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(
                "pubsub_endpoint", f"{self.pubsub_endpoint!r} is not host:port (e.g. {DEFAULT_PUBSUB_ENDPOINT})"
            )
        if self.org_id is not None and not (len(self.org_id) in (15, 18) and self.org_id.startswith("00D")):
            raise ConfigurationError("org_id", f"{self.org_id!r} is not an org id (15 or 18 characters, 00D...)")
        if self.verify is False and self.allow_insecure:
            log.warning("TLS verification is OFF for connection %s (allow_insecure is set)", self.cache_key or "?")
        return self

    @property
    def pubsub_plaintext(self) -> bool:
        """Plaintext gRPC: only to a loopback Pub/Sub endpoint of a connection whose login URL is plain http
        (the bundled emulator without TLS). Everything else is TLS, verified."""
        host = self.pubsub_endpoint.rpartition(":")[0]
        return is_loopback(host) and self.resolved_login_url.startswith("http://")

    @property
    def version(self) -> str:
        return self.api_version.removeprefix("v")

    @property
    def resolved_login_url(self) -> str:
        return resolve_login_url(self.login_url, self.allowed_hosts)

    def secrets(self) -> list[str]:
        """The values that must never be logged (for Airflow's masker)."""
        return [
            s for s in (self.client_secret, self.password, self.private_key, self.refresh_token, self.access_token) if s
        ]

    def fingerprint(self) -> str:
        material = "\x00".join(
            str(v)
            for v in (
                self.cache_key,
                self.auth_type,
                self.login_url,
                self.client_id,
                self.username,
                self.client_secret,
                self.private_key,
                self.refresh_token,
                self.access_token,
                self.instance_url,
            )
        )
        return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    """An access token and the instance it is for. The token is hidden from ``repr``."""

    access_token: str = field(repr=False)
    instance_url: str
    generation: int = 0
    issued_at: float = 0.0
    #: the signed-in user's id, from the token response's identity URL (None for a pre-issued token)
    user_id: str | None = None
    #: the org's id (``00D...``), from the same URL (None for a pre-issued token): the Pub/Sub ``tenantid``
    org_id: str | None = None


@dataclass(frozen=True)
class TokenRequest:
    url: str
    form: dict[str, str] = field(repr=False)


def jwt_audience(config: ClientConfig) -> str:
    if config.jwt_audience:
        return config.jwt_audience
    host = (urlsplit(config.resolved_login_url).hostname or "").lower()
    if host.startswith("test.") or ".sandbox." in host:
        return "https://test.salesforce.com"
    return "https://login.salesforce.com"


TOKEN_PATH = "/services/oauth2/token"


def token_request(config: ClientConfig, now: float | None = None) -> TokenRequest:
    """The OAuth token request for ``config``'s flow (not for access_token, which needs none)."""
    url = config.resolved_login_url + TOKEN_PATH
    kind = config.auth_type
    if kind == "jwt_bearer":
        issued = int(now if now is not None else time.time())
        assertion = jwt.encode(
            {
                "iss": config.client_id,
                "sub": config.username,
                "aud": jwt_audience(config),
                "exp": issued + JWT_LIFETIME_SECONDS,
            },
            config.private_key or "",
            algorithm="RS256",
        )
        return TokenRequest(url, {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})
    if kind == "client_credentials":
        return TokenRequest(
            url,
            {
                "grant_type": "client_credentials",
                "client_id": config.client_id or "",
                "client_secret": config.client_secret or "",
            },
        )
    if kind == "refresh_token":
        form = {
            "grant_type": "refresh_token",
            "refresh_token": config.refresh_token or "",
            "client_id": config.client_id or "",
        }
        if config.client_secret:
            form["client_secret"] = config.client_secret
        return TokenRequest(url, form)
    if kind == "password":
        return TokenRequest(
            url,
            {
                "grant_type": "password",
                "client_id": config.client_id or "",
                "client_secret": config.client_secret or "",
                "username": config.username or "",
                "password": config.password or "",
            },
        )
    raise ConfigurationError("auth_type", f"{kind!r} does not request tokens")


def parse_token_response(config: ClientConfig, status: int, body: Any, generation: int) -> Session:
    """A session from the token endpoint's answer, or the OAuth error with advice on what to fix."""
    if status != 200 or not isinstance(body, dict) or "access_token" not in body:
        error = body.get("error") if isinstance(body, dict) else None
        description = body.get("error_description", "") if isinstance(body, dict) else str(body)[:200]
        hint = _HINTS.get(str(description))
        where = config.resolved_login_url + TOKEN_PATH
        message = f"{config.auth_type} login at {where} refused: {description or 'no description'}"
        message += f" -- {hint}" if hint else ""
        raise LoginRefusedError(
            message,
            status=status,
            error_code=str(error) if error else None,
            method="POST",
            path=TOKEN_PATH,
        )
    instance = check_url(str(body.get("instance_url", "")), allowed_hosts=config.allowed_hosts)
    identity = str(body.get("id") or "")
    user_id = org_id = None
    if "/id/" in identity:  # .../id/<org id>/<user id>
        parts = identity.rstrip("/").rsplit("/id/", 1)[1].split("/")
        org_id = parts[0] or None
        user_id = parts[-1] if len(parts) > 1 else None
    return Session(str(body["access_token"]), instance, generation, time.time(), user_id, org_id)


class SessionManager:
    """The current session of one connection in this process, refreshed once per expiry.

    Every request remembers the generation of the session it used; when it sees INVALID_SESSION_ID
    it asks for a refresh *of that generation*. The first caller refreshes, later callers find a newer
    generation and simply replay.
    """

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._session: Session | None = None
        self._generation = 0
        self._lock = threading.Lock()
        self._async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        if config.auth_type == "access_token":
            self._session = Session(
                config.access_token or "", check_url(config.instance_url or "", allowed_hosts=config.allowed_hosts)
            )

    def current(self) -> Session | None:
        return self._session

    def _install(self, status: int, body: Any) -> Session:
        self._generation += 1
        session = parse_token_response(self.config, status, body, self._generation)
        self._session = session
        return session

    def _usable(self, seen_generation: int | None) -> Session | None:
        """The current session unless missing or as old as the one a caller saw fail."""
        session = self._session
        if session is None or (seen_generation is not None and session.generation <= seen_generation):
            return None
        return session

    def _next_token_request(self) -> TokenRequest:
        if self.config.auth_type == "access_token":
            raise LoginRefusedError(
                "the pre-issued access token is invalid or expired and cannot be refreshed; "
                "issue a new token or use another auth_type",
                error_code="INVALID_SESSION_ID",
            )
        return token_request(self.config)

    def get(self, fetch: Any, seen_generation: int | None = None) -> Session:
        """The session to use; ``fetch(TokenRequest) -> (status, body)`` is called at most once per expiry."""
        session = self._usable(seen_generation)
        if session is not None:
            return session
        with self._lock:
            session = self._usable(seen_generation)
            return session if session is not None else self._install(*fetch(self._next_token_request()))

    async def aget(self, fetch: Any, seen_generation: int | None = None) -> Session:
        """Async :meth:`get`: ``await fetch(TokenRequest)``; single-flight across tasks of one loop."""
        session = self._usable(seen_generation)
        if session is not None:
            return session
        lock = self._async_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        async with lock:
            session = self._usable(seen_generation)
            if session is not None:
                return session
            status, body = await fetch(self._next_token_request())
            with self._lock:
                return self._install(status, body)


_MANAGERS: dict[str, SessionManager] = {}
_MANAGERS_LOCK = threading.Lock()


def session_manager(config: ClientConfig) -> SessionManager:
    """The process-wide session manager for this connection (same key and credentials)."""
    key = config.fingerprint()
    with _MANAGERS_LOCK:
        manager = _MANAGERS.get(key)
        if manager is None:
            manager = _MANAGERS[key] = SessionManager(config)
        return manager


def forget_sessions() -> None:
    """Drop every cached session (tests; a process that rotated credentials)."""
    with _MANAGERS_LOCK:
        _MANAGERS.clear()
