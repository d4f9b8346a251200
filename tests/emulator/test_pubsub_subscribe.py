"""The emulator's Pub/Sub API, Subscribe and the unary calls, over real gRPC with the tests' own client:
replay presets, flow control, keep-alive and idle close on the emulator's clock, retention, replay id
errors, authentication (and a token refreshed mid-stream), topic rules, faults and delivery limits."""

from __future__ import annotations

import itertools
import queue
import time
from typing import Any

import grpc
import httpx
import pytest

from airflow_provider_sfint import pubsub_proto as pb
from airflow_provider_sfint.emulator import EmulatorProcess

from .helpers import Admin, SalesforceHttp
from .pubsub_client import PubSubTestClient, Stream

TOPIC = "/data/AccountChangeEvent"
PREFIX = "sfdc.platform.eventbus.grpc"


def _error_code(error: grpc.RpcError | None) -> str:
    assert error is not None
    return dict(error.trailing_metadata() or ()).get("error-code", "")


def _create_accounts(sf: SalesforceHttp, n: int, prefix: str = "Acct") -> list[str]:
    ids = []
    for start in range(0, n, 200):
        records = [
            {"attributes": {"type": "Account"}, "Name": f"{prefix} {i}"} for i in range(start, min(n, start + 200))
        ]
        r = sf.post("composite/sobjects", json={"allOrNone": True, "records": records})
        assert r.status_code == 200, r.text
        ids += [x["id"] for x in r.json()]
    return ids


def _nothing(stream: Stream, seconds: float) -> None:
    """No event arrives on ``stream`` within ``seconds`` (a keep-alive may)."""
    try:
        response = stream.next(seconds)
    except queue.Empty:
        return
    assert response is None or not response.events, response


def _ids(client: PubSubTestClient, events: list[Any]) -> list[str]:
    return [rid for e in events for rid in client.decode(e)["ChangeEventHeader"]["recordIds"]]


