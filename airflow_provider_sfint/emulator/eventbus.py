"""The org's event bus: change events captured from every write path, platform events, and their channels.

Capture follows the store's transactions (see ``Store.transaction``): a write records its change in a
buffer; a rolled-back savepoint drops what it recorded; when the outermost transaction commits, the
buffer becomes events, stored in the ``_bus`` table *inside* that transaction, so a record change and its
event commit or vanish together.

Transactions, as a subscriber sees them (``transactionKey``): one per REST call, Composite or Collections
request, and one per chunk of ``bulk_transaction_size`` (200) rows of a Bulk ingest batch, as Salesforce
processes Bulk uploads in chunks of 200 records. Within a transaction, ``sequenceNumber`` counts events
from 1, and consecutive identical changes (same entity, change type, values and user, as a Bulk update
setting one field on many rows) share one event with several record ids.

Replay ids are 8 bytes, big-endian: the bus position times 8 plus a check value, so they increase, are
never contiguous, and a made-up or damaged id is recognised as corrupted.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .avro_schemas import ObjectSchema, SchemaRegistry, stored_to_avro
from .clock import Clock
from .ids import make_id
from .model import ObjectDef

if TYPE_CHECKING:
    from .limits import Limits
    from .schema import Org
    from .store import Store

GAP_KINDS = {"CREATE": "GAP_CREATE", "UPDATE": "GAP_UPDATE", "DELETE": "GAP_DELETE", "UNDELETE": "GAP_UNDELETE"}
FIRST_COMMIT_NUMBER = 1_082_985_383_811


@dataclass
class BusSettings:
    """What the admin API (``PUT /__emulator__/pubsub``) can change; defaults are Salesforce's documented values."""

    keepalive_seconds: float = 270.0
    idle_seconds: float = 60.0
    retention_hours: float = 72.0
    max_event_bytes: int = 1_048_576
    max_publish_request_bytes: int = 3 * 1_048_576
    overflow_threshold: int = 100_000
    bulk_transaction_size: int = 200
    # faults (deterministic: counts, no randomness)
    cut_stream_after_events: int | None = None  # every Subscribe stream is cut (UNAVAILABLE) after N events
    unavailable_calls: int = 0  # the next K RPCs fail with service.unavailable
    delivery_delay_seconds: float = 0.0  # events become deliverable this long after commit


@dataclass
class Change:
    obj: ObjectDef
    kind: str  # CREATE, UPDATE, DELETE, UNDELETE, or a GAP_ kind
    record_id: str
    values: dict[str, Any]  # stored column values: the whole record (CREATE, UNDELETE) or what changed (UPDATE)
    user: str
    origin: str
    nulled: frozenset[str] = frozenset()


@dataclass
class BusEvent:
    position: int
    entity: str
    created: float
    schema_id: str
    uuid: str
    payload: bytes


def replay_bytes(position: int) -> bytes:
    return ((position << 3) | _check(position)).to_bytes(8, "big")


def _check(position: int) -> int:
    return ((position * 2654435761) >> 5) & 7


def position_of(replay_id: bytes) -> int | None:
    """The bus position of a replay id, or None when it is not one this bus could have issued."""
    if len(replay_id) != 8:
        return None
    value = int.from_bytes(replay_id, "big")
    position = value >> 3
    if position < 1 or value & 7 != _check(position):
        return None
    return position


def _bitmap(bits: int) -> str:
    text = f"{bits:X}"
    return "0x" + ("0" + text if len(text) % 2 else text)


@dataclass
class _Txn:
    chunk_size: int | None = None


