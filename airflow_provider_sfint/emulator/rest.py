"""REST resources (spec section 2): versions, resources, query, describe, sObject CRUD, limits."""

from __future__ import annotations

import hashlib
import json
from email.utils import format_datetime, parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from .errors import ApiError, RecordError, not_found
from .ids import to18
from .query import clamp_batch_size
from .render import render_row
from .routing import Req, Resp, Router
from .schema import ObjectDef

if TYPE_CHECKING:
    from .app import Emulator

RELEASES = ("Winter", "Spring", "Summer")
#: 7.0-20.0 retired in Summer '22 and 21.0-30.0 in Summer '25: REST answers 410, SOAP UNSUPPORTED_API_VERSION
#: (Salesforce knowledge article 000354473)
RETIRED_BELOW = 31
MIN_VERSION = RETIRED_BELOW
MAX_VERSION = 63
RETIRED_MESSAGE = "API version {version} was retired; use version {min}.0 or later"


def release_label(major: int) -> str:
    """Salesforce's release name for an API version: 59 -> "Winter '24", 60 -> "Spring '24"."""
    offset = major - 59
    year = 24 + offset // 3
    return f"{RELEASES[offset % 3]} '{year:02d}"


def versions() -> list[dict[str, str]]:
    return [
        {"label": release_label(v), "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
        for v in range(MIN_VERSION, MAX_VERSION + 1)
    ]


def retired_version(version: str) -> bool:
    """A version Salesforce has retired (``7.0`` to ``30.0``): answered 410 GONE, not 404."""
    major, _, minor = version.partition(".")
    return major.isdigit() and minor == "0" and 7 <= int(major) < RETIRED_BELOW


def supported_version(version: str) -> bool:
    try:
        major, minor = version.split(".")
        return minor == "0" and MIN_VERSION <= int(major) <= MAX_VERSION
    except ValueError:
        return False


#: "Do not specify Id or an external ID field in the request body or an error is generated" (REST API guide up
#: to v55.0); later guides drop the sentence, so from v56.0 the emulator only refuses a value that contradicts
#: the URL. The error code and message are the emulator's (no source gives them).
UPSERT_BODY_STRICT_UNTIL = 55.0


def _check_upsert_body(req: Req, obj: ObjectDef, field_name: str, value: str | None, body: dict[str, Any]) -> None:
    for key, given in body.items():
        lowered = key.lower()
        if lowered not in ("id", field_name.lower()):
            continue
        same = lowered == field_name.lower() and given is not None and str(given).lower() == str(value).lower()
        if req.version_float <= UPSERT_BODY_STRICT_UNTIL or not same:
            found = obj.field(key)
            name = found.name if found is not None else key
            raise ApiError(
                400,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"{obj.name}.{name} must not be in the body of an upsert by {field_name}: the URL gives the key "
                f"({value!r})",
                fields=[name],
            )


def register(router: Router, em: Emulator) -> None:
    org = em.org

    def obj_or_404(name: str) -> ObjectDef:
        obj = org.get(name)
        if obj is None:
            raise not_found()
        return obj

    def resources(req: Req) -> Resp:
        base = f"/services/data/v{req.version}"
        names = [
            "tooling",
            "metadata",
            "eclair",
            "folders",
            "prechatForms",
            "jobs",
            "chatter",
            "tabs",
            "appMenu",
            "quickActions",
            "queryAll",
            "commerce",
            "wave",
            "analytics",
            "search",
            "identity",
            "composite",
            "parameterizedSearch",
            "theme",
            "nouns",
            "event",
            "serviceTemplates",
            "recent",
            "connect",
            "licensing",
            "limits",
            "process",
            "async-queries",
            "query",
            "match",
            "emailConnect",
            "compactLayouts",
            "knowledgeManagement",
            "sobjects",
            "actions",
            "support",
        ]
        body = {n: f"{base}/{n}" for n in names}
        body["identity"] = f"{req.base_url}/id/{em.org_id}/{req.user_id}"
        return Resp.json(200, body)

    def limits(req: Req) -> Resp:
        return Resp.json(200, em.limits.body())

    def query(req: Req, include_deleted: bool) -> Resp:
        soql = req.arg("q")
        if soql is None:
            raise ApiError(400, "MALFORMED_QUERY", "The q parameter is required for a query")
        batch = clamp_batch_size(req.headers.get("sforce-query-options"))
        return Resp(200, em.queries.run(soql, req.version, include_deleted, batch, user=req.user_id))

    def query_more(req: Req) -> Resp:
        batch = clamp_batch_size(req.headers.get("sforce-query-options"))
        return Resp(200, em.queries.more(req.params["locator"], req.version, batch))

    def describe_global(req: Req) -> Resp:
        return Resp.json(
            200,
            {
                "encoding": "UTF-8",
                "maxBatchSize": 200,
                "sobjects": [o.global_entry(req.version) for o in org.objects.values()],
            },
        )

    def describe(req: Req) -> Resp:
        obj = obj_or_404(req.params["obj"])
        text = json.dumps(obj.describe(req.version), separators=(",", ":"))
        etag = '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'
        last_modified = format_datetime(em.schema_loaded_at, usegmt=True)
        headers = {"ETag": etag, "Last-Modified": last_modified}
        match = req.headers.get("if-none-match")
        if match is not None:  # RFC 9110: with If-None-Match present, If-Modified-Since is not evaluated
            return Resp(304, None, headers) if match == etag else Resp(200, text, headers)
        since = req.headers.get("if-modified-since")
        if since:
            try:
                if parsedate_to_datetime(since) >= em.schema_loaded_at.replace(microsecond=0):
                    return Resp(304, None, headers)
            except (TypeError, ValueError):
                pass
        return Resp(200, text, headers)

    def sobject_info(req: Req) -> Resp:
        obj = obj_or_404(req.params["obj"])
        return Resp.json(200, {"objectDescribe": obj.global_entry(req.version), "recentItems": []})

    def create(req: Req) -> Resp:
        obj = obj_or_404(req.params["obj"])
        body = req.json_object()
        writer = em.writer(req)
        try:
            if obj.is_event:
                event_id, event_uuid = writer.publish(obj, body)
                return Resp.json(
                    201,
                    {
                        "id": event_id,
                        "success": True,
                        "errors": [{"statusCode": "OPERATION_ENQUEUED", "message": event_uuid, "fields": []}],
                    },
                )
            with em.store.transaction():
                record_id = writer.create(obj, body)
        except RecordError as exc:
            raise exc.as_api_error() from None
        return Resp.json(
            201,
            {"id": record_id, "success": True, "errors": []},
            headers={"Location": f"/services/data/v{req.version}/sobjects/{obj.name}/{record_id}"},
        )

    def fields_param(obj: ObjectDef, req: Req) -> list[Any] | None:
        raw = req.arg("fields")
        if not raw:
            return None
        fields = []
        for name in raw.split(","):
            f = obj.field(name.strip())
            if f is None:
                raise ApiError(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{name.strip()}' on entity '{obj.name}'. If you are attempting to "
                    f"use a custom field, be sure to append the '__c' after the custom field name. "
                    f"Please reference your WSDL or the describe call for the appropriate names.",
                )
            fields.append(f)
        return fields

    def load_by_id(obj: ObjectDef, raw_id: str) -> dict[str, Any]:
        record_id = to18(raw_id)
        row = em.store.get(obj, record_id) if record_id else None
        if row is None:
            raise not_found()
        if row["IsDeleted"]:
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        return row

    def looks_like_id(obj: ObjectDef, segment: str) -> bool:
        normal = to18(segment)
        return normal is not None and normal.startswith(obj.key_prefix)

    def record(req: Req) -> Resp:
        obj = obj_or_404(req.params["obj"])
        segment = req.params["id"]
        if not looks_like_id(obj, segment):
            if req.method == "POST" and segment.lower() == "id":
                return upsert_common(req, obj, "Id", None)
            raise not_found(f"Provided external ID field does not exist or is not accessible: {segment}")
        if req.method == "GET":
            row = load_by_id(obj, segment)
            return Resp(200, render_row(obj, row, req.version, fields_param(obj, req)))
        writer = em.writer(req)
        load_by_id(obj, segment)
        try:
            with em.store.transaction():
                if req.method == "PATCH":
                    writer.update(obj, segment, req.json_object())
                else:
                    writer.delete(obj, segment)
        except RecordError as exc:
            raise exc.as_api_error() from None
        return Resp(204)

    def upsert_common(req: Req, obj: ObjectDef, field_name: str, value: str | None) -> Resp:
        from .dml import MultipleMatches

        writer = em.writer(req)
        body = req.json_object()
        _check_upsert_body(req, obj, field_name, value, body)
        try:
            with em.store.transaction():
                result = writer.upsert(obj, field_name, value, body)
        except MultipleMatches as exc:
            return Resp.json(300, [f"/services/data/v{req.version}/sobjects/{obj.name}/{i}" for i in exc.ids])
        except RecordError as exc:
            raise exc.as_api_error() from None
        if result.created:
            return Resp.json(
                201,
                {"id": result.id, "success": True, "errors": [], "created": True},
                headers={"Location": f"/services/data/v{req.version}/sobjects/{obj.name}/{result.id}"},
            )
        if req.version_float < 46 or em.settings.get("upsert_update_204"):
            return Resp(204)
        return Resp.json(200, {"id": result.id, "success": True, "errors": [], "created": False})

    def by_external_id(req: Req) -> Resp:
        obj = obj_or_404(req.params["obj"])
        field_name, value = req.params["field"], req.params["value"]
        f = obj.field(field_name)
        if f is None or not (f.external_id or f.id_lookup):
            raise not_found(f"Provided external ID field does not exist or is not accessible: {field_name}")
        if req.method == "PATCH":
            return upsert_common(req, obj, f.name, value)
        matches = em.store.find(obj, f.name, to18(value) if f.type == "id" else value)
        if len(matches) > 1:
            return Resp.json(300, [f"/services/data/v{req.version}/sobjects/{obj.name}/{i}" for i in matches])
        if not matches:
            raise not_found()
        if req.method == "GET":
            row = load_by_id(obj, matches[0])
            return Resp(200, render_row(obj, row, req.version, fields_param(obj, req)))
        try:
            with em.store.transaction():
                em.writer(req).delete(obj, matches[0])
        except RecordError as exc:
            raise exc.as_api_error() from None
        return Resp(204)

    router.add("", GET=resources)
    router.add("limits", GET=limits)
    router.add("query", GET=lambda req: query(req, False))
    router.add("queryAll", GET=lambda req: query(req, True))
    router.add("query/{locator}", GET=query_more)
    router.add("queryAll/{locator}", GET=query_more)
    router.add("sobjects", GET=describe_global)
    router.add("sobjects/{obj}", GET=sobject_info, POST=create)
    router.add("sobjects/{obj}/describe", GET=describe)
    router.add("sobjects/{obj}/{id}", GET=record, PATCH=record, DELETE=record, POST=record)
    router.add("sobjects/{obj}/{field}/{value}", GET=by_external_id, PATCH=by_external_id, DELETE=by_external_id)
