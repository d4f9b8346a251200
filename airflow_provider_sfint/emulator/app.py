"""The emulator: org state plus the Starlette ASGI application that serves it.

Around every ``/services/data`` call the ASGI layer does what the real edge does: version check,
bearer-token check (401 INVALID_SESSION_ID), injected faults, the daily allowance (403
REQUEST_LIMIT_EXCEEDED), the concurrent long-running request limit, API call counting and the
``Sforce-Limit-Info`` header. The resources themselves are plain functions (``rest.py``,
``composite.py``) so Composite can run its subrequests in-process.
"""

from __future__ import annotations

import asyncio
import gzip
import html
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route

from . import admin, bulk, composite, rest, soap
from .auth import Authority, AuthSettings, ConnectedApp, load_public_key
from .clock import Clock, storage_datetime
from .dml import Writer
from .errors import ApiError, OAuthError
from .eventbus import EventBus
from .faults import FaultRule, Faults
from .ids import make_id, to18
from .limits import Limits
from .profile import Profile, fresh_timing, get_profile
from .query import QueryEngine
from .routing import JSON, VERSION_RE, Req, Resp, Router
from .schema import Org, load_org
from .store import Store

CLIENT_ID = "sfint-emulator"
CLIENT_SECRET = "sfint-emulator-secret"
ADMIN_USERNAME = "admin@sfint.emulator"
ADMIN_PASSWORD = "sfint-emulator-password"
#: appended to the admin's password for the SOAP API's login call, as a security token is on a real org
ADMIN_SECURITY_TOKEN = "sfintSecurityToken0"
INTEGRATION_USERNAME = "integration@sfint.emulator"
UNAPPROVED_USERNAME = "unapproved@sfint.emulator"
DEFAULT_REFRESH_TOKEN = "sfint-emulator-refresh-token"
log = logging.getLogger(__name__)
ALL_METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"]


def change_origin(api: str, version: str, call_options: str) -> str:
    """A change event's ``changeOrigin``: ``com/salesforce/api/rest/60.0;client=<client>`` (the client named in
    the ``Sforce-Call-Options`` header, when the request had one)."""
    client = next(
        (p.split("=", 1)[1].strip() for p in call_options.split(",") if p.strip().lower().startswith("client=")), ""
    )
    origin = f"com/salesforce/api/{api}/{version}"
    return f"{origin};client={client}" if client else origin


