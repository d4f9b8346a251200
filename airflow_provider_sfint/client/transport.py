"""One request pipeline for sync and async httpx.

Building a request, classifying its outcome and deciding whether to retry are plain functions shared
by both paths; :meth:`Transport.send` and :meth:`Transport.asend` only differ in how they send and
sleep. Retries (tenacity): transport errors, truncated bodies, 5xx, 429/420, concurrent-request
limits and request-level UNABLE_TO_LOCK_ROW, ``Retry-After`` first, else exponential backoff with full
jitter, bounded by attempts and total time. Never retried: daily TotalRequests exhaustion, 4xx
validation errors, authentication failures after one refresh, and non-idempotent requests unless they
provably never left this machine.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import tenacity

from .. import __version__
from .auth import ClientConfig, Session, SessionManager, TokenRequest, session_manager
from .errors import (
    AuthenticationError,
    LoginRefusedError,
    RateLimitedError,
    RowLockError,
    SalesforceError,
    ServerError,
    TransportError,
    error_from_response,
)
from .limits import ApiUsage, parse_limit_info

log = logging.getLogger(__name__)
T = TypeVar("T")

USER_AGENT = f"airflow-provider-sfint/{__version__}"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
MAX_RETRY_AFTER = 120.0


@dataclass
class ApiRequest:
    """A request relative to the instance URL (``path`` starts with ``/``) or to an absolute URL.

    :param idempotent: whether repeating it is harmless; defaults to the method's nature (PATCH upserts
        and updates are idempotent and may pass ``True``)
    """

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    content: bytes | Callable[[], Iterator[bytes]] | None = None  # a callable gives a fresh stream per attempt
    headers: dict[str, str] = field(default_factory=dict)
    idempotent: bool | None = None
    authenticated: bool = True

    @property
    def safe_to_repeat(self) -> bool:
        return self.idempotent if self.idempotent is not None else self.method.upper() in IDEMPOTENT_METHODS


@dataclass(frozen=True)
class RetryEvent:
    method: str
    path: str
    attempt: int
    reason: str
    delay: float


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, min(float(value), MAX_RETRY_AFTER))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
        return max(0.0, min(when.timestamp() - time.time(), MAX_RETRY_AFTER))
    except (TypeError, ValueError):
        return None


def _body(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text[:2000]


def _transport_error(exc: httpx.HTTPError, method: str, url: httpx.URL) -> TransportError:
    # Connect failures and pool timeouts happen before any byte of the request is sent.
    never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    kind = type(exc).__name__
    where = f"{url.scheme}://{url.netloc.decode()}{url.path}"  # the host tried, never a query string
    message = f"{kind} on {method} {where}" + (f": {exc}" if str(exc) else "")
    return TransportError(message, sent=not never_sent, method=method, path=url.path)


def should_retry(exc: BaseException, request: ApiRequest) -> bool:
    """The retry policy, shared by the sync and async paths."""
    if isinstance(exc, TransportError):
        return request.safe_to_repeat or not exc.sent
    if isinstance(exc, RateLimitedError | RowLockError):
        return True  # refused before any work was done (or rolled back)
    if isinstance(exc, ServerError):
        return request.safe_to_repeat or exc.status == 503
    return False


def backoff_delay(exc: BaseException | None, attempt: int) -> float:
    """``Retry-After`` when the server gave one, else full-jitter exponential backoff."""
    if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
        return exc.retry_after
    return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)))


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, SalesforceError):
        bits = [str(exc.status) if exc.status else "", exc.error_code or "", exc.message[:120]]
        return " ".join(b for b in bits if b)
    return type(exc).__name__


class Transport:
    """Sends :class:`ApiRequest` objects for one connection, sync or async, with the shared policy."""

    def __init__(
        self, config: ClientConfig, *, client: httpx.Client | None = None, async_client: httpx.AsyncClient | None = None
    ) -> None:
        self.config = config
        self.sessions: SessionManager = session_manager(config)
        self._client = client
        self._async_client = async_client
        self._owns_client = client is None
        self._owns_async_client = async_client is None
        self.usage: ApiUsage | None = None
        self.retries: list[RetryEvent] = []
        #: requests the org counts against its daily API allowance (authenticated ones: sign-in is not counted)
        self.calls = 0
        #: every HTTP request sent, sign-in included
        self.requests = 0
        #: turns a login the token endpoint refused for good into the caller's own error (the hook makes it
        #: Airflow's AirflowFailException, so a task with bad credentials is not retried)
        self.on_login_refused: Callable[[LoginRefusedError], BaseException] | None = None
        self._lock = threading.Lock()

    # --- shared protocol --------------------------------------------------------------------------

    def _timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.config.read_timeout, connect=self.config.connect_timeout)

    def _headers(self) -> dict[str, str]:
        return {
            "User-Agent": USER_AGENT,
            "Sforce-Call-Options": "client=airflow-provider-sfint",
            "Accept-Encoding": "gzip",
            "Accept": "application/json",
        }

    def build(self, request: ApiRequest, session: Session | None) -> httpx.Request:
        headers = {**self._headers(), **request.headers}
        if request.authenticated:
            assert session is not None
            headers["Authorization"] = f"Bearer {session.access_token}"
            url = request.path if "://" in request.path else session.instance_url + request.path
        else:
            url = request.path
        content: Any = request.content() if callable(request.content) else request.content
        if request.json is not None:
            content = json.dumps(request.json, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            headers.setdefault("Content-Type", "application/json; charset=UTF-8")
        return httpx.Request(request.method.upper(), url, params=request.params, content=content, headers=headers)

    def check(self, request: ApiRequest, response: httpx.Response) -> httpx.Response:
        """Record usage; return a successful response, or raise the typed error."""
        usage = parse_limit_info(response.headers.get("Sforce-Limit-Info"))
        if usage is not None:
            self.usage = usage
        if response.status_code < 300 or response.status_code == 304:
            return response
        if not request.authenticated and response.status_code in (400, 401):
            return response  # an OAuth refusal: parse_token_response reads it and explains the fix
        path = request.path.split("?")[0] if "://" not in request.path else httpx.URL(request.path).path
        raise error_from_response(
            response.status_code,
            _body(response),
            method=request.method.upper(),
            path=path,
            retry_after=_retry_after(response),
            usage=(self.usage.used, self.usage.limit) if self.usage else None,
        )

    def _retrying_kwargs(self, request: ApiRequest) -> dict[str, Any]:
        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return backoff_delay(exc, state.attempt_number)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            event = RetryEvent(
                request.method.upper(),
                request.path.split("?")[0],
                state.attempt_number,
                describe_error(exc) if exc else "?",
                round(delay, 3),
            )
            with self._lock:
                self.retries.append(event)
            log.warning(
                "retrying %s %s (attempt %d of %d) in %.2f s: %s",
                event.method,
                event.path,
                state.attempt_number + 1,
                self.config.max_attempts,
                delay,
                event.reason,
            )

        return {
            "retry": tenacity.retry_if_exception(lambda exc: should_retry(exc, request)),
            "wait": wait,
            "stop": tenacity.stop_after_attempt(self.config.max_attempts)
            | tenacity.stop_after_delay(self.config.max_retry_seconds),
            "before_sleep": before_sleep,
            "reraise": True,
        }

    def _token_api_request(self, token: TokenRequest) -> ApiRequest:
        return ApiRequest(
            "POST",
            token.url,
            content=str(httpx.QueryParams(token.form)).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            idempotent=True,
            authenticated=False,
        )

    @staticmethod
    def _invalid_session(exc: BaseException) -> bool:
        return isinstance(exc, AuthenticationError) and exc.status == 401

    # --- sync -------------------------------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(timeout=self._timeout(), verify=self.config.verify)
        return self._client

    def _send_once(self, request: ApiRequest, session: Session | None) -> httpx.Response:
        built = self.build(request, session)
        try:
            response = self.client.send(built)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, request.method.upper(), built.url) from None
        with self._lock:
            self._count(request)
        return self.check(request, response)

    def _fetch_token(self, token: TokenRequest) -> tuple[int, Any]:
        request = self._token_api_request(token)
        for attempt in tenacity.Retrying(**self._retrying_kwargs(request)):
            with attempt:
                response = self._send_once(request, None)
        return response.status_code, _body(response)

    def _count(self, request: ApiRequest) -> None:
        """Called under the lock for each response received."""
        self.requests += 1
        if request.authenticated:
            self.calls += 1

    def _refused(self, exc: LoginRefusedError) -> BaseException:
        return exc if self.on_login_refused is None else self.on_login_refused(exc)

    def session(self, seen_generation: int | None = None) -> Session:
        try:
            return self.sessions.get(self._fetch_token, seen_generation=seen_generation)
        except LoginRefusedError as exc:
            raise self._refused(exc) from exc

    def _with_session(self, request: ApiRequest, once: Callable[[Session | None], T]) -> T:
        """Retries per the policy; refresh the session once on INVALID_SESSION_ID and replay."""
        for attempt in tenacity.Retrying(**self._retrying_kwargs(request)):
            with attempt:
                session = self.session() if request.authenticated else None
                try:
                    return once(session)
                except AuthenticationError as exc:
                    if not (request.authenticated and self._invalid_session(exc)):
                        raise
                    assert session is not None
                    return once(self.session(seen_generation=session.generation))
        raise AssertionError("unreachable")  # pragma: no cover

    def send(self, request: ApiRequest) -> httpx.Response:
        """Send with retries; refresh the session once on INVALID_SESSION_ID and replay."""
        return self._with_session(request, lambda session: self._send_once(request, session))

    def send_streaming(self, request: ApiRequest, consume: Callable[[httpx.Response], T]) -> T:
        """Send and hand the still-open response to ``consume`` (which reads the body as it arrives).

        A body cut mid-way raises :class:`TransportError` out of ``consume`` and the whole exchange,
        ``consume`` included, is retried like any other request; so ``consume`` must start afresh each
        time it is called. Error responses are read whole and raised as typed errors, as in :meth:`send`.
        """

        def once(session: Session | None) -> T:
            built = self.build(request, session)
            try:
                response = self.client.send(built, stream=True)
            except httpx.HTTPError as exc:
                raise _transport_error(exc, request.method.upper(), built.url) from None
            try:
                with self._lock:
                    self._count(request)
                if response.status_code >= 300:
                    try:
                        response.read()
                    except httpx.HTTPError as exc:
                        raise _transport_error(exc, request.method.upper(), built.url) from None
                self.check(request, response)
                try:
                    return consume(response)
                except httpx.HTTPError as exc:
                    raise _transport_error(exc, request.method.upper(), built.url) from None
            finally:
                response.close()

        return self._with_session(request, once)

    def close(self) -> None:
        if self._client is not None and self._owns_client:
            self._client.close()
            self._client = None

    # --- async ------------------------------------------------------------------------------------

    @property
    def async_client(self) -> httpx.AsyncClient:
        if self._async_client is None:
            self._async_client = httpx.AsyncClient(timeout=self._timeout(), verify=self.config.verify)
        return self._async_client

    async def _asend_once(self, request: ApiRequest, session: Session | None) -> httpx.Response:
        built = self.build(request, session)
        try:
            response = await self.async_client.send(built)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, request.method.upper(), built.url) from None
        with self._lock:
            self._count(request)
        return self.check(request, response)

    async def _afetch_token(self, token: TokenRequest) -> tuple[int, Any]:
        request = self._token_api_request(token)
        async for attempt in tenacity.AsyncRetrying(**self._retrying_kwargs(request)):
            with attempt:
                response = await self._asend_once(request, None)
        return response.status_code, _body(response)

    async def asession(self, seen_generation: int | None = None) -> Session:
        try:
            return await self.sessions.aget(self._afetch_token, seen_generation=seen_generation)
        except LoginRefusedError as exc:
            raise self._refused(exc) from exc

    async def asend(self, request: ApiRequest) -> httpx.Response:
        async for attempt in tenacity.AsyncRetrying(**self._retrying_kwargs(request)):
            with attempt:
                session = await self.asession() if request.authenticated else None
                try:
                    return await self._asend_once(request, session)
                except AuthenticationError as exc:
                    if not (request.authenticated and self._invalid_session(exc)):
                        raise
                    assert session is not None
                    fresh = await self.asession(seen_generation=session.generation)
                    return await self._asend_once(request, fresh)
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        if self._async_client is not None and self._owns_async_client:
            await self._async_client.aclose()
            self._async_client = None
