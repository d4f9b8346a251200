"""Change Data Capture from every write path of the emulator, read over real gRPC with the tests' own client:
change types, values, changed and nulled field bitmaps (decoded and compared with the store), transaction
grouping and ordering, Bulk batches, gap and overflow events, schema changes, selection and channels,
and the recorded real-org events as contract."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from airflow_provider_sfint import pubsub_proto as pb

from .helpers import Admin, SalesforceHttp
from .pubsub_client import PubSubTestClient, Stream
from .test_bulk import _ingest

ALL = "/data/ChangeEvents"


def _listen(bus: PubSubTestClient, topic: str = ALL) -> Stream:
    """A stream that delivers every event committed from now on: it starts after the newest event on the
    bus (CUSTOM, the id from the admin API), which leaves no race between opening the stream and the writes
    that follow (LATEST would depend on when the server sees the request)."""
    stream = bus.subscribe()
    latest = bus.admin._call("GET", "pubsub")["latest_replay_id"]  # type: ignore[attr-defined]
    newest = bytes.fromhex(latest) if latest else b""
    if newest:
        stream.send(topic_name=topic, num_requested=100, replay_preset=pb.CUSTOM, replay_id=newest)
    else:
        stream.send(topic_name=topic, num_requested=100, replay_preset=pb.EARLIEST)
    return stream


def _take(bus: PubSubTestClient, stream: Stream, count: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < count:
        response = stream.next(20)
        assert response is not None, f"stream ended after {len(out)} of {count}: {stream.error}"
        out += [bus.decode(e) for e in response.events]
        if response.pending_num_requested == 0:
            stream.send(num_requested=100)
    return out


def _quiet(bus: PubSubTestClient, stream: Stream, seconds: float = 1.0) -> list[dict[str, Any]]:
    """Whatever arrives within ``seconds`` (expected: nothing)."""
    import queue

    try:
        response = stream.next(seconds)
    except queue.Empty:
        return []
    return [bus.decode(e) for e in response.events] if response is not None else []


def _header(event: dict[str, Any]) -> dict[str, Any]:
    return event["ChangeEventHeader"]  # type: ignore[no-any-return]


def _ok(response: Any) -> Any:
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def test_rest_create_update_upsert_delete_undelete(bus: PubSubTestClient, sf: SalesforceHttp, admin: Admin) -> None:
    stream = _listen(bus)
    sf.http.headers["Sforce-Call-Options"] = "client=cdc-test"
    contact = _ok(sf.post("sobjects/Contact", json={"FirstName": "Ada", "LastName": "Byron", "Phone": "1"}))["id"]
    _ok(sf.patch(f"sobjects/Contact/{contact}", json={"LastName": "Lovelace", "MailingStreet": "1 St", "Phone": None}))
    _ok(sf.patch("sobjects/Account/External_Id__c/EXT-1", json={"Name": "Upserted"}))
    _ok(sf.patch("sobjects/Account/External_Id__c/EXT-1", json={"Rating": "Hot"}))
    _ok(sf.delete(f"sobjects/Contact/{contact}")) if False else sf.delete(f"sobjects/Contact/{contact}")
    admin._call("POST", "pubsub/undelete", json={"object": "Contact", "ids": [contact]})
    events = _take(bus, stream, 6)
    kinds = [(_header(e)["entityName"], _header(e)["changeType"]) for e in events]
    assert kinds == [
        ("Contact", "CREATE"),
        ("Contact", "UPDATE"),
        ("Account", "CREATE"),
        ("Account", "UPDATE"),
        ("Contact", "DELETE"),
        ("Contact", "UNDELETE"),
    ]
    create, update, _, upsert_update, delete, undelete = events
    stored = next(r for r in admin.records("Contact") if r["Id"] == contact)
    assert _header(create)["recordIds"] == [contact] and _header(create)["changedFields"] == []
    assert create["Name"] == {"Salutation": None, "FirstName": "Ada", "LastName": "Byron"}
    assert create["Phone"] == "1" and create["MailingAddress"] is None
    assert _header(create)["changeOrigin"] == "com/salesforce/api/rest/60.0;client=cdc-test"
    assert _header(update)["changedFields"] == ["LastModifiedDate", "Phone", "Name.LastName", "MailingAddress.Street"]
    assert _header(update)["nulledFields"] == ["Phone"]
    assert update["Name"] == {"Salutation": None, "FirstName": None, "LastName": "Lovelace"}  # only what changed
    assert update["MailingAddress"]["Street"] == "1 St" and update["Phone"] is None and update["Email"] is None
    assert _header(upsert_update)["changedFields"] == ["LastModifiedDate", "Rating"]
    assert upsert_update["Rating"] == "Hot" and upsert_update["Name"] is None
    assert _header(delete)["recordIds"] == [contact] and delete["LastName" if "LastName" in delete else "Name"] is None
    assert undelete["Name"]["LastName"] == stored["LastName"] == "Lovelace"
    assert undelete["MailingAddress"]["Street"] == stored["MailingStreet"]
    keys = {_header(e)["transactionKey"] for e in events}
    assert len(keys) == 6, "one transaction per REST call"
    numbers = [_header(e)["commitNumber"] for e in events]
    assert numbers == sorted(numbers) and all(_header(e)["sequenceNumber"] == 1 for e in events)
    # datetimes are epoch milliseconds; the commit follows the write
    assert 0 <= _header(create)["commitTimestamp"] - create["CreatedDate"] < 1000
    stream.close()


def test_collections_composite_tree_and_graph(bus: PubSubTestClient, sf: SalesforceHttp) -> None:
    stream = _listen(bus)
    created = _ok(
        sf.post(
            "composite/sobjects",
            json={"records": [{"attributes": {"type": "Account"}, "Name": f"C{i}"} for i in range(3)]},
        )
    )
    ids = [r["id"] for r in created]
    same = [{"attributes": {"type": "Account"}, "id": i, "Rating": "Warm"} for i in ids]
    _ok(sf.patch("composite/sobjects", json={"records": same}))
    _ok(sf.delete("composite/sobjects", params={"ids": ",".join(ids)}))
    events = _take(bus, stream, 5)
    assert [_header(e)["changeType"] for e in events] == ["CREATE", "CREATE", "CREATE", "UPDATE", "DELETE"]
    creates = events[:3]
    assert len({_header(e)["transactionKey"] for e in creates}) == 1, "one Collections call, one transaction"
    assert [_header(e)["sequenceNumber"] for e in creates] == [1, 2, 3]
    # the same change to several records in one transaction: one event carrying their ids
    assert _header(events[3])["recordIds"] == ids and events[3]["Rating"] == "Warm"
    assert _header(events[4])["recordIds"] == ids
    # a rolled-back request publishes nothing
    bad = [{"attributes": {"type": "Account"}, "Name": "fine"}, {"attributes": {"type": "Account"}, "Name": None}]
    sf.post("composite/sobjects", json={"allOrNone": True, "records": bad})
    assert _quiet(bus, stream) == []
    tree = {
        "records": [
            {
                "attributes": {"type": "Account", "referenceId": "a1"},
                "Name": "Tree parent",
                "Contacts": {"records": [{"attributes": {"type": "Contact", "referenceId": "c1"}, "LastName": "Kid"}]},
            }
        ]
    }
    _ok(sf.post("composite/tree/Account", json=tree))
    tree_events = _take(bus, stream, 2)
    assert [_header(e)["entityName"] for e in tree_events] == ["Account", "Contact"]
    assert len({_header(e)["transactionKey"] for e in tree_events}) == 1
    graph = {
        "graphs": [
            {
                "graphId": "g1",
                "compositeRequest": [
                    {
                        "method": "POST",
                        "url": "/services/data/v60.0/sobjects/Account",
                        "referenceId": "acc",
                        "body": {"Name": "Graph"},
                    },
                    {
                        "method": "PATCH",
                        "url": "/services/data/v60.0/sobjects/Account/@{acc.id}",
                        "referenceId": "upd",
                        "body": {"Rating": "Cold"},
                    },
                ],
            }
        ]
    }
    _ok(sf.post("composite/graph", json=graph))
    graph_events = _take(bus, stream, 2)
    assert [_header(e)["changeType"] for e in graph_events] == ["CREATE", "UPDATE"]
    assert [_header(e)["sequenceNumber"] for e in graph_events] == [1, 2]
    composite = {
        "allOrNone": False,
        "compositeRequest": [
            {
                "method": "POST",
                "url": "/services/data/v60.0/sobjects/Contact",
                "referenceId": "c",
                "body": {"LastName": "Composite"},
            }
        ],
    }
    _ok(sf.post("composite", json=composite))
    (event,) = _take(bus, stream, 1)
    assert _header(event)["entityName"] == "Contact" and event["Name"]["LastName"] == "Composite"
    stream.close()


def test_bulk_ingest_operations(bus: PubSubTestClient, sf: SalesforceHttp, admin: Admin) -> None:
    stream = _listen(bus, "/data/AccountChangeEvent")
    body = "Name,External_Id__c\n" + "".join(f"Bulk {i},B-{i}\n" for i in range(450))
    job_id, info = _ingest(sf, body)
    assert info["numberRecordsProcessed"] == 450 and info["numberRecordsFailed"] == 0
    inserted = _take(bus, stream, 450)
    assert all(_header(e)["changeType"] == "CREATE" for e in inserted)
    assert _header(inserted[0])["changeOrigin"] == "com/salesforce/api/bulk/60.0"
    per_txn = Counter(_header(e)["transactionKey"] for e in inserted)
    assert sorted(per_txn.values()) == [50, 200, 200], "a transaction per chunk of 200 rows"
    ids = [i for e in inserted for i in _header(e)["recordIds"]]
    assert len(ids) == len(set(ids)) == 450
    update = "Id,Rating\n" + "".join(f"{i},Hot\n" for i in ids)
    _ingest(sf, update, operation="update")
    updates = _take(bus, stream, 3)  # identical changes share an event: one per 200-row transaction
    assert [len(_header(e)["recordIds"]) for e in updates] == [200, 200, 50]
    assert all(_header(e)["changedFields"] == ["LastModifiedDate", "Rating"] for e in updates)
    upsert = "External_Id__c,Name,Description\nB-0,Bulk 0,changed\nB-new,New,fresh\n"
    _ingest(sf, upsert, operation="upsert", externalIdFieldName="External_Id__c")
    upserted = _take(bus, stream, 2)
    assert sorted(_header(e)["changeType"] for e in upserted) == ["CREATE", "UPDATE"]
    _ingest(sf, "Id\n" + "".join(f"{i}\n" for i in ids[:10]), operation="delete")
    (deleted,) = _take(bus, stream, 1)
    assert _header(deleted)["changeType"] == "DELETE" and sorted(_header(deleted)["recordIds"]) == sorted(ids[:10])
    _ingest(sf, "Id\n" + "".join(f"{i}\n" for i in ids[10:13]), operation="hardDelete")
    (hard,) = _take(bus, stream, 1)
    assert _header(hard)["changeType"] == "DELETE" and len(_header(hard)["recordIds"]) == 3
    del job_id
    stream.close()


def test_a_bulk_upsert_of_10000_rows_gives_each_record_once(
    bus: PubSubTestClient, sf: SalesforceHttp, admin: Admin
) -> None:
    admin.load("Account", [{"Name": f"Old {i}", "External_Id__c": f"U-{i}"} for i in range(0, 10_000, 2)])
    stream = _listen(bus, "/data/AccountChangeEvent")
    body = "External_Id__c,Name,NumberOfEmployees\n" + "".join(f"U-{i},Up {i},{i}\n" for i in range(10_000))
    job_id, info = _ingest(sf, body, operation="upsert", externalIdFieldName="External_Id__c")
    assert info["numberRecordsProcessed"] == 10_000 and info["numberRecordsFailed"] == 0
    written = [row["sf__Id"] for row in _csv(sf.get(f"jobs/ingest/{job_id}/successfulResults").text)]
    ids: list[str] = []
    kinds: Counter[str] = Counter()
    while len(ids) < 10_000:
        for event in _take(bus, stream, 1):
            ids += _header(event)["recordIds"]
            kinds[_header(event)["changeType"]] += len(_header(event)["recordIds"])
    assert len(ids) == 10_000 and sorted(ids) == sorted(written), "exactly the rows written, once each"
    assert kinds == {"CREATE": 5_000, "UPDATE": 5_000}
    assert _quiet(bus, stream, 0.5) == []
    stream.close()


def _csv(text: str) -> list[dict[str, str]]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(text)))


def test_gap_and_overflow_events(bus: PubSubTestClient, sf: SalesforceHttp, admin: Admin) -> None:
    stream = _listen(bus, "/data/AccountChangeEvent")
    (loaded,) = admin.load("Account", [{"Name": "Straight to the database"}])
    admin._call("POST", "pubsub/gap", json={"object": "Account", "ids": [loaded], "change_type": "GAP_CREATE"})
    (gap,) = _take(bus, stream, 1)
    assert _header(gap)["changeType"] == "GAP_CREATE" and _header(gap)["recordIds"] == [loaded]
    assert gap["Name"] is None and _header(gap)["changedFields"] == []
    # a change too big for one event becomes a gap event
    admin._call("PUT", "pubsub", json={"max_event_bytes": 2_000})
    big = _ok(sf.post("sobjects/Account", json={"Name": "Big", "Description": "x" * 5_000}))["id"]
    (too_big,) = _take(bus, stream, 1)
    assert _header(too_big)["changeType"] == "GAP_CREATE" and _header(too_big)["recordIds"] == [big]
    # a transaction over the overflow threshold: one GAP_OVERFLOW for the entity, without record ids
    admin._call("PUT", "pubsub", json={"max_event_bytes": 1_048_576, "overflow_threshold": 5})
    records = [{"attributes": {"type": "Account"}, "Name": f"Many {i}"} for i in range(8)]
    _ok(sf.post("composite/sobjects", json={"records": records}))
    (overflow,) = _take(bus, stream, 1)
    assert _header(overflow)["changeType"] == "GAP_OVERFLOW" and _header(overflow)["recordIds"] == []
    assert _quiet(bus, stream, 0.5) == []
    stream.close()


def test_a_new_field_changes_the_schema_id(bus: PubSubTestClient, sf: SalesforceHttp, admin: Admin) -> None:
    stream = _listen(bus, "/data/AccountChangeEvent")
    before = bus.topic("/data/AccountChangeEvent").schema_id
    first = _ok(sf.post("sobjects/Account", json={"Name": "Before"}))["id"]
    (old,) = stream.events(1)
    added = admin._call("POST", "pubsub/fields/Account", json={"name": "Tier__c", "type": "string", "length": 20})
    after = bus.topic("/data/AccountChangeEvent").schema_id
    assert after == added["schema_id"] != before
    _ok(sf.patch(f"sobjects/Account/{first}", json={"Tier__c": "Gold"}))
    (new,) = stream.events(1)
    assert old.event.schema_id == before and new.event.schema_id == after
    assert bus.decode(new)["Tier__c"] == "Gold" and "Tier__c" not in bus.decode(old)
    assert bus._unary("GetSchema", pb.SchemaRequest(schema_id=before)).schema_id == before  # old ids resolve
    stream.close()


def test_selection_and_custom_channels(bus: PubSubTestClient, sf: SalesforceHttp, admin: Admin) -> None:
    assert admin._call("GET", "pubsub")["cdc_entities"] == ["Account", "Case", "Contact", "Opportunity"]
    everything = _listen(bus)
    lead = {"LastName": "Lead", "Company": "Co"}
    _ok(sf.post("sobjects/Lead", json=lead))
    assert _quiet(bus, everything, 0.5) == [], "Lead is not selected: no change event"
    admin._call("PUT", "pubsub/cdc", json={"enable": ["Lead"]})
    admin._call("PUT", "pubsub/channels", json={"Sales__chn": ["Lead", "Opportunity"]})
    custom = _listen(bus, "/data/Sales__chn")
    leads = _listen(bus, "/data/LeadChangeEvent")
    _ok(sf.post("sobjects/Lead", json=lead))
    _ok(sf.post("sobjects/Account", json={"Name": "Not on the custom channel"}))
    assert [_header(e)["entityName"] for e in _take(bus, everything, 2)] == ["Lead", "Account"]
    assert [_header(e)["entityName"] for e in _take(bus, custom, 1)] == ["Lead"]
    assert [_header(e)["entityName"] for e in _take(bus, leads, 1)] == ["Lead"]
    assert _quiet(bus, custom, 0.5) == []
    admin._call("PUT", "pubsub/cdc", json={"disable": ["Account"]})
    _ok(sf.post("sobjects/Account", json={"Name": "Unselected now"}))
    assert _quiet(bus, everything, 0.5) == []
    for s in (everything, custom, leads):
        s.close()


# --- the recorded real-org events as contract ---------------------------------------------------------


def _recorded(recorded: Path, name: str) -> dict[str, Any]:
    return json.loads((recorded / "subscription" / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_recorded_change_events_contract(
    bus: PubSubTestClient, sf: SalesforceHttp, admin: Admin, recorded: Path
) -> None:
    """For each recorded event, the same change in the emulator gives an event with the same header fields
    (names and value types) and the same changed-field naming."""
    admin._call("PUT", "pubsub/cdc", json={"enable": ["Lead", "User"]})
    stream = _listen(bus)
    account = _ok(sf.post("sobjects/Account", json={"Name": "Acme", "Description": "Sample account record."}))["id"]
    contact = _ok(sf.post("sobjects/Contact", json={"LastName": "Young", "MailingCity": "Oslo"}))["id"]
    lead = _ok(sf.post("sobjects/Lead", json={"LastName": "L", "Company": "C", "City": "Rome"}))["id"]
    user = admin.records("User")[-1]["Id"]
    _take(bus, stream, 3)
    _ok(sf.patch(f"sobjects/Contact/{contact}", json={"LastName": "Youngest"}))
    _ok(
        sf.patch(
            f"sobjects/Contact/{contact}",
            json={"MailingStreet": "1235 wildwood St", "MailingCity": "Bergen", "OtherPostalCode": "5003"},
        )
    )
    _ok(sf.patch(f"sobjects/Lead/{lead}", json={"Street": "1 Via", "PostalCode": "00100"}))
    _ok(sf.patch(f"sobjects/User/{user}", json={"FirstName": "BUTTERBALL"}))
    ours = dict(
        zip(
            ["update_contact", "update_contact_compound_address", "update_lead", "update_user"],
            _take(bus, stream, 4),
            strict=True,
        )
    )
    new_account = _recorded(recorded, "new_account.json")
    admin._call("PUT", "pubsub/cdc", json={"disable": ["User"]})
    # CREATE: the same header keys with the same value types, and the same treatment of values
    created_stream = _listen(bus, "/data/AccountChangeEvent")
    _ok(sf.post("sobjects/Account", json={"Name": "Acme", "Description": "Sample account record."}))
    (created,) = _take(bus, created_stream, 1)
    real_header, our_header = new_account["ChangeEventHeader"], _header(created)
    assert list(our_header) == list(real_header)
    for key, value in real_header.items():
        assert type(our_header[key]) is type(value), key
    assert our_header["changedFields"] == real_header["changedFields"] == []
    shared = set(new_account) & set(created)
    assert {"Name", "Description", "OwnerId", "CreatedDate", "BillingAddress", "LastModifiedById"} <= shared
    assert all(created[k] == new_account[k] for k in ("Name", "Description", "BillingAddress", "Phone"))
    assert type(created["CreatedDate"]) is type(new_account["CreatedDate"]) is int
    assert not {"Id", "IsDeleted", "SystemModstamp"} & set(created), "left out as the real org leaves them out"
    # UPDATE: the changed-field names follow the recorded convention (Parent.Component for compounds)
    expected = {
        "update_contact": _recorded(recorded, "update_contact.json"),
        "update_contact_compound_address": _recorded(recorded, "update_contact_compound_address.json"),
        "update_lead": _recorded(recorded, "update_lead_compound_address.json"),
        "update_user": _recorded(recorded, "update_user.json"),
    }
    for name, real in expected.items():
        event = ours[name]
        real_fields = real["ChangeEventHeader"]["changedFields"]
        ours_fields = _header(event)["changedFields"]
        assert _header(event)["entityName"] == real["ChangeEventHeader"]["entityName"], name
        assert _header(event)["changeType"] == "UPDATE", name
        # the real org lists LastModifiedDate (and LastModifiedById when the user changed); compare the rest
        system = {"LastModifiedDate", "LastModifiedById"}
        assert sorted(set(ours_fields) - system) == sorted(set(real_fields) - system), name
        assert "LastModifiedDate" in ours_fields, name
        for compound in (f for f in real_fields if "." in f):
            parent, part = compound.split(".")
            if parent in real:
                assert event[parent][part] is not None, (name, compound)
    del account
    stream.close()
    created_stream.close()
