"""Platform events on the emulator's bus: every publish path (REST, Composite, Collections, Bulk, Pub/Sub
Publish and PublishStream) lands on the same channel in publish order, with replay ids; Publish answers per
event; the 1 MB event and 3 MB request limits."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from fastavro import parse_schema, schemaless_writer

from airflow_provider_sfint import pubsub_proto as pb

from .helpers import Admin, SalesforceHttp
from .pubsub_client import PubSubTestClient
from .test_bulk import _ingest

TOPIC = "/event/Warehouse_Sync__e"


def _event(run_id: str, status: str = "ok") -> dict[str, Any]:
    return {"Pipeline__c": "p", "Run_Id__c": run_id, "Records__c": 1.0, "Status__c": status}


def _pubsub_record(run_id: str, status: str = "ok") -> dict[str, Any]:
    return {"CreatedDate": 0, "CreatedById": "", "EventUuid": None, **_event(run_id, status)}


def test_every_publish_path_lands_on_one_channel_in_order(bus: PubSubTestClient, sf: SalesforceHttp) -> None:
    assert sf.post("sobjects/Warehouse_Sync__e", json=_event("rest")).status_code == 201
    composite = {
        "allOrNone": False,
        "compositeRequest": [
            {
                "method": "POST",
                "url": "/services/data/v60.0/sobjects/Warehouse_Sync__e",
                "referenceId": "e",
                "body": _event("composite"),
            }
        ],
    }
    assert sf.post("composite", json=composite).status_code == 200
    records = [{"attributes": {"type": "Warehouse_Sync__e"}, **_event(f"collections-{i}")} for i in range(2)]
    assert all(r["success"] for r in sf.post("composite/sobjects", json={"records": records}).json())
    _, info = _ingest(
        sf,
        "Pipeline__c,Run_Id__c,Records__c,Status__c\np,bulk-0,1,ok\np,bulk-1,1,ok\n",
        object="Warehouse_Sync__e",
    )
    assert info["numberRecordsProcessed"] == 2 and info["numberRecordsFailed"] == 0
    published = bus.publish(TOPIC, [_pubsub_record("pubsub-0"), _pubsub_record("pubsub-1")], ids=["k0", "k1"])
    assert [r.correlation_key for r in published.results] == ["k0", "k1"]
    assert all(r.replay_id and not r.HasField("error") for r in published.results)
    stream_call = bus.channel.stream_stream(
        pb.method_path("PublishStream"),
        request_serializer=pb.PublishRequest.SerializeToString,
        response_deserializer=pb.PublishResponse.FromString,
    )
    schema_id = bus.topic(TOPIC).schema_id
    parsed = parse_schema(bus.schema(schema_id))

    def requests() -> Iterator[Any]:
        for i in range(2):
            out = io.BytesIO()
            schemaless_writer(out, parsed, _pubsub_record(f"stream-{i}"))
            yield pb.PublishRequest(
                topic_name=TOPIC, events=[pb.ProducerEvent(id=f"s{i}", schema_id=schema_id, payload=out.getvalue())]
            )

    answers = list(stream_call(requests(), metadata=bus.metadata, timeout=30))
    assert [a.results[0].correlation_key for a in answers] == ["s0", "s1"]
    stream = bus.subscribe()
    stream.send(topic_name=TOPIC, num_requested=100, replay_preset=pb.EARLIEST)
    events = stream.events(10)
    stream.close()
    decoded = [bus.decode(e) for e in events]
    assert [d["Run_Id__c"] for d in decoded] == [
        "rest",
        "composite",
        "collections-0",
        "collections-1",
        "bulk-0",
        "bulk-1",
        "pubsub-0",
        "pubsub-1",
        "stream-0",
        "stream-1",
    ]
    replay_ids = [e.replay_id for e in events]
    assert replay_ids == sorted(replay_ids) and len(set(replay_ids)) == 10
    assert replay_ids[6:8] == [r.replay_id for r in published.results]
    assert all(isinstance(d["CreatedDate"], int) and d["CreatedDate"] > 0 for d in decoded)
    assert all(d["CreatedById"].startswith("005") for d in decoded)


def test_publish_answers_per_event(bus: PubSubTestClient) -> None:
    info = bus.topic(TOPIC)
    parsed = parse_schema(bus.schema(info.schema_id))
    good = io.BytesIO()
    schemaless_writer(good, parsed, _pubsub_record("good"))
    events = [
        pb.ProducerEvent(id="ok", schema_id=info.schema_id, payload=good.getvalue()),
        pb.ProducerEvent(id="wrong-schema", schema_id="AAAAAAAAAAAAAAAAAAAAAA", payload=good.getvalue()),
        pb.ProducerEvent(id="garbage", schema_id=info.schema_id, payload=b"\xff\xff\xff"),
        pb.ProducerEvent(id="too-big", schema_id=info.schema_id, payload=b"\x00" * (1_048_576 + 1)),
    ]
    response = bus.publish_raw(pb.PublishRequest(topic_name=TOPIC, events=events))
    assert response.schema_id == info.schema_id and response.rpc_id
    ok, wrong, garbage, big = response.results
    assert ok.replay_id and not ok.HasField("error")
    for result in (wrong, garbage, big):
        assert result.error.code == pb.ERROR_PUBLISH and not result.replay_id, result
    assert "schema" in wrong.error.msg and "1048576" in big.error.msg
    assert [r.correlation_key for r in response.results] == ["ok", "wrong-schema", "garbage", "too-big"]


def test_publish_request_size_limit_and_change_channels(bus: PubSubTestClient) -> None:
    info = bus.topic(TOPIC)
    chunk = pb.ProducerEvent(id="x", schema_id=info.schema_id, payload=b"\x00" * 900_000)
    with pytest.raises(grpc.RpcError) as caught:  # 4 x 0.9 MB: over the 3 MB a request may carry
        bus.publish_raw(pb.PublishRequest(topic_name=TOPIC, events=[chunk] * 4))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "3145728" in (caught.value.details() or "") and "rpcId:" in (caught.value.details() or "")
    with pytest.raises(grpc.RpcError) as caught:
        bus.publish_raw(pb.PublishRequest(topic_name="/data/AccountChangeEvent", events=[]))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_publishing_counts_against_the_hourly_allocation(bus: PubSubTestClient, sf: SalesforceHttp) -> None:
    before = sf.get("limits").json()["HourlyPublishedPlatformEvents"]["Remaining"]
    bus.publish(TOPIC, [_pubsub_record("a"), _pubsub_record("b")])
    sf.post("sobjects/Warehouse_Sync__e", json=_event("c"))
    assert before - sf.get("limits").json()["HourlyPublishedPlatformEvents"]["Remaining"] == 3


def test_admin_events_lists_what_was_published(bus: PubSubTestClient, admin: Admin) -> None:
    bus.publish(TOPIC, [_pubsub_record("listed")])
    (event,) = admin.events("Warehouse_Sync__e")
    assert event["payload"]["Run_Id__c"] == "listed" and event["uuid"]
