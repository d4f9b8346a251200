"""Avro schemas of change events and platform events, and the values they carry.

Change events (spec section 5): a record ``<Object>ChangeEvent`` in namespace ``com.sforce.eventbus`` whose
field 0 is ``ChangeEventHeader`` (the spec's fields, in its order), then every field of the object that
Change Data Capture reports, each a union with ``"null"``. Left out, as the recorded real-org events leave
them out: ``Id`` (the ids are in the header), ``IsDeleted``, ``SystemModstamp``, ``MasterRecordId``,
``LastActivityDate`` and formula fields. Compound fields are nested records in place of their components:
``BillingAddress``/``ShippingAddress``/``MailingAddress``/``Address`` (type ``Address``) and, on person
objects (Contact, Lead, User), ``Name`` (type ``Switchable_PersonName``) in place of the full-name string.

Datetimes are longs (epoch milliseconds), dates ints (days since 1970-01-01), booleans, ints and doubles
as themselves, everything else strings.

A schema id is derived from the schema's JSON, so it changes exactly when the fields change; every id
ever handed out stays resolvable (old events keep theirs).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from .avro_fast import compile_values, date_days, datetime_ms
from .model import FieldDef, ObjectDef

NAMESPACE = "com.sforce.eventbus"
CHANGE_TYPES = [
    "CREATE",
    "UPDATE",
    "DELETE",
    "UNDELETE",
    "GAP_CREATE",
    "GAP_UPDATE",
    "GAP_DELETE",
    "GAP_UNDELETE",
    "GAP_OVERFLOW",
]
EXCLUDED = frozenset({"Id", "IsDeleted", "SystemModstamp", "MasterRecordId", "LastActivityDate"})
PERSON_OBJECTS = frozenset({"Contact", "Lead", "User"})
PERSON_NAME_PARTS = ("Salutation", "FirstName", "LastName")
ADDRESS_PARTS = ("Street", "City", "State", "PostalCode", "Country", "Latitude", "Longitude", "GeocodeAccuracy")
ADDRESS_PREFIXES = ("Billing", "Shipping", "Mailing", "Other", "")


def _header_schema() -> dict[str, Any]:
    strings = {"type": "array", "items": "string"}
    return {
        "type": "record",
        "name": "ChangeEventHeader",
        "namespace": NAMESPACE,
        "fields": [
            {"name": "entityName", "type": "string"},
            {"name": "recordIds", "type": strings},
            {"name": "changeType", "type": {"type": "enum", "name": "ChangeType", "symbols": CHANGE_TYPES}},
            {"name": "changeOrigin", "type": "string"},
            {"name": "transactionKey", "type": "string"},
            {"name": "sequenceNumber", "type": "int"},
            {"name": "commitTimestamp", "type": "long"},
            {"name": "commitNumber", "type": "long"},
            {"name": "commitUser", "type": "string"},
            {"name": "nulledFields", "type": strings},
            {"name": "diffFields", "type": strings},
            {"name": "changedFields", "type": strings},
        ],
    }


def avro_type(f: FieldDef) -> str:
    if f.type == "boolean":
        return "boolean"
    if f.type == "int":
        return "int"
    if f.type in ("double", "currency", "percent"):
        return "double"
    if f.type == "datetime":
        return "long"
    if f.type == "date":
        return "int"
    return "string"


@dataclass(frozen=True)
class Slot:
    """One top-level field of a change-event schema: a plain field, or a compound of several columns."""

    name: str
    columns: tuple[str, ...]  # stored columns; for a compound, one per component
    components: tuple[str, ...] = ()  # component names (compound only)
    kinds: tuple[str, ...] = ()  # avro type of each column

    @property
    def compound(self) -> bool:
        return bool(self.components)


def _slots(obj: ObjectDef) -> list[Slot]:
    """The object's change-event fields in schema order (compounds where their first component was)."""
    names = list(obj.fields)
    used: set[str] = set()
    slots: list[Slot] = []
    person = obj.name in PERSON_OBJECTS
    for name in names:
        f = obj.fields[name]
        if name in used or name in EXCLUDED or f.calculated or f.compound:  # compounds come from components
            continue
        if person and (name in PERSON_NAME_PARTS or name == "Name"):
            parts = tuple(p for p in PERSON_NAME_PARTS if p in obj.fields)
            used.update(parts)
            used.add("Name")
            slots.append(Slot("Name", parts, parts, tuple(avro_type(obj.fields[p]) for p in parts)))
            continue
        compound = None
        for prefix in ADDRESS_PREFIXES:
            if name.startswith(prefix) and name[len(prefix) :] in ADDRESS_PARTS:
                if prefix == "" and obj.name != "Lead":
                    continue  # a bare Street/City is an address only on Lead
                parts = tuple(p for p in ADDRESS_PARTS if prefix + p in obj.fields)
                columns = tuple(prefix + p for p in parts)
                compound = Slot(prefix + "Address", columns, parts, tuple(avro_type(obj.fields[c]) for c in columns))
                break
        if compound is not None:
            used.update(compound.columns)
            slots.append(compound)
            continue
        used.add(name)
        slots.append(Slot(name, (name,), (), (avro_type(f),)))
    return slots


