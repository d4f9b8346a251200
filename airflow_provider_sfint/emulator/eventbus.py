"""The org's event bus: change events captured from every write path, platform events, and their channels.

Capture follows the store's transactions (see ``Store.transaction``): a write records its change in a
buffer; a rolled-back savepoint drops what it recorded; when the outermost transaction commits, the
buffer becomes events, appended to the event log while that transaction still holds the store's lock, just
before it commits: a record change and its event commit or vanish together, in commit order.

Transactions, as a subscriber sees them (``transactionKey``): one per REST call, Composite or Collections
request, and one per chunk of ``bulk_transaction_size`` (200) rows of a Bulk ingest batch, as Salesforce
processes Bulk uploads in chunks of 200 records. Within a transaction, ``sequenceNumber`` counts events
from 1, and consecutive identical changes (same entity, change type, values and user, as a Bulk update
setting one field on many rows) share one event with several record ids.

Replay ids are 8 bytes, big-endian: the bus position times 8 plus a check value, so they increase, are
never contiguous, and a made-up or damaged id is recognised as corrupted.
"""

from __future__ import annotations

import bisect
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from .avro_fast import NULL, long_bytes, string_bytes, strings_bytes
from .avro_schemas import CHANGE_TYPES, ObjectSchema, SchemaRegistry, stored_to_avro
from .clock import Clock
from .model import ObjectDef

if TYPE_CHECKING:
    from .limits import Limits
    from .schema import EventRule, Org
    from .store import Store

_KIND_BYTES = {kind: long_bytes(i) for i, kind in enumerate(CHANGE_TYPES)}
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


#: A stored event: ``(position, entity, created, schema_id, uuid, payload)``. A plain tuple of atomic values,
#: which CPython's garbage collector stops tracking: a log of a million events adds nothing to every
#: collection's work (a NamedTuple would stay tracked, and full collections during a large Bulk ingest then
#: walk the whole log).
BusEvent = tuple[int, str, float, str, str, bytes]
POSITION: Final = 0
ENTITY: Final = 1
CREATED: Final = 2
SCHEMA_ID: Final = 3
UUID: Final = 4
PAYLOAD: Final = 5


def _position(event: BusEvent) -> int:
    return event[POSITION]