class EventBus:
    """Change Data Capture selection, channels, schemas, capture and the stored events of one org."""

    def __init__(self, org: Org, store: Store, clock: Clock, limits: Limits) -> None:
        self.org = org
        self.store = store
        self.clock = clock
        self.limits = limits
        self.schemas = SchemaRegistry()
        self.settings = BusSettings()
        self.cdc_entities: set[str] = set(org.cdc_entities)
        self.custom_channels: dict[str, set[str]] = {k: set(v) for k, v in org.channels.items()}
        self.delivered: Counter[str] = Counter()
        self.cond = threading.Condition()
        self._buffer: list[Change] = []
        self._txn = _Txn()
        self._commit_number = FIRST_COMMIT_NUMBER
        store.listener = self

    def reset(self) -> None:
        self.schemas.clear()
        self.settings = BusSettings()
        self.cdc_entities = set(self.org.cdc_entities)
        self.custom_channels = {k: set(v) for k, v in self.org.channels.items()}
        self.delivered.clear()
        self._buffer = []
        self._txn = _Txn()

    # --- channels -------------------------------------------------------------------------------

    def captured(self, obj: ObjectDef) -> bool:
        if obj.name in self.cdc_entities:
            return True
        return any(obj.name in members for members in self.custom_channels.values())

    def topic(self, name: str) -> tuple[str, frozenset[str]] | None:
        """``(kind, entities)`` for a channel name (case-sensitive, as Salesforce's are), or None."""
        if name.startswith("/event/"):
            obj = self.org.objects.get(name[len("/event/") :])
            return ("event", frozenset({obj.name})) if obj is not None and obj.is_event else None
        if name == "/data/ChangeEvents":
            return "change", frozenset(self.cdc_entities)
        if name.startswith("/data/") and name.endswith("__chn"):
            members = self.custom_channels.get(name[len("/data/") :])
            return ("change", frozenset(members)) if members is not None else None
        if name.startswith("/data/") and name.endswith("ChangeEvent"):
            entity = name[len("/data/") : -len("ChangeEvent")]
            if entity.endswith("__"):
                entity += "c"  # /data/Order__ChangeEvent is the custom object Order__c
            obj = self.org.objects.get(entity)
            if obj is None or obj.is_event:
                return None
            return "change", frozenset({obj.name} if obj.name in self.cdc_entities else set())
        return None

    def channel_names(self) -> list[str]:
        names = ["/data/ChangeEvents"]
        for obj in self.org.data_objects:
            names.append(f"/data/{obj.name[:-1] if obj.custom else obj.name}ChangeEvent")
        names += [f"/data/{n}" for n in sorted(self.custom_channels)]
        names += [f"/event/{o.name}" for o in self.org.objects.values() if o.is_event]
        return names

    def topic_schema(self, name: str) -> ObjectSchema | None:
        """The schema events on a single-entity channel are written with (None for multi-entity channels)."""
        found = self.topic(name)
        if found is None:
            return None
        kind, _ = found
        if kind == "event":
            return self.schemas.event_schema(self.org.objects[name[len("/event/") :]])
        if name.endswith("ChangeEvent") and name != "/data/ChangeEvents":
            entity = name[len("/data/") : -len("ChangeEvent")]
            obj = self.org.objects.get(entity + "c" if entity.endswith("__") else entity)
            return self.schemas.change_schema(obj) if obj is not None else None
        return None

    # --- capture (called by the writer) -----------------------------------------------------------

    def record(self, change: Change) -> None:
        if not self.captured(change.obj):
            return
        self._buffer.append(change)
        if not self.store.in_transaction:
            self.before_commit()

    def bulk_transaction(self) -> None:
        """Called inside a Bulk batch's store transaction: its changes get a new transaction key every
        ``bulk_transaction_size`` rows (the setting lasts until that transaction ends)."""
        self._txn = _Txn(chunk_size=max(1, int(self.settings.bulk_transaction_size)))

    # --- the store's transaction listener -----------------------------------------------------------

    def mark(self) -> int:
        return len(self._buffer)

    def rollback_to(self, mark: int) -> None:
        del self._buffer[mark:]
        if self.store.depth <= 1:  # the outermost transaction rolled back: its Bulk chunking ends with it
            self._txn = _Txn()

    def before_commit(self) -> None:
        """Turn the outermost transaction's changes into stored events (still inside that transaction)."""
        txn, self._txn = self._txn, _Txn()
        if not self._buffer:
            return
        changes, self._buffer = self._buffer, []
        size = txn.chunk_size or len(changes)
        rows: list[tuple[Any, ...]] = []
        now = self.clock.time()
        for start in range(0, len(changes), size):
            rows.extend(self._transaction_rows(changes[start : start + size], now))
        self.store.append_bus_rows(rows)
        with self.cond:
            self.cond.notify_all()

    def _transaction_rows(self, changes: list[Change], now: float) -> list[tuple[Any, ...]]:
        self._commit_number += 1 + len(changes) % 7
        header = {
            "transactionKey": str(uuid.uuid4()),
            "commitTimestamp": int(now * 1000),
            "commitNumber": self._commit_number,
        }
        per_entity = Counter(c.obj.name for c in changes)
        overflowed = {e for e, n in per_entity.items() if n > self.settings.overflow_threshold}
        groups: list[tuple[Change, list[str]]] = []
        for change in changes:
            if change.obj.name in overflowed:
                if not any(g[0].obj.name == change.obj.name and g[0].kind == "GAP_OVERFLOW" for g in groups):
                    groups.append((Change(change.obj, "GAP_OVERFLOW", "", {}, change.user, change.origin), []))
                continue
            if groups and self._same(groups[-1][0], change):
                groups[-1][1].append(change.record_id)
            else:
                groups.append((change, [change.record_id]))
        rows = []
        for sequence, (change, ids) in enumerate(groups, start=1):
            schema = self.schemas.change_schema(change.obj)
            record = self._record(schema, change, ids, {**header, "sequenceNumber": sequence})
            payload = schema.encode(record)
            if len(payload) > self.settings.max_event_bytes and change.kind in GAP_KINDS:
                gap = Change(change.obj, GAP_KINDS[change.kind], "", {}, change.user, change.origin)
                payload = schema.encode(self._record(schema, gap, ids, {**header, "sequenceNumber": sequence}))
            rows.append((change.obj.name, now, schema.schema_id, str(uuid.uuid4()), payload))
        return rows

    @staticmethod
    def _same(a: Change, b: Change) -> bool:
        return (
            a.obj.name == b.obj.name
            and a.kind == b.kind
            and a.user == b.user
            and a.origin == b.origin
            and a.nulled == b.nulled
            and a.values == b.values
        )

    def _record(self, schema: ObjectSchema, change: Change, ids: list[str], header: dict[str, Any]) -> dict[str, Any]:
        changed_bits = 0
        nulled_bits = 0
        changed_parts: list[str] = []
        nulled_parts: list[str] = []
        record: dict[str, Any] = {}
        full = change.kind in ("CREATE", "UNDELETE")
        carries = full or change.kind == "UPDATE"
        for index, slot in enumerate(schema.slots, start=1):
            if not carries:
                record[slot.name] = None
                continue
            if slot.compound:
                parts: dict[str, Any] = {}
                c_bits = n_bits = 0
                for bit, (column, part, kind) in enumerate(zip(slot.columns, slot.components, slot.kinds, strict=True)):
                    present = column in change.values
                    parts[part] = stored_to_avro(kind, change.values.get(column)) if present else None
                    if change.kind == "UPDATE" and present:
                        c_bits |= 1 << bit
                        if column in change.nulled:
                            n_bits |= 1 << bit
                record[slot.name] = parts if any(v is not None for v in parts.values()) else None
                if c_bits:
                    changed_parts.append(f"{index}-{_bitmap(c_bits)}")
                if n_bits:
                    nulled_parts.append(f"{index}-{_bitmap(n_bits)}")
                continue
            column = slot.columns[0]
            present = column in change.values
            record[slot.name] = stored_to_avro(slot.kinds[0], change.values.get(column)) if present else None
            if change.kind == "UPDATE" and present:
                changed_bits |= 1 << index
                if column in change.nulled:
                    nulled_bits |= 1 << index
        changed = ([_bitmap(changed_bits)] if changed_bits else []) + changed_parts
        nulled = ([_bitmap(nulled_bits)] if nulled_bits else []) + nulled_parts
        if nulled_parts and not nulled_bits:
            nulled.insert(0, "0x00")
        if changed_parts and not changed_bits:
            changed.insert(0, "0x00")
        record["ChangeEventHeader"] = {
            "entityName": change.obj.name,
            "recordIds": ids if change.kind != "GAP_OVERFLOW" else [],
            "changeType": change.kind,
            "changeOrigin": change.origin,
            "commitUser": change.user,
            "nulledFields": nulled,
            "diffFields": [],
            "changedFields": changed,
            **header,
        }
        return record

    # --- gap events and platform events -------------------------------------------------------------

    def gap(self, obj: ObjectDef, kind: str, record_ids: list[str], user: str) -> None:
        """Gap events for changes "written straight to the database" (admin API): header and ids only."""
        if kind not in GAP_KINDS.values() and kind != "GAP_OVERFLOW":
            raise ValueError(f"unknown gap change type {kind!r}; use one of {', '.join(GAP_KINDS.values())}")
        with self.store.transaction():
            for record_id in record_ids or [""]:
                self.record(Change(obj, kind, record_id, {}, user, ""))

    def publish(self, obj: ObjectDef, values: dict[str, Any], user: str) -> tuple[int, str]:
        """Store a platform event; returns (bus position, event uuid)."""
        schema = self.schemas.event_schema(obj)
        event_uuid = str(uuid.uuid4())
        now = self.clock.time()
        full = {**values, "CreatedDate": int(now * 1000), "CreatedById": user, "EventUuid": event_uuid}
        record = {}
        for slot in schema.slots:
            value = full.get(slot.name)
            record[slot.name] = value if slot.name == "CreatedDate" else stored_to_avro(slot.kinds[0], value)
        payload = schema.encode(record)
        if len(payload) > self.settings.max_event_bytes:
            raise EventTooLarge(len(payload), self.settings.max_event_bytes)
        (position,) = self.store.append_bus_rows([(obj.name, now, schema.schema_id, event_uuid, payload)])
        self.limits.count_published(1)
        with self.cond:
            self.cond.notify_all()
        return position, event_uuid

    def publish_encoded(self, obj: ObjectDef, payload: bytes, user: str) -> tuple[int, str]:
        """A Pub/Sub ``Publish``: the payload as the client encoded it with the topic's schema, validated by
        decoding; ``CreatedDate``, ``CreatedById`` and ``EventUuid`` are the server's, as on REST."""
        schema = self.schemas.event_schema(obj)
        values = schema.decode(payload)
        for f in obj.fields.values():
            if f.required and values.get(f.name) is None:
                raise ValueError(f"Required fields are missing: [{f.name}]")
        values = {k: v for k, v in values.items() if k not in ("CreatedDate", "CreatedById", "EventUuid")}
        return self.publish(obj, values, user)

    def rest_publish_id(self, position: int) -> str:
        return make_id("e01", position)

    # --- reading ------------------------------------------------------------------------------------

    def retention_start(self) -> float:
        return self.clock.time() - self.settings.retention_hours * 3600

    def read(self, entities: frozenset[str], after: int, limit: int) -> list[BusEvent]:
        if not entities or limit <= 0:
            return []
        ready = self.clock.time() - self.settings.delivery_delay_seconds
        rows = self.store.read_bus(sorted(entities), after, limit, self.retention_start(), ready)
        return [BusEvent(*row) for row in rows]

    def latest_position(self) -> int:
        """The newest position on the whole bus (what keep-alives report, as on a shared bus)."""
        return self.store.last_bus_position()

    def earliest_position(self, entities: frozenset[str]) -> int:
        """The position just before the oldest retained event of ``entities``."""
        return self.store.first_bus_position_since(sorted(entities), self.retention_start()) - 1

    def created_at(self, position: int) -> float | None:
        return self.store.bus_created(position)

    def channel_stats(self) -> list[dict[str, Any]]:
        out = []
        for name in self.channel_names():
            kind, entities = self.topic(name) or ("", frozenset())
            last = self.store.last_bus_position(sorted(entities)) if entities else 0
            out.append(
                {
                    "channel": name,
                    "kind": kind,
                    "entities": sorted(entities),
                    "latest_replay_id": replay_bytes(last).hex() if last else None,
                    "events": self.store.count_bus(sorted(entities)) if entities else 0,
                    "delivered": self.delivered[name],
                }
            )
        return out


class EventTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"The event is {size} bytes; an event can be at most {limit} bytes")
        self.size = size
        self.limit = limit
