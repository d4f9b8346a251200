"""The SOAP API's ``login`` call (``POST /services/Soap/u/<version>``), the username-password path of
simple-salesforce (with a security token) and of several Pub/Sub clients: the partner WSDL's envelope in, a
``loginResponse`` (session id, server URL, user and org ids) or a SOAP fault out. Nothing else of SOAP.

The password is the user's password followed by the user's security token, as on an org without trusted IP
ranges. Wrong credentials answer HTTP 500 with the fault ``sf:INVALID_LOGIN``, as Salesforce does."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import Response

from . import rest

if TYPE_CHECKING:
    from .app import Emulator

PATH_RE = re.compile(r"^/services/Soap/u/(\d+\.\d)/?$")
#: refused larger than this (a login body is a few hundred bytes)
MAX_BODY = 64 * 1024
SESSION_SECONDS = 7200
ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
    ' xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
    ' xmlns:sf="urn:fault.partner.soap.sforce.com"><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>'
)
INVALID_LOGIN = "Invalid username, password, security token; or user locked out."


def _xml(status: int, body: str) -> Response:
    return Response(ENVELOPE.format(body=body), status_code=status, media_type="text/xml; charset=utf-8")


def fault(code: str, message: str, *, login_fault: bool = True, detail_type: str = "LoginFault") -> Response:
    """A SOAP fault, as Salesforce answers it: HTTP 500, ``faultcode`` ``sf:<CODE>``, and a ``detail_type`` detail
    (a ``soapenv`` fault without detail when ``login_fault`` is false: a malformed request)."""
    detail = (
        f'<detail><sf:{detail_type} xsi:type="sf:{detail_type}"><sf:exceptionCode>{code}</sf:exceptionCode>'
        f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage></sf:{detail_type}></detail>"
        if login_fault
        else ""
    )
    prefix = "sf" if login_fault else "soapenv"
    return _xml(
        500,
        f"<soapenv:Fault><faultcode>{prefix}:{code}</faultcode><faultstring>{escape(code)}: {escape(message)}"
        f"</faultstring>{detail}</soapenv:Fault>",
    )


def _credentials(raw: bytes) -> tuple[str, str] | None:
    """(username, password) from a login envelope, or None when the body is not one."""
    try:
        root = ElementTree.fromstring(raw)
    except ElementTree.ParseError:
        return None
    login = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "login"), None)
    if login is None:
        return None
    values = {child.tag.rsplit("}", 1)[-1]: (child.text or "") for child in login}
    if "username" not in values or "password" not in values:
        return None
    return values["username"].strip(), values["password"]


async def login(em: Emulator, request: Request, version: str) -> Response:
    em.count("POST soap login")
    raw = await request.body()
    if request.method != "POST" or len(raw) > MAX_BODY:
        return fault("Client", "the SOAP API answers POST requests only, with a login envelope", login_fault=False)
    found = _credentials(raw)
    if found is None:
        return fault(
            "Client", "Element {urn:partner.soap.sforce.com}login expected in the SOAP Body", login_fault=False
        )
    username, password = found
    if rest.retired_version(version):
        return fault(
            "UNSUPPORTED_API_VERSION",
            rest.RETIRED_MESSAGE.format(version=version, min=rest.RETIRED_BELOW),
            detail_type="UnexpectedErrorFault",
        )
    user = username.lower()
    expected = em.auth.passwords.get(user)
    token = em.auth.security_tokens.get(user, "")
    if expected is None or password != expected + token:
        return fault("INVALID_LOGIN", INVALID_LOGIN)
    session = em.auth.mint(user, "soap-login", em.org_id)
    user_id = em.auth.users[user]
    base = em.base_url(request)
    record = em.store.get(em.org.objects["User"], user_id) or {}
    server_url = f"{base}/services/Soap/u/{version}/{em.org_id[:15]}"
    metadata_url = f"{base}/services/Soap/m/{version}/{em.org_id[:15]}"
    full_name = " ".join(str(record.get(k) or "") for k in ("FirstName", "LastName")).strip() or username
    user_info = (
        "<userInfo><accessibilityMode>false</accessibilityMode><currencySymbol>$</currencySymbol>"
        "<orgAttachmentFileSizeLimit>5242880</orgAttachmentFileSizeLimit><orgDefaultCurrencyIsoCode>USD"
        "</orgDefaultCurrencyIsoCode><orgDisallowHtmlAttachments>false</orgDisallowHtmlAttachments>"
        f"<orgHasPersonAccounts>false</orgHasPersonAccounts><organizationId>{em.org_id}</organizationId>"
        "<organizationMultiCurrency>false</organizationMultiCurrency><organizationName>sfint emulator"
        '</organizationName><profileId>00eHx000000000AAAA</profileId><roleId xsi:nil="true"/>'
        f"<sessionSecondsValid>{SESSION_SECONDS}</sessionSecondsValid>"
        f'<userDefaultCurrencyIsoCode xsi:nil="true"/><userEmail>{escape(str(record.get("Email") or username))}'
        f"</userEmail><userFullName>{escape(full_name)}</userFullName><userId>{user_id}</userId>"
        f"<userLanguage>en_US</userLanguage><userLocale>en_US</userLocale><userName>{escape(username)}</userName>"
        "<userTimeZone>UTC</userTimeZone><userType>Standard</userType><userUiSkin>Theme3</userUiSkin></userInfo>"
    )
    return _xml(
        200,
        f"<loginResponse><result><metadataServerUrl>{metadata_url}</metadataServerUrl>"
        f"<passwordExpired>false</passwordExpired><sandbox>false</sandbox><serverUrl>{server_url}</serverUrl>"
        f"<sessionId>{session}</sessionId><userId>{user_id}</userId>{user_info}</result></loginResponse>",
    )
