"""The emulator's answers have the shapes a real org returned (``../shared/fixtures/recorded``).

For each kind of response the recorded file and the emulator's answer must have the same key sets,
value types and formatting conventions; where the same request can be replayed, the same body.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .helpers import SalesforceHttp

V = "/services/data/v60.0"


def _load(recorded: Path, name: str) -> Any:
    return json.loads((recorded / name).read_text(encoding="utf-8"))


def _shape(value: Any) -> Any:
    """Key sets and JSON types, recursively (lists: the shape of their first element)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def test_create_result_matches_recorded(sf: SalesforceHttp, recorded: Path) -> None:
    ours = sf.post("sobjects/Account", json={"Name": "Contract"}).json()
    assert _shape(ours) == _shape(_load(recorded, "create-ok.json"))
    assert re.fullmatch(r"001[A-Za-z0-9]{15}", ours["id"])


def test_unknown_field_error_matches_recorded(sf: SalesforceHttp, recorded: Path) -> None:
    expected = _load(recorded, "unknown-field.json")
    ours = sf.post("sobjects/Account", json={"Name": "x", "AccountNumer": "1"})
    assert ours.status_code == 400
    assert ours.json() == expected


def test_read_only_field_error_matches_recorded(sf: SalesforceHttp, recorded: Path) -> None:
    expected = _load(recorded, "invalid-field-upsert.json")
    account = sf.post("sobjects/Account", json={"Name": "Master"}).json()["id"]
    ours = sf.patch("sobjects/Account/External_Id__c/RO-1", json={"Name": "x", "MasterRecordId": account})
    assert ours.status_code == 400
    assert ours.json() == expected


def test_deleted_entity_error_matches_recorded(sf: SalesforceHttp, recorded: Path) -> None:
    expected = _load(recorded, "crm/delete/not-found.json")
    record_id = sf.post("sobjects/Account", json={"Name": "gone"}).json()["id"]
    sf.delete(f"sobjects/Account/{record_id}")
    assert sf.delete(f"sobjects/Account/{record_id}").json() == expected


def test_unknown_object_error_matches_recorded_layout(sf: SalesforceHttp, recorded: Path) -> None:
    (expected,) = _load(recorded, "unknown-object.json")
    (ours,) = sf.query("SELECT Id, Name, BillingCity, IsDeleted FROM Accout").json()
    assert set(ours) == set(expected) and ours["errorCode"] == expected["errorCode"] == "INVALID_TYPE"
    exp_lines, our_lines = expected["message"].split("\n"), ours["message"].split("\n")
    assert len(our_lines) == len(exp_lines) == 5
    assert our_lines[0] == "" and our_lines[2].strip() == "^"
    assert re.fullmatch(r"ERROR at Row:1:Column:\d+", our_lines[3])
    assert our_lines[4] == exp_lines[4]
    caret_col = our_lines[2].index("^")
    assert our_lines[1][caret_col:].startswith("Accout")


def test_collections_create_all_or_none_matches_recorded(sf: SalesforceHttp, recorded: Path) -> None:
    expected = _load(recorded, "batch/create/contacts/partial-but-allOrNone.json")
    payload = {
        "allOrNone": True,
        "records": [
            {"FirstName": "Siena", "attributes": {"type": "Contact"}},
            {"FirstName": "Markus", "LastName": "Blevins", "attributes": {"type": "Contact"}},
        ],
    }
    assert sf.post("composite/sobjects", json=payload).json() == expected


def test_collections_create_success_matches_recorded(sf: SalesforceHttp, recorded: Path) -> None:
    payload = _load(recorded, "batch/create/contacts/payload.json")
    expected = _load(recorded, "batch/create/contacts/success.json")
    ours = sf.post("composite/sobjects", json=payload).json()
    assert _shape(ours) == _shape(expected) and len(ours) == len(expected)


