"""The change-event consumer: a channel's events, from a checkpoint to "caught up", into typed part files,
exactly once. No Airflow.

One run reads the channel after the checkpoint until no event arrives for ``idle_seconds`` (or
``max_events`` were read) and writes, per entity, one part file of change rows:

    <output>/<Entity>/part-<NNNNNN>.parquet     (or .jsonl)

one row per record id per event: ``replay_id`` (hex), ``change_type``, ``record_id``, ``commit_timestamp``,
``commit_number``, ``transaction_key``, ``sequence_number``, ``changed_fields``, ``nulled_fields``,
``commit_user``, ``change_origin``, then the object's fields typed from describe (compound fields spread
into their columns: ``BillingAddress.City`` is ``BillingCity``). Gap events (``GAP_CREATE`` ...) are healed on
the spot: their records are read again by id (current values, all fields; a record that is gone becomes a
``GAP_DELETE`` row).

**Exactly once.** The part number of a run is the checkpoint's plus one, recorded (with the replay ids the
run read) before the parts are written; parts are written whole under their final names (a staging file and
a rename, or one PUT), then the checkpoint moves to the last replay id. A run killed between the two finds
the recorded run, reads the same events again (the checkpoint did not move) and writes the same part names:
the parts are replaced, never doubled. Readers take the files in part order and, for a record, the row
with the highest (``commit_number``, ``sequence_number``).

``GAP_OVERFLOW`` events and an expired checkpoint cannot be healed record by record: the run stops with
:class:`ResyncNeeded` naming the entity, after committing what came before, so nothing is skipped silently.

A platform-event channel (``/event/<Name>__e``) is read the same way, with the same checkpoint and parts
(``<output>/<Name>__e/part-<NNNNNN>``), one row per event: ``replay_id`` (hex; the event's identity and a
consumer's idempotency key), ``event_uuid``, ``created_date``, ``created_by_id``, then the event's fields
typed from describe.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..client.arrowio import local_path
from ..client.arrowio.types import arrow_type
from ..client.changes import ChangeEvent, PlatformEvent
from ..client.crashpoints import crash_point
from ..client.errors import PermanentError, ReplayIdExpiredError
from ..client.pubsub import PubSubClient
from .state import StateStore

CHECKPOINT = "checkpoint"
RUN = "run"
HEADER_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("replay_id", pa.string()),
    ("change_type", pa.string()),
    ("record_id", pa.string()),
    ("commit_timestamp", pa.timestamp("ms", tz="UTC")),
    ("commit_number", pa.int64()),
    ("transaction_key", pa.string()),
    ("sequence_number", pa.int32()),
    ("changed_fields", pa.list_(pa.string())),
    ("nulled_fields", pa.list_(pa.string())),
    ("commit_user", pa.string()),
    ("change_origin", pa.string()),
]
SKIPPED = frozenset({"Id", "IsDeleted", "SystemModstamp"})
#: platform-event parts: the event's identity, then its own fields typed from describe
EVENT_HEADER_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("replay_id", pa.string()),
    ("event_uuid", pa.string()),
    ("created_date", pa.timestamp("ms", tz="UTC")),
    ("created_by_id", pa.string()),
]
EVENT_SKIPPED = frozenset({"ReplayId", "EventUuid", "CreatedDate", "CreatedById"})
#: the Parquet schema metadata key naming a part's kind: b"changes" or b"snapshot"
PART_KIND = "sfint_part_kind"
#: the describe keys the columns and their typing use: what the checkpoint keeps of describe
DESCRIBE_KEYS = ("name", "type", "scale", "precision", "compoundFieldName")
EPOCH = date(1970, 1, 1)
#: a LATEST channel whose first run read nothing resumes from this long before that run started (clock skew)
LATEST_SKEW_SECONDS = 60


class ResyncNeeded(PermanentError):
    """Changes of an entity were lost to the stream (a GAP_OVERFLOW, or the checkpoint expired): take a
    snapshot of the entity and continue from the replay id given."""

    def __init__(self, message: str, *, entity: str | None, replay_id: str | None) -> None:
        super().__init__(message)
        self.entity = entity
        self.replay_id = replay_id


@dataclass
class ChangeSettings:
    """:param channel: ``/data/ChangeEvents``, ``/data/<Object>ChangeEvent`` or a custom ``__chn`` channel
    :param output: a directory (local path or ObjectStoragePath): parts go to ``<output>/<Entity>/``
    :param fmt: ``parquet`` or ``jsonl``
    :param max_events: stop after this many events (None: until caught up)
    :param idle_seconds: caught up when no event arrives for this long
    :param start: where a channel without a checkpoint starts: ``EARLIEST`` (every retained event), ``LATEST``,
        or ``SNAPSHOT`` (a Bulk snapshot of the channel's entities, then every retained event)
    :param batch_size: events kept requested (1..100)
    :param resync: heal a ``GAP_OVERFLOW`` or an expired checkpoint with a Bulk snapshot (False: stop with
        :class:`ResyncNeeded`)
    :param entities: the entities of a multi-entity channel (``/data/ChangeEvents``, ``__chn``), for snapshots
    :param part_events: events held in memory at most: a run commits its parts (and moves the checkpoint) every
        this many events, so memory stays flat however far behind the channel is
    """

    channel: str
    output: Any
    fmt: str = "parquet"
    max_events: int | None = None
    idle_seconds: float = 5.0
    start: str = "EARLIEST"
    batch_size: int = 100
    resync: bool = True
    entities: tuple[str, ...] = ()
    part_events: int = 10_000

    @property
    def platform_events(self) -> bool:
        """True for a platform-event channel (``/event/X__e``): one row per event, no snapshots or gaps."""
        return self.channel.startswith("/event/")

    def snapshot_entities(self) -> tuple[str, ...]:
        """What a snapshot of the channel covers: its one entity, or the listed ones."""
        if self.entities:
            return tuple(self.entities)
        name = self.channel.removeprefix("/data/")
        if name.endswith("ChangeEvent") and name != "ChangeEvents":
            entity = name[: -len("ChangeEvent")]
            return (entity + "c",) if entity.endswith("__") else (entity,)
        return ()

    def check(self) -> None:
        if self.fmt not in ("parquet", "jsonl"):
            raise ValueError(f"fmt {self.fmt!r}: use parquet or jsonl")
        if self.platform_events:
            if not self.channel.endswith("__e") or len(self.channel) <= len("/event/__e"):
                raise ValueError(f"channel {self.channel!r}: a platform-event channel is /event/<Name>__e")
            if self.start not in ("EARLIEST", "LATEST"):
                raise ValueError(
                    f"start {self.start!r}: a platform-event channel starts at EARLIEST (every retained event) or "
                    "LATEST; events are not records, there is nothing to snapshot"
                )
        elif self.start not in ("EARLIEST", "LATEST", "SNAPSHOT"):
            raise ValueError(f"start {self.start!r}: use EARLIEST, LATEST or SNAPSHOT")
        if self.start == "SNAPSHOT" and not self.snapshot_entities():
            raise ValueError(
                f"channel {self.channel} carries several entities: list them in entities= to start with a snapshot"
            )
        if not self.channel.startswith(("/data/", "/event/")):
            raise ValueError(
                f"channel {self.channel!r}: use a change-event channel (/data/...) or a platform-event channel "
                "(/event/<Name>__e)"
            )
        if self.max_events is not None and self.max_events < 1:
            raise ValueError("max_events must be at least 1")
        if self.part_events < 1:
            raise ValueError("part_events must be at least 1")


@dataclass
class _Columns:
    """An entity's output columns: the header, then its describe fields in describe order."""

    fields: list[dict[str, Any]]
    compound: dict[str, str] = field(default_factory=dict)  # "BillingAddress.City" -> "BillingCity"
    header: list[tuple[str, pa.DataType]] = field(default_factory=lambda: HEADER_COLUMNS)
    # per event field name: its column (None: no column), and per column its value converter; filled as met
    _resolved: dict[str, str | None] = field(default_factory=dict, repr=False)
    _convert: dict[str, Callable[[Any], Any]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, describe: dict[str, Any], events: bool = False) -> _Columns:
        skipped = EVENT_SKIPPED if events else SKIPPED
        fields = [f for f in describe.get("fields", []) if f["name"] not in skipped and f.get("type") != "address"]
        compound: dict[str, str] = {}
        for f in fields:
            parent = f.get("compoundFieldName")
            if parent:  # BillingCity of BillingAddress is its City part; FirstName of Name its FirstName part
                prefix = parent[: -len("Address")] if parent.endswith("Address") else ""
                compound[f"{parent}.{f['name'].removeprefix(prefix)}"] = f["name"]
        columns = cls(fields, compound, EVENT_HEADER_COLUMNS if events else HEADER_COLUMNS)
        columns._convert = {f["name"]: _converter(f) for f in fields}
        return columns

    def schema(self) -> pa.Schema:
        return pa.schema([*self.header, *[(f["name"], arrow_type(f)) for f in self.fields]])

    def column(self, name: str) -> str | None:
        """The describe column an event field name stands for (``BillingAddress.City`` -> ``BillingCity``)."""
        try:
            return self._resolved[name]
        except KeyError:
            pass
        found: str | None
        if name in self._convert:
            found = name
        elif name in self.compound:
            found = self.compound[name]
        elif "." in name:  # a compound the describe does not declare: Address parts by their prefix
            parent, part = name.split(".", 1)
            guess = (parent[: -len("Address")] if parent.endswith("Address") else "") + part
            found = guess if guess in self._convert else None
        else:
            found = None
        self._resolved[name] = found
        return found

    def typed(self, column: str, value: Any) -> Any:
        return None if value is None else self._convert[column](value)


def _converter(sf_field: dict[str, Any]) -> Callable[[Any], Any]:
    """The function turning a non-null event value (Avro: datetimes epoch ms, dates days) or REST value into
    the column's Python value, chosen once per column."""
    t = str(sf_field.get("type", "string")).lower()
    if t == "datetime":
        return _datetime
    if t == "date":
        return _date
    if t == "currency":
        quantum = Decimal(1).scaleb(-int(sf_field.get("scale") or 0))
        return lambda value: Decimal(str(value)).quantize(quantum)
    if t in ("int", "long"):
        return int
    if t in ("double", "percent"):
        return float
    if t == "boolean":
        return bool
    return _text


def _datetime(value: Any) -> datetime:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    return datetime.fromisoformat(str(value).replace("+0000", "+00:00").replace("Z", "+00:00"))


def _date(value: Any) -> date:
    return EPOCH + timedelta(days=int(value)) if isinstance(value, int) else date.fromisoformat(str(value))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


class ChangeEventsEngine:
    """Reads one channel into part files. ``rest`` is a sync client (describe, re-reading gap records);
    ``pubsub`` makes the Pub/Sub client (called inside the run's event loop)."""

    def __init__(
        self,
        rest: Any,
        pubsub: Callable[[], PubSubClient],
        settings: ChangeSettings,
        store: StateStore,
    ) -> None:
        settings.check()
        self.rest = rest
        self.pubsub = pubsub
        self.settings = settings
        self.store = store
        self._columns: dict[str, _Columns] = {}
        # describe as kept in the checkpoint, per entity with the event schema id it was read for: a run whose
        # events carry the same schema id needs no describe call (the id changes whenever a field does)
        self._kept: dict[str, Any] = {}
        self._described: dict[str, Any] = {}
        self.deliveries = 0
        self.reconnects = 0

    # --- reading --------------------------------------------------------------------------------------

    async def _read(
        self, replay_id: str | None, after_snapshot: bool, limit: int, since: datetime | None = None
    ) -> list[Any]:
        """Up to ``limit`` events after ``replay_id`` (fewer when the channel goes idle first)."""
        s = self.settings
        events: list[Any] = []
        client = self.pubsub()
        async with client:
            # after a snapshot with no resume point, every retained event is replayed on top of it; a LATEST channel
            # whose first run read nothing replays from EARLIEST and drops what came before its start time
            preset = "CUSTOM" if replay_id else ("EARLIEST" if after_snapshot or s.start == "SNAPSHOT" else s.start)
            if not replay_id and since is not None:
                preset = "EARLIEST"
            stream = client.subscribe(
                s.channel,
                replay_preset=preset,
                replay_id=bytes.fromhex(replay_id) if replay_id else None,
                batch_size=min(s.batch_size, limit),
                idle_timeout=s.idle_seconds,
                limit=limit,  # never requested beyond it: no delivery is spent on events this round leaves
            )
            async for batch in stream:
                for event in batch.events:
                    if isinstance(event, PlatformEvent) != s.platform_events:
                        raise ValueError(
                            f"{s.channel} delivered a {type(event).__name__}, which this reader does not read"
                        )
                    events.append(event)
            await stream.aclose()
            self.deliveries = client.delivered
            self.reconnects = client.reconnects
        return events

    # --- rows ---------------------------------------------------------------------------------------

    def columns(self, entity: str, schema_id: str | None = None) -> _Columns:
        """The entity's output columns: from describe, or from the describe kept in the checkpoint when it was
        read for the same event schema id (no REST call)."""
        if entity not in self._columns:
            kept = self._kept.get(entity)
            events = self.settings.platform_events
            if schema_id and kept and kept.get("schema_id") == schema_id:
                self._columns[entity] = _Columns.of({"fields": kept["fields"]}, events)
                self._described[entity] = kept
            else:
                describe = self.rest.describe(entity)
                self._columns[entity] = _Columns.of(describe, events)
                if schema_id:
                    fields = [{k: f[k] for k in DESCRIBE_KEYS if f.get(k) is not None} for f in describe["fields"]]
                    self._described[entity] = {"schema_id": schema_id, "fields": fields}
        return self._columns[entity]

    def _kept_columns(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        return {**checkpoint.get("columns", {}), **self._described}

    def _rows(self, event: ChangeEvent, values: dict[str, Any], change_type: str, record_id: str) -> dict[str, Any]:
        cols = self.columns(event.entity, event.schema_id)
        row: dict[str, Any] = {
            "replay_id": event.replay_id.hex(),
            "change_type": change_type,
            "record_id": record_id,
            "commit_timestamp": event.commit_timestamp,
            "commit_number": event.commit_number,
            "transaction_key": event.transaction_key,
            "sequence_number": event.sequence_number,
            "changed_fields": [cols.column(n) or n for n in event.changed_fields],
            "nulled_fields": [cols.column(n) or n for n in event.nulled_fields],
            "commit_user": event.commit_user,
            "change_origin": event.change_origin,
        }
        self._fill(row, event.entity, event.schema_id, f"change event {event.replay_id.hex()}", values)
        return row

    def _fill(self, row: dict[str, Any], entity: str, schema_id: str, what: str, values: dict[str, Any]) -> None:
        """Put the event's values into ``row`` under their columns, typed. A field added since describe was read
        (the event's schema changed mid-run) reads describe again, so the part gains the column (null in earlier
        rows) instead of dropping the value."""
        cols = self.columns(entity, schema_id)
        for name, value in values.items():
            column = cols.column(name)
            if column is None and value is not None:
                self._columns.pop(entity, None)
                self._kept.pop(entity, None)
                cols = self.columns(entity, schema_id)
                column = cols.column(name)
                if column is None:
                    raise ValueError(
                        f"{entity} {what} carries {name!r}, which describe does not list: the output has no column "
                        "for it"
                    )
            if column is not None:
                row[column] = cols.typed(column, value)

    def _heal(self, event: ChangeEvent) -> list[dict[str, Any]]:
        """Gap rows: the listed records read again, with every current value (``GAP_DELETE`` when gone)."""
        cols = self.columns(event.entity, event.schema_id)
        names = [f["name"] for f in cols.fields]
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(event.record_ids), 200):
            ids = ", ".join(f"'{i}'" for i in event.record_ids[start : start + 200])
            soql = f"SELECT Id, IsDeleted, {', '.join(names)} FROM {event.entity} WHERE Id IN ({ids})"
            for record in self.rest.query_all(soql, include_deleted=True):
                found[str(record["Id"])] = record
        rows = []
        for record_id in event.record_ids:
            record = found.get(record_id)
            if record is None or record.get("IsDeleted"):
                rows.append(self._rows(event, {}, "GAP_DELETE", record_id))
            else:
                values = {k: v for k, v in record.items() if k in names}
                rows.append(self._rows(event, values, event.change_type, record_id))
        return rows

    def _event_row(self, event: PlatformEvent) -> dict[str, Any]:
        row: dict[str, Any] = {
            "replay_id": event.replay_id.hex(),
            "event_uuid": event.event_uuid or event.event_id,
            "created_date": event.created_date,
            "created_by_id": event.values.get("CreatedById"),
        }
        values = {k: v for k, v in event.values.items() if k not in EVENT_SKIPPED}
        self._fill(row, event.name, event.schema_id, f"event {event.replay_id.hex()}", values)
        return row

    def rows(self, events: list[Any]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
        """Rows per entity (per event name on a platform-event channel), and counts per change type (gap
        records counted as healed; ``EVENT`` for platform events)."""
        out: dict[str, list[dict[str, Any]]] = {}
        counts: dict[str, int] = {}
        if self.settings.platform_events:
            for event in events:
                out.setdefault(event.name, []).append(self._event_row(event))
            counts["EVENT"] = len(events)
            return out, counts
        for event in events:
            if event.is_gap:
                produced = self._heal(event)
                counts["gaps_healed"] = counts.get("gaps_healed", 0) + len(produced)
            else:
                carried = event.carried()
                produced = [self._rows(event, carried, event.change_type, rid) for rid in event.record_ids]
            out.setdefault(event.entity, []).extend(produced)
            counts[event.change_type] = counts.get(event.change_type, 0) + len(produced)
        return out, counts

    # --- writing ------------------------------------------------------------------------------------

    def part_path(self, entity: str, part: int) -> Any:
        suffix = "parquet" if self.settings.fmt == "parquet" else "jsonl"
        return _join(self.settings.output, entity, f"part-{part:06d}.{suffix}")

    def _write(self, entity: str, part: int, rows: list[dict[str, Any]], kind: str = "changes") -> str:
        """Write one part whole; its Parquet schema says what it is (``sfint_part_kind``: ``changes`` or
        ``snapshot``), so a reader knows an empty snapshot empties the entity."""
        schema = self.columns(entity).schema().with_metadata({PART_KIND: kind})
        table = pa.Table.from_pylist(rows, schema=schema)
        target = self.part_path(entity, part)
        local = local_path(target)
        if local is not None:
            os.makedirs(os.path.dirname(local), exist_ok=True)
            staging = os.path.join(os.path.dirname(local), f".{os.path.basename(local)}.sfint-tmp")
            with open(staging, "wb") as handle:
                self._serialise(table, handle)
            os.replace(staging, local)
            return local
        with target.open("wb") as handle:  # an object store: one PUT, whole or nothing
            self._serialise(table, handle)
        return str(target)

    def _serialise(self, table: pa.Table, handle: Any) -> None:
        if self.settings.fmt == "parquet":
            pq.write_table(table, handle)
            return
        for row in table.to_pylist():
            handle.write((json.dumps(row, default=_json_default, separators=(",", ":")) + "\n").encode())

    # --- the run ------------------------------------------------------------------------------------

    def _snapshot(self, entity: str, part: int, commit_number: int) -> tuple[str, int]:
        """A Bulk query of every live record of ``entity`` written as one part of ``SNAPSHOT`` rows (ordered
        before the stream's rows by ``commit_number``); returns (part path, rows)."""
        import tempfile

        from .query import QueryEngine, QuerySettings, QuerySpec

        cols = self.columns(entity)
        names = ["Id", *[f["name"] for f in cols.fields]]
        by_name = {f["name"]: f for f in self.rest.describe(entity).get("fields", [])}
        schema = pa.schema([(n, arrow_type(by_name[n])) for n in names])
        soql = f"SELECT {', '.join(names)} FROM {entity}"
        with tempfile.TemporaryDirectory(prefix="sfint-snapshot-") as folder:
            target = os.path.join(folder, f"{entity}.parquet")
            spec = QuerySpec(
                soql=soql, include_deleted=False, output=target, format="parquet", directory=False, typed=True
            )
            engine = QueryEngine(self.rest, spec, Path(target), schema, QuerySettings(poll_interval=0.5))
            job_id = engine.submit()
            engine.recorded(job_id)
            engine.wait(job_id)
            engine.collect(job_id)
            table = pq.read_table(target)
        stamp = datetime.now(UTC)
        header: dict[str, Any] = {
            "replay_id": None,
            "change_type": "SNAPSHOT",
            "commit_timestamp": stamp,
            "commit_number": commit_number,
            "transaction_key": None,
            "sequence_number": 0,
            "changed_fields": [],
            "nulled_fields": [],
            "commit_user": None,
            "change_origin": "sfint snapshot (Bulk query)",
        }
        rows = []
        for record in table.to_pylist():
            record_id = record.pop("Id")
            rows.append({**header, "record_id": record_id, **record})
        crash_point("changes.snapshot_read")
        return self._write(entity, part, rows, "snapshot"), len(rows)

    def _commit(
        self, checkpoint: dict[str, Any], part: int, events: list[Any], summary: dict[str, Any]
    ) -> dict[str, Any]:
        """Write the parts of ``events`` (run ``part``), then move the checkpoint after the last of them."""
        self.store.set(RUN, {"from": checkpoint["replay_id"], "part": part, "to": events[-1].replay_id.hex()})
        crash_point("changes.run_recorded")
        by_entity, counts = self.rows(events)
        summary["gaps_healed"] += counts.pop("gaps_healed", 0)
        for kind, n in counts.items():
            summary["rows"][kind] = summary["rows"].get(kind, 0) + n
        for entity in sorted(by_entity):
            summary["parts"].append(self._write(entity, part, by_entity[entity]))
            crash_point("changes.part_written")
        crash_point("changes.parts_committed")
        moved = {
            "replay_id": events[-1].replay_id.hex(),
            "part": part,
            "events": checkpoint["events"] + len(events),
            "columns": self._kept_columns(checkpoint),
        }
        self.store.set(CHECKPOINT, moved)
        crash_point("changes.checkpoint_moved")
        self.store.delete(RUN)
        return moved

    def _resync(
        self, checkpoint: dict[str, Any], entities: tuple[str, ...], resume: str | None, commit_number: int,
        summary: dict[str, Any],
    ) -> dict[str, Any]:  # fmt: skip
        """Snapshot ``entities`` into the next part, then put the checkpoint at ``resume`` (None: from EARLIEST,
        every retained event replayed on top of the snapshot)."""
        part = checkpoint["part"] + 1
        recorded = self.store.get(RUN)
        if recorded and recorded.get("snapshot") and recorded.get("from") == checkpoint["replay_id"]:
            part = recorded["part"]
        self.store.set(RUN, {"from": checkpoint["replay_id"], "part": part, "snapshot": list(entities)})
        for entity in entities:
            path, rows = self._snapshot(entity, part, commit_number)
            summary["parts"].append(path)
            summary["rows"]["SNAPSHOT"] = summary["rows"].get("SNAPSHOT", 0) + rows
        summary["snapshots"] += len(entities)
        moved = {
            "replay_id": resume,
            "part": part,
            "events": checkpoint["events"],
            "snapshot": resume is None,
            "columns": self._kept_columns(checkpoint),
        }
        self.store.set(CHECKPOINT, moved)
        crash_point("changes.snapshot_committed")
        self.store.delete(RUN)
        return moved

    def run(self) -> dict[str, Any]:
        started = datetime.now(UTC)
        checkpoint = self.store.get(CHECKPOINT) or {"replay_id": None, "part": 0, "events": 0}
        self._kept = dict(checkpoint.get("columns") or {})
        summary: dict[str, Any] = {
            "channel": self.settings.channel,
            "events": 0,
            "rows": {},
            "parts": [],
            "first_replay_id": None,
            "last_replay_id": checkpoint["replay_id"],
            "gaps_healed": 0,
            "snapshots": 0,
            "deliveries": 0,
            "reconnects": 0,
        }
        if self.store.get(CHECKPOINT) is None and self.settings.start == "SNAPSHOT":
            checkpoint = self._resync(checkpoint, self.settings.snapshot_entities(), None, 0, summary)
        overflows = 0
        while True:  # a round per part_events events or overflow healed; caught up when a round reads fewer
            recorded = self.store.get(RUN)
            part = checkpoint["part"] + 1
            if recorded and not recorded.get("snapshot") and recorded.get("from") == checkpoint["replay_id"]:
                part = recorded["part"]  # a killed run from this checkpoint: the same part names again
            limit = self.settings.part_events
            if self.settings.max_events is not None:
                limit = min(limit, self.settings.max_events - summary["events"])
                if limit <= 0:
                    return summary
            since = _since(checkpoint)
            try:
                events = asyncio.run(
                    self._read(checkpoint["replay_id"], checkpoint.get("snapshot", False), limit, since)
                )
            except ReplayIdExpiredError as exc:
                if not self.settings.resync or not self.settings.snapshot_entities():
                    raise ResyncNeeded(
                        f"{self.settings.channel}: the checkpoint {checkpoint['replay_id']} is past the retention "
                        f"window ({exc}); take a snapshot and start again (or list the channel's entities in "
                        "entities= for the snapshot to be taken here)",
                        entity=None,
                        replay_id=checkpoint["replay_id"],
                    ) from exc
                checkpoint = self._resync(checkpoint, self.settings.snapshot_entities(), None, 0, summary)
                continue
            summary["deliveries"] += self.deliveries
            summary["reconnects"] += self.reconnects
            caught_up = len(events) < limit
            if since is not None and checkpoint["replay_id"] is None:
                early = 0  # events come in replay order, so those published before the floor are a prefix
                while early < len(events) and (_created(events[early]) or since) < since:
                    early += 1
                if early:  # published before a LATEST channel's first run: not this reader's; step past them
                    summary["skipped_before_start"] = summary.get("skipped_before_start", 0) + early
                    checkpoint = {**checkpoint, "replay_id": events[early - 1].replay_id.hex()}
                    self.store.set(CHECKPOINT, checkpoint)
                    events = events[early:]
            overflow = next((e for e in events if e.is_overflow), None)
            if overflow is not None:
                events = events[: events.index(overflow)]
            if events:
                summary["events"] += len(events)
                summary["first_replay_id"] = summary["first_replay_id"] or events[0].replay_id.hex()
                summary["last_replay_id"] = events[-1].replay_id.hex()
                checkpoint = self._commit(checkpoint, part, events, summary)
            if overflow is None:
                if caught_up:
                    if self.settings.start == "LATEST" and checkpoint["replay_id"] is None and since is None:
                        # a LATEST channel's first run read nothing, so it has no replay id to resume after: keep
                        # its start time instead (a minute early, for clock skew), or the events published before
                        # the next run would be missed by it as well
                        floor = started - timedelta(seconds=LATEST_SKEW_SECONDS)
                        checkpoint = {**checkpoint, "since": floor.isoformat()}
                        self.store.set(CHECKPOINT, checkpoint)
                    return summary
                continue  # a full round: commit and read on, holding at most part_events events at a time
            overflows += 1
            if overflows > 100:
                raise ResyncNeeded(
                    f"{self.settings.channel}: more than 100 overflows in one run", entity=None, replay_id=None
                )
            if not self.settings.resync:
                raise ResyncNeeded(
                    f"{self.settings.channel}: a transaction changed too many {overflow.entity} records for change "
                    f"events (GAP_OVERFLOW at replay id {overflow.replay_id.hex()}); everything before it is "
                    f"committed. Take a snapshot of {overflow.entity} and continue after that replay id.",
                    entity=overflow.entity,
                    replay_id=overflow.replay_id.hex(),
                )
            # the snapshot goes after what came before; the stream continues after the overflow event, so
            # every change after it is applied on top of the snapshot: no hole between the two
            summary["events"] += 1
            summary["last_replay_id"] = overflow.replay_id.hex()
            checkpoint = self._resync(
                checkpoint, (overflow.entity,), overflow.replay_id.hex(), overflow.commit_number, summary
            )


def _since(checkpoint: dict[str, Any]) -> datetime | None:
    value = checkpoint.get("since")
    return datetime.fromisoformat(value) if value else None


def _created(event: Any) -> datetime | None:
    """When Salesforce committed a change event or created a platform event."""
    return event.created_date if isinstance(event, PlatformEvent) else event.commit_timestamp


def _join(base: Any, *parts: str) -> Any:
    if isinstance(base, str):
        return "/".join([base.rstrip("/"), *parts])
    out = base
    for part in parts:
        out = out / part
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
