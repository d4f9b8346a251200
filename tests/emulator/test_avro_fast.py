"""The emulator's generated change-event encoder writes exactly the bytes fastavro writes for the same record."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastavro import schemaless_writer

from airflow_provider_sfint.emulator.avro_fast import long_bytes
from airflow_provider_sfint.emulator.avro_schemas import SchemaRegistry, stored_to_avro
from airflow_provider_sfint.emulator.schema import load_org


def _fastavro(parsed: Any, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, parsed, record)
    return out.getvalue()


@pytest.mark.parametrize("object_name", ["Account", "Contact", "Lead", "Opportunity", "ERP_Order__c"])
def test_values_encode_like_fastavro(object_name: str) -> None:
    org = load_org()
    obj = org.objects[object_name]
    schema = SchemaRegistry().change_schema(obj)
    samples: dict[str, Any] = {
        "string": "naïve \u00e9t\u00e9 \U0001f600 " * 5,
        "boolean": 1,
        "int": 123456,
        "double": -1234.5,
        "long": 1_700_000_000_123,
    }
    for variant in range(3):  # all set, every other one set, none set
        values: dict[str, Any] = {}
        for n, slot in enumerate(schema.slots):
            for column, kind in zip(slot.columns, slot.kinds, strict=True):
                if variant == 0 or (variant == 1 and n % 2):
                    f = obj.fields[column]
                    if f.type == "datetime":
                        values[column] = "2024-02-29T23:59:59.250Z"
                    elif f.type == "date":
                        values[column] = "1969-12-31"
                    else:
                        values[column] = samples[kind]
        record: dict[str, Any] = {"ChangeEventHeader": None}
        for slot in schema.slots:
            if slot.compound:
                parts = {
                    p: stored_to_avro(k, values.get(c))
                    for c, p, k in zip(slot.columns, slot.components, slot.kinds, strict=True)
                }
                record[slot.name] = parts if any(v is not None for v in parts.values()) else None
            else:
                record[slot.name] = stored_to_avro(slot.kinds[0], values.get(slot.columns[0]))
        header = {
            "entityName": obj.name,
            "recordIds": [],
            "changeType": "CREATE",
            "changeOrigin": "",
            "transactionKey": "",
            "sequenceNumber": 1,
            "commitTimestamp": 0,
            "commitNumber": 0,
            "commitUser": "",
            "nulledFields": [],
            "diffFields": [],
            "changedFields": [],
        }
        record["ChangeEventHeader"] = header
        expected = _fastavro(schema.parsed, record)
        header_bytes = _fastavro(schema.parsed["fields"][0]["type"], header)
        assert header_bytes + schema.encode_values(values) == expected, (object_name, variant)


@pytest.mark.parametrize("n", [0, 1, -1, 63, 64, -65, 2**31 - 1, -(2**31), 2**62, -(2**63)])
def test_long_bytes_matches_fastavro(n: int) -> None:
    assert long_bytes(n) == _fastavro("long", n)