def test_collections_update_results_match_recorded(sf: SalesforceHttp, recorded: Path) -> None:
    payload = _load(recorded, "batch/update/contacts/payload.json")
    no_ids = {"allOrNone": False, "records": [{k: v for k, v in r.items() if k != "id"} for r in payload["records"]]}
    assert sf.patch("composite/sobjects", json=no_ids).json() == _load(
        recorded, "batch/update/contacts/err-each-no-ids.json"
    )
    created = sf.post(
        "composite/sobjects",
        json={
            "records": [
                {"LastName": "a", "attributes": {"type": "Contact"}},
                {"LastName": "b", "attributes": {"type": "Contact"}},
            ]
        },
    )
    ids = [r["id"] for r in created.json()]
    good = {"allOrNone": False, "records": [{**r, "id": i} for r, i in zip(payload["records"], ids, strict=True)]}
    ours = sf.patch("composite/sobjects", json=good).json()
    expected = _load(recorded, "batch/update/contacts/success.json")
    assert _shape(ours) == _shape(expected)
    assert [r["id"] for r in ours] == ids
    partial = {
        "allOrNone": True,
        "records": [
            {"id": ids[0], "LastName": "ok", "attributes": {"type": "Contact"}},
            {"id": ids[1], "unknownField_LastName": "x", "attributes": {"type": "Contact"}},
        ],
    }
    assert sf.patch("composite/sobjects", json=partial).json() == _load(
        recorded, "batch/update/contacts/partial-but-allOrNone.json"
    )


def test_collections_per_record_error_shape_matches_recorded(sf: SalesforceHttp, recorded: Path) -> None:
    expected = _load(recorded, "success-with-errors.json")
    (ours,) = sf.delete("composite/sobjects", params={"ids": "001RM000003oLrB000"}).json()
    assert _shape(ours) == _shape(expected)
    assert ours["errors"][0]["statusCode"] == expected["errors"][0]["statusCode"] == "MALFORMED_ID"
    assert ours["errors"][0]["message"] == expected["errors"][0]["message"]


def test_query_with_parent_matches_recorded(sf: SalesforceHttp, recorded: Path) -> None:
    expected = _load(recorded, "read-opportunity-with-account.json")
    account = sf.post("sobjects/Account", json={"Name": "Recorded"}).json()["id"]
    for name, amount, account_id in (("Test Opportunity 1", 50000, account), ("Test Opportunity 2", 30000, None)):
        sf.post(
            "sobjects/Opportunity",
            json={
                "Name": name,
                "Amount": amount,
                "AccountId": account_id,
                "StageName": "Prospecting",
                "CloseDate": "2025-01-01",
            },
        )
    r = sf.query(
        "SELECT Id, Name, AccountId, Amount, StageName FROM Opportunity WHERE Name LIKE 'Test Opp%' ORDER BY Name"
    )
    ours = r.json()
    assert _shape(ours) == _shape(expected)
    assert ours["records"][1]["AccountId"] is None and expected["records"][1]["AccountId"] is None
    assert '"Amount":50000.00' in r.text  # currency keeps its scale, as in the recorded body


def test_query_with_children_matches_recorded(sf: SalesforceHttp, recorded: Path) -> None:
    expected = _load(recorded, "read-opportunity-with-contacts.json")
    account = sf.post("sobjects/Account", json={"Name": "Parent of two"}).json()["id"]
    for last in ("Decision", "Influencer"):
        sf.post("sobjects/Contact", json={"LastName": last, "AccountId": account})
    ours = sf.query(f"SELECT Id, Name, (SELECT Id, LastName FROM Contacts) FROM Account WHERE Id = '{account}'")
    body = ours.json()
    children = body["records"][0]["Contacts"]
    exp_children = expected["records"][0]["OpportunityContactRoles"]
    assert set(children) == set(exp_children) == {"totalSize", "done", "records"}
    assert children["totalSize"] == exp_children["totalSize"] == 2
    assert set(children["records"][0]["attributes"]) == set(exp_children["records"][0]["attributes"])


def test_describe_key_sets_match_recorded(sf: SalesforceHttp, recorded: Path) -> None:
    for name, obj in (
        ("metadata/read/accounts-sampled.json", "Account"),
        ("metadata/read/custom-object-with-custom-fields.json", "ERP_Order__c"),
        ("metadata/read/organization-sampled.json", "User"),  # the emulator has no Organization: key sets only
    ):
        recorded_body = _load(recorded, name)["compositeResponse"][0]["body"]
        ours = sf.get(f"sobjects/{obj}/describe").json()
        assert set(ours) == set(recorded_body), name
        field_keys = set(recorded_body["fields"][0])
        for f in ours["fields"]:
            assert set(f) == field_keys, f["name"]
        if recorded_body["name"] != obj:
            continue  # another object's describe: the key sets above are what it can tell
        ours_by_name = {f["name"]: f for f in ours["fields"]}
        for rec_field in recorded_body["fields"]:
            if rec_field["name"] not in ours_by_name or rec_field["custom"]:
                continue  # sampled fields we do not model, and another org's custom fields
            our_field = ours_by_name[rec_field["name"]]
            for key in (
                "type",
                "soapType",
                "length",
                "byteLength",
                "idLookup",
                "nillable",
                "createable",
                "updateable",
                "referenceTo",
                "relationshipName",
                "custom",
            ):
                assert our_field[key] == rec_field[key], (rec_field["name"], key)


