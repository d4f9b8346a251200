"""Rendering stored values as Salesforce JSON, field type by field type.

Records are rendered to JSON text directly (not through ``json.dumps`` of dicts) so that currency
and other scaled numbers keep their scale (``50000.00``) and doubles follow Java's ``Double.toString``
(``3.5E7``), as the real API does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .model import ADDRESS_KEYS
from .schema import FieldDef, ObjectDef

_dumps = json.JSONEncoder(ensure_ascii=False).encode


def java_double(value: float) -> str:
    """Java's ``Double.toString``: plain between 1e-3 and 1e7, scientific (``3.5E7``) outside."""
    if value == 0:
        return "0.0"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e7:
        text = repr(float(value))
        return text if ("." in text or "e" in text) else text + ".0"
    sign, digits, exponent = Decimal(repr(float(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    chars = "".join(map(str, digits))
    power = len(chars) - 1 + exponent
    return f"{'-' if sign else ''}{chars[0]}.{chars[1:] or '0'}E{power}"


def _scalar(f: FieldDef, zone: str) -> Callable[[Any], str] | None:
    """The text of one stored, non-null value of ``f`` for the types Salesforce formats (None: text as it is).
    Written once for both outputs; ``zone`` is how a datetime ends (``+0000`` in JSON, ``Z`` in Bulk CSV)."""
    t = f.type
    if t == "boolean":
        return lambda v: "true" if v else "false"
    if t == "int":
        return lambda v: str(int(v))
    if t in ("double", "currency", "percent"):
        if f.scale:
            fmt = f"{{:.{f.scale}f}}".format
            return lambda v: fmt(float(v))
        return lambda v: java_double(float(v))
    if t == "datetime":
        return lambda v: v[:-1] + zone  # stored as ...000Z
    if t == "time":
        return lambda v: v + (".000Z" if len(v) == 8 else "Z")
    return None


def value_renderer(f: FieldDef) -> Callable[[Any], str]:
    """A function rendering one stored value of ``f`` as JSON text (chosen once per column)."""
    scalar = _scalar(f, "+0000")
    if scalar is not None:
        if f.type in ("datetime", "time"):
            return lambda v: "null" if v is None else '"' + scalar(v) + '"'
        return lambda v: "null" if v is None else scalar(v)
    encode = json.encoder.encode_basestring

    def text(v: Any) -> str:
        if v is None:
            return "null"
        return encode(v) if type(v) is str else _dumps(v)

    return text


def csv_renderer(f: FieldDef) -> Callable[[Any], str]:
    """A function rendering one stored value of ``f`` as Bulk CSV text, null as empty (chosen once per column)."""
    scalar = _scalar(f, "Z")
    if scalar is None:
        return lambda v: "" if v is None else str(v)
    return lambda v: "" if v is None else scalar(v)


def render_value(f: FieldDef, value: Any) -> str:
    """One stored value as JSON text."""
    return value_renderer(f)(value)


def attributes(obj: ObjectDef, record_id: str | None, version: str) -> str:
    if record_id is None:
        return f'{{"type":{_dumps(obj.name)}}}'
    return f'{{"type":{_dumps(obj.name)},"url":"/services/data/v{version}/sobjects/{obj.name}/{record_id}"}}'


def render_row(obj: ObjectDef, row: dict[str, Any], version: str, fields: list[FieldDef] | None = None) -> str:
    """A whole stored row (or the listed fields of it) as a JSON record with attributes."""
    parts = [f'"attributes":{attributes(obj, row.get("Id"), version)}']
    for f in fields or list(obj.fields.values()):
        if f.compound:
            parts.append(f"{_dumps(f.name)}:{render_compound(obj, f, [row.get(c) for _, c in f.components])}")
            continue
        if f.type == "base64":
            parts.append(f"{_dumps(f.name)}:{render_blob(obj, f, row.get('Id'), row.get(f.name), version)}")
            continue
        parts.append(f"{_dumps(f.name)}:{render_value(f, row.get(f.name))}")
    return "{" + ",".join(parts) + "}"


def render_blob(obj: ObjectDef, f: FieldDef, record_id: Any, value: Any, version: str) -> str:
    """A base64 field in a REST answer: not the content but the URL that serves it (null when empty)."""
    if value is None or record_id is None:
        return "null"
    return f'"/services/data/v{version}/sobjects/{obj.name}/{record_id}/{f.name}"'


def render_compound(obj: ObjectDef, f: FieldDef, values: list[Any]) -> str:
    """A compound field as the nested object Salesforce sends (null when every component is null): an address
    has all eight keys in alphabetical order, those without a component here null; a geolocation two."""
    if all(v is None for v in values):
        return "null"
    by_key = {key: (obj.fields[column], value) for (key, column), value in zip(f.components, values, strict=True)}
    keys = ADDRESS_KEYS if f.type == "address" else tuple(k for k, _ in f.components)
    members = []
    for key in keys:
        found = by_key.get(key)
        members.append(f'"{key}":' + ("null" if found is None else render_value(found[0], found[1])))
    return "{" + ",".join(members) + "}"