class Emulator:
    """One emulated org: schema, records, tokens, limits, faults and counters."""

    def __init__(
        self,
        org: Org | None = None,
        db_path: str | None = None,
        seed: str = "demo",
        jwt_certificates: list[bytes] | None = None,
        demo_records: int | None = None,
        profile: str = "instant",
    ) -> None:
        self.org = org or load_org()
        self.profile = get_profile(profile)
        self.timing = fresh_timing(self.profile)
        self._tmpdir: str | None = None
        if db_path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="sfint-emulator-")
            db_path = os.path.join(self._tmpdir, "org.db")
        self.db_path = db_path
        self.data_dir = Path(db_path).parent
        self.clock = Clock()
        self.store = Store(self.org, db_path)
        self.queries = QueryEngine(self.org, self.store, self.clock)
        self.limits = Limits()
        self.limits.update(dict(self.org.limits))
        self.events = EventBus(self.org, self.store, self.clock, self.limits)
        self.grpc_port: int | None = None  # set by EmulatorServer when the Pub/Sub API is served
        self.faults = Faults()
        self.auth = Authority(AuthSettings(extra_audiences=list(self.org.allowed_audiences)), clock=self.clock.time)
        self.counters: Counter[str] = Counter()
        self.settings: dict[str, Any] = {"upsert_update_204": False, "instance_url": None}
        self.org_id = make_id("00D", 1)
        self.schema_loaded_at = self.clock.now().replace(microsecond=0)
        self.router = Router()
        self._counter_lock = threading.Lock()
        self.bulk = bulk.Bulk(self)
        rest.register(self.router, self)
        composite.register(self.router, self)
        bulk.register(self.router, self)
        self.app = self._build_app()
        self.user_ids: dict[str, str] = {}
        self.jwt_keys: list[Any] = [load_public_key(pem) for pem in jwt_certificates or []]
        self.reset(seed, demo_records=demo_records)

    # --- state ----------------------------------------------------------------------------------

    def reset(self, seed: str = "empty", demo_records: int | None = None, random_seed: int = 42) -> None:
        """Drop all records and sessions; re-create the users; optionally seed the demo data.

        ``seed="keep"`` keeps the records already in the database (``--db`` with a generated org).
        """
        if seed not in ("demo", "empty", "keep"):
            raise ValueError(f"unknown seed {seed!r}: use 'demo', 'empty' or 'keep'")
        keep = seed == "keep" and self.store.count(self.org.objects["User"]) > 0
        if not keep:
            self.org.restore()  # fields added through the admin API go with the records
            self.store.reset()
        self.bulk.reset()
        self.events.reset()
        self.auth = Authority(AuthSettings(extra_audiences=list(self.org.allowed_audiences)), clock=self.clock.time)
        self.limits = Limits()
        self.limits.update(dict(self.org.limits))
        self.apply_profile(self.profile)
        self.events.limits = self.limits
        self.settings = {"upsert_update_204": False, "instance_url": None}
        self.faults.clear()
        self.counters.clear()
        user = self.org.objects["User"]
        stamp = storage_datetime(self.clock.now())
        self.user_ids = {}
        for n, (username, last, alias) in enumerate(
            [
                (ADMIN_USERNAME, "Admin", "admin"),
                (INTEGRATION_USERNAME, "Integration", "integ"),
                (UNAPPROVED_USERNAME, "Unapproved", "unappr"),
            ],
            start=1,
        ):
            record_id = make_id(user.key_prefix, n)
            if keep:
                self.user_ids[username] = record_id
                self.auth.add_user(username, record_id, *_admin_secrets(username))
                continue
            self.store.insert_many(
                user,
                [
                    "Id",
                    "Username",
                    "LastName",
                    "FirstName",
                    "Name",
                    "Email",
                    "Alias",
                    "IsActive",
                    "IsDeleted",
                    "TimeZoneSidKey",
                    "LocaleSidKey",
                    "EmailEncodingKey",
                    "LanguageLocaleKey",
                    "CreatedDate",
                    "CreatedById",
                    "LastModifiedDate",
                    "LastModifiedById",
                    "SystemModstamp",
                ],
                [
                    (
                        n,
                        record_id,
                        username,
                        last,
                        "Sfint",
                        f"Sfint {last}",
                        username,
                        alias,
                        1,
                        0,
                        "GMT",
                        "en_US",
                        "UTF-8",
                        "en_US",
                        stamp,
                        make_id(user.key_prefix, 1),
                        stamp,
                        make_id(user.key_prefix, 1),
                        stamp,
                    )
                ],
            )
            self.user_ids[username] = record_id
            self.auth.add_user(username, record_id, *_admin_secrets(username))
        self.auth.add_app(
            ConnectedApp(
                CLIENT_ID, CLIENT_SECRET, INTEGRATION_USERNAME, self.jwt_keys, {ADMIN_USERNAME, INTEGRATION_USERNAME}
            )
        )
        self.auth.issue_refresh_token(ADMIN_USERNAME, CLIENT_ID, DEFAULT_REFRESH_TOKEN)
        if seed == "demo":
            from .datagen import seed_demo

            seed_demo(self, records=demo_records, seed=random_seed)

    @property
    def admin_user_id(self) -> str:
        return self.user_ids[ADMIN_USERNAME]

    def add_jwt_certificate(self, pem: bytes) -> None:
        """Register a certificate (or public key) that JWT bearer assertions may be signed for."""
        self.jwt_keys.append(load_public_key(pem))

    def add_field(self, object_name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Add a custom field (admin API): the table gains a column, describe and the change-event schema
        the field (a new schema id; events already published keep theirs)."""
        name = str(spec.get("name", ""))
        with self.store.lock:
            obj = self.org.add_custom_field(object_name, name, {k: v for k, v in spec.items() if k != "name"})
            f = obj.fields[name]
            if not obj.is_event:
                self.store.conn.execute(
                    f'ALTER TABLE {obj.table} ADD COLUMN "{f.name}" {f.sql_type}'
                    + (" COLLATE NOCASE" if f.is_text else "")
                )
        self.schema_loaded_at = self.clock.now().replace(microsecond=0)  # describe's Last-Modified moves
        schema = self.events.schemas.event_schema(obj) if obj.is_event else self.events.schemas.change_schema(obj)
        return {"object": obj.name, "field": f.describe(), "schema_id": schema.schema_id}

    def writer(self, req: Req) -> Writer:
        return Writer(
            self.org,
            self.store,
            self.clock,
            req.user_id,
            lock_fault=lambda: self.faults.lock_fault(req.method, "/" + req.path),
            events=self.events,
            origin=change_origin("rest", req.version, req.headers.get("sforce-call-options", "")),
        )

    def close(self) -> None:
        self.store.conn.close()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def apply_profile(self, profile: Profile) -> None:
        """Take a profile's timing and daily API allowance (kept across resets until another is applied)."""
        self.profile = profile
        self.timing = fresh_timing(profile)
        if profile.daily_api_requests is not None:
            self.limits.api_max = profile.daily_api_requests

    def count(self, key: str, n: int = 1) -> None:
        with self._counter_lock:
            self.counters[key] += n

    # --- ASGI -----------------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._endpoint, methods=ALL_METHODS)])

    async def _endpoint(self, request: Request) -> Response:
        path = request.url.path
        try:
            if path.startswith("/__emulator__"):
                return await admin.handle(self, request)
            if path == "/services/oauth2/token":
                return await self._token(request)
            soap_path = soap.PATH_RE.match(path)
            if soap_path is not None:
                return await soap.login(self, request, soap_path.group(1))
            if path == "/services/oauth2/revoke":
                return await self._revoke(request)
            if path.startswith("/id/"):
                return await self._identity(request)
            if path == "/services/oauth2/userinfo":
                return self._userinfo(request)
            if path == "/lightning/setup/AsyncApiJobStatus/page":
                return self._job_page(request)
            if path.rstrip("/") == "/services/data":
                self.count("GET versions")
                return _json(200, rest.versions())
            return await self._data(request)
        except ApiError as exc:
            return _json(exc.status, exc.body(), exc.headers)
        except Exception:  # a bug of ours must still look like Salesforce, not a framework error page
            log.exception("emulator error on %s %s", request.method, path)
            return _json(
                500,
                [
                    {
                        "errorCode": "UNKNOWN_EXCEPTION",
                        "message": "An unexpected error occurred. "
                        "Please include this ErrorId if you contact support: emulator-internal-error",
                    }
                ],
            )

    def base_url(self, request: Request) -> str:
        host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
        return f"{request.url.scheme}://{host}"

    async def _token(self, request: Request) -> Response:
        self.count("POST oauth2/token")
        if request.method != "POST":
            return _json(405, {"error": "invalid_request", "error_description": "must use HTTP POST"})
        # A login server in trouble: only rules whose path names the token endpoint reach it, so rules for the
        # whole API leave sign-in alone (Salesforce's login servers are not the org's instance).
        for fault in self.faults.request_faults("POST", request.url.path, login=True):
            if fault.kind == "latency":
                await asyncio.sleep(fault.latency_ms / 1000)
            elif fault.kind in ("503", "500"):
                return _fault_response(fault)
        if self.timing.rest_latency_s:
            await asyncio.sleep(self.timing.rest_latency_s)
        raw = (await request.body()).decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        try:
            body = self.auth.token_response(
                form,
                request.headers.get("authorization"),
                request.headers.get("host", ""),
                self.settings.get("instance_url") or self.base_url(request),
                self.org_id,
                self.clock.time(),
            )
        except OAuthError as exc:
            return _json(
                exc.status, {"error": exc.error, "error_description": exc.description}, {"Cache-Control": "no-store"}
            )
        return _json(200, body, {"Cache-Control": "no-store"})

    async def _revoke(self, request: Request) -> Response:
        self.count("POST oauth2/revoke")
        if self.timing.rest_latency_s:
            await asyncio.sleep(self.timing.rest_latency_s)
        raw = (await request.body()).decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(raw).items()}
        token = form.get("token") or request.query_params.get("token") or ""
        if not self.auth.revoke(token):
            return _json(
                400, {"error": "unsupported_token_type", "error_description": "this token type is not supported"}
            )
        return Response(status_code=200)

    def _job_page(self, request: Request) -> Response:
        """Setup's Bulk Data Load Job page, reduced to the job's state (where operators' job links lead).

        Real Setup asks for an interactive login first; the emulator shows the page to anyone on loopback.
        """
        job_id = request.query_params.get("address", "").strip("/")
        job = self.bulk.jobs.get(to18(job_id) or job_id)
        if job is None:
            body = f"<h1>Bulk job {html.escape(job_id) or '?'}</h1><p>No such job in this emulated org.</p>"
            return HTMLResponse(_page(body), status_code=404)
        rows = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in job.info().items()
        )
        kind = "Query" if job.kind == "query" else "Ingest"
        return HTMLResponse(_page(f"<h1>Bulk API 2.0 {kind} job {html.escape(job.id)}</h1><table>{rows}</table>"))

    async def _identity(self, request: Request) -> Response:
        info = self.auth.check(_bearer(request))
        if info is None:
            return Response("Bad_OAuth_Token", status_code=403, media_type="text/plain")
        return _json(
            200,
            {
                "id": f"{self.base_url(request)}/id/{self.org_id}/{info.user_id}",
                "organization_id": self.org_id,
                "user_id": info.user_id,
                "username": info.username,
                "active": True,
                "user_type": "STANDARD",
            },
        )

    def _userinfo(self, request: Request) -> Response:
        """OpenID Connect userinfo (``GET /services/oauth2/userinfo``) for the token's user: the keys of the
        recorded answer, in its order, after the standard claims."""
        info = self.auth.check(_bearer(request))
        if info is None:
            return Response("Bad_OAuth_Token", status_code=403, media_type="text/plain")
        self.count("GET oauth2/userinfo")
        record = self.store.get(self.org.objects["User"], info.user_id) or {}
        base = self.base_url(request)
        return _json(
            200,
            {
                "sub": f"{base}/id/{self.org_id}/{info.user_id}",
                "name": " ".join(str(record.get(k) or "") for k in ("FirstName", "LastName")).strip(),
                "preferred_username": info.username,
                "email": str(record.get("Email") or info.username),
                "organization_id": self.org_id,
                "user_id": info.user_id,
                "email_verified": True,
                "zoneinfo": "UTC",
                "address": {"country": "US"},
                "is_salesforce_integration_user": False,
                "urls": {},
                "active": True,
                "user_type": "STANDARD",
                "language": "en_US",
                "locale": "en_US",
                "utcOffset": 0,
                "updated_at": str(record.get("LastModifiedDate") or "2026-01-01T00:00:00.000Z")[:19] + "Z",
            },
        )

    async def _data(self, request: Request) -> Response:
        path = request.url.path
        m = VERSION_RE.match(path)
        if m is not None and rest.retired_version(m.group(1)):
            self.count("retired version")
            message = rest.RETIRED_MESSAGE.format(version=m.group(1), min=rest.RETIRED_BELOW)
            return _json(410, [{"errorCode": "GONE", "message": message}])
        if m is None or not rest.supported_version(m.group(1)):
            self.count("unknown version")
            return _json(404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])
        version, sub_path = m.group(1), m.group(2) or ""
        token = self.auth.check(_bearer(request))
        if token is None:
            self.count("401")
            return _json(401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
        method = request.method
        self.count(f"{method} {_endpoint_key(sub_path)}")
        if self.limits.exhausted:
            return self._with_limits(_limit_exceeded())
        ticket = self.limits.enter()
        if ticket is None:
            self.count("refused: concurrent long-running limit")
            return self._with_limits(
                _json(
                    403, [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "ConcurrentPerOrgLongTxn Limit exceeded."}]
                )
            )
        try:
            if self.timing.rest_latency_s:
                await asyncio.sleep(self.timing.rest_latency_s)
            dropped = False
            for fault in self.faults.request_faults(method, path):
                if fault.kind == "latency":
                    await asyncio.sleep(fault.latency_ms / 1000)
                elif fault.kind == "drop":
                    dropped = True
                else:
                    return self._with_limits(_fault_response(fault))
            upload = None
            if method == "PUT" and UPLOAD_RE.match(sub_path):
                body, upload = b"", await self._stream_to_disk(request)
            else:
                body = await self._read_body(request)
            req = Req(
                method=method,
                path=sub_path,
                version=version,
                query=parse_qs(request.url.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                user_id=token.user_id,
                base_url=self.base_url(request),
                upload=upload,
            )
            self.limits.count_call(1)  # counted before the work, so /limits reports this call too
            resp = await anyio.to_thread.run_sync(self.router.dispatch, req)
            if resp.api_calls != 1:
                self.limits.count_call(resp.api_calls - 1)
            self.count("api calls", resp.api_calls)
        finally:
            self.limits.leave(ticket)
        return self._respond(request, resp, dropped)

    async def _stream_to_disk(self, request: Request) -> Path:
        """Bulk uploads go straight to a file, so a 100 MB CSV never sits in memory."""
        folder = self.bulk.root / "incoming"
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=folder, suffix=".csv")
        with os.fdopen(handle, "wb") as out:
            async for chunk in self._paced_upload(request):
                out.write(chunk)
        return Path(name)

    async def _read_body(self, request: Request) -> bytes:
        if not self.timing.upload_bytes_per_s:
            return await request.body()
        return b"".join([chunk async for chunk in self._paced_upload(request)])

    async def _paced_upload(self, request: Request) -> AsyncIterator[bytes]:
        """The request body, read no faster than the per-connection upload bandwidth of the org's timing."""
        rate = self.timing.upload_bytes_per_s
        started = time.monotonic()
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            await _pace(received, rate, started)
            yield chunk

    def _with_limits(self, response: Response) -> Response:
        response.headers["Sforce-Limit-Info"] = self.limits.limit_info()
        return response

    def _respond(self, request: Request, resp: Resp, dropped: bool) -> Response:
        body = resp.body
        data = body.encode("utf-8") if isinstance(body, str) else (body or b"")
        headers = dict(resp.headers)
        headers["Sforce-Limit-Info"] = self.limits.limit_info()
        bandwidth = resp.bandwidth or self.timing.download_bytes_per_s
        if (dropped or bandwidth) and data and resp.file_parts is None:
            resp.file_parts = [data]  # the drop fault cuts every body the same way, paced bodies stream: _stream_parts
        if resp.file_parts is not None:
            gzip_it = "gzip" in request.headers.get("accept-encoding", "").lower()
            length = sum(len(p) if isinstance(p, bytes) else p[2] - p[1] for p in resp.file_parts)
            if gzip_it:
                headers["Content-Encoding"] = "gzip"
                headers["Vary"] = "Accept-Encoding"
            else:
                headers["Content-Length"] = str(length)
            return StreamingResponse(
                _stream_parts(resp.file_parts, gzip_it, length if dropped else None, bandwidth),
                status_code=resp.status,
                headers=headers,
                media_type=resp.content_type,
            )
        if data and len(data) > 512 and "gzip" in request.headers.get("accept-encoding", "").lower():
            data = gzip.compress(data, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
            headers["Vary"] = "Accept-Encoding"
        if resp.status in (204, 304):
            return Response(status_code=resp.status, headers=headers)
        return Response(data, status_code=resp.status, headers=headers, media_type=resp.content_type if data else None)


UPLOAD_RE = re.compile(r"^jobs/ingest/[A-Za-z0-9]+/batches/?$")
CHUNK = 1 << 18


async def _stream_parts(
    parts: list[bytes | tuple[str, int, int]], gzip_it: bool, drop_after: int | None, bandwidth: int | None = None
) -> AsyncIterator[bytes]:
    """Literal bytes and file byte ranges, read CHUNK bytes at a time; optionally gzip-compressed on the fly.

    ``drop_after`` (the drop fault) cuts the connection after half the body.
    """
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31) if gzip_it else None
    sent = 0
    limit = drop_after // 2 if drop_after is not None else None

    def pieces() -> Iterator[bytes]:
        for part in parts:
            if isinstance(part, bytes):
                yield part
                continue
            path, start, end = part
            with open(path, "rb") as handle:
                handle.seek(start)
                remaining = end - start
                while remaining > 0:
                    chunk = handle.read(min(CHUNK, remaining))
                    if not chunk:
                        break
                    remaining -= len(chunk)
                    yield chunk

    started = time.monotonic()
    wire = 0  # bytes on the wire (compressed when gzip is on): what the bandwidth cap paces

    async def paced(out: bytes) -> bytes:
        nonlocal wire
        wire += len(out)
        await _pace(wire, bandwidth, started)
        return out

    for chunk in pieces():
        if limit is not None and sent + len(chunk) >= limit:
            head = chunk[: max(limit - sent, 0)]
            # A valid prefix of the (possibly compressed) body, then the connection is cut.
            yield compressor.compress(head) + compressor.flush(zlib.Z_SYNC_FLUSH) if compressor else head
            raise ConnectionAbortedError("sfint emulator fault: connection dropped mid-body")
        sent += len(chunk)
        yield await paced(compressor.compress(chunk) if compressor else chunk)
    if compressor:
        yield await paced(compressor.flush())


