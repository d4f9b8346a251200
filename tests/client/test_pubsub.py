"""The Pub/Sub client (``client/pubsub.py``, ``client/changes.py``) against the emulator over real gRPC:
decoding (the recorded real-org event shapes, bitmaps in both hex cases and nested), subscribe with flow
control and an idle stop, reconnection through a cut stream, UNAVAILABLE and an expired session with every
event exactly once, typed errors, and publishing."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

from airflow_provider_sfint.client import ClientConfig
from airflow_provider_sfint.client.changes import ChangeEvent, EventSchema, PlatformEvent, bitmap_field_names
from airflow_provider_sfint.client.errors import (
    DeliveryAllocationError,
    InsecureTransportError,
    ReplayIdCorruptedError,
    ReplayIdExpiredError,
    TopicNotFoundError,
)
from airflow_provider_sfint.client.pubsub import FetchBatch, PubSubClient
from airflow_provider_sfint.client.transport import Transport
from airflow_provider_sfint.emulator import EmulatorProcess

from ..emulator.helpers import Admin, SalesforceHttp

TOPIC = "/data/AccountChangeEvent"


@pytest.fixture()
def transport(config: ClientConfig) -> Iterator[Transport]:
    t = Transport(config)
    yield t
    t.close()


def _client(transport: Transport, server: EmulatorProcess) -> PubSubClient:
    return PubSubClient.for_transport(transport, server.grpc_target, plaintext=True)


async def _collect(stream: AsyncIterator[FetchBatch], count: int) -> list[Any]:
    events: list[Any] = []
    async for batch in stream:
        events += batch.events
        if len(events) >= count:
            break
    return events


def _accounts(sf: SalesforceHttp, n: int, prefix: str = "A") -> list[str]:
    ids: list[str] = []
    for start in range(0, n, 200):
        records = [
            {"attributes": {"type": "Account"}, "Name": f"{prefix}{i}"} for i in range(start, min(n, start + 200))
        ]
        ids += [r["id"] for r in sf.post("composite/sobjects", json={"records": records}).json()]
    return ids


def test_subscribe_decodes_and_stops_when_idle(
    transport: Transport, emulator_server: EmulatorProcess, sf: SalesforceHttp
) -> None:
    ids = _accounts(sf, 3)
    sf.patch(f"sobjects/Account/{ids[0]}", json={"BillingCity": "Oslo", "Description": None, "Phone": "1"})

    async def run() -> list[Any]:
        async with _client(transport, emulator_server) as client:
            events: list[Any] = []
            async for batch in client.subscribe(TOPIC, replay_preset="EARLIEST", idle_timeout=1.0):
                events += batch.events
            return events

    events = asyncio.run(run())
    assert [e.change_type for e in events] == ["CREATE", "CREATE", "CREATE", "UPDATE"]
    assert all(isinstance(e, ChangeEvent) and e.entity == "Account" for e in events)
    assert [e.record_ids[0] for e in events[:3]] == ids
    update = events[3]
    assert update.changed_fields == ("LastModifiedDate", "Phone", "BillingAddress.City")
    assert update.carried() == {
        "LastModifiedDate": update.values["LastModifiedDate"],
        "Phone": "1",
        "BillingAddress.City": "Oslo",
    }
    assert events[0].values["Name"] == "A0" and events[0].commit_timestamp is not None
    replay = [e.replay_id for e in events]
    assert len(set(replay)) == 4 and all(len(r) == 8 for r in replay)


@pytest.mark.parametrize("fault", ["cut", "unavailable", "expired session"])
def test_reconnects_with_every_event_exactly_once(
    fault: str, transport: Transport, emulator_server: EmulatorProcess, sf: SalesforceHttp, admin: Admin
) -> None:
    ids = _accounts(sf, 350)

    async def run() -> tuple[list[Any], int]:
        async with _client(transport, emulator_server) as client:
            got: list[Any] = []
            async for batch in client.subscribe(TOPIC, replay_preset="EARLIEST", idle_timeout=2.0):
                got += batch.events
                if len(got) >= 120 and fault == "expired session" and not admin_done:
                    admin._call("POST", "tokens/expire")
                    admin_done.append(True)
            return got, client.reconnects

    admin_done: list[bool] = []
    if fault == "cut":
        admin._call("PUT", "pubsub", json={"cut_stream_after_events": 100})
    elif fault == "unavailable":
        admin._call("PUT", "pubsub", json={"unavailable_calls": 3})
    got, reconnects = asyncio.run(run())
    received = [i for e in got for i in e.record_ids]
    assert sorted(received) == sorted(ids) and len(received) == 350, "every event once"
    if fault == "cut":
        assert reconnects >= 3
    elif fault == "unavailable":
        assert reconnects >= 1


def test_typed_errors(config: ClientConfig, emulator_server: EmulatorProcess, sf: SalesforceHttp, admin: Admin) -> None:
    _accounts(sf, 2)

    async def first_id() -> bytes:
        transport = Transport(config)
        async with _client(transport, emulator_server) as client:
            events = await _collect(client.subscribe(TOPIC, replay_preset="EARLIEST", idle_timeout=1.0), 1)
        await transport.aclose()
        return bytes(events[0].replay_id)

    replay = asyncio.run(first_id())

    async def subscribe(**kw: Any) -> None:
        transport = Transport(config)  # one per event loop: its async HTTP client belongs to the loop
        try:
            async with _client(transport, emulator_server) as client:
                async for _ in client.subscribe(kw.pop("topic", TOPIC), idle_timeout=1.0, **kw):
                    pass
        finally:
            await transport.aclose()

    with pytest.raises(ReplayIdCorruptedError) as corrupted:
        asyncio.run(subscribe(replay_preset="CUSTOM", replay_id=b"\x00" * 8))
    assert corrupted.value.rpc_id and corrupted.value.grpc_status == "INVALID_ARGUMENT"
    with pytest.raises(TopicNotFoundError):
        asyncio.run(subscribe(topic="/data/NoSuchChangeEvent"))
    admin._call("PUT", "clock", json={"offset_seconds": 73 * 3600})
    try:
        with pytest.raises(ReplayIdExpiredError) as expired:
            asyncio.run(subscribe(replay_preset="CUSTOM", replay_id=replay))
        assert "retention" in str(expired.value)
    finally:
        admin._call("PUT", "clock", json={"offset_seconds": 0})
    admin.limits(platform_events_delivered_max=0)
    with pytest.raises(DeliveryAllocationError):
        asyncio.run(subscribe(replay_preset="EARLIEST"))


def test_plaintext_only_to_loopback_and_tls_always_verified(transport: Transport) -> None:
    with pytest.raises(InsecureTransportError):
        PubSubClient.for_transport(transport, "api.pubsub.salesforce.com:7443", plaintext=True)
    with pytest.raises(InsecureTransportError):
        PubSubClient.for_transport(transport, "api.pubsub.salesforce.com:7443", verify=False)


def test_tls_to_the_emulator_with_its_certificate(tls_server: EmulatorProcess) -> None:
    from airflow_provider_sfint.emulator import CLIENT_ID, CLIENT_SECRET

    assert tls_server.cert_path is not None
    config = ClientConfig(
        auth_type="client_credentials",
        login_url=tls_server.url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        verify=str(tls_server.cert_path),
        cache_key="tls-pubsub",
    )
    transport = Transport(config)

    async def run() -> Any:
        client = PubSubClient.for_transport(
            transport, f"localhost:{tls_server.grpc_port}", verify=str(tls_server.cert_path)
        )
        async with client:
            return await client.get_topic(TOPIC)

    try:
        assert asyncio.run(run()).can_subscribe
    finally:
        transport.close()


def test_publish_through_pubsub_reaches_a_subscriber(
    transport: Transport, emulator_server: EmulatorProcess, admin: Admin
) -> None:
    topic = "/event/Warehouse_Sync__e"

    async def run() -> tuple[list[Any], list[Any]]:
        async with _client(transport, emulator_server) as client:
            outcomes = await client.publish(
                topic,
                [{"Pipeline__c": "p", "Run_Id__c": f"r{i}", "Records__c": float(i)} for i in range(3)],
                correlation_keys=["k0", "k1", "k2"],
            )
            events = await _collect(client.subscribe(topic, replay_preset="EARLIEST", idle_timeout=1.0), 3)
            return outcomes, events

    outcomes, events = asyncio.run(run())
    assert [o.correlation_key for o in outcomes] == ["k0", "k1", "k2"] and all(o.error is None for o in outcomes)
    assert [e.replay_id for e in events] == [o.replay_id for o in outcomes]
    assert all(isinstance(e, PlatformEvent) and e.name == "Warehouse_Sync__e" for e in events)
    assert [e.values["Run_Id__c"] for e in events] == ["r0", "r1", "r2"]
    assert events[0].created_date is not None and events[0].event_uuid


# --- decoding the recorded real-org shapes ---------------------------------------------------------------------


def _schema(fields: list[tuple[str, Any]], name: str = "ContactChangeEvent") -> EventSchema:
    header = {
        "type": "record",
        "name": "ChangeEventHeader",
        "fields": [
            {"name": "entityName", "type": "string"},
            {"name": "recordIds", "type": {"type": "array", "items": "string"}},
            {"name": "changeType", "type": "string"},
            {"name": "changeOrigin", "type": "string"},
            {"name": "transactionKey", "type": "string"},
            {"name": "sequenceNumber", "type": "int"},
            {"name": "commitTimestamp", "type": "long"},
            {"name": "commitNumber", "type": "long"},
            {"name": "commitUser", "type": "string"},
            {"name": "nulledFields", "type": {"type": "array", "items": "string"}},
            {"name": "diffFields", "type": {"type": "array", "items": "string"}},
            {"name": "changedFields", "type": {"type": "array", "items": "string"}},
        ],
    }
    body = [{"name": "ChangeEventHeader", "type": header}]
    body += [{"name": n, "type": ["null", t], "default": None} for n, t in fields]
    return EventSchema.from_json("S1", json.dumps({"type": "record", "name": name, "fields": body}))


ADDRESS = {
    "type": "record",
    "name": "Address",
    "fields": [{"name": p, "type": ["null", "string"], "default": None} for p in ("Street", "City", "PostalCode")],
}
PERSON = {
    "type": "record",
    "name": "Switchable_PersonName",
    "fields": [
        {"name": p, "type": ["null", "string"], "default": None} for p in ("Salutation", "FirstName", "LastName")
    ],
}


def test_bitmaps_both_hex_cases_and_nested() -> None:
    schema = _schema(
        [("Name", PERSON), ("LastModifiedDate", "long"), ("MailingAddress", ADDRESS), ("OtherAddress", "Address")]
    )
    # fields: 0 header, 1 Name, 2 LastModifiedDate, 3 MailingAddress, 4 OtherAddress
    for text in (["0x04", "1-0x04", "3-0x03", "4-0x04"], ["0x04", "1-0X04", "3-0x3", "4-0x4"]):
        assert bitmap_field_names(text, schema) == [
            "LastModifiedDate",
            "Name.LastName",
            "MailingAddress.Street",
            "MailingAddress.City",
            "OtherAddress.PostalCode",
        ]
    assert bitmap_field_names(["0x0a"], schema) == ["Name", "MailingAddress"]
    assert bitmap_field_names(["LastModifiedDate", "Name.LastName"], schema) == ["LastModifiedDate", "Name.LastName"]
    with pytest.raises(ValueError):
        bitmap_field_names(["0x100"], schema)
    with pytest.raises(ValueError):
        bitmap_field_names(["2-0x01"], schema)


def _encode(schema: EventSchema, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(json.loads(schema.json_text)), record)
    return out.getvalue()


def _bitmaps(names: list[str], schema: EventSchema) -> list[str]:
    """The tests' own encoder of names into bitmaps (the inverse of what the client decodes)."""
    top = 0
    nested: dict[int, int] = {}
    for name in names:
        parent, _, part = name.partition(".")
        index = schema.fields.index(parent)
        if part:
            nested[index] = nested.get(index, 0) | 1 << schema.components[index].index(part)
        else:
            top |= 1 << index
    return [hex(top), *(f"{i}-{hex(b)}" for i, b in sorted(nested.items()))]


