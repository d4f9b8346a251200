"""Composite resources (spec section 3): composite, batch, tree, graph and sObject Collections."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .dml import MultipleMatches, Writer
from .errors import ApiError, RecordError, json_parser_error, not_found
from .ids import to18
from .render import render_row
from .routing import Req, Resp, Router, split_url
from .schema import ObjectDef

if TYPE_CHECKING:
    from .app import Emulator

MAX_SUBREQUESTS = 25
MAX_QUERY_OR_COLLECTION_SUBREQUESTS = 5
MAX_COLLECTION_RECORDS = 200
MAX_TREE_RECORDS = 200
MAX_TREE_DEPTH = 5
MAX_TREE_TYPES = 5
MAX_GRAPHS = 75
MAX_GRAPH_NODES = 500
MAX_GRAPH_DEPTH = 15
MAX_GRAPH_FAILURES = 14
REFERENCE_ID_RE = re.compile(r"^[A-Za-z0-9_]+$")
REFERENCE_RE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")
ROLLED_BACK = "The transaction was rolled back since another operation in the same transaction failed."
ALL_OR_NONE_MESSAGE = "Record rolled back because not all records were valid and the request was using AllOrNone header"


class _Rollback(Exception):
    pass


class _UnresolvedReference(Exception):
    def __init__(self, expression: str, ref: str) -> None:
        super().__init__(expression)
        self.expression = expression
        self.ref = ref


def _lookup(value: Any, path: str) -> Any:
    for part in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path):
        key, index = part
        if key:
            if not isinstance(value, dict) or key not in value:
                raise KeyError(key)
            value = value[key]
        else:
            if not isinstance(value, list) or int(index) >= len(value):
                raise KeyError(index)
            value = value[int(index)]
    return value


def substitute(value: Any, results: dict[str, Any], failed: set[str]) -> Any:
    """Replace ``@{ref.path}`` references in strings (recursively in lists and dicts)."""
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            ref, path = m.group(1), m.group(2)
            if ref not in results or ref in failed:
                raise _UnresolvedReference(m.group(0), ref)
            try:
                found = _lookup(results[ref], path)
            except KeyError:
                raise _UnresolvedReference(m.group(0), ref) from None
            return str(found)

        whole = REFERENCE_RE.fullmatch(value)
        if whole:
            ref, path = whole.group(1), whole.group(2)
            if ref not in results or ref in failed:
                raise _UnresolvedReference(value, ref)
            try:
                return _lookup(results[ref], path)
            except KeyError:
                raise _UnresolvedReference(value, ref) from None
        return REFERENCE_RE.sub(repl, value)
    if isinstance(value, list):
        return [substitute(v, results, failed) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, results, failed) for k, v in value.items()}
    return value


def _is_query_or_collection(url: str) -> bool:
    parts = split_url(url)
    if parts is None:
        return False
    path = parts[1]
    return path.startswith(("query", "queryAll", "composite/sobjects"))


def register(router: Router, em: Emulator) -> None:
    def sub_dispatch(parent: Req, method: str, url: str, body: Any) -> Resp:
        parts = split_url(url)
        if parts is None:
            return Resp.error(not_found())
        version, path, query = parts
        sub = Req(
            method=method.upper(),
            path=path,
            version=version,
            query=query,
            headers=dict(parent.headers),
            body=json.dumps(body).encode() if body is not None else b"",
            user_id=parent.user_id,
            base_url=parent.base_url,
        )
        sub.headers.pop("content-length", None)
        if path.startswith(("composite", "jobs")) and not path.startswith("composite/sobjects"):
            return Resp.error(ApiError(400, "INVALID_API_INPUT", f"{path} is not supported in a composite request"))
        return router.dispatch(sub)

    def run_composite(req: Req, subrequests: list[dict[str, Any]], all_or_none: bool) -> list[dict[str, Any]]:
        """Run subrequests in order with references; with all_or_none, any failure rolls back all."""
        results: dict[str, Any] = {}
        failed: set[str] = set()
        out: list[dict[str, Any]] = []
        try:
            with em.store.transaction():
                for sub in subrequests:
                    ref_id = sub["referenceId"]
                    try:
                        url = substitute(sub["url"], results, failed)
                        body = substitute(sub.get("body"), results, failed)
                    except _UnresolvedReference as exc:
                        failed.add(ref_id)
                        out.append(
                            {
                                "body": [
                                    {
                                        "errorCode": "PROCESSING_HALTED",
                                        "message": f"Invalid reference specified. No value for {exc.expression} found "
                                        f"in {exc.ref}. Provided referenceId ('{exc.ref}') must be a valid "
                                        f"reference and must precede this subrequest.",
                                    }
                                ],
                                "httpHeaders": {},
                                "httpStatusCode": 400,
                                "referenceId": ref_id,
                            }
                        )
                        if all_or_none:
                            raise _Rollback() from None
                        continue
                    resp = sub_dispatch(req, sub["method"], url, body)
                    parsed = resp.parsed()
                    headers = {k: v for k, v in resp.headers.items() if k in ("Location", "ETag", "Last-Modified")}
                    out.append(
                        {"body": parsed, "httpHeaders": headers, "httpStatusCode": resp.status, "referenceId": ref_id}
                    )
                    if resp.status >= 400:
                        failed.add(ref_id)
                        if all_or_none:
                            raise _Rollback()
                    else:
                        results[ref_id] = parsed
        except _Rollback:
            halted = {
                "body": [{"errorCode": "PROCESSING_HALTED", "message": ROLLED_BACK}],
                "httpHeaders": {},
                "httpStatusCode": 400,
            }
            culprit = len(out) - 1
            final = []
            for i, sub in enumerate(subrequests):
                if i == culprit:
                    final.append(out[i])
                else:
                    final.append({**halted, "referenceId": sub["referenceId"]})
            return final
        return out

    def validate_subrequests(subs: Any, limit: int = MAX_SUBREQUESTS) -> list[dict[str, Any]]:
        if not isinstance(subs, list) or not subs:
            raise ApiError(400, "INVALID_API_INPUT", "compositeRequest must contain at least one subrequest")
        if len(subs) > limit:
            raise ApiError(
                400,
                "INVALID_API_INPUT",
                f"The number of subrequests exceeds the limit of {limit}: {len(subs)} were sent",
            )
        seen: set[str] = set()
        for sub in subs:
            if not isinstance(sub, dict) or not {"method", "url", "referenceId"} <= set(sub):
                raise ApiError(400, "INVALID_API_INPUT", "Each subrequest needs method, url and referenceId")
            ref = str(sub["referenceId"])
            if not REFERENCE_ID_RE.match(ref):
                raise ApiError(
                    400,
                    "INVALID_API_INPUT",
                    f"Invalid referenceId: {ref}. A referenceId can contain only letters, digits and underscores.",
                )
            if ref in seen:
                raise ApiError(400, "INVALID_API_INPUT", f"Duplicate referenceId provided in the request: {ref}")
            seen.add(ref)
        heavy = sum(1 for s in subs if _is_query_or_collection(str(s["url"])))
        if heavy > MAX_QUERY_OR_COLLECTION_SUBREQUESTS:
            raise ApiError(
                400,
                "INVALID_API_INPUT",
                f"A composite request can contain at most "
                f"{MAX_QUERY_OR_COLLECTION_SUBREQUESTS} query or sObject "
                f"Collections subrequests: {heavy} were sent",
            )
        return subs

    def composite(req: Req) -> Resp:
        body = req.json_object()
        subs = validate_subrequests(body.get("compositeRequest"))
        out = run_composite(req, subs, bool(body.get("allOrNone", False)))
        return Resp.json(200, {"compositeResponse": out})

    def batch(req: Req) -> Resp:
        body = req.json_object()
        subs = body.get("batchRequests")
        if not isinstance(subs, list) or not subs:
            raise ApiError(400, "INVALID_API_INPUT", "batchRequests must contain at least one subrequest")
        if len(subs) > MAX_SUBREQUESTS:
            raise ApiError(
                400,
                "INVALID_API_INPUT",
                f"The number of batch requests exceeds the limit of {MAX_SUBREQUESTS}: {len(subs)}",
            )
        halt = bool(body.get("haltOnError", False))
        results: list[dict[str, Any]] = []
        halted = False
        for sub in subs:
            if halted:
                results.append(
                    {
                        "statusCode": 412,
                        "result": [
                            {"errorCode": "BATCH_PROCESSING_HALTED", "message": "Batch processing halted per request"}
                        ],
                    }
                )
                continue
            resp = sub_dispatch(req, str(sub.get("method", "GET")), str(sub.get("url", "")), sub.get("richInput"))
            results.append({"statusCode": resp.status, "result": resp.parsed()})
            if resp.status >= 400 and halt:
                halted = True
        has_errors = any(r["statusCode"] >= 400 for r in results)
        return Resp.json(200, {"hasErrors": has_errors, "results": results}, api_calls=len(subs))

    # --- tree -----------------------------------------------------------------------------------

    def tree(req: Req) -> Resp:
        root = em.org.get(req.params["obj"])
        if root is None:
            raise not_found()
        body = req.json_object()
        records = body.get("records")
        if not isinstance(records, list) or not records:
            raise ApiError(400, "INVALID_API_INPUT", "records must contain at least one record")
        flat: list[tuple[ObjectDef, dict[str, Any], str, str | None, str | None]] = []
        types: set[str] = set()
        refs: set[str] = set()

        def walk(obj: ObjectDef, recs: list[Any], depth: int, parent_ref: str | None, fk: str | None) -> None:
            if depth > MAX_TREE_DEPTH:
                raise ApiError(400, "INVALID_API_INPUT", f"Tree depth exceeds the limit of {MAX_TREE_DEPTH}")
            for rec in recs:
                attrs = rec.get("attributes") or {}
                if str(attrs.get("type", "")).lower() != obj.name.lower():
                    raise ApiError(
                        400,
                        "INVALID_API_INPUT",
                        f"Record type {attrs.get('type')} does not match the expected type {obj.name}",
                    )
                ref = attrs.get("referenceId")
                if not ref or not REFERENCE_ID_RE.match(str(ref)) or ref in refs:
                    raise ApiError(400, "INVALID_API_INPUT", f"Missing, invalid or duplicate referenceId: {ref}")
                refs.add(str(ref))
                types.add(obj.name)
                fields: dict[str, Any] = {}
                nested: list[tuple[ObjectDef, list[Any], str]] = []
                for key, value in rec.items():
                    if key == "attributes":
                        continue
                    child_rel = obj.child_relationship(key)
                    if child_rel is not None and isinstance(value, dict):
                        nested.append(
                            (em.org.objects[child_rel.child_object], value.get("records") or [], child_rel.field)
                        )
                    else:
                        fields[key] = value
                flat.append((obj, fields, str(ref), parent_ref, fk))
                for child_obj, child_recs, child_fk in nested:
                    walk(child_obj, child_recs, depth + 1, str(ref), child_fk)

        walk(root, records, 1, None, None)
        if len(flat) > MAX_TREE_RECORDS:
            raise ApiError(
                400,
                "INVALID_API_INPUT",
                f"A tree request can contain at most {MAX_TREE_RECORDS} records: {len(flat)} were sent",
            )
        if len(types) > MAX_TREE_TYPES:
            raise ApiError(400, "INVALID_API_INPUT", f"A tree request can contain at most {MAX_TREE_TYPES} types")
        writer = em.writer(req)
        ids: dict[str, str] = {}
        errors: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        try:
            with em.store.transaction():
                for obj, fields, ref, parent_ref, fk in flat:
                    if parent_ref is not None:
                        if parent_ref not in ids:
                            continue
                        assert fk is not None
                        fields = {**fields, fk: ids[parent_ref]}
                    try:
                        ids[ref] = writer.create(obj, fields)
                        results.append({"referenceId": ref, "id": ids[ref]})
                    except RecordError as exc:
                        errors.append({"referenceId": ref, "errors": [exc.result_entry()]})
                if errors:
                    raise _Rollback()
        except _Rollback:
            return Resp.json(400, {"hasErrors": True, "results": errors})
        return Resp.json(201, {"hasErrors": False, "results": results})

    # --- graph ----------------------------------------------------------------------------------

    def graph(req: Req) -> Resp:
        body = req.json_object()
        graphs = body.get("graphs")
        if not isinstance(graphs, list) or not graphs:
            raise ApiError(400, "INVALID_API_INPUT", "graphs must contain at least one graph")
        if len(graphs) > MAX_GRAPHS:
            raise ApiError(400, "INVALID_API_INPUT", f"A graph request can contain at most {MAX_GRAPHS} graphs")
        total = 0
        for g in graphs:
            subs = g.get("compositeRequest") or []
            validate_subrequests(subs, limit=MAX_GRAPH_NODES)
            total += len(subs)
            depth = _graph_depth(subs)
            if depth > MAX_GRAPH_DEPTH:
                raise ApiError(
                    400,
                    "INVALID_API_INPUT",
                    f"Graph {g.get('graphId')} has depth {depth}; the limit is {MAX_GRAPH_DEPTH}",
                )
        if total > MAX_GRAPH_NODES:
            raise ApiError(
                400,
                "INVALID_API_INPUT",
                f"A graph request can contain at most {MAX_GRAPH_NODES} nodes in total: {total} were sent",
            )
        out = []
        failures = 0
        for g in graphs:
            subs = g["compositeRequest"]
            if failures >= MAX_GRAPH_FAILURES:
                responses = [
                    {
                        "body": [
                            {"errorCode": "PROCESSING_HALTED", "message": "Processing halted: too many graphs failed"}
                        ],
                        "httpHeaders": {},
                        "httpStatusCode": 400,
                        "referenceId": s["referenceId"],
                    }
                    for s in subs
                ]
                ok = False
            else:
                responses = run_composite(req, subs, True)
                ok = all(r["httpStatusCode"] < 400 for r in responses)
            failures += 0 if ok else 1
            out.append(
                {"graphId": g.get("graphId"), "isSuccessful": ok, "graphResponse": {"compositeResponse": responses}}
            )
        return Resp.json(200, {"graphs": out})

    # --- sObject Collections ----------------------------------------------------------------------

    def collection_records(req: Req) -> tuple[list[dict[str, Any]], bool]:
        body = req.json_object()
        records = body.get("records")
        if not isinstance(records, list) or not records:
            raise ApiError(400, "REQUIRED_FIELD_MISSING", "At least 1 record is required")
        if len(records) > MAX_COLLECTION_RECORDS:
            raise ApiError(
                400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call"
            )
        if not all(isinstance(r, dict) for r in records):
            raise json_parser_error("Each record must be a JSON object")
        return records, bool(body.get("allOrNone", False))

    def run_records(items: list[Any], all_or_none: bool, op: Callable[[Any], dict[str, Any]]) -> list[dict[str, Any]]:
        """Apply ``op`` to each item; each returns a result dict or raises RecordError."""
        results: list[dict[str, Any]] = []
        try:
            with em.store.transaction():
                for item in items:
                    try:
                        with em.store.transaction():
                            results.append(op(item))
                    except RecordError as exc:
                        results.append({"success": False, "errors": [exc.result_entry()], "_failed": True})
                if all_or_none and any(r.get("_failed") for r in results):
                    raise _Rollback()
        except _Rollback:
            rolled = {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": ALL_OR_NONE_MESSAGE, "fields": []}
            final = []
            for r in results:
                if r.get("_failed"):
                    final.append({k: v for k, v in r.items() if k != "_failed"})
                else:
                    entry: dict[str, Any] = {"success": False, "errors": [rolled]}
                    if "created" in r:
                        entry["created"] = r["created"]
                    final.append(entry)
            return final
        return [{k: v for k, v in r.items() if k != "_failed"} for r in results]

    def record_type(rec: dict[str, Any]) -> ObjectDef:
        attrs = rec.get("attributes")
        name = attrs.get("type") if isinstance(attrs, dict) else None
        if not name:
            raise RecordError("INVALID_TYPE", "Must specify a type in attributes for each record", [])
        obj = em.org.get(str(name))
        if obj is None:
            raise RecordError("INVALID_TYPE", f"sObject type '{name}' is not supported.", [])
        return obj

    def collections_create(req: Req) -> Resp:
        records, all_or_none = collection_records(req)
        writer = em.writer(req)

        def op(rec: dict[str, Any]) -> dict[str, Any]:
            obj = record_type(rec)
            if obj.is_event:
                event_id, event_uuid = writer.publish(obj, rec)
                return {
                    "id": event_id,
                    "success": True,
                    "errors": [{"statusCode": "OPERATION_ENQUEUED", "message": event_uuid, "fields": []}],
                }
            if any(k.lower() == "id" for k in rec):
                raise RecordError("INVALID_FIELD", "Record ID: cannot specify Id in an insert call", [])
            return {"id": writer.create(obj, rec), "success": True, "errors": []}

        return Resp.json(200, run_records(records, all_or_none, op))

    def collections_update(req: Req) -> Resp:
        records, all_or_none = collection_records(req)
        writer = em.writer(req)
        ids = [next((v for k, v in rec.items() if k.lower() == "id"), None) for rec in records]
        counts: dict[str, int] = {}
        for value in ids:
            if value:
                counts[to18(str(value)) or str(value)] = counts.get(to18(str(value)) or str(value), 0) + 1

        def op(rec: dict[str, Any]) -> dict[str, Any]:
            record_id = next((v for k, v in rec.items() if k.lower() == "id"), None)
            if not record_id:
                raise RecordError("MISSING_ARGUMENT", "Id not specified in an update call", [])
            if counts.get(to18(str(record_id)) or str(record_id), 0) > 1:  # every copy fails, none applies
                raise RecordError("DUPLICATE_VALUE", f"Duplicate id in list: {record_id}", [])
            obj = record_type(rec)
            body = {k: v for k, v in rec.items() if k.lower() != "id"}
            return {"id": writer.update(obj, str(record_id), body), "success": True, "errors": []}

        return Resp.json(200, run_records(records, all_or_none, op))

    def collections_delete(req: Req) -> Resp:
        raw = req.arg("ids") or ""
        ids = [i for i in raw.split(",") if i]
        if not ids:
            raise ApiError(400, "MISSING_ARGUMENT", "ids parameter is required")
        if len(ids) > MAX_COLLECTION_RECORDS:
            raise ApiError(
                400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call"
            )
        all_or_none = (req.arg("allOrNone") or "false").lower() == "true"
        writer = em.writer(req)

        def op(record_id: str) -> dict[str, Any]:
            normal = to18(record_id)
            obj = em.org.by_prefix(normal[:3]) if normal else None
            if obj is None or normal is None:
                raise RecordError("MALFORMED_ID", f"malformed id {record_id}", [])
            return {"id": writer.delete(obj, normal), "success": True, "errors": []}

        results = run_records(ids, all_or_none, op)
        for record_id, result in zip(ids, results, strict=True):
            result.setdefault("id", to18(record_id) or record_id)
        ordered = [{"id": r["id"], "success": r["success"], "errors": r["errors"]} for r in results]
        return Resp.json(200, ordered)

    def collections_retrieve(req: Req) -> Resp:
        obj = em.org.get(req.params["obj"])
        if obj is None:
            raise not_found()
        if req.method == "POST":
            body = req.json_object()
            ids, names = body.get("ids") or [], body.get("fields") or []
        else:
            ids = [i for i in (req.arg("ids") or "").split(",") if i]
            names = [n for n in (req.arg("fields") or "").split(",") if n]
        if not ids or not names:
            raise ApiError(400, "MISSING_ARGUMENT", "ids and fields are required")
        if len(ids) > 2000:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", "cannot retrieve more than 2000 records in one call")
        fields = []
        for name in names:
            f = obj.field(str(name))
            if f is None:
                raise ApiError(400, "INVALID_FIELD", f"No such column '{name}' on entity '{obj.name}'.")
            fields.append(f)
        rendered = []
        for record_id in ids:
            normal = to18(str(record_id))
            row = em.store.get(obj, normal) if normal else None
            rendered.append("null" if row is None or row["IsDeleted"] else render_row(obj, row, req.version, fields))
        return Resp(200, "[" + ",".join(rendered) + "]")

    def collections_upsert(req: Req) -> Resp:
        if req.version_float < 46:
            raise not_found()
        obj = em.org.get(req.params["obj"])
        if obj is None:
            raise not_found()
        ext = obj.field(req.params["field"])
        if ext is None or not (ext.external_id or ext.id_lookup):
            raise not_found(f"Provided external ID field does not exist or is not accessible: {req.params['field']}")
        records, all_or_none = collection_records(req)
        for rec in records:
            attrs = rec.get("attributes")
            rtype = attrs.get("type") if isinstance(attrs, dict) else None
            if rtype is not None and str(rtype).lower() != obj.name.lower():
                raise ApiError(
                    400,
                    "INVALID_TYPE",
                    f"Record type {rtype} does not match the upsert type {obj.name}; "
                    f"an upsert call can contain only one type",
                )
        key_counts: dict[str, int] = {}
        for rec in records:
            value = next((v for k, v in rec.items() if k.lower() == ext.name.lower()), None)
            if value is not None:
                key = str(value).lower()
                key_counts[key] = key_counts.get(key, 0) + 1
        writer: Writer = em.writer(req)

        def op(rec: dict[str, Any]) -> dict[str, Any]:
            value = next((v for k, v in rec.items() if k.lower() == ext.name.lower()), None)
            if value is not None and key_counts.get(str(value).lower(), 0) > 1:
                raise RecordError("DUPLICATE_EXTERNAL_ID", f"Duplicate external id specified: {value}", [ext.name])
            try:
                result = writer.upsert(obj, ext.name, None, rec)
            except MultipleMatches as exc:
                raise RecordError(
                    "DUPLICATE_EXTERNAL_ID",
                    f"{ext.name}: more than one record found for external id field: {exc.ids}",
                    [ext.name],
                ) from None
            return {"id": result.id, "success": True, "errors": [], "created": result.created}

        return Resp.json(200, run_records(records, all_or_none, op))

    router.add("composite", POST=composite)
    router.add("composite/batch", POST=batch)
    router.add("composite/tree/{obj}", POST=tree)
    router.add("composite/graph", POST=graph)
    router.add("composite/sobjects", POST=collections_create, PATCH=collections_update, DELETE=collections_delete)
    router.add("composite/sobjects/{obj}", GET=collections_retrieve, POST=collections_retrieve)
    router.add("composite/sobjects/{obj}/{field}", PATCH=collections_upsert)


def _graph_depth(subs: list[dict[str, Any]]) -> int:
    """Longest chain of ``@{ref}`` dependencies among a graph's nodes."""
    deps: dict[str, set[str]] = {}
    for sub in subs:
        text = str(sub.get("url", "")) + str(sub.get("body", ""))
        deps[str(sub["referenceId"])] = {m.group(1) for m in REFERENCE_RE.finditer(text)}
    memo: dict[str, int] = {}

    def depth(ref: str, stack: frozenset[str]) -> int:
        if ref in memo:
            return memo[ref]
        if ref in stack:
            return 0
        value = 1 + max((depth(d, stack | {ref}) for d in deps.get(ref, ()) if d in deps), default=0)
        memo[ref] = value
        return value

    return max((depth(r, frozenset()) for r in deps), default=0)
