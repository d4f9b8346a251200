"""The emulator's admin API under ``/__emulator__/`` (not part of Salesforce).

Reset and seed the org, load rows fast, set faults, limits, the clock and auth settings, mint tokens,
and read counters, events and stored records. No authentication: it is a loopback test bed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.responses import Response

from .clock import storage_datetime
from .errors import ApiError, RecordError
from .eventbus import replay_bytes

if TYPE_CHECKING:
    from .app import Emulator


def _ok(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value, default=str), status_code=status, media_type="application/json")


def _bad(message: str, status: int = 400) -> Response:
    return _ok({"error": message}, status)


async def handle(em: Emulator, request: Request) -> Response:
    path = request.url.path[len("/__emulator__") :].strip("/")
    method = request.method
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        return _bad(f"request body is not JSON: {exc}")
    try:
        return await anyio.to_thread.run_sync(_dispatch, em, method, path, body, dict(request.query_params))
    except (ValueError, TypeError, KeyError) as exc:
        return _bad(str(exc))
    except ApiError as exc:
        return _ok(exc.body(), exc.status)
    except RecordError as exc:
        return _bad(f"{exc.status_code}: {exc.message}")


def _dispatch(em: Emulator, method: str, path: str, body: dict[str, Any], query: dict[str, str]) -> Response:
    from .datagen import generate

    parts = path.split("/") if path else []
    head = parts[0] if parts else ""
    if head == "health":
        return _ok({"ok": True, "org_id": em.org_id, "objects": sorted(em.org.objects)})
    if head == "reset" and method == "POST":
        em.reset(
            body.get("seed", "empty"), demo_records=body.get("records"), random_seed=int(body.get("random_seed", 42))
        )
        return _ok({"ok": True})
    if head == "seed" and method == "POST":
        counts = body.get("counts") or {}
        done = {}
        for name, n in counts.items():
            obj = em.org.get(name)
            if obj is None or obj.is_event:
                return _bad(f"unknown object {name!r}")
            done[obj.name] = generate(
                em,
                obj,
                int(n),
                seed=int(body.get("seed", 42)),
                deleted_share=float(body.get("deleted_share", 0.02)),
                hostile=bool(body.get("hostile", False)),
                burst_share=float(body.get("burst_share", 0.0)),
            )
        return _ok({"inserted": done})
    if head == "load" and method == "POST" and len(parts) == 2:
        return _ok(_load(em, parts[1], body.get("records") or []))
    if head == "faults":
        if method == "PUT":
            em.faults.configure(body)
        elif method == "DELETE":
            em.faults.clear()
        return _ok(em.faults.as_dict())
    if head == "counters":
        if method == "POST" and parts[1:] == ["reset"]:
            em.counters.clear()
            return _ok({"ok": True})
        return _ok(
            {
                "bulk_jobs": len(em.bulk.jobs),
                "bulk_batches": em.limits.bulk_batches_used,
                "requests": dict(em.counters),
                "api_usage": em.limits.api_used,
                "api_max": em.limits.api_max,
                "token_calls": em.auth.token_calls,
                "events": sum(len(em.events.log.of(o.name)) for o in em.org.objects.values() if o.is_event),
                "requests_in_flight": len(em.limits.in_flight),
            }
        )
    if head == "events":
        return _ok(_platform_events(em, query.get("event"), int(query.get("after", 0))))
    if head == "pubsub":
        return _ok(_pubsub(em, method, parts[1:], body))
    if head == "limits":
        if method == "PUT":
            em.limits.update(body)
        return _ok(em.limits.settings())
    if head == "clock":
        if method == "PUT":
            if "now" in body:
                from .app import parse_datetime_arg

                em.clock.set_now(parse_datetime_arg(str(body["now"])))
            elif "offset_seconds" in body:
                em.clock.offset = float(body["offset_seconds"])
        return _ok({"now": storage_datetime(em.clock.now()), "offset_seconds": em.clock.offset})
    if head == "bulk" and parts[1:] == ["jobs"]:
        return _ok(em.bulk.timings())
    if head == "bulk":
        if method == "PUT":
            settings = em.bulk.settings
            unknown = set(body) - set(vars(settings))
            if unknown:
                raise ValueError(
                    f"unknown bulk settings: {', '.join(sorted(unknown))}; known: {', '.join(sorted(vars(settings)))}"
                )
            for key, value in body.items():
                setattr(settings, key, value)
        return _ok(vars(em.bulk.settings))
    if head == "timing":
        if method == "PUT":
            em.timing.update(body)
        return _ok({"profile": em.profile.name, **em.timing.as_dict()})
    if head == "profile":
        if method == "PUT":
            from .profile import get_profile

            em.apply_profile(get_profile(str(body.get("name", ""))))
        return _ok({"profile": em.profile.name, "daily_api_requests": em.limits.api_max, "timing": em.timing.as_dict()})
    if head == "settings":
        if method == "PUT":
            _settings(em, body)
        s = em.auth.settings
        return _ok(
            {
                "token_idle_seconds": s.idle_timeout,
                "token_expire_after_requests": s.expire_after_requests,
                "password_flow": s.password_flow,
                "extra_audiences": s.extra_audiences,
                "reject_client_credentials_on_login_hosts": s.reject_client_credentials_on_login_hosts,
                **em.settings,
            }
        )
    if head == "tokens" and method == "GET":
        return _ok({"issued": list(em.auth.issued)})
    if head == "tokens" and method == "POST":
        if parts[1:] == ["expire"]:
            em.auth.expire_all()
            return _ok({"ok": True})
        username = str(body.get("username", "admin@sfint.emulator")).lower()
        if username not in em.auth.users:
            return _bad(f"unknown user {username!r}")
        from .app import CLIENT_ID

        token = em.auth.mint(username, CLIENT_ID, em.org_id)
        return _ok({"access_token": token, "user_id": em.auth.users[username]})
    if head == "refresh-tokens" and method == "POST":
        from .app import CLIENT_ID

        token = em.auth.issue_refresh_token(
            str(body.get("username", "admin@sfint.emulator")), str(body.get("client_id", CLIENT_ID))
        )
        return _ok({"refresh_token": token})
    if head == "jwt-certificates" and method == "POST":
        em.add_jwt_certificate(str(body["pem"]).encode())
        return _ok({"ok": True, "certificates": len(em.jwt_keys)})
    if head == "records" and len(parts) == 2:
        obj = em.org.get(parts[1])
        if obj is None or obj.is_event:
            return _bad(f"unknown object {parts[1]!r}", 404)
        deleted = "" if query.get("include_deleted", "true").lower() == "true" else ' WHERE "IsDeleted" = 0'
        cols, rows = em.store.query(f"SELECT * FROM {obj.table}{deleted} ORDER BY rid")
        return _ok([{c: v for c, v in zip(cols, row, strict=True) if c != "rid"} for row in rows])
    return _bad(f"no admin resource {method} /__emulator__/{path}", 404)


def _settings(em: Emulator, body: dict[str, Any]) -> None:
    s = em.auth.settings
    known = {
        "token_idle_seconds",
        "token_expire_after_requests",
        "password_flow",
        "extra_audiences",
        "reject_client_credentials_on_login_hosts",
        "upsert_update_204",
        "instance_url",
    }
    unknown = set(body) - known
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    if "token_idle_seconds" in body:
        s.idle_timeout = float(body["token_idle_seconds"])
    if "token_expire_after_requests" in body:
        value = body["token_expire_after_requests"]
        s.expire_after_requests = None if value is None else int(value)
    if "password_flow" in body:
        s.password_flow = bool(body["password_flow"])
    if "extra_audiences" in body:
        s.extra_audiences = list(body["extra_audiences"])
    if "reject_client_credentials_on_login_hosts" in body:
        s.reject_client_credentials_on_login_hosts = bool(body["reject_client_credentials_on_login_hosts"])
    if "upsert_update_204" in body:
        em.settings["upsert_update_204"] = bool(body["upsert_update_204"])
    if "instance_url" in body:  # what token responses claim as instance_url (hostile-URL tests)
        em.settings["instance_url"] = body["instance_url"] or None


def _load(em: Emulator, name: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Fast insert of rows given as field values (stored form); system fields are filled in."""
    obj = em.org.get(name)
    if obj is None or obj.is_event:
        raise ValueError(f"unknown object {name!r}")
    if not records:
        return {"ids": []}
    names: list[str] = []
    for rec in records:
        for key in rec:
            f = obj.field(key)
            if f is None:
                raise ValueError(f"No such column '{key}' on sobject of type {obj.name}")
            if f.name not in names and f.name != "Id":
                names.append(f.name)
    system = ["IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp"]
    if "OwnerId" in obj.fields:
        system.append("OwnerId")
    extra = [s for s in system if s not in names]
    columns = ["Id", *names, *extra]
    stamp = storage_datetime(em.clock.now())
    defaults = {
        "IsDeleted": 0,
        "CreatedDate": stamp,
        "LastModifiedDate": stamp,
        "SystemModstamp": stamp,
        "CreatedById": em.admin_user_id,
        "LastModifiedById": em.admin_user_id,
        "OwnerId": em.admin_user_id,
    }
    ids = em.store.allocate_ids(obj, len(records))
    rows = []
    for (rid, record_id), rec in zip(ids, records, strict=True):
        lower = {k.lower(): v for k, v in rec.items()}
        rows.append((rid, record_id, *[lower.get(n.lower()) for n in names], *[defaults[e] for e in extra]))
    em.store.insert_many(obj, columns, rows)
    return {"ids": [i for _, i in ids]}


