"""Composite resources and sObject Collections (spec section 3; items 33-45) and events (item 66)."""

from __future__ import annotations

from typing import Any

from .helpers import Admin, SalesforceHttp

V = "/services/data/v60.0"
ROLLED_BACK = "The transaction was rolled back since another operation in the same transaction failed."
ALL_OR_NONE = "Record rolled back because not all records were valid and the request was using AllOrNone header"


def _sub(ref: str, method: str, url: str, body: Any = None) -> dict[str, Any]:
    sub = {"method": method, "url": url, "referenceId": ref}
    if body is not None:
        sub["body"] = body
    return sub


def _count(sf: SalesforceHttp, obj: str, where: str) -> int:
    return int(sf.query(f"SELECT COUNT() FROM {obj} WHERE {where}").json()["totalSize"])


def test_item33_composite_limit_and_response_shape(sf: SalesforceHttp) -> None:
    too_many = [_sub(f"r{i}", "GET", f"{V}/limits") for i in range(26)]
    assert sf.post("composite", json={"compositeRequest": too_many}).status_code == 400
    subs = [_sub(f"r{i}", "GET", f"{V}/sobjects/Account/describe") for i in range(3)]
    r = sf.post("composite", json={"compositeRequest": subs})
    assert r.status_code == 200
    out = r.json()["compositeResponse"]
    assert [x["referenceId"] for x in out] == ["r0", "r1", "r2"]
    for x in out:
        assert set(x) == {"body", "httpHeaders", "httpStatusCode", "referenceId"}
        assert x["httpStatusCode"] == 200 and "Content-Length" not in x["httpHeaders"]


