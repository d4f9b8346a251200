"""The Pub/Sub API (``eventbus.v1.PubSub``) over gRPC, serving the org's event bus (``eventbus.py``).

Runs in the emulator's process beside the HTTP app and shares its store, clock, tokens and limits.
What a real org does that this server does too (spec ``pubsub-api.md`` sections 2 and 3):

- every call is authenticated from the ``accesstoken``, ``instanceurl`` and ``tenantid`` metadata, like a REST
  bearer token; a long stream may carry a new token in ``auth_refresh``;
- Subscribe is pull-based: requests add up, at most 100 outstanding; replay options count in the first
  request only; a later request naming another topic fails; an empty FetchResponse carrying
  ``latest_replay_id`` is sent after ``keepalive_seconds`` without events while a request is pending; the
  stream is closed after ``idle_seconds`` with nothing pending; both measured on the emulator's clock;
- events are retained ``retention_hours`` (72) by that clock; an older or unknown replay id fails the call;
- every error is a gRPC status with an ``error-code`` trailer (a Salesforce code) and ``rpcId:`` in the message.

``ManagedSubscribe`` (open beta at Salesforce) is answered with UNIMPLEMENTED.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

import airflow_provider_sfint.pubsub_proto as pb

from .eventbus import PAYLOAD, POSITION, SCHEMA_ID, UUID, EventTooLarge, position_of, replay_bytes

if TYPE_CHECKING:
    from .app import Emulator

log = logging.getLogger(__name__)

PREFIX = "sfdc.platform.eventbus.grpc"
MAX_PENDING = 100
#: how often a waiting stream looks at the clock when no event wakes it (seconds of real time)
TICK = 0.05


class PubSubError(Exception):
    def __init__(self, status: grpc.StatusCode, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class _Subscription:
    """What a Subscribe call's request reader shares with its sender."""

    topic: str | None = None
    entities: frozenset[str] = frozenset()
    preset: int = pb.LATEST
    replay_id: bytes = b""
    latest_at_start: int = 0
    pending: int = 0
    last_request: float = 0.0
    token: str = ""
    started: bool = False
    finished: bool = False
    error: PubSubError | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class PubSubService:
    """The RPC handlers. One instance per emulator; handlers run on the server's thread pool."""

    def __init__(self, em: Emulator) -> None:
        self.em = em
        self._fault_lock = threading.Lock()

    # --- common -------------------------------------------------------------------------------------

    def _abort(self, context: grpc.ServicerContext, rpc_id: str, error: PubSubError) -> None:
        context.set_trailing_metadata((("error-code", error.code),))
        context.abort(error.status, f"{error.message} rpcId: {rpc_id}")

    def _fault(self) -> None:
        settings = self.em.events.settings
        with self._fault_lock:
            if settings.unavailable_calls > 0:
                settings.unavailable_calls -= 1
                raise PubSubError(
                    grpc.StatusCode.UNAVAILABLE, f"{PREFIX}.service.unavailable", "The service is unavailable."
                )

    def _authenticate(self, context: grpc.ServicerContext, token: str | None = None) -> str:
        """The user id of the call's session (checked like a REST bearer token)."""
        metadata = {k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)}
        token = token or metadata.get("accesstoken", "")
        tenant = metadata.get("tenantid", "")
        instance = metadata.get("instanceurl", "")
        if not token or not tenant or not instance:
            missing = [k for k in ("accesstoken", "instanceurl", "tenantid") if not metadata.get(k)]
            raise PubSubError(
                grpc.StatusCode.UNAUTHENTICATED,
                f"{PREFIX}.service.auth.headers.invalid",
                f"Missing required authentication headers: {', '.join(missing)}.",
            )
        return self._check_token(token, tenant)

    def _check_token(self, token: str, tenant: str) -> str:
        session = self.em.auth.check(token)
        if session is None:
            raise PubSubError(
                grpc.StatusCode.UNAUTHENTICATED,
                f"{PREFIX}.service.auth.error",
                "The session is invalid or expired: authenticate again and retry with the new access token.",
            )
        if tenant != self.em.org_id:
            raise PubSubError(
                grpc.StatusCode.UNAUTHENTICATED,
                f"{PREFIX}.service.auth.error",
                f"The tenantid {tenant!r} is not the org id of this session.",
            )
        return session.user_id

    def _topic(self, name: str) -> tuple[str, frozenset[str]]:
        found = self.em.events.topic(name)
        if found is None:
            raise PubSubError(
                grpc.StatusCode.NOT_FOUND,
                f"{PREFIX}.topic.not.found",
                f"Topic {name!r} was not found, or you do not have access to it. Channel names are case-sensitive.",
            )
        return found

    # --- unary RPCs ---------------------------------------------------------------------------------

    def GetTopic(self, request: Any, context: grpc.ServicerContext) -> Any:
        rpc_id = str(uuid.uuid4())
        try:
            self._fault()
            self._authenticate(context)
            kind, _ = self._topic(request.topic_name)
            schema = self.em.events.topic_schema(request.topic_name)
            return pb.TopicInfo(
                topic_name=request.topic_name,
                tenant_guid=self.em.org_id,
                can_publish=kind == "event",
                can_subscribe=True,
                schema_id=schema.schema_id if schema else "",
                rpc_id=rpc_id,
            )
        except PubSubError as exc:
            self._abort(context, rpc_id, exc)
            raise AssertionError("unreachable") from exc

    def GetSchema(self, request: Any, context: grpc.ServicerContext) -> Any:
        rpc_id = str(uuid.uuid4())
        try:
            self._fault()
            self._authenticate(context)
            schema = self.em.events.schemas.get(request.schema_id)
            if schema is None:
                raise PubSubError(
                    grpc.StatusCode.NOT_FOUND,
                    f"{PREFIX}.schema.not.found",
                    f"Schema {request.schema_id!r} was not found.",
                )
            return pb.SchemaInfo(schema_json=schema.json_text, schema_id=schema.schema_id, rpc_id=rpc_id)
        except PubSubError as exc:
            self._abort(context, rpc_id, exc)
            raise AssertionError("unreachable") from exc

    def Publish(self, request: Any, context: grpc.ServicerContext) -> Any:
        rpc_id = str(uuid.uuid4())
        try:
            self._fault()
            user = self._authenticate(context, request.auth_refresh or None)
            return self._publish(request, user, rpc_id)
        except PubSubError as exc:
            self._abort(context, rpc_id, exc)
            raise AssertionError("unreachable") from exc

    def _publish(self, request: Any, user: str, rpc_id: str) -> Any:
        kind, entities = self._topic(request.topic_name)
        if kind != "event":
            raise PubSubError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{PREFIX}.publish.not.allowed",
                f"Publishing to {request.topic_name} is not allowed: only platform event channels take events.",
            )
        size = request.ByteSize()
        limit = self.em.events.settings.max_publish_request_bytes
        if size > limit:
            raise PubSubError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{PREFIX}.publish.request.size.exceeded",
                f"The publish request is {size} bytes; a request can be at most {limit} bytes. Send fewer events "
                "per request (at most 200 are recommended).",
            )
        (entity,) = entities
        obj = self.em.org.objects[entity]
        schema = self.em.events.schemas.event_schema(obj)
        results = []
        for event in request.events:
            result = pb.PublishResult(correlation_key=event.id)
            try:
                if event.schema_id != schema.schema_id:
                    raise ValueError(
                        f"The event's schema id {event.schema_id!r} is not the topic's schema {schema.schema_id!r}: "
                        "fetch the topic (GetTopic) and its schema again."
                    )
                if len(event.payload) > self.em.events.settings.max_event_bytes:
                    raise EventTooLarge(len(event.payload), self.em.events.settings.max_event_bytes)
                position, _ = self.em.events.publish_encoded(obj, event.payload, user)
                result.replay_id = replay_bytes(position)
            except (ValueError, EventTooLarge) as exc:
                result.error.code = pb.ERROR_PUBLISH
                result.error.msg = str(exc)
            except Exception as exc:  # bytes that are not an Avro record of the schema fail in many ways
                result.error.code = pb.ERROR_PUBLISH
                result.error.msg = f"The payload is not an Avro record of schema {schema.schema_id}: {exc!r}"
            results.append(result)
        return pb.PublishResponse(results=results, schema_id=schema.schema_id, rpc_id=rpc_id)

    def PublishStream(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        rpc_id = str(uuid.uuid4())
        try:
            self._fault()
            user = self._authenticate(context)
            tenant = {k.lower(): v for k, v in context.invocation_metadata()}.get("tenantid", "")
            for request in request_iterator:
                if request.auth_refresh:
                    user = self._check_token(request.auth_refresh, str(tenant))
                yield self._publish(request, user, rpc_id)
        except PubSubError as exc:
            self._abort(context, rpc_id, exc)

    def ManagedSubscribe(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        rpc_id = str(uuid.uuid4())
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            f"ManagedSubscribe (open beta at Salesforce) is not emulated: use Subscribe. rpcId: {rpc_id}",
        )
        yield from ()

    # --- Subscribe ----------------------------------------------------------------------------------

    def Subscribe(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        rpc_id = str(uuid.uuid4())
        bus = self.em.events
        try:
            self._fault()
            self._authenticate(context)
        except PubSubError as exc:
            self._abort(context, rpc_id, exc)
            return
        metadata = {k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)}
        sub = _Subscription(token=metadata.get("accesstoken", ""), last_request=bus.clock.time())
        tenant = metadata.get("tenantid", "")
        reader = threading.Thread(
            target=self._read_requests, args=(request_iterator, sub, tenant), name="pubsub-fetch", daemon=True
        )
        reader.start()
        position: int | None = None  # the bus position of the last event sent (or where the stream starts)
        subscribed: str | None = None  # the topic counted in bus.subscribers while this stream lives
        sent_events = 0
        last_sent = bus.clock.time()
        try:
            while context.is_active():
                with sub.lock:
                    error, started, finished = sub.error, sub.started, sub.finished
                if error is not None:
                    raise error
                if not started:
                    if finished:
                        return
                    self._wait(TICK)
                    continue
                if position is None:
                    position = self._start_position(sub)
                    subscribed = sub.topic or ""
                    with bus.lock:
                        bus.subscribers[subscribed] += 1
                with sub.lock:
                    pending, topic = sub.pending, sub.topic or ""
                _, entities = self._topic(topic)  # selection and channel members may change while subscribed
                now = bus.clock.time()
                if pending > 0:
                    events = bus.read(entities, position, pending)
                    if events:
                        allowed = bus.limits.take_deliveries(len(events))
                        if allowed < len(events):
                            raise PubSubError(
                                grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"{PREFIX}.subscription.delivery.limit.exceeded",
                                "The org's daily event delivery allocation (DailyDeliveredPlatformEvents) is used up.",
                            )
                        cut = bus.settings.cut_stream_after_events
                        if cut is not None and sent_events + len(events) > cut:
                            events = events[: max(0, cut - sent_events)]
                            if not events:
                                context.abort(grpc.StatusCode.UNAVAILABLE, "stream cut by the emulator's fault")
                        position = events[-1][POSITION]
                        sent_events += len(events)
                        with sub.lock:
                            sub.pending -= len(events)
                            pending = sub.pending
                        bus.delivered[sub.topic or ""] += len(events)
                        last_sent = now
                        yield pb.FetchResponse(
                            events=[
                                pb.ConsumerEvent(
                                    event=pb.ProducerEvent(id=e[UUID], schema_id=e[SCHEMA_ID], payload=e[PAYLOAD]),
                                    replay_id=replay_bytes(e[POSITION]),
                                )
                                for e in events
                            ],
                            latest_replay_id=replay_bytes(position),
                            rpc_id=rpc_id,
                            pending_num_requested=pending,
                        )
                        continue
                    if now - last_sent >= bus.settings.keepalive_seconds:
                        last_sent = now
                        latest = max(position, bus.keepalive_position(entities, position))
                        yield pb.FetchResponse(
                            latest_replay_id=replay_bytes(latest) if latest else b"",
                            rpc_id=rpc_id,
                            pending_num_requested=pending,
                        )
                        continue
                else:
                    with sub.lock:
                        idle_since, finished = sub.last_request, sub.finished
                    if finished or now - idle_since >= bus.settings.idle_seconds:
                        return  # nothing pending for too long (or the client closed its side): the stream ends
                self._wait(TICK)
        except PubSubError as exc:
            self._abort(context, rpc_id, exc)
        finally:
            with sub.lock:
                sub.finished = True
            if subscribed is not None:
                with bus.lock:
                    bus.subscribers[subscribed] -= 1

    def _wait(self, seconds: float) -> None:
        with self.em.events.cond:
            self.em.events.cond.wait(seconds)

    def _start_position(self, sub: _Subscription) -> int:
        bus = self.em.events
        if sub.preset == pb.EARLIEST:
            return max(bus.earliest_position(sub.entities), 0)
        if sub.preset == pb.CUSTOM:
            position = position_of(sub.replay_id)
            if position is None:
                raise PubSubError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{PREFIX}.subscription.fetch.replayid.corrupted",
                    "The Replay ID validation failed: the replay id is corrupted or not valid for this topic.",
                )
            created = bus.created_at(position)
            if created is None or created < bus.retention_start():
                raise PubSubError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{PREFIX}.subscription.fetch.replayid.validation.failed",
                    "The Replay ID validation failed: the replay id is outside the retention window (72 hours) or "
                    "unknown. Subscribe with EARLIEST, or take a new snapshot and subscribe with LATEST.",
                )
            return position
        return sub.latest_at_start

    def _read_requests(self, requests: Iterator[Any], sub: _Subscription, tenant: str) -> None:
        """The reader side of a Subscribe call: validates each FetchRequest and adds up what is requested."""
        try:
            for request in requests:
                with sub.lock:
                    if sub.finished:
                        return
                if request.auth_refresh:
                    self._check_token(request.auth_refresh, tenant)
                    token = request.auth_refresh
                else:
                    token = sub.token
                self._check_token(token, tenant)
                if request.num_requested <= 0:
                    raise PubSubError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"{PREFIX}.subscription.fetch.requested.events.invalid",
                        f"num_requested must be greater than 0 (it was {request.num_requested}).",
                    )
                with sub.lock:
                    if sub.topic is None:
                        _, entities = self._topic(request.topic_name)
                        sub.topic, sub.entities = request.topic_name, entities
                        sub.preset, sub.replay_id = request.replay_preset, request.replay_id
                        if sub.preset == pb.LATEST:  # what is published after the server reads this request
                            sub.latest_at_start = self.em.events.latest_position()
                    elif request.topic_name and request.topic_name != sub.topic:
                        raise PubSubError(
                            grpc.StatusCode.INVALID_ARGUMENT,
                            f"{PREFIX}.subscription.fetch.topic.mismatch",
                            f"The topic {request.topic_name!r} is not the topic of this subscription ({sub.topic!r}): "
                            "open a new Subscribe call for another topic.",
                        )
                    sub.token = token
                    sub.pending = min(MAX_PENDING, sub.pending + request.num_requested)
                    sub.last_request = self.em.events.clock.time()
                    sub.started = True
                with self.em.events.cond:
                    self.em.events.cond.notify_all()
        except PubSubError as exc:
            with sub.lock:
                sub.error = exc
        except Exception as exc:  # the client went away mid-read
            log.debug("Subscribe request stream ended: %s", exc)
        finally:
            with sub.lock:
                sub.finished = True


