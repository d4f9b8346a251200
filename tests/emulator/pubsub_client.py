"""A small Pub/Sub API client for the emulator's tests: plain grpcio and fastavro, none of the provider's client.

It speaks the wire protocol the way Salesforce's published examples do: metadata ``accesstoken``,
``instanceurl``, ``tenantid``; a bidirectional Subscribe stream fed from a queue so a test can send more
FetchRequests while reading; Avro payloads decoded with the schema fetched by id; bitmap fields decoded to
names (``Name.LastName``) by its own decoder.
"""

from __future__ import annotations

import io
import json
import queue
import threading
from collections.abc import Iterator
from typing import Any

import grpc
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from airflow_provider_sfint import pubsub_proto as pb

_END = object()


class Stream:
    """One Subscribe call: ``send()`` FetchRequests, ``next()`` FetchResponses (with a timeout)."""

    def __init__(self, call_factory: Any, metadata: list[tuple[str, str]]) -> None:
        self._requests: queue.Queue[Any] = queue.Queue()
        self._responses: queue.Queue[Any] = queue.Queue()
        self.call = call_factory(self._iterate(), metadata=metadata)
        self.error: grpc.RpcError | None = None
        self.ended = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _iterate(self) -> Iterator[Any]:
        while True:
            item = self._requests.get()
            if item is _END:
                return
            yield item

    def _read(self) -> None:
        try:
            for response in self.call:
                self._responses.put(response)
        except grpc.RpcError as exc:
            self.error = exc
        finally:
            self.ended.set()
            self._responses.put(_END)

    def send(self, **fields: Any) -> None:
        self._requests.put(pb.FetchRequest(**fields))

    def next(self, timeout: float = 10.0) -> Any:
        """The next FetchResponse; None when the stream ended (``error`` says how)."""
        item = self._responses.get(timeout=timeout)
        if item is _END:
            self._responses.put(_END)
            return None
        return item

    def events(self, count: int, timeout: float = 20.0) -> list[Any]:
        """Read responses until ``count`` events arrived (keep-alives skipped)."""
        out: list[Any] = []
        while len(out) < count:
            response = self.next(timeout)
            assert response is not None, f"stream ended after {len(out)} of {count} events: {self.error}"
            out.extend(response.events)
        return out

    def close(self) -> None:
        self._requests.put(_END)
        self.call.cancel()


class PubSubTestClient:
    def __init__(self, target: str, token: str, instance_url: str, tenant: str, root_cert: bytes | None = None) -> None:
        self._streams: list[Stream] = []
        if root_cert is None:
            self.channel = grpc.insecure_channel(target)
        else:
            creds = grpc.ssl_channel_credentials(root_certificates=root_cert)
            self.channel = grpc.secure_channel(target, creds)
        self.metadata = [("accesstoken", token), ("instanceurl", instance_url), ("tenantid", tenant)]
        self._schemas: dict[str, Any] = {}
        self._json: dict[str, dict[str, Any]] = {}

    def _unary(self, name: str, request: Any, metadata: list[tuple[str, str]] | None = None) -> Any:
        _, _, req_cls, resp_cls = pb.METHODS[name]
        call = self.channel.unary_unary(
            pb.method_path(name),
            request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString,
        )
        return call(request, metadata=metadata or self.metadata, timeout=30)

    def topic(self, name: str, metadata: list[tuple[str, str]] | None = None) -> Any:
        return self._unary("GetTopic", pb.TopicRequest(topic_name=name), metadata)

    def schema(self, schema_id: str) -> dict[str, Any]:
        if schema_id not in self._json:
            info = self._unary("GetSchema", pb.SchemaRequest(schema_id=schema_id))
            self._json[schema_id] = json.loads(info.schema_json)
            self._schemas[schema_id] = parse_schema(json.loads(info.schema_json))
        return self._json[schema_id]

    def publish(self, topic: str, records: list[dict[str, Any]], ids: list[str] | None = None) -> Any:
        info = self.topic(topic)
        self.schema(info.schema_id)
        events = []
        for i, record in enumerate(records):
            out = io.BytesIO()
            schemaless_writer(out, self._schemas[info.schema_id], record)
            event_id = ids[i] if ids else f"e{i}"
            events.append(pb.ProducerEvent(id=event_id, schema_id=info.schema_id, payload=out.getvalue()))
        return self._unary("Publish", pb.PublishRequest(topic_name=topic, events=events))

    def publish_raw(self, request: Any) -> Any:
        return self._unary("Publish", request)

    def subscribe(self, metadata: list[tuple[str, str]] | None = None) -> Stream:
        _, _, req_cls, resp_cls = pb.METHODS["Subscribe"]
        factory = self.channel.stream_stream(
            pb.method_path("Subscribe"),
            request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString,
        )
        stream = Stream(factory, metadata or self.metadata)
        self._streams.append(stream)
        return stream

    def decode(self, event: Any) -> dict[str, Any]:
        """A ConsumerEvent's payload as a dict, bitmap header fields replaced by field names."""
        schema_id = event.event.schema_id
        self.schema(schema_id)
        record = schemaless_reader(io.BytesIO(event.event.payload), self._schemas[schema_id], self._schemas[schema_id])
        assert isinstance(record, dict)
        header = record.get("ChangeEventHeader")
        if header is not None:
            fields = self._json[schema_id]["fields"]
            for key in ("changedFields", "nulledFields", "diffFields"):
                header[key] = bitmap_names(header[key], fields)
        return record

    def close(self) -> None:
        """Close every stream first: gRPC's request thread of an open stream waits in ``Stream._iterate`` for the
        next request and would outlive the test (a process forked later, such as a LocalExecutor worker, can then
        hang at exit)."""
        for stream in self._streams:
            stream.close()
        self._streams.clear()
        self.channel.close()


def _record_type(avro_type: Any, named: dict[str, Any]) -> dict[str, Any] | None:
    for t in avro_type if isinstance(avro_type, list) else [avro_type]:
        if isinstance(t, dict) and t.get("type") == "record":
            named[t["name"]] = t
            return t
        if isinstance(t, str) and t in named:
            return named[t]  # type: ignore[no-any-return]
    return None


def bitmap_names(bitmaps: list[str], fields: list[dict[str, Any]]) -> list[str]:
    """Decode ``["0x..", "<index>-0x.."]`` into field names, ``Parent.Component`` for compound parts."""
    named: dict[str, Any] = {}
    records = [_record_type(f["type"], named) for f in fields]
    names: list[str] = []
    for item in bitmaps:
        if "-" in item:
            index_text, _, hex_text = item.partition("-")
            parent = fields[int(index_text)]
            record = records[int(index_text)]
            assert record is not None, f"{item}: field {parent['name']} is not a compound field"
            bits = int(hex_text, 16)
            names += [f"{parent['name']}.{c['name']}" for i, c in enumerate(record["fields"]) if bits >> i & 1]
        else:
            bits = int(item, 16)
            names += [f["name"] for i, f in enumerate(fields) if bits >> i & 1]
    return names
