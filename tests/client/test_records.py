"""REST query records -> Arrow, the conversions the REST path of the query operator relies on (no server needed:
the values are those a REST query page carries)."""

from __future__ import annotations

import json
from decimal import Decimal

import pyarrow as pa
import pytest

from airflow_provider_sfint.client.arrowio import RecordConverter
from airflow_provider_sfint.client.errors import InputError


def _field(name: str, arrow: pa.DataType, sf_type: str) -> pa.Field:
    return pa.field(name, arrow, metadata={b"salesforce_type": sf_type.encode()})


SCHEMA = pa.schema(
    [
        _field("Id", pa.string(), "id"),
        _field("Amount", pa.decimal128(18, 2), "currency"),
        _field("Probability", pa.float64(), "percent"),
        _field("IsWon", pa.bool_(), "boolean"),
        _field("CloseDate", pa.date32(), "date"),
        _field("CreatedDate", pa.timestamp("ms", tz="UTC"), "datetime"),
        _field("Account.Owner.Name", pa.string(), "string"),
    ]
)
PAGE = """{"totalSize": 2, "done": true, "records": [
 {"attributes": {"type": "Opportunity"}, "Id": "006A", "Amount": 1234567890123456.78, "Probability": 3.5E7,
  "IsWon": false, "CloseDate": "2026-11-30", "CreatedDate": "2026-11-30T08:00:01.000+0000",
  "Account": {"attributes": {"type": "Account"},
              "Owner": {"attributes": {"type": "User"}, "Name": "Ann \\"A\\"\\r\\nB"}}},
 {"attributes": {"type": "Opportunity"}, "Id": "006B", "Amount": null, "Probability": null, "IsWon": true,
  "CloseDate": null, "CreatedDate": null, "Account": null}
]}"""


def test_json_values_become_the_bulk_types_exactly() -> None:
    records = json.loads(PAGE, parse_float=Decimal)["records"]
    table = RecordConverter(SCHEMA).table(records)
    assert table.schema == SCHEMA
    first, second = table.to_pylist()
    assert first["Amount"] == Decimal("1234567890123456.78")  # every digit: never through a float
    assert first["Probability"] == 35_000_000.0 and first["IsWon"] is False
    assert str(first["CloseDate"]) == "2026-11-30"
    assert first["CreatedDate"].isoformat() == "2026-11-30T08:00:01+00:00"
    assert first["Account.Owner.Name"] == 'Ann "A"\r\nB'
    assert second == {**dict.fromkeys(SCHEMA.names), "Id": "006B", "IsWon": True}  # a null parent: null columns


def test_an_empty_page_gives_the_schema() -> None:
    assert RecordConverter(SCHEMA).table([]).schema == SCHEMA


def test_a_compound_field_is_refused_with_what_to_select() -> None:
    schema = pa.schema([_field("Id", pa.string(), "id"), _field("BillingAddress", pa.string(), "address")])
    with pytest.raises(InputError, match=r"BillingAddress is a compound field.*BillingStreet"):
        RecordConverter(schema)


def test_a_relationship_selected_as_a_column_is_refused() -> None:
    schema = pa.schema([_field("Account", pa.string(), "string")])
    with pytest.raises(InputError, match="column Account holds a dict"):
        RecordConverter(schema).table([{"Account": {"Name": "x"}}])
