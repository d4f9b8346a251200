"""REST query records -> the same Arrow tables as Bulk CSV pages.

A REST page holds JSON records (parents nested, ``attributes`` on each, numbers as JSON numbers, datetimes as
``...+0000``); a Bulk page holds CSV text (parents flattened to ``Account.Name`` columns, datetimes as ``...Z``,
null as the empty field). Each record is rendered as the Bulk text of its values and parsed by the same
:class:`CsvParser`, so both paths give one schema and the same values, by the same conversions.
Numbers must come parsed with ``Decimal`` (``parse_float``), so a currency's digits are never rounded
through a float.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import pyarrow as pa

from ..errors import InputError
from .parsing import CsvParser

#: describe types REST returns as nested objects and Bulk API 2.0 refuses to query
COMPOUND_TYPES = frozenset({"address", "location"})


def _lookup(record: dict[str, Any], path: list[str]) -> Any:
    """The value at ``path`` (a dotted column split), matching names without regard to case; None when a parent
    on the way is null."""
    value: Any = record
    for part in path:
        if not isinstance(value, dict):
            return None
        if part in value:
            value = value[part]
            continue
        lower = part.lower()
        value = next((v for k, v in value.items() if k.lower() == lower), None)
    return value


def _text(value: Any, timestamp: bool) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if timestamp and text.endswith("+0000"):
        return text[:-5] + "Z"
    return text


class RecordConverter:
    """Turns pages of REST query records into tables of ``schema`` (the Bulk path's schema)."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.parser = CsvParser(schema)
        self._paths = [f.name.split(".") for f in schema]
        self._timestamps = [pa.types.is_timestamp(f.type) for f in schema]
        compound = [
            f.name for f in schema if (f.metadata or {}).get(b"salesforce_type", b"").decode() in COMPOUND_TYPES
        ]
        if compound:
            raise InputError(
                f"{', '.join(compound)} {'is a compound field' if len(compound) == 1 else 'are compound fields'}: "
                "Bulk API 2.0 refuses compound address and geolocation fields, and a query that may run as a Bulk "
                "job must not select them; select their components instead (for example BillingStreet, "
                "BillingCity, BillingPostalCode)"
            )

    def table(self, records: Iterable[dict[str, Any]]) -> pa.Table:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)  # every CR, LF and quote kept
        writer.writerow(self.schema.names)
        for record in records:
            row = []
            for path, timestamp in zip(self._paths, self._timestamps, strict=True):
                value = _lookup(record, path)
                if isinstance(value, dict | list):
                    raise InputError(
                        f"column {'.'.join(path)} holds a {type(value).__name__} in the REST answer, not a value: "
                        "select a field, not a relationship or subquery"
                    )
                text = _text(value, timestamp)
                row.append("" if text is None else text)
            writer.writerow(row)
        return self.parser.parse_bytes(buffer.getvalue().encode("utf-8"))
