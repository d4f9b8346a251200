"""OAuth 2.0 flows and session handling (spec section 1; checklist items 1-12)."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from airflow_provider_sfint.emulator import ADMIN_USERNAME, CLIENT_ID, CLIENT_SECRET, DEFAULT_REFRESH_TOKEN

from .helpers import Admin, SalesforceHttp

TOKEN_KEYS = {"access_token", "instance_url", "id", "token_type", "scope"}


def _key() -> tuple[Any, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, pem


@pytest.fixture(scope="module")
def signing_key(admin: Admin) -> Any:
    key, pem = _key()
    admin._call("POST", "jwt-certificates", json={"pem": pem.decode()})
    return key


def _assertion(key: Any, **overrides: Any) -> str:
    claims = {
        "iss": CLIENT_ID,
        "sub": ADMIN_USERNAME,
        "aud": "https://login.salesforce.com",
        "exp": int(time.time()) + 120,
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm="RS256")


def _token(url: str, **form: str) -> httpx.Response:
    return httpx.post(f"{url}/services/oauth2/token", data=form)


def _jwt(url: str, assertion: str) -> httpx.Response:
    return _token(url, grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer", assertion=assertion)


def _oauth_error(r: httpx.Response, error: str, description: str) -> None:
    assert r.status_code == 400, r.text
    assert r.json() == {"error": error, "error_description": description}
    assert r.headers["cache-control"] == "no-store"


def test_item1_jwt_bearer_issues_token_without_refresh_token(emulator_url: str, signing_key: Any) -> None:
    r = _jwt(emulator_url, _assertion(signing_key))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= TOKEN_KEYS
    assert body["token_type"] == "Bearer"
    assert "refresh_token" not in body and "expires_in" not in body
    assert body["instance_url"] == emulator_url
    with SalesforceHttp(emulator_url, body["access_token"]) as sf:
        assert sf.get("limits").status_code == 200


def test_item2_jwt_with_wrong_algorithm_or_signature_is_invalid_grant(emulator_url: str, signing_key: Any) -> None:
    hs = jwt.encode(
        {"iss": CLIENT_ID, "sub": ADMIN_USERNAME, "aud": "https://login.salesforce.com", "exp": int(time.time()) + 60},
        "a-shared-secret-of-enough-length-32b",
        algorithm="HS256",
    )
    _oauth_error(_jwt(emulator_url, hs), "invalid_grant", "invalid assertion")
    other_key, _ = _key()
    _oauth_error(_jwt(emulator_url, _assertion(other_key)), "invalid_grant", "invalid assertion")
    _oauth_error(_jwt(emulator_url, "not.a.jwt"), "invalid_grant", "invalid assertion")


def test_item3_jwt_with_unknown_audience_is_rejected(emulator_url: str, signing_key: Any) -> None:
    r = _jwt(emulator_url, _assertion(signing_key, aud="https://acme.my.salesforce.com"))
    _oauth_error(r, "invalid_grant", "audience is invalid")
    assert _jwt(emulator_url, _assertion(signing_key, aud="https://test.salesforce.com")).status_code == 200


def test_item4_jwt_expiry_past_rejected_numeric_string_accepted(emulator_url: str, signing_key: Any) -> None:
    _oauth_error(
        _jwt(emulator_url, _assertion(signing_key, exp=int(time.time()) - 5)),
        "invalid_grant",
        "expired authorization code",
    )
    as_string = _assertion(signing_key, exp=f"{time.time() + 170:.0f}")
    assert _jwt(emulator_url, as_string).status_code == 200
    _oauth_error(
        _jwt(emulator_url, _assertion(signing_key, exp=int(time.time()) + 3600)), "invalid_grant", "invalid assertion"
    )


def test_item5_unknown_client_id(emulator_url: str, signing_key: Any) -> None:
    _oauth_error(
        _jwt(emulator_url, _assertion(signing_key, iss="nope")), "invalid_client_id", "client identifier invalid"
    )
    r = _token(emulator_url, grant_type="client_credentials", client_id="nope", client_secret="x")
    _oauth_error(r, "invalid_client_id", "client identifier invalid")


def test_item6_user_not_preauthorised(emulator_url: str, signing_key: Any) -> None:
    r = _jwt(emulator_url, _assertion(signing_key, sub="unapproved@sfint.emulator"))
    _oauth_error(r, "invalid_grant", "user hasn't approved this consumer")


def test_item7_client_credentials_body_and_basic(emulator_url: str) -> None:
    body = _token(emulator_url, grant_type="client_credentials", client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    assert body.status_code == 200
    data = body.json()
    assert isinstance(data["issued_at"], str) and data["issued_at"].isdigit() and len(data["issued_at"]) == 13
    assert data["signature"]
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    r = httpx.post(
        f"{emulator_url}/services/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 200 and set(r.json()) >= TOKEN_KEYS
    wrong = _token(emulator_url, grant_type="client_credentials", client_id=CLIENT_ID, client_secret="bad")
    _oauth_error(wrong, "invalid_client", "invalid client credentials")
    on_login_host = httpx.post(
        f"{emulator_url}/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        headers={"Host": "login.salesforce.com"},
    )
    _oauth_error(on_login_host, "invalid_grant", "request not supported on this domain")


def test_item8_refresh_token_flow(emulator_url: str, admin: Admin) -> None:
    ok = _token(
        emulator_url,
        grant_type="refresh_token",
        refresh_token=DEFAULT_REFRESH_TOKEN,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    assert ok.status_code == 200 and "refresh_token" not in ok.json()
    _oauth_error(
        _token(emulator_url, grant_type="refresh_token", refresh_token="revoked", client_id=CLIENT_ID),
        "invalid_grant",
        "expired access/refresh token",
    )
    minted = admin._call("POST", "refresh-tokens", json={"username": ADMIN_USERNAME})["refresh_token"]
    assert httpx.post(f"{emulator_url}/services/oauth2/revoke", data={"token": minted}).status_code == 200
    _oauth_error(
        _token(emulator_url, grant_type="refresh_token", refresh_token=minted, client_id=CLIENT_ID),
        "invalid_grant",
        "expired access/refresh token",
    )


def test_item9_password_flow_disabled_by_default(emulator_url: str, admin: Admin) -> None:
    form = {
        "grant_type": "password",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "username": ADMIN_USERNAME,
        "password": "sfint-emulator-password",
    }
    _oauth_error(_token(emulator_url, **form), "invalid_grant", "authentication failure")
    admin.settings(password_flow=True)
    try:
        assert _token(emulator_url, **form).status_code == 200
        _oauth_error(_token(emulator_url, **{**form, "password": "wrong"}), "invalid_grant", "authentication failure")
    finally:
        admin.settings(password_flow=False)


def test_item10_sliding_idle_expiry(emulator_url: str, admin: Admin) -> None:
    """The session idles out on the emulator's clock, which the test moves (no sleeping)."""
    admin.settings(token_idle_seconds=1800)
    try:
        with SalesforceHttp.login(emulator_url) as sf:
            for step in range(1, 5):  # activity every 20 minutes keeps the session alive past 30 idle minutes
                admin._call("PUT", "clock", json={"offset_seconds": step * 1200})
                assert sf.get("limits").status_code == 200
            admin._call("PUT", "clock", json={"offset_seconds": 4 * 1200 + 1801})
            r = sf.get("limits")
            assert r.status_code == 401
    finally:
        admin._call("PUT", "clock", json={"offset_seconds": 0})
        admin.settings(token_idle_seconds=7200)


