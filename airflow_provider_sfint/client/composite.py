"""sObject Collections: create, update, upsert, delete and retrieve in chunks of 200, a bounded number at once.

Request builders and the result parser are plain functions; :class:`Collections` sends them through a
:class:`SalesforceClient` (same session, retries and call count). Upserts and updates are PATCH, so a
retried request never creates twice; creates are POST and are retried only when they provably never
left this machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .auth import ClientConfig
from .rest import SalesforceClient, _object
from .transport import ApiRequest

COLLECTION_LIMIT = 200
TRANSIENT_RECORD_ERRORS = frozenset({"UNABLE_TO_LOCK_ROW", "API_TEMPORARILY_UNAVAILABLE", "SERVER_UNAVAILABLE"})


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
        return not self.success and self.error_code in TRANSIENT_RECORD_ERRORS

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
