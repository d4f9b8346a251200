"""REST API: query pagination, describe (cached with ETag), sObject CRUD and upsert, limits.

Each operation is a request builder and a response parser (module functions) used by both
:class:`SalesforceClient` (sync) and :class:`AsyncSalesforceClient`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from .auth import ClientConfig
from .errors import RecordValidationError, SalesforceError, did_you_mean
from .limits import DELIVERY_LIMIT, ApiUsage, LimitValue, check_allocation, check_budget, parse_limits
from .transport import ApiRequest, RetryEvent, Transport

MIN_BATCH, MAX_BATCH = 200, 2000


@dataclass(frozen=True)
class QueryPage:
    records: list[dict[str, Any]]
    total_size: int
    done: bool
    next_url: str | None


@dataclass(frozen=True)
class UpsertResult:
    """:param id: the record id (None when the server answered 204 without a body)
    :param created: True when the upsert inserted a record"""

    id: str | None
    created: bool


def flatten_record(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested parent records and compound fields become dotted columns (``Account.Owner.Name``,
    ``Address.city``); ``attributes`` is dropped.

    A null parent gives no columns (callers that need a fixed schema should use describe); child
    subqueries stay lists of flattened child records.
    """
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key == "attributes":
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict) and "records" in value and "totalSize" in value:
            out[name] = [flatten_record(r) for r in value.get("records") or []]
        elif isinstance(value, dict):  # a parent record, or a compound field such as Address
            out.update(flatten_record(value, prefix=f"{name}."))
        else:
            out[name] = value
    return out


def _data_path(config: ClientConfig, rest: str) -> str:
    return f"/services/data/v{config.version}/{rest}"


def _object(name: str) -> str:
    if not name or not all(c.isalnum() or c == "_" for c in name):
        raise ValueError(f"{name!r} is not a valid sObject or field API name")
    return name


def query_request(config: ClientConfig, soql: str, include_deleted: bool, batch_size: int | None) -> ApiRequest:
    headers = {}
    if batch_size is not None:
        if not MIN_BATCH <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between {MIN_BATCH} and {MAX_BATCH}, got {batch_size}")
        headers["Sforce-Query-Options"] = f"batchSize={batch_size}"
    return ApiRequest(
        "GET", _data_path(config, "queryAll" if include_deleted else "query"), params={"q": soql}, headers=headers
    )


def next_page_request(page: QueryPage, previous: ApiRequest) -> ApiRequest | None:
    if page.done or not page.next_url:
        return None
    return ApiRequest("GET", page.next_url, headers=previous.headers)


def parse_query_page(response: httpx.Response, exact_numbers: bool = False) -> QueryPage:
    """One page of a REST query; ``exact_numbers`` parses JSON numbers with a fraction as ``Decimal`` (a currency's
    digits exactly as sent)."""
    body = json.loads(response.content, parse_float=Decimal) if exact_numbers else response.json()
    done = bool(body.get("done", True))
    next_url = body.get("nextRecordsUrl")
    if not done and not next_url:
        raise SalesforceError(
            "query page says done=false but has no nextRecordsUrl; refusing to stop early and drop rows",
            status=response.status_code,
        )
    return QueryPage(list(body.get("records") or []), int(body.get("totalSize", 0)), done, next_url)


