"""sObject Collections: create, update, upsert, delete and retrieve in chunks of 200, a bounded number at once.

Request builders and the result parser are plain functions; :class:`Collections` sends them through a
:class:`SalesforceClient` (same session, retries and call count). Upserts and updates are PATCH, so a
retried request never creates twice; creates are POST and are retried only when they provably never
left this machine.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dtime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from .auth import ClientConfig
from .errors import TRANSIENT_ROW_ERRORS, CompositeError
from .rest import SalesforceClient, _object
from .transport import ApiRequest

COLLECTION_LIMIT = 200


@dataclass(frozen=True)
class RecordResult:
    """One record's outcome. ``index`` is its position in the caller's input."""

    index: int
    id: str | None
    success: bool
    created: bool | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def error_code(self) -> str | None:
        return str(self.errors[0].get("statusCode")) if self.errors else None

    @property
    def transient(self) -> bool:
        return not self.success and self.error_code in TRANSIENT_ROW_ERRORS

    def describe_errors(self) -> str:
        return "; ".join(
            f"{e.get('statusCode')}: {e.get('message')}"
            + (f" [{', '.join(e.get('fields') or [])}]" if e.get("fields") else "")
            for e in self.errors
        )


def chunks(items: Sequence[Any], size: int = COLLECTION_LIMIT) -> Iterator[tuple[int, Sequence[Any]]]:
    if not 1 <= size <= COLLECTION_LIMIT:
        raise ValueError(f"a Collections call takes 1 to {COLLECTION_LIMIT} records, got batch size {size}")
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


def _typed(obj: str, record: dict[str, Any]) -> dict[str, Any]:
    return {"attributes": {"type": obj}, **{k: v for k, v in record.items() if k != "attributes"}}


def _path(config: ClientConfig, rest: str) -> str:
    return f"/services/data/v{config.version}/composite/sobjects{rest}"


def upsert_request(
    config: ClientConfig, obj: str, external_id_field: str, records: Sequence[dict[str, Any]], all_or_none: bool
) -> ApiRequest:
    body = {"allOrNone": all_or_none, "records": [_typed(obj, r) for r in records]}
    path = _path(config, f"/{_object(obj)}/{_object(external_id_field)}")
    return ApiRequest("PATCH", path, json=body, idempotent=True)


def create_request(config: ClientConfig, obj: str, records: Sequence[dict[str, Any]], all_or_none: bool) -> ApiRequest:
    body = {"allOrNone": all_or_none, "records": [_typed(obj, r) for r in records]}
    return ApiRequest("POST", _path(config, ""), json=body)


def update_request(config: ClientConfig, obj: str, records: Sequence[dict[str, Any]], all_or_none: bool) -> ApiRequest:
    body = {"allOrNone": all_or_none, "records": [_typed(obj, r) for r in records]}
    return ApiRequest("PATCH", _path(config, ""), json=body, idempotent=True)


def delete_request(config: ClientConfig, ids: Sequence[str], all_or_none: bool) -> ApiRequest:
    params = {"ids": ",".join(ids), "allOrNone": str(all_or_none).lower()}
    return ApiRequest("DELETE", _path(config, ""), params=params)


def parse_results(body: Any, first_index: int, expected: int) -> list[RecordResult]:
    """Collections answer one result per record, in request order."""
    if not isinstance(body, list) or len(body) != expected:
        raise ValueError(f"a Collections call for {expected} records answered {body!r:.200}")
    return [
        RecordResult(
            first_index + i,
            r.get("id"),
            bool(r.get("success")),
            r.get("created"),
            list(r.get("errors") or []),
        )
        for i, r in enumerate(body)
    ]


class Collections:
    """sObject Collections on a :class:`SalesforceClient`.

    :param max_concurrency: calls in flight at once
    """

    def __init__(self, client: SalesforceClient, max_concurrency: int = 4) -> None:
        if not 1 <= max_concurrency <= 25:
            raise ValueError(f"max_concurrency must be between 1 and 25, got {max_concurrency}")
        self.client = client
        self.config = client.config
        self.max_concurrency = max_concurrency

    def _run(
        self,
        records: Sequence[Any],
        batch_size: int,
        build: Callable[[Sequence[Any]], ApiRequest],
    ) -> list[RecordResult]:
        def call(item: tuple[int, Sequence[Any]]) -> list[RecordResult]:
            start, chunk = item
            response = self.client.transport.send(build(chunk))
            return parse_results(response.json(), start, len(chunk))

        with ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="sfint-collections") as pool:
            results = [r for part in pool.map(call, chunks(records, batch_size)) for r in part]
        return sorted(results, key=lambda r: r.index)

    def upsert(
        self,
        obj: str,
        external_id_field: str,
        records: Sequence[dict[str, Any]],
        *,
        all_or_none: bool = False,
        batch_size: int = COLLECTION_LIMIT,
    ) -> list[RecordResult]:
        """Upsert by external id; results come back in input order (``index``)."""
        return self._run(
            records, batch_size, lambda chunk: upsert_request(self.config, obj, external_id_field, chunk, all_or_none)
        )

    def create(
        self, obj: str, records: Sequence[dict[str, Any]], *, all_or_none: bool = False, batch_size: int = 200
    ) -> list[RecordResult]:
        return self._run(records, batch_size, lambda chunk: create_request(self.config, obj, chunk, all_or_none))

    def update(
        self, obj: str, records: Sequence[dict[str, Any]], *, all_or_none: bool = False, batch_size: int = 200
    ) -> list[RecordResult]:
        return self._run(records, batch_size, lambda chunk: update_request(self.config, obj, chunk, all_or_none))

    def delete(self, ids: Sequence[str], *, all_or_none: bool = False, batch_size: int = 200) -> list[RecordResult]:
        return self._run(ids, batch_size, lambda chunk: delete_request(self.config, chunk, all_or_none))

    def retrieve(self, obj: str, ids: Iterable[str], fields: Sequence[str]) -> list[dict[str, Any] | None]:
        """Records by id (None where one does not exist), 200 ids a call (POST, so long id lists fit)."""
        out: list[dict[str, Any] | None] = []
        for _, chunk in chunks(list(ids)):
            request = ApiRequest(
                "POST",
                _path(self.config, f"/{_object(obj)}"),
                json={"ids": list(chunk), "fields": list(fields)},
                idempotent=True,
            )
            out += list(self.client.transport.send(request).json())
        return out


# --- Composite (25 subrequests, references) and Composite Graph ----------------------------------

COMPOSITE_LIMIT = 25
COMPOSITE_HEAVY_LIMIT = 5  # query and sObject Collections subrequests in one composite request
GRAPH_LIMIT = 75
GRAPH_NODE_LIMIT = 500
_REFERENCE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Reference:
    """A subrequest's ``referenceId``; ``ref.id`` and ``ref["field"]`` give the ``@{ref.path}`` expressions
    a later subrequest uses to read its result."""

    reference_id: str

    @property
    def id(self) -> str:
        return f"@{{{self.reference_id}.id}}"

    def __getitem__(self, path: str) -> str:
        return f"@{{{self.reference_id}.{path}}}"


@dataclass(frozen=True)
class SubResponse:
    reference_id: str
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def ok(self) -> bool:
        return self.status < 400

    def describe_errors(self) -> str:
        items = self.body if isinstance(self.body, list) else [self.body]
        return "; ".join(
            f"{e.get('errorCode')}: {e.get('message')}" if isinstance(e, dict) else str(e) for e in items if e
        )


@dataclass
class CompositeResult:
    responses: list[SubResponse]

    def __getitem__(self, ref: Reference | str) -> SubResponse:
        key = ref.reference_id if isinstance(ref, Reference) else ref
        for r in self.responses:
            if r.reference_id == key:
                return r
        raise KeyError(f"no subrequest with referenceId {key!r}")

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.responses)

    def raise_for_errors(self, what: str = "composite request") -> CompositeResult:
        failures = [r for r in self.responses if not r.ok]
        if failures:
            raise CompositeError(what, failures)
        return self


class CompositeBuilder:
    """Subrequests for one ``/composite`` call (or one graph of ``/composite/graph``), in order.

    ``add`` returns a :class:`Reference`; pass ``ref.id`` into a later subrequest's body or path to chain
    them (create an Account, then a Contact with ``AccountId=acct.id``). Limits are checked as subrequests
    are added, so a builder that would be refused never reaches Salesforce.

    :param version: API version, e.g. ``"62.0"`` (``client.config.version``)
    :param all_or_none: roll every subrequest back when one fails
    :param limit: subrequests allowed (25 for composite, up to 500 nodes for a graph)
    :param max_heavy: query and sObject Collections subrequests allowed (5 in a composite; None: no cap)
    """

    def __init__(
        self,
        version: str,
        *,
        all_or_none: bool = False,
        limit: int = COMPOSITE_LIMIT,
        max_heavy: int | None = COMPOSITE_HEAVY_LIMIT,
    ) -> None:
        self.version = version
        self.all_or_none = all_or_none
        self.limit = limit
        self.max_heavy = max_heavy
        self.subrequests: list[dict[str, Any]] = []
        self._refs: set[str] = set()
        self._heavy = 0

    def __len__(self) -> int:
        return len(self.subrequests)

    def add(self, method: str, path: str, body: Any = None, reference_id: str | None = None) -> Reference:
        """One subrequest. ``path`` is relative to the versioned data root (``sobjects/Account``)."""
        if len(self.subrequests) >= self.limit:
            raise ValueError(f"a composite request takes at most {self.limit} subrequests; start another builder")
        ref = reference_id or f"ref{len(self.subrequests) + 1}"
        if not _REFERENCE_ID.match(ref):
            raise ValueError(f"referenceId {ref!r} must start with a letter and hold only letters, digits and _")
        if ref in self._refs:
            raise ValueError(f"referenceId {ref!r} is used twice in this composite request")
        url = f"/services/data/v{self.version}/{path.lstrip('/')}"
        heavy = path.lstrip("/").startswith(("query", "queryAll", "composite/sobjects"))
        if heavy and self.max_heavy is not None and self._heavy >= self.max_heavy:
            raise ValueError(f"a composite request takes at most {self.max_heavy} query or Collections subrequests")
        sub: dict[str, Any] = {"method": method.upper(), "url": url, "referenceId": ref}
        if body is not None:
            sub["body"] = body
        self.subrequests.append(sub)
        self._refs.add(ref)
        self._heavy += heavy
        return Reference(ref)

    def create(self, obj: str, fields: dict[str, Any], reference_id: str | None = None) -> Reference:
        return self.add("POST", f"sobjects/{_object(obj)}", fields, reference_id)

    def update(self, obj: str, record_id: str, fields: dict[str, Any], reference_id: str | None = None) -> Reference:
        return self.add("PATCH", f"sobjects/{_object(obj)}/{record_id}", fields, reference_id)

    def upsert(
        self, obj: str, external_id_field: str, value: str, fields: dict[str, Any], reference_id: str | None = None
    ) -> Reference:
        if "/" in str(value):
            raise ValueError(
                f"{obj}.{external_id_field} value {value!r} contains '/', which Salesforce refuses in a URL even "
                "encoded; upsert it with Collections.upsert (the value travels in the body there)"
            )
        value_path = quote(str(value), safe="")
        return self.add(
            "PATCH", f"sobjects/{_object(obj)}/{_object(external_id_field)}/{value_path}", fields, reference_id
        )

    def delete(self, obj: str, record_id: str, reference_id: str | None = None) -> Reference:
        return self.add("DELETE", f"sobjects/{_object(obj)}/{record_id}", None, reference_id)

    def get(self, obj: str, record_id: str, fields: Sequence[str] = (), reference_id: str | None = None) -> Reference:
        suffix = f"?fields={','.join(fields)}" if fields else ""
        return self.add("GET", f"sobjects/{_object(obj)}/{record_id}{suffix}", None, reference_id)

    def query(self, soql: str, reference_id: str | None = None) -> Reference:
        return self.add("GET", f"query?q={quote(soql, safe='')}", None, reference_id)

    def payload(self) -> list[dict[str, Any]]:
        if not self.subrequests:
            raise ValueError("a composite request needs at least one subrequest")
        return list(self.subrequests)

    def request(self) -> ApiRequest:
        body = {"allOrNone": self.all_or_none, "compositeRequest": self.payload()}
        # Subrequests may create records: never repeated once the request may have reached Salesforce.
        return ApiRequest("POST", f"/services/data/v{self.version}/composite", json=body, idempotent=False)


def parse_composite(body: Any, expected: int) -> list[SubResponse]:
    items = body.get("compositeResponse") if isinstance(body, dict) else None
    if not isinstance(items, list) or len(items) != expected:
        raise ValueError(f"a composite request of {expected} subrequests answered {body!r:.200}")
    return [
        SubResponse(
            str(r.get("referenceId")), int(r.get("httpStatusCode", 0)), r.get("body"), dict(r.get("httpHeaders") or {})
        )
        for r in items
    ]


def send_composite(client: SalesforceClient, builder: CompositeBuilder) -> CompositeResult:
    """One ``/composite`` call (one API call, whatever the number of subrequests)."""
    response = client.transport.send(builder.request())
    return CompositeResult(parse_composite(response.json(), len(builder)))


@dataclass
class GraphResult:
    graph_id: str
    successful: bool
    result: CompositeResult


class GraphBuilder:
    """Graphs for one ``/composite/graph`` call: each graph is atomic (all its nodes commit or none do),
    graphs are independent of each other; at most 75 graphs and 500 nodes in all."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.graphs: dict[str, CompositeBuilder] = {}

    def graph(self, graph_id: str) -> CompositeBuilder:
        if graph_id in self.graphs:
            raise ValueError(f"graphId {graph_id!r} is used twice")
        if len(self.graphs) >= GRAPH_LIMIT:
            raise ValueError(f"a graph request takes at most {GRAPH_LIMIT} graphs; start another builder")
        builder = CompositeBuilder(self.version, all_or_none=True, limit=GRAPH_NODE_LIMIT, max_heavy=None)
        self.graphs[graph_id] = builder
        return builder

    def request(self) -> ApiRequest:
        nodes = sum(len(g) for g in self.graphs.values())
        if not self.graphs or nodes == 0:
            raise ValueError("a graph request needs at least one graph with one node")
        if nodes > GRAPH_NODE_LIMIT:
            raise ValueError(f"a graph request takes at most {GRAPH_NODE_LIMIT} nodes in all, this one has {nodes}")
        body = {"graphs": [{"graphId": gid, "compositeRequest": g.payload()} for gid, g in self.graphs.items()]}
        return ApiRequest("POST", f"/services/data/v{self.version}/composite/graph", json=body, idempotent=False)


def send_graph(client: SalesforceClient, builder: GraphBuilder) -> dict[str, GraphResult]:
    """One ``/composite/graph`` call; results by graphId."""
    request = builder.request()
    body = client.transport.send(request).json()
    items = body.get("graphs") if isinstance(body, dict) else None
    if not isinstance(items, list) or len(items) != len(builder.graphs):
        raise ValueError(f"a graph request of {len(builder.graphs)} graphs answered {body!r:.200}")
    out: dict[str, GraphResult] = {}
    for item in items:
        gid = str(item.get("graphId"))
        responses = parse_composite(item.get("graphResponse") or {}, len(builder.graphs[gid]))
        out[gid] = GraphResult(gid, bool(item.get("isSuccessful")), CompositeResult(responses))
    return out


def json_value(value: Any) -> Any:
    """A value as Salesforce's JSON takes it (ISO dates and datetimes in UTC with milliseconds)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime):
        value = value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dtime):
        return value.strftime("%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, Decimal):
        return float(value)
    return value