def test_describe_through_composite_carries_cache_headers(sf: SalesforceHttp, recorded: Path) -> None:
    recorded_entry = _load(recorded, "metadata/read/accounts-sampled.json")["compositeResponse"][0]
    r = sf.post(
        "composite",
        json={
            "compositeRequest": [{"method": "GET", "url": f"{V}/sobjects/Account/describe", "referenceId": "Account"}]
        },
    )
    entry = r.json()["compositeResponse"][0]
    assert set(entry) == set(recorded_entry)
    assert set(entry["httpHeaders"]) == set(recorded_entry["httpHeaders"]) == {"ETag", "Last-Modified"}


def _order_and_types(value: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, type(v).__name__) for k, v in value.items()]


def test_upload_complete_answers_match_the_recorded_key_order(sf: SalesforceHttp, recorded: Path) -> None:
    """PATCH UploadComplete: the recorded answers of a delete and an upsert job, key by key in order (the upsert
    one carries externalIdFieldName after state), with the values' JSON types."""
    opportunity = sf.post("sobjects/Opportunity", json={"Name": "x", "StageName": "Prospecting",
                                                        "CloseDate": "2026-12-01"}).json()["id"]  # fmt: skip
    for name, job, body in (
        ("bulk/delete/update-job-opportunity.json", {"operation": "delete"}, f"Id\n{opportunity}\n"),
        (
            "bulk/write/update-job-opportunity.json",
            {"operation": "upsert", "externalIdFieldName": "External_Id__c"},
            "External_Id__c,Name,StageName,CloseDate\nU-1,Up,Prospecting,2026-12-01\n",
        ),
    ):
        expected = _load(recorded, name)
        created = sf.post("jobs/ingest", json={"object": "Opportunity", **job}).json()
        if job["operation"] == "delete":  # the create answer of the same job, recorded too
            launched = _load(recorded, "bulk/delete/launch-job-opportunity.json")
            assert _order_and_types(created) == _order_and_types(launched)
        put = sf.http.put(
            sf.path(f"jobs/ingest/{created['id']}/batches"), content=body.encode(), headers={"Content-Type": "text/csv"}
        )
        assert put.status_code == 201
        ours = sf.patch(f"jobs/ingest/{created['id']}", json={"state": "UploadComplete"}).json()
        assert _order_and_types(ours) == _order_and_types(expected), name
        assert ours["state"] == expected["state"] == "UploadComplete"
        assert ours["operation"] == expected["operation"] and ours["object"] == expected["object"]


def test_every_recorded_response_is_used_by_a_test(recorded: Path) -> None:
    """Each real-org recording is compared with the emulator's answer or parsed by the client somewhere in the
    tests: a recording added to ../shared and used by neither fails here, naming it."""
    tests = Path(__file__).resolve().parents[1]
    sources = "\n".join(p.read_text(encoding="utf-8") for p in tests.rglob("*.py"))
    files = [
        p.relative_to(recorded).as_posix()
        for p in recorded.rglob("*")
        if p.is_file() and not p.name.startswith(("README", "LICENSE"))
    ]
    assert len(files) >= 39
    unused = [name for name in files if f'"{name}"' not in sources and f'"{Path(name).name}"' not in sources]
    assert not unused, f"recordings no test compares or parses: {unused}"


def test_userinfo_carries_the_recorded_keys_in_order(sf: SalesforceHttp, recorded: Path) -> None:
    expected = _load(recorded, "metadata/write/user-info.json")
    r = sf.http.get(f"{sf.url}/services/oauth2/userinfo", headers={"Authorization": f"Bearer {sf.token}"})
    assert r.status_code == 200
    ours = {k: v for k, v in r.json().items() if k in expected}
    assert _order_and_types(ours) == _order_and_types(expected)
    assert ours["user_id"].startswith("005") and len(ours["user_id"]) == 18