def unfinished_children(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The child subquery results of ``record`` that Salesforce paged (``done: false``, a ``nextRecordsUrl``): their
    remaining records must be fetched, or the children beyond the first page are silently missing."""
    found = []
    for value in record.values():
        if isinstance(value, dict) and "records" in value and value.get("done") is False:
            if not value.get("nextRecordsUrl"):
                raise SalesforceError(
                    "a child subquery result says done=false but has no nextRecordsUrl; refusing to drop its records"
                )
            found.append(value)
    return found


def describe_request(config: ClientConfig, obj: str, cached: tuple[str | None, str | None, Any] | None) -> ApiRequest:
    headers = {}
    if cached:
        etag, modified, _ = cached
        if etag:
            headers["If-None-Match"] = etag
        if modified:
            headers["If-Modified-Since"] = modified
    return ApiRequest("GET", _data_path(config, f"sobjects/{_object(obj)}/describe"), headers=headers)


def sobject_request(
    config: ClientConfig,
    method: str,
    obj: str,
    *parts: str,
    body: Any = None,
    params: dict[str, Any] | None = None,
    idempotent: bool | None = None,
) -> ApiRequest:
    path = "/".join([f"sobjects/{_object(obj)}", *(quote(p, safe="") for p in parts)])
    return ApiRequest(method, _data_path(config, path), json=body, params=params, idempotent=idempotent)


def collection_upsert_request(
    config: ClientConfig, obj: str, external_id_field: str, value: str, data: dict[str, Any]
) -> ApiRequest:
    """One-record Collections upsert: for external ids the REST URL cannot carry (a ``/`` in the value)."""
    record = {"attributes": {"type": obj}, **data, external_id_field: value}
    return ApiRequest(
        "PATCH",
        _data_path(config, f"composite/sobjects/{_object(obj)}/{_object(external_id_field)}"),
        json={"allOrNone": True, "records": [record]},
        idempotent=True,
    )


def parse_collection_upsert(response: httpx.Response, request: ApiRequest) -> UpsertResult:
    (result,) = response.json()
    if not result.get("success"):
        error = (result.get("errors") or [{}])[0]
        raise RecordValidationError(
            str(error.get("message", "upsert failed")),
            status=response.status_code,
            error_code=error.get("statusCode"),
            fields=error.get("fields"),
            method=request.method,
            path=request.path,
        )
    return UpsertResult(result.get("id"), bool(result.get("created")))


def parse_upsert(response: httpx.Response) -> UpsertResult:
    if response.status_code == 204 or not response.content:
        return UpsertResult(None, False)
    body = response.json()
    return UpsertResult(body.get("id"), bool(body.get("created", response.status_code == 201)))


class _Base:
    def __init__(self, config: ClientConfig, transport: Transport) -> None:
        self.config = config.validated()
        self.transport = transport
        self._describe_cache: dict[str, tuple[str | None, str | None, Any]] = {}
        self._describe_lock = threading.Lock()
        self.describe_cache_hits = 0

    @property
    def usage(self) -> ApiUsage | None:
        """API usage as the last response reported it (``Sforce-Limit-Info``)."""
        return self.transport.usage

    @property
    def retries(self) -> list[RetryEvent]:
        return list(self.transport.retries)

    @property
    def api_calls(self) -> int:
        """Calls this client made that the org counts against its daily API allowance: every authenticated
        request, retries included; sign-in (the OAuth token endpoint) is not counted by Salesforce."""
        return self.transport.calls

    @property
    def http_requests(self) -> int:
        """Every HTTP request this client sent, sign-in included."""
        return self.transport.requests

    def _describe_result(self, obj: str, response: httpx.Response) -> dict[str, Any]:
        key = obj.lower()
        if response.status_code == 304:
            self.describe_cache_hits += 1
            return dict(self._describe_cache[key][2])
        body = response.json()
        with self._describe_lock:
            self._describe_cache[key] = (response.headers.get("ETag"), response.headers.get("Last-Modified"), body)
        return dict(body)


class SalesforceClient(_Base):
    """Synchronous REST client for one org.

    :param config: connection settings (validated on construction)
    :param http: an httpx.Client to use (for example with custom transports); one is created otherwise
    """

    def __init__(self, config: ClientConfig, http: httpx.Client | None = None) -> None:
        super().__init__(config, Transport(config.validated(), client=http))

    def __enter__(self) -> SalesforceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.transport.close()

    def request(self, method: str, path: str, **kw: Any) -> Any:
        """Any call: ``path`` relative to ``/services/data/vXX.X/`` or absolute from ``/``; returns JSON."""
        full = path if path.startswith("/") else _data_path(self.config, path)
        response = self.transport.send(ApiRequest(method, full, **kw))
        return response.json() if response.content else None

    def login(self) -> str:
        """Authenticate now (rather than on the first call); returns the instance URL."""
        return self.transport.session().instance_url

    def user_id(self) -> str | None:
        """The signed-in user's id (from the token response's identity URL); None for a pre-issued token."""
        return self.transport.session().user_id

    def query_pages(
        self, soql: str, *, include_deleted: bool = False, batch_size: int | None = None, exact_numbers: bool = False
    ) -> Generator[QueryPage, None, None]:
        request: ApiRequest | None = query_request(self.config, soql, include_deleted, batch_size)
        while request is not None:
            page = parse_query_page(self.transport.send(request), exact_numbers)
            yield page
            request = next_page_request(page, request)

    def query(
        self, soql: str, *, include_deleted: bool = False, batch_size: int | None = None, flatten: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Records of ``soql``, page by page (``nextRecordsUrl``), so memory holds one page at a time. A child
        subquery result that Salesforce paged is completed first (its own ``nextRecordsUrl``s): each record comes
        with all of its children, ``done: true``."""
        for page in self.query_pages(soql, include_deleted=include_deleted, batch_size=batch_size):
            for record in page.records:
                for child in unfinished_children(record):
                    self._complete(child)
                yield flatten_record(record) if flatten else record

    def _complete(self, result: dict[str, Any]) -> None:
        request: ApiRequest | None = ApiRequest("GET", str(result["nextRecordsUrl"]))
        while request is not None:
            page = parse_query_page(self.transport.send(request))
            result["records"].extend(page.records)
            request = next_page_request(page, request)
        result["done"] = True
        result.pop("nextRecordsUrl", None)

    def query_all(self, soql: str, **kw: Any) -> list[dict[str, Any]]:
        return list(self.query(soql, **kw))

    def count(self, soql: str, *, include_deleted: bool = False) -> int:
        """``totalSize`` of a ``SELECT COUNT() ...`` (or any) query."""
        page = next(self.query_pages(soql, include_deleted=include_deleted))
        return page.total_size

    def describe(self, obj: str) -> dict[str, Any]:
        """Describe, cached per client and revalidated with ETag / If-Modified-Since."""
        response = self.transport.send(describe_request(self.config, obj, self._describe_cache.get(obj.lower())))
        return self._describe_result(obj, response)

    def describe_global(self) -> dict[str, Any]:
        return dict(self.request("GET", "sobjects"))

    def unknown_object(self, obj: str) -> str:
        """Why ``obj`` cannot be described, with the closest object names the user can see (one describeGlobal
        call, made only on this error path)."""
        try:
            names = [str(o["name"]) for o in self.describe_global().get("sobjects", [])]
        except SalesforceError:
            names = []
        return (
            f"object {obj!r} does not exist or is not visible to this user{did_you_mean(obj, names)} (check the API "
            "name, with __c for custom objects, and the user's object permissions)"
        )

    def create(self, obj: str, data: dict[str, Any]) -> str:
        """Insert one record; returns its id. Not retried after an ambiguous failure (no duplicates)."""
        return str(self.transport.send(sobject_request(self.config, "POST", obj, body=data)).json()["id"])

    def get(self, obj: str, record_id: str, fields: list[str] | None = None) -> dict[str, Any]:
        params = {"fields": ",".join(fields)} if fields else None
        return dict(self.transport.send(sobject_request(self.config, "GET", obj, record_id, params=params)).json())

    def update(self, obj: str, record_id: str, data: dict[str, Any]) -> None:
        self.transport.send(sobject_request(self.config, "PATCH", obj, record_id, body=data, idempotent=True))

    def upsert(self, obj: str, external_id_field: str, value: str, data: dict[str, Any]) -> UpsertResult:
        """Insert or update by external id; accepts 201, 200-with-body and 204 answers.

        Values containing ``/`` cannot travel in the REST URL (Salesforce rejects them even encoded);
        those go through a one-record Collections upsert instead.
        """
        if "/" in str(value):
            request = collection_upsert_request(self.config, obj, external_id_field, str(value), data)
            return parse_collection_upsert(self.transport.send(request), request)
        request = sobject_request(
            self.config, "PATCH", obj, _object(external_id_field), str(value), body=data, idempotent=True
        )
        return parse_upsert(self.transport.send(request))

    def delete(self, obj: str, record_id: str) -> None:
        self.transport.send(sobject_request(self.config, "DELETE", obj, record_id))

    def limits(self) -> dict[str, LimitValue]:
        return parse_limits(self.request("GET", "limits"))

    def check_budget(self, min_remaining_percent: float | None = None, *, purpose: str = "this work") -> ApiUsage:
        """Refuse (BudgetExhaustedError) when less than the configured share of the daily allowance remains."""
        threshold = self.config.min_remaining_api_percent if min_remaining_percent is None else min_remaining_percent
        limit = self.limits()["DailyApiRequests"]
        usage = ApiUsage(limit.used, limit.max)
        check_budget(usage, threshold, purpose=purpose)
        return usage

    def check_delivery_budget(self, min_remaining_percent: float, *, purpose: str = "this work") -> LimitValue | None:
        """Refuse (BudgetExhaustedError) when less than ``min_remaining_percent`` of the org's daily event
        delivery allocation remains; None (and no check) when the org does not report it."""
        limit = self.limits().get(DELIVERY_LIMIT)
        check_allocation(limit, min_remaining_percent, what="daily event deliveries", purpose=purpose)
        return limit