@pytest.mark.parametrize(
    "name",
    [
        "update_contact.json",
        "update_contact_compound_address.json",
        "update_lead_compound_address.json",
        "update_user.json",
    ],
)
def test_recorded_update_shapes_decode(recorded: Path, name: str) -> None:
    """Each recorded UPDATE, sent as the Pub/Sub API sends it (Avro, bitmaps), decodes back to the recorded
    header and changed-field names."""
    from airflow_provider_sfint.client.changes import parse_event

    real = json.loads((recorded / "subscription" / name).read_text(encoding="utf-8"))
    header = real["ChangeEventHeader"]
    address = "Address" if header["entityName"] == "Lead" else "MailingAddress"
    fields: list[tuple[str, Any]] = [("LastModifiedDate", "string"), ("LastModifiedById", "string"), ("Name", PERSON)]
    fields += [(address, ADDRESS)] + ([("OtherAddress", "Address")] if address == "MailingAddress" else [])
    schema = _schema(fields)
    record: dict[str, Any] = {f: None for f, _ in fields}
    record["LastModifiedDate"] = real.get("LastModifiedDate")
    for compound in ("Name", address):
        if compound in real:
            record[compound] = {
                **{p["name"]: None for p in (PERSON if compound == "Name" else ADDRESS)["fields"]},
                **real[compound],
            }
    ids = header.get("recordIds") or [header["recordId"]]
    record["ChangeEventHeader"] = {
        "entityName": header["entityName"],
        "recordIds": ids,
        "changeType": header["changeType"],
        "changeOrigin": header["changeOrigin"],
        "transactionKey": header["transactionKey"],
        "sequenceNumber": header["sequenceNumber"],
        "commitTimestamp": header["commitTimestamp"],
        "commitNumber": header["commitNumber"],
        "commitUser": header["commitUser"],
        "nulledFields": [],
        "diffFields": [],
        "changedFields": _bitmaps(header["changedFields"], schema),
    }
    event = parse_event(schema, _encode(schema, record), b"\x00" * 8, "e")
    assert isinstance(event, ChangeEvent)
    assert list(event.changed_fields) == header["changedFields"]
    assert (event.entity, event.change_type, list(event.record_ids)) == (header["entityName"], "UPDATE", ids)
    assert (event.commit_number, event.transaction_key, event.sequence_number) == (
        header["commitNumber"],
        header["transactionKey"],
        header["sequenceNumber"],
    )
    assert (
        event.commit_timestamp is not None
        and int(event.commit_timestamp.timestamp() * 1000) == header["commitTimestamp"]
    )
    for compound in ("Name", address):
        for part, value in real.get(compound, {}).items():
            assert event.values[f"{compound}.{part}"] == value