def test_topic_and_schema(bus: PubSubTestClient, emulator_server: EmulatorProcess) -> None:
    info = bus.topic(TOPIC)
    assert info.topic_name == TOPIC and info.can_subscribe and not info.can_publish
    assert info.tenant_guid == emulator_server.org_id and info.rpc_id
    schema = bus.schema(info.schema_id)
    assert schema["name"] == "AccountChangeEvent" and schema["namespace"] == "com.sforce.eventbus"
    header = schema["fields"][0]
    assert header["name"] == "ChangeEventHeader"
    assert [f["name"] for f in header["type"]["fields"]] == [
        "entityName",
        "recordIds",
        "changeType",
        "changeOrigin",
        "transactionKey",
        "sequenceNumber",
        "commitTimestamp",
        "commitNumber",
        "commitUser",
        "nulledFields",
        "diffFields",
        "changedFields",
    ]
    assert all(f["type"][0] == "null" for f in schema["fields"][1:]), "every object field is nullable"
    names = [f["name"] for f in schema["fields"]]
    assert "BillingAddress" in names and "BillingStreet" not in names and "Id" not in names
    event = bus.topic("/event/Warehouse_Sync__e")
    assert event.can_publish and bus.schema(event.schema_id)["name"] == "Warehouse_Sync__e"
    with pytest.raises(grpc.RpcError) as caught:
        bus.topic("/data/accountchangeevent")  # channel names are case-sensitive
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert dict(caught.value.trailing_metadata())["error-code"] == f"{PREFIX}.topic.not.found"
    assert "rpcId:" in (caught.value.details() or "")
    with pytest.raises(grpc.RpcError) as caught:
        bus._unary("GetSchema", pb.SchemaRequest(schema_id="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_replay_presets(bus: PubSubTestClient, sf: SalesforceHttp) -> None:
    first = _create_accounts(sf, 3, "Before")
    latest = bus.subscribe()
    latest.send(topic_name=TOPIC, num_requested=10)  # LATEST (the default): only what comes after
    earliest = bus.subscribe()
    earliest.send(topic_name=TOPIC, num_requested=10, replay_preset=pb.EARLIEST)
    from_start = earliest.events(3)
    assert _ids(bus, from_start) == first
    ids = [e.replay_id for e in from_start]
    assert all(len(i) == 8 for i in ids) and ids == sorted(ids)
    assert all(int.from_bytes(b, "big") - int.from_bytes(a, "big") > 1 for a, b in itertools.pairwise(ids))
    time.sleep(0.3)
    later = _create_accounts(sf, 2, "After")
    assert _ids(bus, latest.events(2)) == later
    custom = bus.subscribe()  # CUSTOM starts after the given replay id
    custom.send(topic_name=TOPIC, num_requested=10, replay_preset=pb.CUSTOM, replay_id=from_start[0].replay_id)
    assert _ids(bus, custom.events(4)) == first[1:] + later
    # replay options count in the first request only
    custom.send(topic_name=TOPIC, num_requested=1, replay_preset=pb.EARLIEST)
    _nothing(custom, 1.5)  # nothing replayed
    for stream in (latest, earliest, custom):
        stream.close()


def test_requests_add_up_and_are_capped_at_100(bus: PubSubTestClient, sf: SalesforceHttp, admin: Admin) -> None:
    stream = bus.subscribe()
    stream.send(topic_name=TOPIC, num_requested=30)
    stream.send(topic_name=TOPIC, num_requested=90)  # 30 + 90 = 120 outstanding, capped at 100
    time.sleep(0.5)
    _create_accounts(sf, 150)
    got: list[Any] = []
    pending = []
    while len(got) < 100:
        response = stream.next()
        assert response is not None, stream.error
        got.extend(response.events)
        pending.append(response.pending_num_requested)
    assert len(got) == 100 and pending[-1] == 0
    assert all(a >= b for a, b in itertools.pairwise(pending))
    time.sleep(0.5)
    stream.send(topic_name=TOPIC, num_requested=20)  # nothing more until asked
    more = stream.events(20)
    assert len(_ids(bus, got + more)) == 120
    stream.close()


def test_num_requested_must_be_positive(bus: PubSubTestClient) -> None:
    stream = bus.subscribe()
    stream.send(topic_name=TOPIC, num_requested=0)
    assert stream.next() is None
    assert stream.error is not None and stream.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _error_code(stream.error) == f"{PREFIX}.subscription.fetch.requested.events.invalid"


def test_a_later_request_for_another_topic_fails(bus: PubSubTestClient) -> None:
    stream = bus.subscribe()
    stream.send(topic_name=TOPIC, num_requested=5)
    stream.send(topic_name="/data/ContactChangeEvent", num_requested=5)
    assert stream.next() is None
    assert stream.error is not None and stream.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _error_code(stream.error) == f"{PREFIX}.subscription.fetch.topic.mismatch"
    assert "rpcId:" in (stream.error.details() or "")


def test_keepalive_and_idle_close_on_the_emulator_clock(
    bus: PubSubTestClient, sf: SalesforceHttp, admin: Admin
) -> None:
    admin._call("PUT", "pubsub", json={"keepalive_seconds": 1, "idle_seconds": 2})
    _create_accounts(sf, 1)
    stream = bus.subscribe()
    stream.send(topic_name=TOPIC, num_requested=5, replay_preset=pb.EARLIEST)
    (event,) = stream.events(1)
    keepalive = stream.next(5)  # a request is pending and nothing arrives: an empty response within 1 s
    assert keepalive is not None and not keepalive.events and keepalive.pending_num_requested == 4
    assert int.from_bytes(keepalive.latest_replay_id, "big") >= int.from_bytes(event.replay_id, "big")
    stream.close()
    # with nothing pending, the server closes the stream once the idle time has passed on its clock
    admin._call("PUT", "pubsub", json={"keepalive_seconds": 270, "idle_seconds": 60})
    idle = bus.subscribe()
    idle.send(topic_name=TOPIC, num_requested=1, replay_preset=pb.EARLIEST)
    assert len(idle.events(1)) == 1
    time.sleep(0.5)
    assert not idle.ended.is_set()
    admin._call("PUT", "clock", json={"offset_seconds": 61})
    assert idle.ended.wait(5) and idle.error is None


def test_default_keepalive_is_270_seconds(bus: PubSubTestClient, admin: Admin) -> None:
    assert admin._call("GET", "pubsub")["keepalive_seconds"] == 270
    stream = bus.subscribe()
    stream.send(topic_name=TOPIC, num_requested=5)
    with pytest.raises(queue.Empty):
        stream.next(1)
    admin._call("PUT", "clock", json={"offset_seconds": 271})  # the clock moves: the keep-alive is due
    response = stream.next(5)
    assert response is not None and not response.events
    stream.close()


def test_replay_ids_expire_after_72_hours_and_corrupted_ones_fail(
    bus: PubSubTestClient, sf: SalesforceHttp, admin: Admin
) -> None:
    _create_accounts(sf, 2)
    stream = bus.subscribe()
    stream.send(topic_name=TOPIC, num_requested=5, replay_preset=pb.EARLIEST)
    old = stream.events(2)
    stream.close()
    corrupted = bus.subscribe()
    damaged = bytes([old[0].replay_id[0] ^ 0, *old[0].replay_id[1:-1], old[0].replay_id[-1] ^ 1])
    corrupted.send(topic_name=TOPIC, num_requested=5, replay_preset=pb.CUSTOM, replay_id=damaged)
    assert corrupted.next() is None and corrupted.error is not None
    assert corrupted.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _error_code(corrupted.error) == f"{PREFIX}.subscription.fetch.replayid.corrupted"
    short = bus.subscribe()
    short.send(topic_name=TOPIC, num_requested=5, replay_preset=pb.CUSTOM, replay_id=b"\x01\x02")
    assert short.next() is None and _error_code(short.error) == f"{PREFIX}.subscription.fetch.replayid.corrupted"
    admin._call("PUT", "clock", json={"offset_seconds": 72 * 3600 + 60})
    bus.metadata[0] = ("accesstoken", admin.token())  # the session idled out with the clock
    expired = bus.subscribe()
    expired.send(topic_name=TOPIC, num_requested=5, replay_preset=pb.CUSTOM, replay_id=old[0].replay_id)
    assert expired.next() is None and expired.error is not None
    assert _error_code(expired.error) == f"{PREFIX}.subscription.fetch.replayid.validation.failed"
    # EARLIEST now starts after the retention window: the old events are gone
    fresh = bus.subscribe()
    fresh.send(topic_name=TOPIC, num_requested=5, replay_preset=pb.EARLIEST)
    _nothing(fresh, 1)
    fresh.close()


def test_authentication(bus: PubSubTestClient, emulator_server: EmulatorProcess, admin: Admin) -> None:
    url, org = emulator_server.url, emulator_server.org_id
    token = admin.token()
    cases = {
        "missing": ([("instanceurl", url), ("tenantid", org)], "auth.headers.invalid"),
        "bad token": ([("accesstoken", "nope"), ("instanceurl", url), ("tenantid", org)], "auth.error"),
        "other org": ([("accesstoken", token), ("instanceurl", url), ("tenantid", "00D000000000001AAA")], "auth.error"),
    }
    for name, (metadata, code) in cases.items():
        with pytest.raises(grpc.RpcError) as caught:
            bus.topic(TOPIC, metadata)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
        assert _error_code(caught.value) == f"{PREFIX}.service.{code}", name
        stream = bus.subscribe(metadata)
        stream.send(topic_name=TOPIC, num_requested=1)
        assert stream.next() is None and stream.error is not None
        assert stream.error.code() == grpc.StatusCode.UNAUTHENTICATED, name
    revoked = admin.token()
    httpx.post(f"{url}/services/oauth2/revoke", data={"token": revoked})
    with pytest.raises(grpc.RpcError) as caught:
        bus.topic(TOPIC, [("accesstoken", revoked), ("instanceurl", url), ("tenantid", org)])
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_token_refreshed_mid_stream(bus: PubSubTestClient, sf: SalesforceHttp, admin: Admin) -> None:
    stream = bus.subscribe()
    stream.send(topic_name=TOPIC, num_requested=1)
    time.sleep(0.3)
    _create_accounts(sf, 1)
    assert len(stream.events(1)) == 1
    admin._call("POST", "tokens/expire")  # every session ends
    fresh = admin.token()
    stream.send(topic_name=TOPIC, num_requested=1, auth_refresh=fresh)  # the stream carries the new token
    time.sleep(0.3)
    with SalesforceHttp(sf.url, fresh) as again:
        _create_accounts(again, 1)
    assert len(stream.events(1)) == 1
    admin._call("POST", "tokens/expire")
    stream.send(topic_name=TOPIC, num_requested=1)  # no refresh this time: the stream fails
    assert stream.next() is None and stream.error is not None
    assert stream.error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_unavailable_fault_and_a_cut_stream(bus: PubSubTestClient, sf: SalesforceHttp, admin: Admin) -> None:
    _create_accounts(sf, 10)
    admin._call("PUT", "pubsub", json={"unavailable_calls": 2, "cut_stream_after_events": 4})
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as caught:
            bus.topic(TOPIC)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert _error_code(caught.value) == f"{PREFIX}.service.unavailable"
    assert bus.topic(TOPIC).topic_name == TOPIC  # the third call goes through
    stream = bus.subscribe()
    stream.send(topic_name=TOPIC, num_requested=10, replay_preset=pb.EARLIEST)
    got = []
    while (response := stream.next()) is not None:
        got.extend(response.events)
    assert len(got) == 4 and stream.error is not None and stream.error.code() == grpc.StatusCode.UNAVAILABLE
    # resuming after the last replay id received loses and repeats nothing
    admin._call("PUT", "pubsub", json={"cut_stream_after_events": None})
    resumed = bus.subscribe()
    resumed.send(topic_name=TOPIC, num_requested=10, replay_preset=pb.CUSTOM, replay_id=got[-1].replay_id)
    rest = resumed.events(6)
    assert len(set(_ids(bus, got + rest))) == 10
    resumed.close()


def test_delivery_is_counted_in_limits_and_refused_when_used_up(
    bus: PubSubTestClient, sf: SalesforceHttp, admin: Admin
) -> None:
    _create_accounts(sf, 5)
    before = sf.get("limits").json()["DailyDeliveredPlatformEvents"]
    stream = bus.subscribe()
    stream.send(topic_name=TOPIC, num_requested=5, replay_preset=pb.EARLIEST)
    stream.events(5)
    stream.close()
    after = sf.get("limits").json()["DailyDeliveredPlatformEvents"]
    assert before["Remaining"] - after["Remaining"] == 5 and after["Max"] == before["Max"]
    admin.limits(platform_events_delivered_used=after["Max"])
    refused = bus.subscribe()
    refused.send(topic_name=TOPIC, num_requested=5, replay_preset=pb.EARLIEST)
    assert refused.next() is None and refused.error is not None
    assert refused.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_delayed_delivery(bus: PubSubTestClient, sf: SalesforceHttp, admin: Admin) -> None:
    admin._call("PUT", "pubsub", json={"delivery_delay_seconds": 1.5, "keepalive_seconds": 0.3})
    stream = bus.subscribe()
    stream.send(topic_name=TOPIC, num_requested=5)
    time.sleep(0.5)
    start = time.monotonic()
    _create_accounts(sf, 1)
    keepalives = []
    while True:
        response = stream.next(10)
        assert response is not None, stream.error
        if response.events:
            break
        keepalives.append(response.latest_replay_id)
    assert time.monotonic() - start >= 1.4
    # a keep-alive never points past an event still waiting: resuming there would skip it
    event_id = int.from_bytes(response.events[0].replay_id, "big")
    assert keepalives and all(int.from_bytes(k, "big") < event_id for k in keepalives if k)
    stream.close()


def test_tls_uses_the_https_certificate(tls_server: EmulatorProcess) -> None:
    assert tls_server.cert_path is not None
    with Admin(tls_server.url, verify=str(tls_server.cert_path)) as admin:
        token = admin.token()
    client = PubSubTestClient(
        f"localhost:{tls_server.grpc_port}",
        token,
        tls_server.url,
        tls_server.org_id,
        root_cert=tls_server.cert_path.read_bytes(),
    )
    assert client.topic(TOPIC).can_subscribe
    client.close()
    plain = PubSubTestClient(tls_server.grpc_target, token, tls_server.url, tls_server.org_id)
    with pytest.raises(grpc.RpcError) as caught:
        plain._unary("GetTopic", pb.TopicRequest(topic_name=TOPIC))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # a plaintext client cannot talk to the TLS port
    plain.close()


def test_the_admin_api_reports_the_grpc_port_and_channels(
    emulator_server: EmulatorProcess, bus: PubSubTestClient, sf: SalesforceHttp, admin: Admin
) -> None:
    assert admin._call("GET", "pubsub")["grpc_port"] == emulator_server.grpc_port
    _create_accounts(sf, 3)
    stream = bus.subscribe()
    stream.send(topic_name=TOPIC, num_requested=3, replay_preset=pb.EARLIEST)
    last = stream.events(3)[-1]
    stream.close()
    channels = {c["channel"]: c for c in admin._call("GET", "pubsub/channels")}
    assert channels[TOPIC]["latest_replay_id"] == last.replay_id.hex()
    assert channels[TOPIC]["delivered"] == 3 and channels[TOPIC]["events"] == 3
    assert {"/data/ChangeEvents", "/event/Warehouse_Sync__e", "/data/ERP_Order__ChangeEvent"} <= set(channels)
