"""The Salesforce Pub/Sub API over gRPC (``grpc.aio``): topics, schemas, subscribe, publish. No Airflow.

- **Sessions** come from the connection's OAuth flow (the same :class:`Transport` as REST): the access
  token, the instance URL and the org id (the token response's identity URL) travel as the gRPC metadata
  ``accesstoken``, ``instanceurl`` and ``tenantid``. UNAUTHENTICATED makes the client sign in again once
  and reopen the call; a second refusal is :class:`PubSubAuthError`.
- **TLS** is verified (system roots, or the CA bundle the connection names). Plaintext is allowed only to
  a loopback endpoint (the bundled emulator), and only when asked for.
- **Subscribe** keeps up to ``batch_size`` (at most 100) events requested and asks again as they arrive;
  a keep-alive's ``latest_replay_id`` is reported as a resume point; a cut stream or UNAVAILABLE is
  reopened with backoff after the last replay id received, so within one call no event is lost or
  repeated. Salesforce's error codes become typed errors (:class:`ReplayIdExpiredError`, ...).
- **Schemas** are fetched once per id and cached.
"""

from __future__ import annotations

import asyncio
import io
import logging
import random
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from fastavro import schemaless_writer

import airflow_provider_sfint.pubsub_proto as pb

from .auth import DEFAULT_PUBSUB_ENDPOINT, is_loopback
from .changes import ChangeEvent, EventSchema, PlatformEvent, parse_event
from .errors import (
    ConfigurationError,
    DeliveryAllocationError,
    InsecureTransportError,
    PubSubAuthError,
    PubSubError,
    ReplayIdCorruptedError,
    ReplayIdExpiredError,
    TopicNotFoundError,
)

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = DEFAULT_PUBSUB_ENDPOINT
MAX_REQUESTED = 100
PREFIX = "sfdc.platform.eventbus.grpc."
PRESETS = {"LATEST": pb.LATEST, "EARLIEST": pb.EARLIEST, "CUSTOM": pb.CUSTOM}
#: reconnections that transient failures (UNAVAILABLE, a cut stream) may cost one subscribe call
MAX_RECONNECTS = 8
#: After a reconnection, the first response is awaited at least this long before an idle stop: a stream just
#: reopened (sign-in, replay from the resume point) says nothing yet about whether the channel is caught up.
RECONNECT_GRACE = 10.0
#: gRPC statuses of a broken connection, not of a refused request
TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


@dataclass(frozen=True)
class Credentials:
    """What every Pub/Sub call carries. The token never appears in ``repr``."""

    access_token: str = field(repr=False)
    instance_url: str
    tenant_id: str
    generation: int = 0

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("accesstoken", self.access_token), ("instanceurl", self.instance_url), ("tenantid", self.tenant_id))


#: ``provider(seen_generation)``: the current credentials, or fresh ones when the caller's were refused
CredentialsProvider = Callable[[int | None], Awaitable[Credentials]]


@dataclass(frozen=True)
class FetchBatch:
    """What one FetchResponse brought: events (decoded), or none (a keep-alive), and the resume point."""

    events: list[ChangeEvent | PlatformEvent]
    latest_replay_id: bytes
    pending: int

    @property
    def keepalive(self) -> bool:
        return not self.events


@dataclass(frozen=True)
class PublishOutcome:
    correlation_key: str
    replay_id: bytes | None
    error: str | None


#: HTTP/2 keep-alive pings on an idle connection. gRPC servers refuse pings more often than every 5 minutes
#: without data by default (GOAWAY "too_many_pings", which cut a watcher's stream every few minutes at 60 s); a
#: waiting subscription gets Salesforce's own keep-alive response every 270 s anyway. Just above 5 minutes, and
#: below the 350 s idle timeout of common load balancers.
KEEPALIVE_MS = 330_000


