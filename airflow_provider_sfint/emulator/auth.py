"""OAuth 2.0 token endpoint and access-token bookkeeping (spec section 1)."""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .errors import OAuthError

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
JWT_MAX_FUTURE_SECONDS = 300


@dataclass
class ConnectedApp:
    client_id: str
    client_secret: str
    run_as: str  # username the client-credentials flow issues tokens for
    certificates: list[Any] = field(default_factory=list)  # public keys for JWT bearer
    approved_users: set[str] = field(default_factory=set)


@dataclass
class Token:
    user_id: str
    username: str
    client_id: str
    last_used: float
    uses: int = 0


@dataclass
class AuthSettings:
    idle_timeout: float = 7200.0  # sliding session timeout, seconds
    expire_after_requests: int | None = None  # fault: every token dies after N uses
    password_flow: bool = False
    reject_client_credentials_on_login_hosts: bool = True
    extra_audiences: list[str] = field(default_factory=list)


def load_public_key(pem: bytes) -> Any:
    """A certificate or a bare public key, PEM encoded."""
    if b"BEGIN CERTIFICATE" in pem:
        return x509.load_pem_x509_certificate(pem).public_key()
    return serialization.load_pem_public_key(pem)


class Authority:
    """Issues and checks access tokens; holds connected apps, users' passwords and refresh tokens."""

    def __init__(self, settings: AuthSettings | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings or AuthSettings()
        self.clock = clock  # the emulator's settable clock: sessions idle out on it (tests move it)
        self.apps: dict[str, ConnectedApp] = {}
        self.users: dict[str, str] = {}  # username -> user id
        self.passwords: dict[str, str] = {}
        self.security_tokens: dict[str, str] = {}  # username -> the token appended to the password (SOAP login)
        self.refresh_tokens: dict[str, tuple[str, str]] = {}  # token -> (username, client_id)
        self.tokens: dict[str, Token] = {}
        self.issued: deque[str] = deque(maxlen=10_000)  # every access token minted (admin API; secret scans)
        self.token_calls = 0
        self._lock = threading.Lock()

    # --- configuration --------------------------------------------------------------------------

    def add_app(self, app: ConnectedApp) -> None:
        self.apps[app.client_id] = app

    def add_user(
        self, username: str, user_id: str, password: str | None = None, security_token: str | None = None
    ) -> None:
        self.users[username.lower()] = user_id
        if password:
            self.passwords[username.lower()] = password
        if security_token:
            self.security_tokens[username.lower()] = security_token

    def issue_refresh_token(self, username: str, client_id: str, token: str | None = None) -> str:
        token = token or "5Aep" + secrets.token_urlsafe(48)
        self.refresh_tokens[token] = (username.lower(), client_id)
        return token

    # --- tokens ---------------------------------------------------------------------------------

    def mint(self, username: str, client_id: str, org_id: str) -> str:
        token = f"{org_id[:15]}!AQ{secrets.token_urlsafe(72)}"
        with self._lock:
            self.tokens[token] = Token(self.users[username.lower()], username, client_id, self.clock())
            self.issued.append(token)
        return token

    def check(self, token: str | None) -> Token | None:
        """The session for a bearer token, touching its sliding expiry; None if invalid or expired."""
        if not token:
            return None
        with self._lock:
            info = self.tokens.get(token)
            if info is None:
                return None
            now = self.clock()
            limit = self.settings.expire_after_requests
            if now - info.last_used > self.settings.idle_timeout or (limit is not None and info.uses >= limit):
                del self.tokens[token]
                return None
            info.last_used = now
            info.uses += 1
            return info

    def revoke(self, token: str) -> bool:
        with self._lock:
            if token in self.tokens:
                del self.tokens[token]
                return True
            if token in self.refresh_tokens:
                del self.refresh_tokens[token]
                return True
        return False

    def expire_all(self) -> None:
        with self._lock:
            self.tokens.clear()

    # --- the token endpoint -----------------------------------------------------------------------

    def token_response(
        self, form: dict[str, str], authorization: str | None, host: str, base_url: str, org_id: str, now: float
    ) -> dict[str, Any]:
        self.token_calls += 1
        grant = form.get("grant_type", "")
        if grant == JWT_GRANT:
            username, client_id = self._jwt(form.get("assertion", ""), now)
            include_issued = True
        elif grant == "client_credentials":
            client_id, secret = self._client_auth(form, authorization)
            app = self._app(client_id)
            if secret != app.client_secret:
                raise OAuthError("invalid_client", "invalid client credentials")
            bare_host = host.split(":")[0].lower()
            if self.settings.reject_client_credentials_on_login_hosts and bare_host in (
                "login.salesforce.com",
                "test.salesforce.com",
            ):
                raise OAuthError("invalid_grant", "request not supported on this domain")
            username = app.run_as
            include_issued = True
        elif grant == "refresh_token":
            entry = self.refresh_tokens.get(form.get("refresh_token", ""))
            client_id = form.get("client_id", "")
            if client_id not in self.apps:
                raise OAuthError("invalid_client_id", "client identifier invalid")
            if "client_secret" in form and form["client_secret"] != self.apps[client_id].client_secret:
                raise OAuthError("invalid_client", "invalid client credentials")
            if entry is None or entry[1] != client_id:
                raise OAuthError("invalid_grant", "expired access/refresh token")
            username = entry[0]
            include_issued = True
        elif grant == "password":
            client_id, secret = self._client_auth(form, authorization)
            app = self._app(client_id)
            if secret != app.client_secret:
                raise OAuthError("invalid_client", "invalid client credentials")
            username = form.get("username", "").lower()
            if not self.settings.password_flow:
                raise OAuthError("invalid_grant", "authentication failure")
            if self.passwords.get(username) != form.get("password"):
                raise OAuthError("invalid_grant", "authentication failure")
            include_issued = True
        else:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        token = self.mint(username, client_id, org_id)
        user_id = self.users[username.lower()]
        body: dict[str, Any] = {
            "access_token": token,
            "instance_url": base_url,
            "id": f"{base_url}/id/{org_id}/{user_id}",
            "token_type": "Bearer",
            "scope": "api",
        }
        if include_issued:
            body["issued_at"] = str(int(now * 1000))
            body["signature"] = base64.b64encode(secrets.token_bytes(32)).decode()
        return body

    def _app(self, client_id: str) -> ConnectedApp:
        app = self.apps.get(client_id)
        if app is None:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        return app

    def _client_auth(self, form: dict[str, str], authorization: str | None) -> tuple[str, str]:
        if authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip()).decode()
            except ValueError:
                raise OAuthError("invalid_client", "invalid client credentials") from None
            client_id, _, secret = decoded.partition(":")
            return client_id, secret
        return form.get("client_id", ""), form.get("client_secret", "")

    def _jwt(self, assertion: str, now: float) -> tuple[str, str]:
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if header.get("alg") != "RS256":
            raise OAuthError("invalid_grant", "invalid assertion")
        app = self.apps.get(str(claims.get("iss", "")))
        if app is None:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        verified = False
        for key in app.certificates:
            try:
                jwt.decode(
                    assertion,
                    key=key,
                    algorithms=["RS256"],
                    options={"verify_exp": False, "verify_aud": False, "verify_iat": False, "verify_nbf": False},
                )
                verified = True
                break
            except jwt.PyJWTError:
                continue
        if not verified:
            raise OAuthError("invalid_grant", "invalid assertion")
        audiences = {*DEFAULT_AUDIENCES, *self.settings.extra_audiences}
        aud = claims.get("aud")
        aud_values = aud if isinstance(aud, list) else [aud]
        if not any(isinstance(a, str) and a.rstrip("/") in audiences for a in aud_values):
            raise OAuthError("invalid_grant", "audience is invalid")
        try:
            exp = float(claims["exp"])  # simple-salesforce sends a numeric string
        except (KeyError, TypeError, ValueError):
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if exp <= now:
            raise OAuthError("invalid_grant", "expired authorization code")
        if exp > now + JWT_MAX_FUTURE_SECONDS + 30:
            raise OAuthError("invalid_grant", "invalid assertion")
        username = str(claims.get("sub", "")).lower()
        if username not in self.users or username not in app.approved_users:
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")
        return username, app.client_id
