"""SQLite storage: one table per object, one typed column per field.

Strings are stored as given (after Salesforce's trimming), booleans as 0/1, numbers as INTEGER or
REAL, dates as ``YYYY-MM-DD`` and datetimes as sortable UTC ``YYYY-MM-DDTHH:MM:SS.mmmZ`` strings.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from .ids import make_id
from .schema import ObjectDef, Org

UNINDEXED_LOOKUPS = frozenset({"OwnerId", "CreatedById", "LastModifiedById", "MasterRecordId"})


def _includes(stored: str | None, wanted: str | None) -> int:
    """SOQL INCLUDES for multi-select picklists: every ``;``-separated value of ``wanted`` present."""
    if stored is None or wanted is None:
        return 0
    have = {v.strip().lower() for v in stored.split(";")}
    return int(all(w.strip().lower() in have for w in wanted.split(";")))


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    # 16 KiB pages make wide-row inserts ~2.4x faster than the 4 KiB default; it must precede WAL mode.
    conn.execute("PRAGMA page_size=16384")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA temp_store=MEMORY")
    # Up to 512 MB of pages, allocated only as used: a 2M-row table's indexes stay cached during ingest
    # (1M Bulk rows: 66 s with 200 MB, about 52 s with this), and memory stays bounded by it.
    conn.execute("PRAGMA cache_size=-512000")
    conn.create_function("sf_includes", 2, _includes, deterministic=True)
    return conn


class TransactionListener(Protocol):
    """Told about savepoints (the event bus buffers change events along them)."""

    def mark(self) -> Any: ...

    def rollback_to(self, mark: Any) -> None: ...

    def before_commit(self) -> None: ...


class Store:
    """The org's records. All access goes through one connection guarded by a re-entrant lock."""

    def __init__(self, org: Org, path: str) -> None:
        self.org = org
        self.path = path
        self.conn = connect(path)
        self.lock = threading.RLock()
        self._next: dict[str, int] = {}
        self._savepoints = 0
        self._insert_sql: dict[tuple[str, ...], str] = {}
        self.listener: TransactionListener | None = None
        self.txn_serial = 0  # counts outermost transactions (writes in one share their timestamp)
        self.create_schema()

    def reader(self) -> sqlite3.Connection:
        """A connection of its own for a long read: in a transaction it sees one snapshot (WAL), lock-free."""
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA query_only=ON")
        conn.execute("PRAGMA cache_size=-64000")
        conn.create_function("sf_includes", 2, _includes, deterministic=True)
        return conn

    # --- schema ---------------------------------------------------------------------------------

    def _secondary_indexes(self, obj: ObjectDef) -> list[tuple[str, str]]:
        rows = self.conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL "
            "AND sql NOT LIKE 'CREATE UNIQUE%'",
            (obj.name,),
        ).fetchall()
        return [(str(name), str(sql)) for name, sql in rows]

    @contextmanager
    def bulk_load(self, obj: ObjectDef) -> Iterator[None]:
        """Loading into an empty table: build secondary indexes once at the end instead of row by row."""
        with self.lock:
            empty = self.conn.execute(f"SELECT 1 FROM {obj.table} LIMIT 1").fetchone() is None
            dropped = self._secondary_indexes(obj) if empty else []
            for name, _ in dropped:
                self.conn.execute(f'DROP INDEX "{name}"')
            try:
                yield
            finally:
                for _, sql in dropped:
                    self.conn.execute(sql)

    def create_schema(self) -> None:
        with self.lock:
            for obj in self.org.data_objects:
                cols = ", ".join(
                    f'"{f.name}" {f.sql_type}' + (" COLLATE NOCASE" if f.is_text and f.name != "Id" else "")
                    for f in obj.fields.values()
                    if not f.compound  # a compound field is read from its components' columns
                )
                self.conn.execute(f"CREATE TABLE IF NOT EXISTS {obj.table} (rid INTEGER PRIMARY KEY, {cols})")
                self.conn.execute(f'CREATE UNIQUE INDEX IF NOT EXISTS "ix_{obj.name}_Id" ON {obj.table} ("Id")')
                for f in obj.fields.values():
                    # System lookups (owner, audit fields) are not indexed: nothing joins children on them.
                    if f.name in UNINDEXED_LOOKUPS:
                        continue
                    if f.unique or f.external_id or f.type == "reference" or f.name == "SystemModstamp":
                        self.conn.execute(
                            f'CREATE INDEX IF NOT EXISTS "ix_{obj.name}_{f.name}" ON {obj.table} ("{f.name}")'
                        )
                row = self.conn.execute(f"SELECT MAX(rid) FROM {obj.table}").fetchone()
                self._next[obj.name] = (row[0] or 0) + 1

    def reset(self) -> None:
        with self.lock:
            for obj in self.org.data_objects:
                self.conn.execute(f"DROP TABLE IF EXISTS {obj.table}")
            self.create_schema()

    # --- transactions ---------------------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return self._savepoints > 0

    @property
    def depth(self) -> int:
        return self._savepoints

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A (nestable) savepoint: everything inside rolls back together if an exception escapes.

        The listener (the event bus) drops what a rolled-back savepoint recorded, and writes the outermost
        transaction's events just before it commits, inside it."""
        with self.lock:
            self._savepoints += 1
            if self._savepoints == 1:
                self.txn_serial += 1
            name = f"sp{self._savepoints}"
            counters = dict(self._next)
            listener = self.listener
            mark = listener.mark() if listener is not None else None
            self.conn.execute(f"SAVEPOINT {name}")
            try:
                yield
                if listener is not None and self._savepoints == 1:
                    listener.before_commit()
            except BaseException:
                self.conn.execute(f"ROLLBACK TO {name}")
                self.conn.execute(f"RELEASE {name}")
                self._next = counters
                if listener is not None:
                    listener.rollback_to(mark)
                raise
            else:
                self.conn.execute(f"RELEASE {name}")
            finally:
                self._savepoints -= 1

    # --- records --------------------------------------------------------------------------------

    def allocate_rids(self, obj: ObjectDef, count: int) -> int:
        """Reserve ``count`` consecutive row numbers; returns the first. Ids derive from them."""
        with self.lock:
            start = self._next[obj.name]
            self._next[obj.name] = start + count
        return start

    def allocate_ids(self, obj: ObjectDef, count: int) -> list[tuple[int, str]]:
        start = self.allocate_rids(obj, count)
        return [(n, make_id(obj.key_prefix, n)) for n in range(start, start + count)]

    def insert(self, obj: ObjectDef, values: dict[str, Any]) -> str:
        ((rid, record_id),) = self.allocate_ids(obj, 1)
        values = {**values, "Id": record_id}
        key = (obj.name, *values)
        sql = self._insert_sql.get(key)
        if sql is None:
            cols = ", ".join(f'"{c}"' for c in values)
            sql = self._insert_sql[key] = f"INSERT INTO {obj.table} (rid, {cols}) VALUES (?{', ?' * len(values)})"
        with self.lock:
            self.conn.execute(sql, (rid, *values.values()))
        return record_id

    def insert_many(self, obj: ObjectDef, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Fast path for seeding: rows already carry ``rid`` first and every listed column."""
        cols = ", ".join(f'"{c}"' for c in columns)
        marks = ", ".join("?" for _ in columns)
        with self.lock:
            self.conn.execute("BEGIN")
            try:
                self.conn.executemany(f"INSERT INTO {obj.table} (rid, {cols}) VALUES (?, {marks})", rows)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            row = self.conn.execute(f"SELECT MAX(rid) FROM {obj.table}").fetchone()
            self._next[obj.name] = max(self._next[obj.name], (row[0] or 0) + 1)

    def insert_rows(self, obj: ObjectDef, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """Insert rows (``rid`` first, then ``columns``) inside the caller's transaction."""
        cols = ", ".join(f'"{c}"' for c in columns)
        with self.lock:
            self.conn.executemany(f"INSERT INTO {obj.table} (rid, {cols}) VALUES (?{', ?' * len(columns)})", rows)

    def update(self, obj: ObjectDef, record_id: str, values: dict[str, Any]) -> None:
        if not values:
            return
        sets = ", ".join(f'"{c}" = ?' for c in values)
        with self.lock:
            self.conn.execute(f'UPDATE {obj.table} SET {sets} WHERE "Id" = ?', (*values.values(), record_id))

    def hard_delete(self, obj: ObjectDef, record_id: str) -> None:
        with self.lock:
            self.conn.execute(f'DELETE FROM {obj.table} WHERE "Id" = ?', (record_id,))

    def get(self, obj: ObjectDef, record_id: str) -> dict[str, Any] | None:
        with self.lock:
            cur = self.conn.execute(f'SELECT * FROM {obj.table} WHERE "Id" = ?', (record_id,))
            row = cur.fetchone()
            if row is None:
                return None
            return dict(zip([d[0] for d in cur.description], row, strict=True))

    def find(
        self, obj: ObjectDef, field: str, value: Any, *, include_deleted: bool = False, limit: int = 3
    ) -> list[str]:
        """Ids of records whose ``field`` equals ``value`` (case-insensitively for text)."""
        deleted = "" if include_deleted else ' AND "IsDeleted" = 0'
        with self.lock:
            rows = self.conn.execute(
                f'SELECT "Id" FROM {obj.table} WHERE "{field}" = ?{deleted} ORDER BY rid LIMIT ?', (value, limit)
            ).fetchall()
        return [r[0] for r in rows]

    def find_matching(self, obj: ObjectDef, values: dict[str, Any], exclude: str | None = None) -> list[str]:
        """Ids of live records whose fields all equal ``values`` (text as the columns compare it), but ``exclude``."""
        where = " AND ".join(f'"{name}" IS ?' for name in values)
        params: list[Any] = list(values.values())
        if exclude:
            where += ' AND "Id" != ?'
            params.append(exclude)
        with self.lock:
            rows = self.conn.execute(
                f'SELECT "Id" FROM {obj.table} WHERE {where} AND "IsDeleted" = 0 ORDER BY rid LIMIT 3', params
            ).fetchall()
        return [r[0] for r in rows]

    def count(self, obj: ObjectDef, include_deleted: bool = True) -> int:
        where = "" if include_deleted else ' WHERE "IsDeleted" = 0'
        with self.lock:
            return int(self.conn.execute(f"SELECT COUNT(*) FROM {obj.table}{where}").fetchone()[0])

    def query(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        with self.lock:
            cur = self.conn.execute(sql, params)
            rows = cur.fetchall()
            return [d[0] for d in cur.description or ()], rows