def _platform_events(em: Emulator, name: str | None, after: int) -> list[dict[str, Any]]:
    """Published platform events, decoded (``payload``: the event's fields)."""
    out: list[dict[str, Any]] = []
    for obj in em.org.objects.values():
        if not obj.is_event or (name and obj.name.lower() != name.lower()):
            continue
        for position, entity, created, schema_id, event_uuid, payload in em.events.log.of(obj.name, after):
            schema = em.events.schemas.get(schema_id)
            assert schema is not None
            values = schema.decode(payload)
            out.append(
                {
                    "replayId": position,
                    "event": entity,
                    "uuid": event_uuid,
                    "created": storage_datetime(datetime.fromtimestamp(created, tz=UTC)),
                    "payload": {k: v for k, v in values.items() if k not in ("CreatedDate", "EventUuid")},
                }
            )
    return sorted(out, key=lambda e: e["replayId"])


PUBSUB_SETTINGS = frozenset(
    {
        "keepalive_seconds",
        "idle_seconds",
        "retention_hours",
        "max_event_bytes",
        "max_publish_request_bytes",
        "overflow_threshold",
        "bulk_transaction_size",
        "cut_stream_after_events",
        "unavailable_calls",
        "delivery_delay_seconds",
    }
)


def _pubsub(em: Emulator, method: str, rest: list[str], body: dict[str, Any]) -> Any:
    """``/__emulator__/pubsub[/...]``: the event bus (settings and faults, CDC selection, channels, gaps)."""
    bus = em.events
    what = rest[0] if rest else ""
    if what == "" and method == "PUT":
        unknown = set(body) - PUBSUB_SETTINGS
        if unknown:
            raise ValueError(
                f"unknown pubsub settings: {', '.join(sorted(unknown))}; known: {', '.join(sorted(PUBSUB_SETTINGS))}"
            )
        for key, value in body.items():
            current = getattr(bus.settings, key)
            if value is None or current is None:
                setattr(bus.settings, key, value)
            else:
                setattr(bus.settings, key, type(current)(value))
    if what == "":
        latest = bus.latest_position()
        return {
            "grpc_port": em.grpc_port,
            "cdc_entities": sorted(bus.cdc_entities),
            "latest_replay_id": replay_bytes(latest).hex() if latest else None,
            "subscribers": {topic: n for topic, n in sorted(bus.subscribers.items()) if n},
            **vars(bus.settings),
        }
    if what == "cdc":  # {"enable": [...], "disable": [...]} selects entities for Change Data Capture
        if method == "PUT":
            for name in [*body.get("enable", []), *body.get("disable", [])]:
                obj = em.org.get(str(name))
                if obj is None or obj.is_event:
                    raise ValueError(f"unknown object {name!r}: Change Data Capture selects sObjects")
            bus.cdc_entities |= {em.org.get(str(n)).name for n in body.get("enable", [])}  # type: ignore[union-attr]
            bus.cdc_entities -= {em.org.get(str(n)).name for n in body.get("disable", [])}  # type: ignore[union-attr]
        return {"cdc_entities": sorted(bus.cdc_entities)}
    if what == "channels":
        if method == "PUT":  # {"Name__chn": ["Account", ...]}: create or replace custom channels
            for channel, members in body.items():
                if not str(channel).endswith("__chn"):
                    raise ValueError(f"custom channel {channel!r} must end in __chn")
                objs = [em.org.get(str(m)) for m in members]
                if any(o is None or o.is_event for o in objs):
                    raise ValueError(f"custom channel {channel!r} lists an unknown object: {members}")
                bus.custom_channels[str(channel)] = {o.name for o in objs if o is not None}
        return bus.channel_stats()
    if what == "gap" and method == "POST":  # a change "written straight to the database"
        obj = em.org.get(str(body.get("object", "")))
        if obj is None or obj.is_event:
            raise ValueError(f"unknown object {body.get('object')!r}")
        ids = [str(i) for i in body.get("ids", [])]
        bus.gap(obj, str(body.get("change_type", "GAP_UPDATE")), ids, em.admin_user_id)
        return {"ok": True}
    if what == "undelete" and method == "POST":  # restore records from the recycle bin (as the UI does)
        obj = em.org.get(str(body.get("object", "")))
        if obj is None or obj.is_event:
            raise ValueError(f"unknown object {body.get('object')!r}")
        from .dml import Writer

        writer = Writer(em.org, em.store, em.clock, em.admin_user_id, events=em.events, origin="")
        with em.store.transaction():
            return {"ids": [writer.undelete(obj, str(i)) for i in body.get("ids", [])]}
    if what == "fields" and method == "POST" and len(rest) == 2:  # add a custom field: a new schema id
        return em.add_field(rest[1], body)
    raise ValueError(f"no pubsub admin resource {method} /__emulator__/pubsub/{'/'.join(rest)}")