async def _pace(done: int, rate: int | None, started: float) -> None:
    """Per-connection bandwidth: sleep until ``done`` bytes are "due" at ``rate`` bytes/s since ``started``."""
    if rate:
        ahead = done / rate - (time.monotonic() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and token.strip():
        return token.strip()
    return request.headers.get("x-sfdc-session")


def _page(body: str) -> str:
    style = "body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:1em}"
    head = f"<head><title>sfint emulator</title><style>{style}</style></head>"
    return f"<!doctype html><html>{head}<body>{body}</body></html>"


def _json(status: int, value: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(value, ensure_ascii=False, separators=(",", ":")),
        status_code=status,
        headers=headers,
        media_type=JSON,
    )


def _fault_response(fault: FaultRule) -> Response:
    if fault.kind == "503":
        return _json(503, [{"errorCode": "SERVER_UNAVAILABLE", "message": "Server temporarily unavailable"}])
    if fault.kind == "500":
        return _json(
            500,
            [
                {
                    "errorCode": "UNKNOWN_EXCEPTION",
                    "message": "An unexpected error occurred. Please "
                    "include this ErrorId if you contact support: 1917376021-12345 (-1234567890)",
                }
            ],
        )
    if fault.kind == "429":
        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
        return _json(429, [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "Too many requests"}], headers)
    return _limit_exceeded()


def _limit_exceeded() -> Response:
    return _json(403, [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}])


_ID_SEGMENT = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?(-\d+)?$")


def _endpoint_key(sub_path: str) -> str:
    """A counter key: the path with ids, locators and values replaced (``sobjects/Account/{id}``)."""
    parts = sub_path.strip("/").split("/")
    out = []
    for i, part in enumerate(parts):
        if (i >= 1 and _ID_SEGMENT.match(part)) or (parts[0] == "sobjects" and i >= 2 and part != "describe"):
            out.append("{id}")
        else:
            out.append(part)
    return "/".join(out)


def parse_datetime_arg(text: str) -> datetime:
    from .dml import parse_datetime

    parsed = parse_datetime(text)
    if parsed is None:
        raise ValueError(f"not an ISO datetime: {text!r}")
    return parsed


def _admin_secrets(username: str) -> tuple[str | None, str | None]:
    """The password and security token a user signs in with (the admin only; the others use OAuth)."""
    return (ADMIN_PASSWORD, ADMIN_SECURITY_TOKEN) if username == ADMIN_USERNAME else (None, None)
