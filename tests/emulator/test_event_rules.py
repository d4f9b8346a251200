"""The org's event rules (what an Apex trigger publishing a platform event would do): the demo org publishes
``Order_Event__e`` when an Opportunity becomes Closed Won, on every write path, once per transition, and
never for a write that rolls back. Read over real gRPC with the tests' own client."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from airflow_provider_sfint.emulator.schema import Org

from .helpers import Admin, SalesforceHttp
from .pubsub_client import PubSubTestClient
from .test_bulk import _ingest
from .test_change_events import _listen, _quiet, _take

TOPIC = "/event/Order_Event__e"


def _open(sf: SalesforceHttp, n: int) -> list[dict[str, Any]]:
    soql = f"SELECT Id, Name, AccountId, Amount, CloseDate FROM Opportunity WHERE IsClosed = false LIMIT {n}"
    records = sf.query(soql).json()["records"]
    assert len(records) == n
    return records  # type: ignore[no-any-return]


def test_an_opportunity_won_publishes_an_order_event_with_its_values(
    bus: PubSubTestClient, sf: SalesforceHttp, admin: Admin
) -> None:
    stream = _listen(bus, TOPIC)
    (opp,) = _open(sf, 1)
    assert sf.patch(f"sobjects/Opportunity/{opp['Id']}", json={"StageName": "Closed Won"}).status_code == 204
    (event,) = _take(bus, stream, 1)
    assert event["Opportunity_Id__c"] == opp["Id"] and event["Account_Id__c"] == opp["AccountId"]
    assert event["Order_Name__c"] == opp["Name"] and event["Amount__c"] == pytest.approx(opp["Amount"])
    assert date(1970, 1, 1) + timedelta(days=event["Close_Date__c"]) == date.fromisoformat(opp["CloseDate"])
    assert event["CreatedById"].startswith("005") and len(event["EventUuid"]) == 36
    # still won, another field changed; a save that changes nothing: no new order
    assert sf.patch(f"sobjects/Opportunity/{opp['Id']}", json={"Amount": 10}).status_code == 204
    assert sf.patch(f"sobjects/Opportunity/{opp['Id']}", json={"StageName": "Closed Won"}).status_code == 204
    assert _quiet(bus, stream) == []
    # lost, then won again: a second transition, a second order (as the trigger would fire again)
    sf.patch(f"sobjects/Opportunity/{opp['Id']}", json={"StageName": "Closed Lost"})
    sf.patch(f"sobjects/Opportunity/{opp['Id']}", json={"StageName": "Closed Won"})
    (again,) = _take(bus, stream, 1)
    assert again["Opportunity_Id__c"] == opp["Id"] and again["Amount__c"] == 10
    stream.close()


def test_every_write_path_publishes_and_a_rollback_publishes_nothing(
    bus: PubSubTestClient, sf: SalesforceHttp, admin: Admin
) -> None:
    stream = _listen(bus, TOPIC)
    account = sf.post("sobjects/Account", json={"Name": "Buyer"}).json()["id"]
    created = sf.post(
        "sobjects/Opportunity",
        json={"Name": "Won at once", "StageName": "Closed Won", "CloseDate": "2026-12-01", "AccountId": account},
    )
    assert created.status_code == 201
    (first,) = _take(bus, stream, 1)
    assert first["Opportunity_Id__c"] == created.json()["id"]
    opps = _open(sf, 8)
    collections = [{"attributes": {"type": "Opportunity"}, "id": o["Id"], "StageName": "Closed Won"} for o in opps[:3]]
    assert all(r["success"] for r in sf.patch("composite/sobjects", json={"records": collections}).json())
    composite = {
        "allOrNone": True,
        "compositeRequest": [
            {"method": "PATCH", "url": f"/services/data/v60.0/sobjects/Opportunity/{opps[3]['Id']}",
             "referenceId": "won", "body": {"StageName": "Closed Won"}},
        ],
    }  # fmt: skip
    assert sf.post("composite", json=composite).status_code == 200
    bulk = "Id,StageName\n" + "".join(f"{o['Id']},Closed Won\n" for o in opps[4:6])
    _, info = _ingest(sf, bulk, object="Opportunity", operation="update")
    assert info["numberRecordsProcessed"] == 2 and info["numberRecordsFailed"] == 0
    published = _take(bus, stream, 6)
    assert sorted(e["Opportunity_Id__c"] for e in published) == sorted(o["Id"] for o in opps[:6])
    # all or none: the second record fails (a restricted picklist), so the first's win is rolled back with it
    doomed = [
        {"attributes": {"type": "Opportunity"}, "id": opps[6]["Id"], "StageName": "Closed Won"},
        {"attributes": {"type": "Opportunity"}, "id": opps[7]["Id"], "StageName": "Not A Stage"},
    ]
    results = sf.patch("composite/sobjects", json={"allOrNone": True, "records": doomed}).json()
    assert not any(r["success"] for r in results)
    assert _quiet(bus, stream) == []
    assert admin.records("Opportunity")  # the org still answers; the rolled-back win left no order behind
    stream.close()


def test_a_rule_that_names_what_the_org_lacks_is_refused_at_load() -> None:
    base: dict[str, Any] = {"events": {"X__e": {"fields": {"A__c": {"type": "string", "length": 10}}}}}
    rule = {"object": "Opportunity", "when": {"StageName": "Closed Won"}, "publish": "X__e", "values": {"A__c": "Id"}}
    assert Org({**base, "eventRules": {"R": rule}}).event_rules[0].event == "X__e"
    for change, message in (
        ({"object": "Nope"}, "eventRules.R: object 'Nope'"),
        ({"publish": "Account"}, "not a platform event"),
        ({"when": {"Stage": "x"}}, "Opportunity has no field 'Stage'"),
        ({"values": {"B__c": "Id"}}, "X__e has no writable field 'B__c'"),
        ({"after": ["delete"]}, "use create and/or update"),
    ):
        with pytest.raises(ValueError, match=message):
            Org({**base, "eventRules": {"R": {**rule, **change}}})