def _handlers(service: PubSubService) -> grpc.GenericRpcHandler:
    kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    methods = {}
    for name, (req_stream, resp_stream, req_cls, resp_cls) in pb.METHODS.items():
        make = kinds[(req_stream, resp_stream)]
        methods[name] = make(
            getattr(service, name),
            request_deserializer=req_cls.FromString,
            response_serializer=resp_cls.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(pb.SERVICE, methods)


class PubSubServer:
    """A gRPC server for one emulator, plaintext or TLS (with the HTTPS certificate)."""

    def __init__(
        self, em: Emulator, host: str = "127.0.0.1", port: int = 0, credentials: grpc.ServerCredentials | None = None
    ) -> None:
        self.em = em
        self.service = PubSubService(em)
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="sfint-pubsub"),
            options=[("grpc.so_reuseport", 0)],
        )
        self.server.add_generic_rpc_handlers((_handlers(self.service),))
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if credentials is not None:
            self.port = self.server.add_secure_port(address, credentials)
        else:
            self.port = self.server.add_insecure_port(address)
        if not self.port:
            raise RuntimeError(f"the Pub/Sub API server could not bind {address}")

    def start(self) -> None:
        self.server.start()
        self.em.grpc_port = self.port

    def stop(self, grace: float = 1.0) -> None:
        self.server.stop(grace).wait(timeout=grace + 5)
        # wake streams waiting for events so that their threads notice the end
        with self.em.events.cond:
            self.em.events.cond.notify_all()
        time.sleep(0)