class EventLog:
    """The stored events, in commit order, in memory.

    Kept beside the SQLite store rather than in it: writing every event into the same database cost Bulk
    ingest about 15% more than encoding them (measured), and readers here never wait for the store's
    lock. Events are appended by the store's committing transaction (so in commit order) and live until
    the org is reset; like Bulk jobs, they do not survive a restart of the emulator."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[BusEvent] = []
        self.by_entity: dict[str, list[BusEvent]] = {}
        self.next_position = 1

    def clear(self) -> None:
        with self.lock:
            self.events, self.by_entity, self.next_position = [], {}, 1

    def append(self, rows: list[tuple[str, float, str, str, bytes]]) -> list[int]:
        """Append ``(entity, created, schema_id, uuid, payload)`` rows; returns their positions."""
        out = []
        with self.lock:
            position = self.next_position
            by_entity = self.by_entity
            for entity, created, schema_id, event_uuid, payload in rows:
                event = (position, entity, created, schema_id, event_uuid, payload)
                self.events.append(event)
                found = by_entity.get(entity)
                if found is None:
                    found = by_entity[entity] = []
                found.append(event)
                out.append(position)
                position += 1
            self.next_position = position
        return out

    def _source(self, entities: frozenset[str], after: int) -> tuple[list[BusEvent], int]:
        """The list to scan (one entity's, or the whole log) and where to start in it."""
        if len(entities) == 1:
            (entity,) = entities
            events = self.by_entity.get(entity, [])
        else:
            events = self.events
        return events, bisect.bisect_right(events, after, key=_position)

    def read(self, entities: frozenset[str], after: int, limit: int, oldest: float, newest: float) -> list[BusEvent]:
        """Up to ``limit`` events of ``entities`` after position ``after``, created in [oldest, newest], in
        order (stopping at the first one not yet deliverable)."""
        out: list[BusEvent] = []
        with self.lock:
            events, start = self._source(entities, after)
            single = len(entities) == 1
            for i in range(start, len(events)):
                event = events[i]
                if not single and event[ENTITY] not in entities:
                    continue
                if event[CREATED] > newest:
                    break
                if event[CREATED] < oldest:
                    continue
                out.append(event)
                if len(out) >= limit:
                    break
        return out

    def last(self, entities: frozenset[str] | None = None) -> int:
        with self.lock:
            if entities is None:
                return self.next_position - 1
            found = [self.by_entity[e][-1][POSITION] for e in entities if self.by_entity.get(e)]
            return max(found, default=0)

    def first_since(self, entities: frozenset[str], oldest: float) -> int:
        """The first position of ``entities`` created at or after ``oldest`` (or one past the end)."""
        with self.lock:
            events, start = self._source(entities, 0)
            for event in events[start:]:
                if event[ENTITY] in entities and event[CREATED] >= oldest:
                    return event[POSITION]
            return self.next_position

    def created(self, position: int) -> float | None:
        with self.lock:
            i = bisect.bisect_left(self.events, position, key=_position)
            if i < len(self.events) and self.events[i][POSITION] == position:
                return self.events[i][CREATED]
            return None

    def count(self, entities: frozenset[str]) -> int:
        with self.lock:
            return sum(len(self.by_entity.get(e, [])) for e in entities)

    def of(self, entity: str, after: int = 0) -> list[BusEvent]:
        with self.lock:
            events = self.by_entity.get(entity, [])
            return events[bisect.bisect_right(events, after, key=_position) :]


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


def _bitmaps(
    positions: dict[str, tuple[int, int]], values: dict[str, Any], nulled_columns: frozenset[str]
) -> tuple[list[str], list[str]]:
    """``changedFields`` and ``nulledFields`` of an UPDATE: ``["0x..", "<index>-0x..", ...]``."""
    changed_top = nulled_top = 0
    changed_parts: dict[int, int] = {}
    nulled_parts: dict[int, int] = {}
    for column in values:
        found = positions.get(column)
        if found is None:
            continue  # a column change events leave out (SystemModstamp, IsDeleted, ...)
        index, bit = found
        if bit < 0:
            changed_top |= 1 << index
            if column in nulled_columns:
                nulled_top |= 1 << index
        else:
            changed_parts[index] = changed_parts.get(index, 0) | 1 << bit
            if column in nulled_columns:
                nulled_parts[index] = nulled_parts.get(index, 0) | 1 << bit

    def render(top: int, parts: dict[int, int]) -> list[str]:
        if not top and not parts:
            return []
        return [_bitmap(top), *(f"{i}-{_bitmap(parts[i])}" for i in sorted(parts))]

    return render(changed_top, changed_parts), render(nulled_top, nulled_parts)


def _transaction_key(serial: int, commit_number: int) -> bytes:
    """A transaction key in Salesforce's form (``0001ade9-3f74-0b99-dbc4-42e73424b774``), Avro-encoded."""
    text = f"{serial:08x}-{commit_number >> 32 & 0xFFFF:04x}-{commit_number >> 16 & 0xFFFF:04x}-" + (
        f"{commit_number & 0xFFFF:04x}-{(serial * 2654435761) & 0xFFFFFFFFFFFF:012x}"
    )
    return string_bytes(text)


def _event_uuid(serial: int) -> str:
    """A unique event id (the ProducerEvent ``id``) without the cost of uuid4 per event."""
    return f"{_RUN}-{serial:012x}"


_RUN = uuid.uuid4().hex[:23]


@lru_cache(maxsize=4096)
def _constant(text: str) -> bytes:
    """Entity names, origins and user ids repeat: encoded once."""
    return string_bytes(text)


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
        self.log = EventLog()
        self.settings = BusSettings()
        self.cdc_entities: set[str] = set(org.cdc_entities)
        self.custom_channels: dict[str, set[str]] = {k: set(v) for k, v in org.channels.items()}
        self.delivered: Counter[str] = Counter()
        # live Subscribe streams per topic (kept across a reset: the streams outlive it)
        self.subscribers: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.cond = threading.Condition()
        self._buffer: list[Change] = []
        self._rows: list[tuple[Any, ...]] = []  # encoded events of complete Bulk chunks, waiting for the commit
        # platform events the org's event rules publish when the transaction commits: (event, values, user)
        self._published: list[tuple[ObjectDef, dict[str, Any], str]] = []
        self.rules: dict[str, list[EventRule]] = {}
        for rule in org.event_rules:
            self.rules.setdefault(rule.obj, []).append(rule)
        self._txn = _Txn()
        self._commit_number = FIRST_COMMIT_NUMBER
        self._transactions = 0
        self._events = 0
        store.listener = self

    def reset(self) -> None:
        self.schemas.clear()
        self.log.clear()
        self.settings = BusSettings()
        self.cdc_entities = set(self.org.cdc_entities)
        self.custom_channels = {k: set(v) for k, v in self.org.channels.items()}
        self.delivered.clear()
        self._buffer = []
        self._rows = []
        self._published = []
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
        rules = self.rules.get(change.obj.name)
        if rules and change.kind in ("CREATE", "UPDATE"):
            self._run_rules(rules, change)
        if not self.captured(change.obj):
            if self._published and not self.store.in_transaction:
                self.before_commit()
            return
        self._buffer.append(change)
        size = self._txn.chunk_size
        if size is not None and len(self._buffer) >= size:
            # a Bulk chunk is complete: encode it now (its events still wait for the commit), so a batch of
            # 10,000 rows never holds 10,000 pending change objects
            self._rows.extend(self._transaction_rows(self._buffer, self.clock.time()))
            self._buffer = []
        if not self.store.in_transaction:
            self.before_commit()

    def _run_rules(self, rules: list[EventRule], change: Change) -> None:
        """The org's event rules, as its Apex triggers would run: after the write, in its transaction."""
        after: dict[str, Any] | None = None
        for rule in rules:
            if after is None:
                if change.kind == "CREATE":
                    after = {**change.values, "Id": change.record_id}
                else:
                    after = self.store.get(change.obj, change.record_id) or {}
            if rule.fires(change.kind, after, change.values):
                event = self.org.objects[rule.event]
                values = {name: after.get(source) for name, source in rule.values.items()}
                self._published.append((event, values, change.user))

    def bulk_transaction(self) -> None:
        """Called inside a Bulk batch's store transaction: its changes get a new transaction key every
        ``bulk_transaction_size`` rows (the setting lasts until that transaction ends). Bulk batches open
        no inner savepoints, which is what lets complete chunks be encoded before the commit."""
        if self.store.depth != 1:
            raise RuntimeError("bulk_transaction() belongs in an outermost store transaction")
        self._txn = _Txn(chunk_size=max(1, int(self.settings.bulk_transaction_size)))

    # --- the store's transaction listener -----------------------------------------------------------

    def mark(self) -> tuple[int, int, int]:
        if self._txn.chunk_size is not None:
            raise RuntimeError("no savepoint may open inside a Bulk batch's chunked capture")
        return len(self._buffer), len(self._rows), len(self._published)

    def rollback_to(self, mark: tuple[int, int, int]) -> None:
        del self._buffer[mark[0] :]
        del self._rows[mark[1] :]
        del self._published[mark[2] :]
        if self.store.depth <= 1:  # the outermost transaction rolled back: its Bulk chunking ends with it
            self._txn = _Txn()
            self._buffer, self._rows, self._published = [], [], []

    def before_commit(self) -> None:
        """Turn the outermost transaction's changes into stored events (still inside that transaction)."""
        txn, self._txn = self._txn, _Txn()
        rows, self._rows = self._rows, []
        changes, self._buffer = self._buffer, []
        published, self._published = self._published, []
        if changes:
            size = txn.chunk_size or len(changes)
            now = self.clock.time()
            for start in range(0, len(changes), size):
                rows.extend(self._transaction_rows(changes[start : start + size], now))
        if rows:
            self.log.append(rows)
            with self.cond:
                self.cond.notify_all()
        for event, values, user in published:  # after the change events of the same transaction
            self.publish(event, values, user)

    def _transaction_rows(self, changes: list[Change], now: float) -> list[tuple[Any, ...]]:
        self._commit_number += 1 + len(changes) % 7
        self._transactions += 1
        txn_key = _transaction_key(self._transactions, self._commit_number)
        commit = long_bytes(int(now * 1000)) + long_bytes(self._commit_number)
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
        schemas: dict[int, ObjectSchema] = {}
        for sequence, (change, ids) in enumerate(groups, start=1):
            schema = schemas.get(id(change.obj))
            if schema is None:
                schema = schemas[id(change.obj)] = self.schemas.change_schema(change.obj)
            payload = self._payload(schema, change, ids, txn_key, sequence, commit)
            if len(payload) > self.settings.max_event_bytes and change.kind in GAP_KINDS:
                gap = Change(change.obj, GAP_KINDS[change.kind], "", {}, change.user, change.origin)
                payload = self._payload(schema, gap, ids, txn_key, sequence, commit)
            self._events += 1
            rows.append((change.obj.name, now, schema.schema_id, _event_uuid(self._events), payload))
        return rows

    @staticmethod
    def _same(a: Change, b: Change) -> bool:
        # CREATE events are never merged: two new records with every value equal do not happen in practice,
        # and comparing whole records on every insert would cost more than the rest of the capture
        return (
            a.kind == b.kind
            and a.kind != "CREATE"
            and a.obj is b.obj
            and a.user == b.user
            and a.origin == b.origin
            and a.nulled == b.nulled
            and (a.kind in ("DELETE", "GAP_DELETE") or a.values == b.values)
        )

    def _payload(
        self, schema: ObjectSchema, change: Change, ids: list[str], txn_key: bytes, sequence: int, commit: bytes
    ) -> bytes:
        """The event's Avro bytes: the header, then the values (all for CREATE and UNDELETE, the changed ones
        for UPDATE, none otherwise)."""
        changed: list[str] = []
        nulled: list[str] = []
        if change.kind == "UPDATE":
            changed, nulled = _bitmaps(schema.positions, change.values, change.nulled)
        header = b"".join(
            (
                _constant(change.obj.name),
                strings_bytes(ids if change.kind != "GAP_OVERFLOW" else []),
                _KIND_BYTES[change.kind],
                _constant(change.origin),
                txn_key,
                long_bytes(sequence),
                commit,
                _constant(change.user),
                strings_bytes(nulled),
                NULL,  # diffFields: never sent
                strings_bytes(changed),
            )
        )
        carries = change.kind in ("CREATE", "UNDELETE", "UPDATE")
        return header + schema.encode_values(change.values if carries else {})

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
        (position,) = self.log.append([(obj.name, now, schema.schema_id, event_uuid, payload)])
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

    # --- reading ------------------------------------------------------------------------------------

    def retention_start(self) -> float:
        return self.clock.time() - self.settings.retention_hours * 3600

    def read(self, entities: frozenset[str], after: int, limit: int) -> list[BusEvent]:
        if not entities or limit <= 0:
            return []
        ready = self.clock.time() - self.settings.delivery_delay_seconds
        return self.log.read(entities, after, limit, self.retention_start(), ready)

    def latest_position(self) -> int:
        """The newest position on the whole bus."""
        return self.log.last()

    def keepalive_position(self, entities: frozenset[str], after: int) -> int:
        """What a keep-alive reports as ``latest_replay_id``: the newest position on the bus (as on a shared
        bus, possibly ahead of the subscriber's events), but never past an event of the topic that is stored
        and not yet deliverable (a delayed one): resuming there must not skip it."""
        waiting = self.log.read(entities, after, 1, self.retention_start(), float("inf"))
        return waiting[0][POSITION] - 1 if waiting else self.log.last()

    def earliest_position(self, entities: frozenset[str]) -> int:
        """The position just before the oldest retained event of ``entities``."""
        return self.log.first_since(entities, self.retention_start()) - 1

    def created_at(self, position: int) -> float | None:
        return self.log.created(position)

    def channel_stats(self) -> list[dict[str, Any]]:
        out = []
        for name in self.channel_names():
            kind, entities = self.topic(name) or ("", frozenset())
            last = self.log.last(entities) if entities else 0
            out.append(
                {
                    "channel": name,
                    "kind": kind,
                    "entities": sorted(entities),
                    "latest_replay_id": replay_bytes(last).hex() if last else None,
                    "events": self.log.count(entities) if entities else 0,
                    "delivered": self.delivered[name],
                    "subscribers": self.subscribers[name],
                }
            )
        return out


class EventTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"The event is {size} bytes; an event can be at most {limit} bytes")
        self.size = size
        self.limit = limit