def stored_to_avro(kind: str, value: Any) -> Any:
    """A stored column value (see store.py) as the Avro value of its type."""
    if value is None:
        return None
    if kind == "long" and isinstance(value, str):
        return datetime_ms(value)
    if kind == "int" and isinstance(value, str):
        return date_days(value)
    if kind == "boolean":
        return bool(value)
    if kind == "double":
        return float(value)
    if kind == "int":
        return int(value)
    return str(value) if not isinstance(value, str) else value


@dataclass
class ObjectSchema:
    """A registered change-event or platform-event schema."""

    schema_id: str
    json_text: str
    parsed: Any
    slots: list[Slot]
    _values: Callable[[dict[str, Any]], bytes] | None = None
    _positions: dict[str, tuple[int, int]] | None = None

    def encode_values(self, values: dict[str, Any]) -> bytes:
        """The Avro bytes of every slot after the header, from stored column values (absent = null)."""
        if self._values is None:
            self._values = compile_values(self.slots)
        return self._values(values)

    @property
    def positions(self) -> dict[str, tuple[int, int]]:
        """Column -> (top-level field index, component bit or -1), the header being field 0."""
        if self._positions is None:
            found: dict[str, tuple[int, int]] = {}
            for index, slot in enumerate(self.slots, start=1):
                for bit, column in enumerate(slot.columns):
                    found[column] = (index, bit if slot.compound else -1)
            self._positions = found
        return self._positions

    def encode(self, record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        schemaless_writer(out, self.parsed, record)
        return out.getvalue()

    def decode(self, payload: bytes) -> dict[str, Any]:
        record = schemaless_reader(io.BytesIO(payload), self.parsed, self.parsed)
        if not isinstance(record, dict):
            raise ValueError("the payload is not an Avro record")
        return record


def schema_id_of(json_text: str) -> str:
    """A 22-character id, like the ones Salesforce issues, derived from the schema text."""
    return base64.urlsafe_b64encode(hashlib.sha256(json_text.encode()).digest()).decode()[:22]


class SchemaRegistry:
    """Schemas by id, built on demand from the current object definitions and never forgotten."""

    def __init__(self) -> None:
        self._by_id: dict[str, ObjectSchema] = {}
        self._current: dict[tuple[str, int], ObjectSchema] = {}
        self._lock = threading.Lock()

    def _register(self, key: tuple[str, int], schema: dict[str, Any], slots: list[Slot]) -> ObjectSchema:
        text = json.dumps(schema, separators=(",", ":"))
        sid = schema_id_of(text)
        with self._lock:
            found = self._by_id.get(sid)
            if found is None:
                found = self._by_id[sid] = ObjectSchema(sid, text, parse_schema(json.loads(text)), slots)
            self._current[key] = found
        return found

    def change_schema(self, obj: ObjectDef) -> ObjectSchema:
        key = (obj.name + "ChangeEvent", len(obj.fields))
        found = self._current.get(key)
        if found is not None:
            return found
        slots = _slots(obj)
        fields: list[dict[str, Any]] = [{"name": "ChangeEventHeader", "type": _header_schema()}]
        defined: set[str] = set()
        for slot in slots:
            if slot.compound:
                type_name = "Switchable_PersonName" if slot.name == "Name" else "Address"
                if type_name in defined:
                    fields.append({"name": slot.name, "type": ["null", type_name], "default": None})
                    continue
                defined.add(type_name)
                record = {
                    "type": "record",
                    "name": type_name,
                    "namespace": NAMESPACE,
                    "fields": [
                        {"name": part, "type": ["null", kind], "default": None}
                        for part, kind in zip(slot.components, slot.kinds, strict=True)
                    ],
                }
                fields.append({"name": slot.name, "type": ["null", record], "default": None})
            else:
                fields.append({"name": slot.name, "type": ["null", slot.kinds[0]], "default": None})
        schema = {"type": "record", "name": obj.name + "ChangeEvent", "namespace": NAMESPACE, "fields": fields}
        return self._register(key, schema, slots)

    def event_schema(self, obj: ObjectDef) -> ObjectSchema:
        """A platform event's schema: ``CreatedDate`` (epoch ms), ``CreatedById``, ``EventUuid``, custom fields."""
        key = (obj.name, len(obj.fields))
        found = self._current.get(key)
        if found is not None:
            return found
        slots = [Slot(f.name, (f.name,), (), (avro_type(f),)) for f in obj.fields.values() if f.name != "ReplayId"]
        fields = [{"name": s.name, "type": ["null", s.kinds[0]], "default": None} for s in slots]
        schema = {"type": "record", "name": obj.name, "namespace": NAMESPACE, "fields": fields}
        return self._register(key, schema, slots)

    def get(self, schema_id: str) -> ObjectSchema | None:
        with self._lock:
            return self._by_id.get(schema_id)

    def clear(self) -> None:
        with self._lock:
            self._by_id.clear()
            self._current.clear()
