"""Describe -> Arrow types: each query column typed from its field (never inferred from the rows), following
relationships through the related objects' describes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from ..errors import UnknownFieldError, did_you_mean

_INTEGER_TYPES = frozenset({"int", "long"})
_FLOAT_TYPES = frozenset({"double", "percent"})
STRING_TYPES = frozenset(
    {"id", "reference", "string", "picklist", "multipicklist", "combobox", "textarea", "phone", "url", "email"}
)


def arrow_type(sf_field: dict[str, Any]) -> pa.DataType:
    """The Arrow type of a describe field (what Bulk CSV text of that field parses to)."""
    t = str(sf_field.get("type", "string")).lower()
    if t == "boolean":
        return pa.bool_()
    if t in _INTEGER_TYPES:
        return pa.int64()
    if t in _FLOAT_TYPES:
        return pa.float64()
    if t == "currency":
        precision = int(sf_field.get("precision") or 18)
        scale = int(sf_field.get("scale") or 0)
        return pa.decimal128(max(1, min(38, precision)), max(0, min(scale, precision)))
    if t == "date":
        return pa.date32()
    if t == "datetime":
        return pa.timestamp("ms", tz="UTC")
    if t == "time":
        return pa.time32("ms")
    return pa.string()


class Describer(Protocol):
    def __call__(self, obj: str) -> dict[str, Any]: ...


@dataclass
class ColumnResolver:
    """Maps query columns (``Name``, ``Account.Owner.Name``) to describe fields, following relationships
    through the related objects' describes (cached by the client)."""

    describe: Describer
    _fields: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def fields(self, obj: str) -> dict[str, dict[str, Any]]:
        key = obj.lower()
        if key not in self._fields:
            self._fields[key] = {str(f["name"]).lower(): f for f in self.describe(obj).get("fields", [])}
        return self._fields[key]

    def resolve(self, obj: str, column: str) -> tuple[str, dict[str, Any]]:
        """(canonical dotted name, describe field) of ``column`` on ``obj``; raises ValueError naming it."""
        parts = column.split(".")
        current = obj
        names = []
        for depth, part in enumerate(parts):
            fields = self.fields(current)
            if depth == len(parts) - 1:
                found = fields.get(part.lower())
                if found is None:
                    hint = did_you_mean(part, (str(f["name"]) for f in fields.values()))
                    raise UnknownFieldError(f"{current} has no field {part!r} (column {column!r}){hint}")
                names.append(str(found["name"]))
                return ".".join(names), found
            rel = next(
                (f for f in fields.values() if str(f.get("relationshipName") or "").lower() == part.lower()), None
            )
            if rel is None or not rel.get("referenceTo"):
                hint = did_you_mean(
                    part, (str(f["relationshipName"]) for f in fields.values() if f.get("relationshipName"))
                )
                raise UnknownFieldError(f"{current} has no relationship {part!r} (column {column!r}){hint}")
            names.append(str(rel["relationshipName"]))
            current = str(rel["referenceTo"][0])
        raise ValueError(f"empty column name in {column!r}")  # pragma: no cover

    def schema(self, obj: str, columns: Iterable[str]) -> pa.Schema:
        """The Arrow schema of ``columns``; every unknown column is reported at once."""
        out = []
        unknown: list[str] = []
        for column in columns:
            try:
                name, f = self.resolve(obj, column)
            except UnknownFieldError as exc:
                unknown.append(str(exc))
                continue
            meta = {b"salesforce_type": str(f.get("type", "")).encode()}
            out.append(pa.field(name, arrow_type(f), nullable=True, metadata=meta))
        if unknown:
            count = f"{len(unknown)} unknown columns: " if len(unknown) > 1 else ""
            raise UnknownFieldError(count + "; ".join(unknown))
        names = [f.name.lower() for f in out]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"the query selects {', '.join(dupes)} more than once")
        return pa.schema(out)