class AsyncSalesforceClient(_Base):
    """Asynchronous REST client (triggers, concurrent work); same protocol as :class:`SalesforceClient`."""

    def __init__(self, config: ClientConfig, http: httpx.AsyncClient | None = None) -> None:
        super().__init__(config, Transport(config.validated(), async_client=http))

    async def __aenter__(self) -> AsyncSalesforceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.transport.aclose()

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        full = path if path.startswith("/") else _data_path(self.config, path)
        response = await self.transport.asend(ApiRequest(method, full, **kw))
        return response.json() if response.content else None

    async def login(self) -> str:
        return (await self.transport.asession()).instance_url

    async def query(
        self, soql: str, *, include_deleted: bool = False, batch_size: int | None = None, flatten: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        request: ApiRequest | None = query_request(self.config, soql, include_deleted, batch_size)
        while request is not None:
            page = parse_query_page(await self.transport.asend(request))
            for record in page.records:
                for child in unfinished_children(record):
                    await self._complete(child)
                yield flatten_record(record) if flatten else record
            request = next_page_request(page, request)

    async def _complete(self, result: dict[str, Any]) -> None:
        more: ApiRequest | None = ApiRequest("GET", str(result["nextRecordsUrl"]))
        while more is not None:
            page = parse_query_page(await self.transport.asend(more))
            result["records"].extend(page.records)
            more = next_page_request(page, more)
        result["done"] = True
        result.pop("nextRecordsUrl", None)

    async def describe(self, obj: str) -> dict[str, Any]:
        request = describe_request(self.config, obj, self._describe_cache.get(obj.lower()))
        return self._describe_result(obj, await self.transport.asend(request))

    async def get(self, obj: str, record_id: str, fields: list[str] | None = None) -> dict[str, Any]:
        params = {"fields": ",".join(fields)} if fields else None
        response = await self.transport.asend(sobject_request(self.config, "GET", obj, record_id, params=params))
        return dict(response.json())

    async def limits(self) -> dict[str, LimitValue]:
        return parse_limits(await self.request("GET", "limits"))
