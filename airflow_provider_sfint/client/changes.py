"""Pub/Sub event payloads: Avro decoding, bitmap fields to names, typed change and platform events.

No Airflow and no network here: ``pubsub.py`` fetches schemas and events, this module makes sense of them.

Change events (Change Data Capture) carry a ``ChangeEventHeader`` whose ``changedFields``, ``nulledFields``
and ``diffFields`` are bitmaps in the Pub/Sub API: ``"0x..."`` marks top-level fields by their index in the
schema (bit *i* is field *i*, the header being field 0), ``"<i>-0x..."`` the components of the compound
field at index *i*. :func:`bitmap_field_names` turns them into names, ``Parent.Component`` for
components (``MailingAddress.Street``, ``Name.LastName``), accepting upper- and lower-case hex.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastavro import parse_schema, schemaless_reader

CHANGE_HEADER = "ChangeEventHeader"
GAP_TYPES = frozenset({"GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE"})


class PayloadError(ValueError):
    """A payload that cannot be decoded with the schema it names, or a bitmap that does not fit it."""


def _record_type(avro_type: Any, named: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The record type inside a field type (a union with null, a named reference), if any."""
    for candidate in avro_type if isinstance(avro_type, list) else [avro_type]:
        if isinstance(candidate, dict) and candidate.get("type") == "record":
            named[str(candidate["name"])] = candidate
            namespace = candidate.get("namespace")
            if namespace:
                named[f"{namespace}.{candidate['name']}"] = candidate
            return candidate
        if isinstance(candidate, str) and candidate in named:
            return named[candidate]
    return None


@dataclass
class EventSchema:
    """One Avro schema of an event (by id): its top-level fields and, for compound fields, their parts."""

    schema_id: str
    json_text: str
    parsed: Any = field(repr=False)
    fields: list[str]
    components: dict[int, list[str]]  # top-level index -> component names (compound fields only)

    @classmethod
    def from_json(cls, schema_id: str, json_text: str) -> EventSchema:
        raw = json.loads(json_text)
        if not isinstance(raw, dict) or raw.get("type") != "record":
            raise PayloadError(f"schema {schema_id} is not an Avro record schema")
        named: dict[str, dict[str, Any]] = {}
        names: list[str] = []
        components: dict[int, list[str]] = {}
        for index, f in enumerate(raw.get("fields", [])):
            names.append(str(f["name"]))
            record = _record_type(f["type"], named)
            if record is not None and f["name"] != CHANGE_HEADER:
                components[index] = [str(c["name"]) for c in record.get("fields", [])]
        return cls(schema_id, json_text, parse_schema(raw), names, components)

    @property
    def is_change_event(self) -> bool:
        return bool(self.fields) and self.fields[0] == CHANGE_HEADER

    @property
    def name(self) -> str:
        return str(json.loads(self.json_text).get("name", ""))

    def decode(self, payload: bytes) -> dict[str, Any]:
        try:
            record = schemaless_reader(io.BytesIO(payload), self.parsed, self.parsed)
        except Exception as exc:  # fastavro raises many kinds on bytes that do not fit the schema
            raise PayloadError(f"a payload does not decode with schema {self.schema_id}: {exc!r}") from exc
        if not isinstance(record, dict):
            raise PayloadError(f"a payload of schema {self.schema_id} is not a record")
        return record


def bitmap_field_names(bitmaps: list[str] | tuple[str, ...], schema: EventSchema) -> list[str]:
    """Field names of a ``changedFields``/``nulledFields``/``diffFields`` bitmap list.

    Plain names already (as CometD and some recordings give them) pass through unchanged."""
    names: list[str] = []
    for item in bitmaps:
        text = item.strip()
        index_text, dash, hex_text = text.partition("-")
        if dash and index_text.isdigit() and hex_text.lower().startswith("0x"):
            index = int(index_text)
            parts = schema.components.get(index)
            if parts is None:
                raise PayloadError(f"bitmap {item!r}: field {index} of schema {schema.schema_id} is not compound")
            bits = int(hex_text, 16)
            parent = schema.fields[index]
            names += [f"{parent}.{part}" for i, part in enumerate(parts) if bits >> i & 1]
            if bits >> len(parts):
                raise PayloadError(f"bitmap {item!r} marks components {parent} does not have")
        elif text.lower().startswith("0x"):
            bits = int(text, 16)
            names += [name for i, name in enumerate(schema.fields) if bits >> i & 1]
            if bits >> len(schema.fields):
                raise PayloadError(f"bitmap {item!r} marks fields schema {schema.schema_id} does not have")
        else:
            names.append(text)
    return names