def test_item10_token_expiry_after_n_requests(emulator_url: str, admin: Admin) -> None:
    admin.settings(token_expire_after_requests=3)
    try:
        with SalesforceHttp.login(emulator_url) as sf:
            assert [sf.get("limits").status_code for _ in range(4)] == [200, 200, 200, 401]
    finally:
        admin.settings(token_expire_after_requests=None)


def test_item11_invalid_token_is_401_json_array(emulator_url: str) -> None:
    with SalesforceHttp(emulator_url, "00DHx000000001!bogus") as sf:
        r = sf.get("query", params={"q": "SELECT Id FROM Account"})
    assert r.status_code == 401
    assert r.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    no_header = httpx.get(f"{emulator_url}/services/data/v60.0/limits")
    assert no_header.status_code == 401 and no_header.json()[0]["errorCode"] == "INVALID_SESSION_ID"


def test_item12_revoke_invalidates_access_token(emulator_url: str) -> None:
    with SalesforceHttp.login(emulator_url) as sf:
        assert sf.get("limits").status_code == 200
        r = httpx.post(f"{emulator_url}/services/oauth2/revoke", data={"token": sf.token})
        assert r.status_code == 200 and r.content == b""
        assert sf.get("limits").status_code == 401
    bad = httpx.post(f"{emulator_url}/services/oauth2/revoke", data={"token": "never-issued"})
    assert bad.status_code == 400 and "error" in bad.json()


def test_oauth_authorization_header_prefix_is_accepted(emulator_url: str) -> None:
    with SalesforceHttp.login(emulator_url) as sf:
        r = httpx.get(f"{emulator_url}/services/data/v60.0/limits", headers={"Authorization": f"OAuth {sf.token}"})
    assert r.status_code == 200