def test_item34_references_substituted_and_unknown_reference_fails(sf: SalesforceHttp) -> None:
    subs = [
        _sub("acct", "POST", f"{V}/sobjects/Account", {"Name": "Initech"}),
        _sub("con", "POST", f"{V}/sobjects/Contact", {"LastName": "Lumbergh", "AccountId": "@{acct.id}"}),
        _sub("q", "GET", f"{V}/query?q=SELECT+Id+FROM+Contact+WHERE+LastName='Lumbergh'"),
        _sub("upd", "PATCH", f"{V}/sobjects/Contact/@{{q.records[0].Id}}", {"Title": "Boss"}),
        _sub("read", "GET", f"{V}/sobjects/Account/@{{acct.id}}?fields=Name"),
    ]
    out = sf.post("composite", json={"allOrNone": False, "compositeRequest": subs}).json()["compositeResponse"]
    assert [x["httpStatusCode"] for x in out] == [201, 201, 200, 204, 200]
    assert out[4]["body"]["Name"] == "Initech"
    assert out[0]["httpHeaders"]["Location"].endswith(out[0]["body"]["id"])
    dangling = [
        _sub("a", "POST", f"{V}/sobjects/Account", {"Name": "Ok"}),
        _sub("b", "POST", f"{V}/sobjects/Contact", {"LastName": "x", "AccountId": "@{nothere.id}"}),
    ]
    out = sf.post("composite", json={"allOrNone": False, "compositeRequest": dangling}).json()["compositeResponse"]
    assert out[0]["httpStatusCode"] == 201
    assert out[1]["httpStatusCode"] == 400 and out[1]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    failing_parent = [
        _sub("a", "POST", f"{V}/sobjects/Account", {}),
        _sub("b", "POST", f"{V}/sobjects/Contact", {"LastName": "dep", "AccountId": "@{a.id}"}),
    ]
    out = sf.post("composite", json={"compositeRequest": failing_parent}).json()["compositeResponse"]
    assert out[0]["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert out[1]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert _count(sf, "Contact", "LastName = 'dep'") == 0


def test_item35_all_or_none_rolls_back_everything(sf: SalesforceHttp) -> None:
    subs = [
        _sub("a", "POST", f"{V}/sobjects/Account", {"Name": "Rollback Co"}),
        _sub("c", "POST", f"{V}/sobjects/Contact", {"LastName": "Rb", "Email": "nope"}),
        _sub("d", "POST", f"{V}/sobjects/Account", {"Name": "Never"}),
    ]
    r = sf.post("composite", json={"allOrNone": True, "compositeRequest": subs})
    assert r.status_code == 200
    out = r.json()["compositeResponse"]
    assert out[1]["httpStatusCode"] == 400 and out[1]["body"][0]["errorCode"] == "INVALID_EMAIL_ADDRESS"
    for x in (out[0], out[2]):
        assert x["httpStatusCode"] == 400
        assert x["body"] == [{"errorCode": "PROCESSING_HALTED", "message": ROLLED_BACK}]
    assert _count(sf, "Account", "Name IN ('Rollback Co', 'Never')") == 0


def test_item36_composite_counts_one_call(sf: SalesforceHttp) -> None:
    before = sf.api_usage(sf.get("limits"))
    subs = [_sub(f"r{i}", "POST", f"{V}/sobjects/Account", {"Name": f"One call {i}"}) for i in range(10)]
    sf.post("composite", json={"compositeRequest": subs})
    after = sf.api_usage(sf.get("limits"))
    assert after - before == 2  # the composite call and this /limits call


def test_item37_batch_runs_serially_and_halts(sf: SalesforceHttp) -> None:
    existing = sf.post("sobjects/Account", json={"Name": "Batch target"}).json()["id"]
    before = sf.api_usage(sf.get("limits"))
    body = {
        "batchRequests": [
            {"method": "PATCH", "url": f"v60.0/sobjects/Account/{existing}", "richInput": {"Name": "Batched"}},
            {"method": "GET", "url": f"{V}/sobjects/Account/{existing}"},
            {"method": "POST", "url": "v60.0/sobjects/Account", "richInput": {}},
            {"method": "GET", "url": "v60.0/limits"},
        ]
    }
    r = sf.post("composite/batch", json=body)
    assert r.status_code == 200
    data = r.json()
    assert data["hasErrors"] is True
    assert [x["statusCode"] for x in data["results"]] == [204, 200, 400, 200]
    assert data["results"][0]["result"] is None
    assert data["results"][1]["result"]["Name"] == "Batched"
    after = sf.api_usage(sf.get("limits"))
    assert after - before == 4 + 1
    halting = sf.post("composite/batch", json={"haltOnError": True, "batchRequests": body["batchRequests"][2:]})
    results = halting.json()["results"]
    assert results[0]["statusCode"] == 400
    assert results[1]["statusCode"] == 412
    assert results[1]["result"][0]["errorCode"] == "BATCH_PROCESSING_HALTED"


def test_item38_tree_inserts_atomically(sf: SalesforceHttp) -> None:
    before = sf.api_usage(sf.get("limits"))
    tree = {
        "records": [
            {
                "attributes": {"type": "Account", "referenceId": "a1"},
                "Name": "Hooli",
                "Contacts": {
                    "records": [{"attributes": {"type": "Contact", "referenceId": "c1"}, "LastName": "Belson"}]
                },
            }
        ]
    }
    r = sf.post("composite/tree/Account", json=tree)
    assert r.status_code == 201
    body = r.json()
    assert body["hasErrors"] is False
    assert [x["referenceId"] for x in body["results"]] == ["a1", "c1"]
    assert sf.api_usage(sf.get("limits")) - before == 2
    contact = sf.query("SELECT Account.Name FROM Contact WHERE LastName = 'Belson'").json()["records"][0]
    assert contact["Account"]["Name"] == "Hooli"
    bad = {
        "records": [
            {
                "attributes": {"type": "Account", "referenceId": "a2"},
                "Name": "Pied Piper",
                "Contacts": {"records": [{"attributes": {"type": "Contact", "referenceId": "c2"}}]},
            }
        ]
    }
    r = sf.post("composite/tree/Account", json=bad)
    assert r.status_code == 400
    body = r.json()
    assert body["hasErrors"] is True
    assert body["results"] == [
        {
            "referenceId": "c2",
            "errors": [
                {
                    "statusCode": "REQUIRED_FIELD_MISSING",
                    "message": "Required fields are missing: [LastName]",
                    "fields": ["LastName"],
                }
            ],
        }
    ]
    assert _count(sf, "Account", "Name = 'Pied Piper'") == 0
    big = {
        "records": [{"attributes": {"type": "Account", "referenceId": f"r{i}"}, "Name": f"n{i}"} for i in range(201)]
    }
    assert sf.post("composite/tree/Account", json=big).status_code == 400


def test_item39_graph_limits_and_atomic_graphs(sf: SalesforceHttp) -> None:
    graphs = {
        "graphs": [
            {
                "graphId": "g1",
                "compositeRequest": [
                    _sub("a", "POST", f"{V}/sobjects/Account", {"Name": "Graph ok"}),
                    _sub("c", "POST", f"{V}/sobjects/Contact", {"LastName": "G", "AccountId": "@{a.id}"}),
                ],
            },
            {
                "graphId": "g2",
                "compositeRequest": [
                    _sub("a", "POST", f"{V}/sobjects/Account", {"Name": "Graph bad"}),
                    _sub("c", "POST", f"{V}/sobjects/Contact", {"AccountId": "@{a.id}"}),
                ],
            },
        ]
    }
    r = sf.post("composite/graph", json=graphs)
    assert r.status_code == 200
    out = r.json()["graphs"]
    assert [g["graphId"] for g in out] == ["g1", "g2"]
    assert out[0]["isSuccessful"] is True and out[1]["isSuccessful"] is False
    assert len(out[0]["graphResponse"]["compositeResponse"]) == 2
    assert _count(sf, "Account", "Name = 'Graph ok'") == 1
    assert _count(sf, "Account", "Name = 'Graph bad'") == 0
    many_nodes = {
        "graphs": [{"graphId": "big", "compositeRequest": [_sub(f"n{i}", "GET", f"{V}/limits") for i in range(501)]}]
    }
    assert sf.post("composite/graph", json=many_nodes).status_code == 400
    many_graphs = {
        "graphs": [{"graphId": f"g{i}", "compositeRequest": [_sub("x", "GET", f"{V}/limits")]} for i in range(76)]
    }
    assert sf.post("composite/graph", json=many_graphs).status_code == 400
    chain = [_sub("n0", "POST", f"{V}/sobjects/Account", {"Name": "d0"})]
    for i in range(1, 16):
        chain.append(_sub(f"n{i}", "PATCH", f"{V}/sobjects/Account/@{{n{i - 1}.id}}", {"Name": f"d{i}"}))
    deep = sf.post("composite/graph", json={"graphs": [{"graphId": "deep", "compositeRequest": chain}]})
    assert deep.status_code == 400 and "depth" in deep.json()[0]["message"]


def test_item40_collections_record_count_limits(sf: SalesforceHttp) -> None:
    many = [{"attributes": {"type": "Account"}, "Name": f"n{i}"} for i in range(201)]
    r = sf.post("composite/sobjects", json={"records": many})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    empty = sf.post("composite/sobjects", json={"records": []})
    assert empty.status_code == 400
    assert empty.json() == [{"message": "At least 1 record is required", "errorCode": "REQUIRED_FIELD_MISSING"}]
    assert sf.patch("composite/sobjects/Account/External_Id__c", json={"records": many}).status_code == 400


def test_item41_collections_results_in_order(sf: SalesforceHttp) -> None:
    records = [
        {"attributes": {"type": "Contact"}, "LastName": "One"},
        {"attributes": {"type": "Contact"}, "FirstName": "NoLast"},
        {"attributes": {"type": "Account"}, "Name": "Three"},
    ]
    out = sf.post("composite/sobjects", json={"allOrNone": False, "records": records}).json()
    assert out[0]["success"] is True and out[0]["id"].startswith("003") and out[0]["errors"] == []
    assert out[1] == {
        "success": False,
        "errors": [
            {
                "statusCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [LastName]",
                "fields": ["LastName"],
            }
        ],
    }
    assert out[2]["id"].startswith("001")
    up = sf.patch(
        "composite/sobjects/Account/External_Id__c",
        json={"records": [{"attributes": {"type": "Account"}, "External_Id__c": "COL-1", "Name": "Col"}]},
    ).json()
    assert up[0]["created"] is True
    again = sf.patch(
        "composite/sobjects/Account/External_Id__c",
        json={"records": [{"attributes": {"type": "Account"}, "External_Id__c": "COL-1", "Name": "Col 2"}]},
    ).json()
    assert again[0] == {"id": up[0]["id"], "success": True, "errors": [], "created": False}


def test_item42_collections_all_or_none(sf: SalesforceHttp) -> None:
    records = [
        {"attributes": {"type": "Account"}, "External_Id__c": "AON-1", "Name": "Good"},
        {"attributes": {"type": "Account"}, "External_Id__c": "AON-2", "Name": "Bad", "OwnerId": "005xyz"},
    ]
    r = sf.patch("composite/sobjects/Account/External_Id__c", json={"allOrNone": True, "records": records})
    assert r.status_code == 200
    out = r.json()
    assert all(x["success"] is False for x in out)
    assert out[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert out[0]["errors"][0]["message"] == ALL_OR_NONE
    assert out[0]["created"] is True
    assert out[1]["errors"][0]["statusCode"] == "MALFORMED_ID"
    assert _count(sf, "Account", "External_Id__c IN ('AON-1', 'AON-2')") == 0


def test_item43_collections_update_without_id(sf: SalesforceHttp) -> None:
    out = sf.patch(
        "composite/sobjects", json={"records": [{"attributes": {"type": "Contact"}, "LastName": "x"}]}
    ).json()
    assert out == [
        {
            "success": False,
            "errors": [
                {"statusCode": "MISSING_ARGUMENT", "message": "Id not specified in an update call", "fields": []}
            ],
        }
    ]


def test_a_collections_update_repeating_an_id_fails_every_copy(sf: SalesforceHttp, admin: Admin) -> None:
    a, b = admin.load("Account", [{"Name": "Repeated"}, {"Name": "Once"}])
    records = [
        {"attributes": {"type": "Account"}, "id": a, "Name": "First"},
        {"attributes": {"type": "Account"}, "id": b, "Name": "Renamed"},
        {"attributes": {"type": "Account"}, "id": a[:15], "Name": "Second"},
    ]
    out = sf.patch("composite/sobjects", json={"records": records}).json()
    assert [r["success"] for r in out] == [False, True, False]
    assert out[0]["errors"] == [
        {"statusCode": "DUPLICATE_VALUE", "message": f"Duplicate id in list: {a}", "fields": []}
    ]
    names = {r["Id"]: r["Name"] for r in admin.records("Account")}
    assert names[a] == "Repeated" and names[b] == "Renamed"


def test_item44_collections_upsert_type_mismatch_and_old_version(sf: SalesforceHttp) -> None:
    r = sf.patch(
        "composite/sobjects/Account/External_Id__c",
        json={"records": [{"attributes": {"type": "Contact"}, "External_Id__c": "T-1", "LastName": "x"}]},
    )
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_TYPE"
    with SalesforceHttp(sf.url, sf.token, version="45.0") as old:
        r = old.patch(
            "composite/sobjects/Account/External_Id__c",
            json={"records": [{"attributes": {"type": "Account"}, "External_Id__c": "T-1", "Name": "x"}]},
        )
    assert r.status_code == 404


def test_item45_collections_delete(sf: SalesforceHttp) -> None:
    a = sf.post("sobjects/Account", json={"Name": "Del A"}).json()["id"]
    b = sf.post("sobjects/Account", json={"Name": "Del B"}).json()["id"]
    sf.delete(f"sobjects/Account/{b}")
    out = sf.delete("composite/sobjects", params={"ids": f"{a},{b}", "allOrNone": "false"}).json()
    assert out[0] == {"id": a, "success": True, "errors": []}
    assert out[1]["id"] == b and out[1]["success"] is False
    assert out[1]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"


def test_collections_duplicate_external_ids_in_one_call(sf: SalesforceHttp) -> None:
    out = sf.patch(
        "composite/sobjects/Account/External_Id__c",
        json={
            "records": [
                {"attributes": {"type": "Account"}, "External_Id__c": "DX-1", "Name": "a"},
                {"attributes": {"type": "Account"}, "External_Id__c": "DX-1", "Name": "b"},
                {"attributes": {"type": "Account"}, "External_Id__c": "DX-2", "Name": "c"},
            ]
        },
    ).json()
    assert [x["success"] for x in out] == [False, False, True]
    assert out[0]["errors"][0]["statusCode"] == "DUPLICATE_EXTERNAL_ID"


def test_collections_retrieve(sf: SalesforceHttp) -> None:
    a = sf.post("sobjects/Account", json={"Name": "Ret"}).json()["id"]
    got = sf.get("composite/sobjects/Account", params={"ids": f"{a},001Hx000000zzzzIAA", "fields": "Name"}).json()
    assert got[0]["Name"] == "Ret" and got[1] is None
    posted = sf.post("composite/sobjects/Account", json={"ids": [a], "fields": ["Id", "Name"]}).json()
    assert posted[0]["Id"] == a


def test_relationship_by_external_id_and_lookup_errors(sf: SalesforceHttp) -> None:
    sf.post("sobjects/Account", json={"Name": "Parent", "External_Id__c": "PAR-1"})
    ok = sf.post(
        "sobjects/ERP_Order__c",
        json={"Name": "O-1", "External_Id__c": "ORD-1", "Account__r": {"External_Id__c": "PAR-1"}, "Amount__c": 10.5},
    )
    assert ok.status_code == 201, ok.text
    row = sf.query("SELECT Account__r.Name, Amount__c FROM ERP_Order__c WHERE External_Id__c = 'ORD-1'").json()
    assert row["records"][0]["Account__r"]["Name"] == "Parent"
    assert '"Amount__c":10.50' in sf.query("SELECT Amount__c FROM ERP_Order__c").text
    missing = sf.post(
        "sobjects/ERP_Order__c",
        json={"Name": "O-2", "External_Id__c": "ORD-2", "Account__r": {"External_Id__c": "NOPE"}},
    )
    assert missing.status_code == 400
    assert missing.json()[0]["message"] == (
        "Foreign key external ID: NOPE not found for field External_Id__c in entity Account"
    )
    wrong_type = sf.post("sobjects/Contact", json={"LastName": "x", "AccountId": "003Hx0000000001IAA"})
    assert wrong_type.json()[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    bad_id = sf.post("sobjects/Contact", json={"LastName": "x", "AccountId": "garbage"})
    assert bad_id.json()[0]["errorCode"] == "MALFORMED_ID"


def test_record_validation_codes(sf: SalesforceHttp) -> None:
    cases = [
        ({"Name": "x" * 256}, "STRING_TOO_LONG"),
        ({"Name": "x", "Ownership": "Whatever"}, None),  # unrestricted picklist accepts any value
        ({"Name": "x", "CreatedDate": "2020-01-01T00:00:00Z"}, "INVALID_FIELD_FOR_INSERT_UPDATE"),
        ({"Name": "x", "NumberOfEmployees": 123456789}, "NUMBER_OUTSIDE_VALID_RANGE"),
        ({"Name": "x", "Bogus__c": 1}, "INVALID_FIELD"),
        ({"Name": "x", "Regions__c": "EMEA;MARS"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
    ]
    for body, code in cases:
        r = sf.post("sobjects/Account", json=body)
        if code is None:
            assert r.status_code == 201, r.text
        else:
            assert r.status_code == 400 and r.json()[0]["errorCode"] == code, (body, r.text)
    stage = sf.post("sobjects/Opportunity", json={"Name": "o", "StageName": "Nope", "CloseDate": "2025-01-01"})
    assert stage.json()[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    email = sf.post("sobjects/Contact", json={"LastName": "x", "Email": "nope"})
    assert email.json() == [
        {"message": "Email: invalid email address: nope", "errorCode": "INVALID_EMAIL_ADDRESS", "fields": ["Email"]}
    ]
    bad_date = sf.post(
        "sobjects/Opportunity", json={"Name": "o", "StageName": "Prospecting", "CloseDate": "2003-04-99"}
    )
    assert bad_date.status_code == 400 and bad_date.json()[0]["errorCode"] == "JSON_PARSER_ERROR"


def test_item53b_strings_are_trimmed_and_blank_is_null(sf: SalesforceHttp, admin: Admin) -> None:
    a = sf.post(
        "sobjects/Account",
        json={
            "Name": "  Acme \n",
            "Description": " line one\nline two\t ",
            "Site": "   ",
            "TickerSymbol": "\u00a0NBSP\u00a0",
        },
    ).json()["id"]
    row = next(r for r in admin.records("Account") if r["Id"] == a)
    assert row["Name"] == "Acme"
    assert row["Description"] == "line one\nline two"
    assert row["Site"] is None
    assert row["TickerSymbol"] == "\u00a0NBSP\u00a0"


def test_item66_platform_event_publish(sf: SalesforceHttp, admin: Admin) -> None:
    before = len(admin.events("Warehouse_Sync__e"))
    ids = []
    for i in range(3):
        r = sf.post("sobjects/Warehouse_Sync__e/", json={"Pipeline__c": "p", "Run_Id__c": str(i)})
        assert r.status_code == 201
        body = r.json()
        assert body["success"] is True
        (entry,) = body["errors"]
        assert entry["statusCode"] == "OPERATION_ENQUEUED" and entry["fields"] == []
        assert len(entry["message"]) == 36
        ids.append(body["id"])
    assert all(i.startswith("e01") for i in ids)
    events = admin.events("Warehouse_Sync__e")[before:]
    assert [e["payload"]["Run_Id__c"] for e in events] == ["0", "1", "2"]
    replays = [e["replayId"] for e in events]
    assert replays == sorted(replays) and len(set(replays)) == 3
    many = sf.post(
        "composite/sobjects",
        json={"records": [{"attributes": {"type": "Warehouse_Sync__e"}, "Pipeline__c": "bulk"} for _ in range(5)]},
    ).json()
    assert all(x["success"] and x["errors"][0]["statusCode"] == "OPERATION_ENQUEUED" for x in many)
    assert sf.query("SELECT Id FROM Warehouse_Sync__e").json()[0]["errorCode"] == "INVALID_TYPE"