def flatten(record: dict[str, Any], schema: EventSchema) -> dict[str, Any]:
    """The event's field values, compound fields spread as ``Parent.Component`` (header left out)."""
    out: dict[str, Any] = {}
    for index, name in enumerate(schema.fields):
        if name == CHANGE_HEADER:
            continue
        value = record.get(name)
        if index in schema.components:
            parts = value if isinstance(value, dict) else {}
            for part in schema.components[index]:
                out[f"{name}.{part}"] = parts.get(part)
        else:
            out[name] = value
    return out


def _epoch_ms(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC) if value is not None else None


@dataclass(frozen=True)
class ChangeEvent:
    """One Change Data Capture event. ``values`` holds only what the event carries: for an UPDATE, the changed
    fields (a None there means unchanged unless the name is in ``nulled_fields``); compound parts appear as
    ``Parent.Component``; Avro types as sent (datetimes epoch milliseconds, dates days since 1970)."""

    entity: str
    change_type: str
    record_ids: tuple[str, ...]
    changed_fields: tuple[str, ...]
    nulled_fields: tuple[str, ...]
    diff_fields: tuple[str, ...]
    values: dict[str, Any]
    commit_timestamp: datetime | None
    commit_number: int
    commit_user: str
    transaction_key: str
    sequence_number: int
    change_origin: str
    replay_id: bytes
    schema_id: str
    event_id: str

    @property
    def is_gap(self) -> bool:
        return self.change_type in GAP_TYPES

    @property
    def is_overflow(self) -> bool:
        return self.change_type == "GAP_OVERFLOW"

    def carried(self) -> dict[str, Any]:
        """The values this event sets: everything for CREATE/UNDELETE, for UPDATE the changed and nulled
        fields only (their parts, for a compound field named whole), nothing for DELETE and gaps."""
        if self.change_type in ("CREATE", "UNDELETE"):
            return dict(self.values)
        if self.change_type != "UPDATE":
            return {}
        wanted = set(self.changed_fields) | set(self.nulled_fields) | set(self.diff_fields)
        return {k: v for k, v in self.values.items() if k in wanted or (k.split(".", 1)[0] in wanted and "." in k)}


@dataclass(frozen=True)
class PlatformEvent:
    """One platform event (``/event/X__e``): its fields as sent."""

    name: str
    values: dict[str, Any]
    replay_id: bytes
    schema_id: str
    event_id: str

    @property
    def created_date(self) -> datetime | None:
        return _epoch_ms(self.values.get("CreatedDate"))

    @property
    def event_uuid(self) -> str | None:
        value = self.values.get("EventUuid")
        return str(value) if value is not None else None

    @property
    def is_gap(self) -> bool:
        return False

    @property
    def is_overflow(self) -> bool:
        return False


def parse_event(schema: EventSchema, payload: bytes, replay_id: bytes, event_id: str) -> ChangeEvent | PlatformEvent:
    """Decode one delivered event with its schema into a typed event."""
    record = schema.decode(payload)
    if not schema.is_change_event:
        return PlatformEvent(schema.name, record, replay_id, schema.schema_id, event_id)
    header = record.get(CHANGE_HEADER) or {}
    ids = header.get("recordIds")
    if ids is None and header.get("recordId"):  # a single-id form seen in some recordings
        ids = [header["recordId"]]
    return ChangeEvent(
        entity=str(header.get("entityName", "")),
        change_type=str(header.get("changeType", "")),
        record_ids=tuple(str(i) for i in ids or ()),
        changed_fields=tuple(bitmap_field_names(header.get("changedFields") or [], schema)),
        nulled_fields=tuple(bitmap_field_names(header.get("nulledFields") or [], schema)),
        diff_fields=tuple(bitmap_field_names(header.get("diffFields") or [], schema)),
        values=flatten(record, schema),
        commit_timestamp=_epoch_ms(header.get("commitTimestamp")),
        commit_number=int(header.get("commitNumber") or 0),
        commit_user=str(header.get("commitUser") or ""),
        transaction_key=str(header.get("transactionKey") or ""),
        sequence_number=int(header.get("sequenceNumber") or 0),
        change_origin=str(header.get("changeOrigin") or ""),
        replay_id=replay_id,
        schema_id=schema.schema_id,
        event_id=event_id,
    )
