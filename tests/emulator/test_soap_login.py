"""The SOAP API's login call: the partner envelope in, a session id that works on REST out; wrong credentials
answer Salesforce's INVALID_LOGIN fault. Also through simple-salesforce's own username/password/security-token
path (its login URL is fixed to https://<domain>.salesforce.com: a transport adapter routes that host to the
emulator, the one thing that cannot run here)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import requests
from requests.adapters import HTTPAdapter

from airflow_provider_sfint.emulator import ADMIN_USERNAME
from airflow_provider_sfint.emulator.app import ADMIN_PASSWORD, ADMIN_SECURITY_TOKEN

from .helpers import Admin, SalesforceHttp

ENVELOPE = """<?xml version="1.0" encoding="utf-8" ?>
<env:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com">
  <env:Header><urn:CallOptions><urn:client>test</urn:client><urn:defaultNamespace>sf</urn:defaultNamespace>
  </urn:CallOptions></env:Header>
  <env:Body><n1:login xmlns:n1="urn:partner.soap.sforce.com"><n1:username>{username}</n1:username>
    <n1:password>{password}</n1:password></n1:login></env:Body>
</env:Envelope>"""


def _tag(xml: str, name: str) -> str:
    found = re.search(rf"<{name}>([^<]*)</{name}>", xml)
    assert found, f"no <{name}> in {xml[:500]}"
    return found.group(1)


def _login(url: str, password: str, version: str = "60.0") -> httpx.Response:
    return httpx.post(
        f"{url}/services/Soap/u/{version}",
        content=ENVELOPE.format(username=ADMIN_USERNAME, password=password),
        headers={"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": "login"},
    )


def test_login_answers_the_partner_envelope_with_a_working_session(emulator_url: str, fresh_org: Admin) -> None:
    r = _login(emulator_url, ADMIN_PASSWORD + ADMIN_SECURITY_TOKEN)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    assert "<loginResponse><result>" in r.text and "<passwordExpired>false</passwordExpired>" in r.text
    session = _tag(r.text, "sessionId")
    assert _tag(r.text, "serverUrl").startswith(f"{emulator_url}/services/Soap/u/60.0/00D")
    assert _tag(r.text, "userName") == ADMIN_USERNAME and _tag(r.text, "organizationId").startswith("00D")
    with SalesforceHttp(emulator_url, session) as sf:
        assert sf.query("SELECT Id FROM Account LIMIT 1").status_code == 200
        assert sf.get("sobjects/User/" + _tag(r.text, "userId")).json()["Username"] == ADMIN_USERNAME
    assert session not in r.text.replace(f"<sessionId>{session}</sessionId>", "")  # once, where it belongs


def test_wrong_credentials_and_bad_bodies_answer_soap_faults(emulator_url: str, fresh_org: Admin) -> None:
    for password in (ADMIN_PASSWORD, ADMIN_PASSWORD + "wrong", "x"):  # the token is required
        r = _login(emulator_url, password)
        assert r.status_code == 500
        assert _tag(r.text, "faultcode") == "sf:INVALID_LOGIN"
        assert _tag(r.text, "faultstring") == (
            "INVALID_LOGIN: Invalid username, password, security token; or user locked out."
        )
        assert "<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>" in r.text
    bad = httpx.post(f"{emulator_url}/services/Soap/u/60.0", content=b"<not-a-login/>")
    assert bad.status_code == 500 and _tag(bad.text, "faultcode") == "soapenv:Client"


class _ToEmulator(HTTPAdapter):
    """Sends https://login.salesforce.com/... to the emulator (no DNS or internet here)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        request.url = request.url.replace("https://login.salesforce.com", self.url)
        return super().send(request, **kwargs)


def test_simple_salesforce_signs_in_with_a_security_token(emulator_url: str, fresh_org: Admin) -> None:
    from simple_salesforce.exceptions import SalesforceAuthenticationFailed
    from simple_salesforce.login import SalesforceLogin

    session = requests.Session()
    session.mount("https://login.salesforce.com", _ToEmulator(emulator_url))
    session_id, instance = SalesforceLogin(
        username=ADMIN_USERNAME, password=ADMIN_PASSWORD, security_token=ADMIN_SECURITY_TOKEN, session=session
    )
    assert instance == emulator_url.split("://", 1)[1]
    with SalesforceHttp(emulator_url, session_id) as sf:
        assert sf.query("SELECT Id FROM Contact LIMIT 1").status_code == 200
    try:
        SalesforceLogin(username=ADMIN_USERNAME, password=ADMIN_PASSWORD, security_token="nope", session=session)
    except SalesforceAuthenticationFailed as exc:
        assert exc.code == "INVALID_LOGIN" and "security token" in str(exc)  # read from the fault detail
    else:
        raise AssertionError("a wrong security token signed in")


def test_a_retired_version_answers_unsupported_api_version(emulator_url: str, fresh_org: Admin) -> None:
    answer = _login(emulator_url, ADMIN_PASSWORD + ADMIN_SECURITY_TOKEN, version="30.0")
    assert answer.status_code == 500
    assert _tag(answer.text, "faultcode") == "sf:UNSUPPORTED_API_VERSION" and "31.0" in answer.text