def _error(exc: grpc.aio.AioRpcError, what: str) -> PubSubError:
    """A typed error for a failed call, from its status and ``error-code`` trailer."""
    trailers = {k: v for k, v in (exc.trailing_metadata() or ()) if isinstance(v, str)}
    code = trailers.get("error-code", "")
    details = exc.details() or ""
    found = re.search(r"rpcId:\s*(\S+)", details)
    rpc_id = found.group(1) if found else None
    status = exc.code().name if exc.code() is not None else ""
    message = f"{what}: {status} {code or ''} {details}".strip()
    kind: type[PubSubError] = PubSubError
    if code.endswith("replayid.validation.failed"):
        kind = ReplayIdExpiredError
    elif code.endswith("replayid.corrupted"):
        kind = ReplayIdCorruptedError
    elif code.endswith("topic.not.found") or exc.code() == grpc.StatusCode.NOT_FOUND:
        kind = TopicNotFoundError
    elif exc.code() == grpc.StatusCode.UNAUTHENTICATED:
        kind = PubSubAuthError
    elif exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        kind = DeliveryAllocationError
    return kind(message, grpc_status=status, rpc_id=rpc_id, error_code=code or None)


class PubSubClient:
    """One connection's Pub/Sub API client. Use as ``async with PubSubClient(...) as client:``.

    :param endpoint: ``host:port`` (default Salesforce's ``api.pubsub.salesforce.com:7443``)
    :param credentials: async provider of :class:`Credentials` (``PubSubClient.for_transport`` builds one)
    :param verify: True (system CA roots) or a CA bundle path; TLS is always verified
    :param plaintext: talk plaintext (h2c): allowed only to a loopback endpoint such as the emulator
    :param call_timeout: seconds for a unary call
    """

    def __init__(
        self,
        endpoint: str,
        credentials: CredentialsProvider,
        *,
        verify: bool | str = True,
        plaintext: bool = False,
        call_timeout: float = 60.0,
    ) -> None:
        host = endpoint.rsplit(":", 1)[0] if ":" in endpoint else endpoint
        if not endpoint or ":" not in endpoint:
            raise ConfigurationError("pubsub_endpoint", f"{endpoint!r} is not host:port (e.g. {DEFAULT_ENDPOINT})")
        if plaintext and not is_loopback(host):
            raise InsecureTransportError(
                f"plaintext gRPC to {endpoint} refused: only loopback endpoints (the emulator) may skip TLS"
            )
        if verify is False:
            raise InsecureTransportError("TLS verification cannot be turned off for the Pub/Sub API")
        self.endpoint = endpoint
        self.credentials = credentials
        self.verify = verify
        self.plaintext = plaintext
        self.call_timeout = call_timeout
        self._channel: grpc.aio.Channel | None = None
        self._schemas: dict[str, EventSchema] = {}
        self._schema_locks: dict[str, asyncio.Lock] = {}
        #: events received by subscribe calls of this client (each counts against the delivery allocation)
        self.delivered = 0
        self.reconnects = 0

    @classmethod
    def for_transport(cls, transport: Any, endpoint: str, *, org_id: str | None = None, **kw: Any) -> PubSubClient:
        """A client signing in through a REST :class:`Transport` (the same session and refresh)."""

        async def provide(seen_generation: int | None) -> Credentials:
            session = await transport.asession(seen_generation=seen_generation)
            tenant = session.org_id or org_id
            if not tenant:
                raise ConfigurationError(
                    "org_id",
                    "the Pub/Sub API needs the org id (00D...): it comes with a token response; with a pre-issued "
                    "access token, set org_id on the connection",
                )
            return Credentials(session.access_token, session.instance_url, tenant, session.generation)

        return cls(endpoint, provide, **kw)

    @classmethod
    def for_config(cls, transport: Any) -> PubSubClient:
        """A client for the transport's connection: its ``pubsub_endpoint``, ``org_id`` and TLS settings."""
        config = transport.config
        verify = config.verify if config.verify is not False else True
        return cls.for_transport(
            transport, config.pubsub_endpoint, org_id=config.org_id, verify=verify, plaintext=config.pubsub_plaintext
        )

    # --- plumbing -----------------------------------------------------------------------------------

    def _open(self) -> grpc.aio.Channel:
        if self._channel is None:
            options = [("grpc.max_receive_message_length", 64 * 1024 * 1024), ("grpc.keepalive_time_ms", KEEPALIVE_MS)]
            if self.plaintext:
                self._channel = grpc.aio.insecure_channel(self.endpoint, options=options)
            else:
                roots = None
                if isinstance(self.verify, str):
                    with open(self.verify, "rb") as handle:
                        roots = handle.read()
                creds = grpc.ssl_channel_credentials(root_certificates=roots)
                self._channel = grpc.aio.secure_channel(self.endpoint, creds, options=options)
        return self._channel

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def __aenter__(self) -> PubSubClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _method(self, name: str) -> Any:
        req_stream, _, req_cls, resp_cls = pb.METHODS[name]
        channel = self._open()
        make = channel.stream_stream if req_stream else channel.unary_unary
        return make(pb.method_path(name), request_serializer=req_cls.SerializeToString,
                    response_deserializer=resp_cls.FromString)  # fmt: skip

    async def _unary(self, name: str, request: Any, what: str) -> Any:
        """A unary call; signs in again once on UNAUTHENTICATED, retries UNAVAILABLE with backoff."""
        creds = await self.credentials(None)
        refreshed = False
        for attempt in range(MAX_RECONNECTS):
            try:
                return await self._method(name)(request, metadata=creds.metadata(), timeout=self.call_timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED and not refreshed:
                    refreshed = True
                    creds = await self.credentials(creds.generation)
                    continue
                if exc.code() in TRANSIENT and attempt + 1 < MAX_RECONNECTS:
                    await asyncio.sleep(_backoff(attempt))
                    continue
                raise _error(exc, what) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # --- topics, schemas, publish ---------------------------------------------------------------------

    async def get_topic(self, topic: str) -> Any:
        """The topic's TopicInfo (``schema_id``, ``can_publish``, ``can_subscribe``)."""
        return await self._unary("GetTopic", pb.TopicRequest(topic_name=topic), f"GetTopic {topic}")

    async def schema(self, schema_id: str) -> EventSchema:
        """The schema with this id, fetched once."""
        found = self._schemas.get(schema_id)
        if found is not None:
            return found
        lock = self._schema_locks.setdefault(schema_id, asyncio.Lock())
        async with lock:
            found = self._schemas.get(schema_id)
            if found is None:
                info = await self._unary("GetSchema", pb.SchemaRequest(schema_id=schema_id), f"GetSchema {schema_id}")
                found = self._schemas[schema_id] = EventSchema.from_json(info.schema_id, info.schema_json)
        return found

    async def publish(
        self, topic: str, records: Sequence[dict[str, Any]], correlation_keys: Sequence[str] | None = None
    ) -> list[PublishOutcome]:
        """Publish records (field values) to a platform-event topic, Avro-encoded with the topic's schema,
        at most 200 per request; one outcome per record, in order."""
        info = await self.get_topic(topic)
        if not info.can_publish:
            raise PubSubError(f"{topic} does not take published events (only /event/ channels do)")
        schema = await self.schema(info.schema_id)
        outcomes: list[PublishOutcome] = []
        for start in range(0, len(records), 200):
            events = []
            for i, record in enumerate(records[start : start + 200], start=start):
                body = {name: record.get(name) for name in schema.fields}
                # the server stamps these; real schemas declare them non-null, so send placeholders
                if body.get("CreatedDate") is None:
                    body["CreatedDate"] = int(time.time() * 1000)
                if body.get("CreatedById") is None:
                    body["CreatedById"] = ""
                out = io.BytesIO()
                schemaless_writer(out, schema.parsed, body)
                key = correlation_keys[i] if correlation_keys else str(i)
                events.append(pb.ProducerEvent(id=key, schema_id=schema.schema_id, payload=out.getvalue()))
            response = await self._unary(
                "Publish", pb.PublishRequest(topic_name=topic, events=events), f"Publish to {topic}"
            )
            for result in response.results:
                error = result.error.msg if result.HasField("error") else None
                outcomes.append(PublishOutcome(result.correlation_key, bytes(result.replay_id) or None, error))
        return outcomes

    # --- subscribe ----------------------------------------------------------------------------------

    async def subscribe(
        self,
        topic: str,
        *,
        replay_preset: str = "LATEST",
        replay_id: bytes | None = None,
        batch_size: int = MAX_REQUESTED,
        idle_timeout: float | None = None,
        limit: int | None = None,
    ) -> AsyncGenerator[FetchBatch, None]:
        """Batches of decoded events, in order, until the caller stops iterating or, with ``idle_timeout``,
        until that many seconds pass without an event (a keep-alive does not count as one), or, with
        ``limit``, once that many events have come (never more are requested, so never more are delivered
        and counted against the org's delivery allocation).

        A broken stream is reopened after the last replay id received (or the last keep-alive's), up to
        :data:`MAX_RECONNECTS` times in a row."""
        if not 1 <= batch_size <= MAX_REQUESTED:
            raise ConfigurationError("batch_size", f"{batch_size} must be 1..{MAX_REQUESTED} (Salesforce's cap)")
        if replay_preset not in PRESETS:
            raise ConfigurationError("replay_preset", f"{replay_preset!r}: use LATEST, EARLIEST or CUSTOM")
        if replay_preset == "CUSTOM" and not replay_id:
            raise ConfigurationError("replay_id", "CUSTOM needs the replay id to resume after")
        if limit is not None and limit < 1:
            raise ConfigurationError("limit", f"{limit} must be at least 1 (or None: no limit)")
        preset, resume = PRESETS[replay_preset], replay_id or b""
        received = 0
        creds = await self.credentials(None)
        refreshed = False
        failures = 0
        reconnected = False
        while True:
            call = self._method("Subscribe")(metadata=creds.metadata())
            wanted = batch_size if limit is None else min(batch_size, limit - received)
            first = pb.FetchRequest(topic_name=topic, replay_preset=preset, num_requested=wanted)
            if preset == pb.CUSTOM:
                first.replay_id = resume
            try:
                await call.write(first)
                while True:
                    read = call.read()
                    wait = max(idle_timeout, RECONNECT_GRACE) if idle_timeout and reconnected else idle_timeout
                    response = await (asyncio.wait_for(read, wait) if wait else read)
                    if response is grpc.aio.EOF:
                        raise _StreamEnded()
                    reconnected = False
                    failures = 0
                    refreshed = False
                    delivered = len(response.events)
                    if delivered:
                        # ask for more before decoding these: the server fills the next batch meanwhile
                        self.delivered += delivered
                        received += delivered
                        more = delivered if limit is None else min(delivered, limit - received - pending(response))
                        if more > 0:
                            try:
                                await call.write(pb.FetchRequest(topic_name=topic, num_requested=more))
                            except asyncio.InvalidStateError:
                                pass  # the server ended the call after this batch: the next read says how
                    events = []
                    for consumer in response.events:
                        schema = await self.schema(consumer.event.schema_id)
                        events.append(
                            parse_event(schema, consumer.event.payload, bytes(consumer.replay_id), consumer.event.id)
                        )
                    latest = bytes(response.latest_replay_id)
                    if events:
                        resume, preset = events[-1].replay_id, pb.CUSTOM
                    elif latest and preset != pb.EARLIEST:
                        # a keep-alive: nothing of ours is pending before this id
                        resume, preset = latest, pb.CUSTOM
                    yield FetchBatch(events, latest, response.pending_num_requested)
                    if limit is not None and received >= limit:
                        call.cancel()
                        return
            except TimeoutError:
                call.cancel()
                return
            except (_StreamEnded, grpc.aio.AioRpcError) as exc:
                call.cancel()
                if isinstance(exc, grpc.aio.AioRpcError):
                    if exc.code() == grpc.StatusCode.UNAUTHENTICATED and not refreshed:
                        refreshed = reconnected = True
                        creds = await self.credentials(creds.generation)
                        continue
                    if exc.code() not in TRANSIENT:
                        raise _error(exc, f"Subscribe {topic}") from None
                failures += 1
                if failures > MAX_RECONNECTS:
                    if isinstance(exc, grpc.aio.AioRpcError):
                        raise _error(exc, f"Subscribe {topic} ({failures} attempts)") from None
                    raise PubSubError(f"Subscribe {topic}: the server kept closing the stream") from None
                self.reconnects += 1
                reconnected = True
                # the text, not the exception: a log record keeps its arguments, and the exception's traceback
                # keeps the broken call and its channel (and gRPC's runtime) alive as long as the record lives
                why = f"{exc.code().name}: {exc.details()}" if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
                log.info("Pub/Sub stream on %s broke (%s); reconnecting after the last replay id", topic, why)
                await asyncio.sleep(_backoff(failures - 1))
            except BaseException:
                call.cancel()
                raise


def pending(response: Any) -> int:
    """What the server still owes on this stream after ``response``."""
    return max(0, int(response.pending_num_requested))


class _StreamEnded(Exception):
    """The server closed the stream (an idle close, or a cut connection)."""


def _backoff(attempt: int) -> float:
    return float(min(30.0, 0.2 * 2**attempt) * (0.5 + random.random() / 2))
