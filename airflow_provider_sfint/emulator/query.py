"""REST query execution: SOQL -> rows -> Salesforce JSON pages, with query locators."""

from __future__ import annotations

import threading
import time
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .clock import Clock
from .errors import ApiError
from .ids import make_id
from .render import _dumps, attributes, java_double, render_blob, render_compound, render_value
from .schema import Org
from .soql import CompiledQuery, compile_soql
from .soql.plan import ChildOut, ChildPlan, CompoundOut, FieldOut, Node, ParentOut
from .store import Store

CURSOR_IDLE_SECONDS = 15 * 60
MAX_CURSORS = 200
#: "A user can have up to 10 query cursors open at a time": opening an 11th closes the least recently used
MAX_CURSORS_PER_USER = 10


#: A parent's child records beyond this many come in pages of their own: the child result carries done:false and
#: a nextRecordsUrl (the number is the emulator's choice: Salesforce documents that subquery results page, not when)
CHILD_BATCH = 200


@dataclass
class Cursor:
    query: CompiledQuery
    rids: array
    version: str
    resource: str
    touched: float
    user: str = ""


@dataclass
class ChildCursor:
    """The rest of one parent's child records (already rendered), read through the child's nextRecordsUrl."""

    records: list[str]
    version: str
    resource: str
    touched: float
    parent: str | None = None  # the query cursor whose page it came with: its next page closes this one


def clamp_batch_size(header: str | None) -> int:
    """``Sforce-Query-Options: batchSize=N``: 200..2000, default 2000."""
    if not header:
        return 2000
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "batchsize":
            try:
                return max(200, min(2000, int(value.strip())))
            except ValueError:
                return 2000
    return 2000


class QueryEngine:
    def __init__(self, org: Org, store: Store, clock: Clock) -> None:
        self.org = org
        self.store = store
        self.clock = clock
        self._cursors: OrderedDict[str, Cursor | ChildCursor] = OrderedDict()
        self._lock = threading.Lock()
        self._counter = 0

    def compile(self, soql: str, include_deleted: bool) -> CompiledQuery:
        return compile_soql(self.org, soql, self.clock.now(), include_deleted=include_deleted)

    # --- entry points ---------------------------------------------------------------------------

    def run(self, soql: str, version: str, include_deleted: bool, batch_size: int, user: str = "") -> str:
        cq = self.compile(soql, include_deleted)
        resource = "queryAll" if include_deleted else "query"
        if cq.count_only:
            _, rows = self.store.query(cq.sql(select="COUNT(*)"), cq.all_params())
            total = int(rows[0][0]) if rows else 0
            if cq.limit is not None:
                total = min(total, cq.limit)
            return f'{{"totalSize":{total},"done":true,"records":[]}}'
        if cq.aggregate:
            _, rows = self.store.query(cq.sql(paged=True), cq.all_params())
            records = [self._render_aggregate(cq, row) for row in rows]
            return f'{{"totalSize":{len(records)},"done":true,"records":[{",".join(records)}]}}'
        _, rid_rows = self.store.query(cq.sql(select=f"{cq.alias}.rid", paged=True), cq.all_params())
        rids = array("q", (r[0] for r in rid_rows))
        cursor = Cursor(cq, rids, version, resource, time.monotonic(), user)
        return self._page(cursor, None, 0, batch_size)

    def more(self, locator: str, version: str, batch_size: int) -> str:
        cursor_id, _, offset_text = locator.partition("-")
        with self._lock:
            self._expire()
            cursor = self._cursors.get(cursor_id)
            if cursor is not None:
                self._cursors.move_to_end(cursor_id)
                cursor.touched = time.monotonic()
        size = len(cursor.records) if isinstance(cursor, ChildCursor) else len(cursor.rids) if cursor else 0
        if cursor is None or not offset_text.isdigit() or int(offset_text) > size:
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        if isinstance(cursor, ChildCursor):
            return self._child_page(cursor, cursor_id, int(offset_text), batch_size)
        with self._lock:  # "a queryMore() on a parent invalidates all child cursors in the previous result set"
            for key in [k for k, c in self._cursors.items() if isinstance(c, ChildCursor) and c.parent == cursor_id]:
                del self._cursors[key]
        return self._page(cursor, cursor_id, int(offset_text), batch_size)

    # --- paging ---------------------------------------------------------------------------------

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, c in self._cursors.items() if now - c.touched > CURSOR_IDLE_SECONDS]:
            del self._cursors[key]
        while len(self._cursors) > MAX_CURSORS:
            self._cursors.popitem(last=False)

    def _register(self, cursor: Cursor | ChildCursor) -> str:
        with self._lock:
            self._counter += 1
            cursor_id = make_id("01g", self._counter)
            self._cursors[cursor_id] = cursor
            self._expire()
            user = cursor.user if isinstance(cursor, Cursor) else ""
            if user:  # a user's query cursors (child results' cursors are not counted)
                mine = [k for k, c in self._cursors.items() if isinstance(c, Cursor) and c.user == user]
                for key in mine[: max(0, len(mine) - MAX_CURSORS_PER_USER)]:
                    del self._cursors[key]
        return cursor_id

    def _page(self, cursor: Cursor, cursor_id: str | None, offset: int, batch_size: int) -> str:
        """One page of parents. Child records count toward the batch: a page holds as many parents as fit with
        their children (at least one), so it can be shorter than ``batch_size``."""
        total = len(cursor.rids)
        chunk = cursor.rids[offset : offset + batch_size]
        rows, children = self._rows(cursor.query, list(chunk), cursor.version)
        room, kept = batch_size, 0
        id_index = cursor.query.root.id_index
        for row in rows:
            weight = 1 + sum(min(len(by_parent.get(row[id_index], ())), CHILD_BATCH) for by_parent in children.values())
            if kept and weight > room:
                break
            room -= weight
            kept += 1
        consumed = len(chunk)  # every row id of the chunk, unless the page was cut before its last row
        if kept < len(rows):
            consumed = chunk.index(rows[kept][-1])  # the first row left out starts the next page
        rows = rows[:kept]
        end = offset + consumed
        if end < total and cursor_id is None:
            cursor_id = self._register(cursor)
        rendered = self._render_children(children, {row[id_index] for row in rows}, cursor, cursor_id)
        records = [self._render(cursor.query.root, row, cursor.version, rendered) for row in rows]
        if end >= total:
            return f'{{"totalSize":{total},"done":true,"records":[{",".join(records)}]}}'
        url = f"/services/data/v{cursor.version}/{cursor.resource}/{cursor_id}-{end}"
        return f'{{"totalSize":{total},"done":false,"nextRecordsUrl":"{url}","records":[{",".join(records)}]}}'

    def _child_page(self, cursor: ChildCursor, cursor_id: str, offset: int, batch_size: int) -> str:
        total = len(cursor.records)
        end = min(total, offset + batch_size)
        body = ",".join(cursor.records[offset:end])
        if end >= total:
            return f'{{"totalSize":{total},"done":true,"records":[{body}]}}'
        url = f"/services/data/v{cursor.version}/{cursor.resource}/{cursor_id}-{end}"
        return f'{{"totalSize":{total},"done":false,"nextRecordsUrl":"{url}","records":[{body}]}}'

    def _render_children(
        self, children: dict[str, dict[str, list[str]]], parents: set[Any], cursor: Cursor, parent: str | None
    ) -> dict[str, dict[str, str]]:
        """Each kept parent's child result: all its records, or the first CHILD_BATCH and a cursor for the rest."""
        out: dict[str, dict[str, str]] = {}
        for relationship, by_parent in children.items():
            texts = out.setdefault(relationship, {})
            for pid, recs in by_parent.items():
                if pid not in parents:
                    continue
                if len(recs) <= CHILD_BATCH:
                    texts[pid] = f'{{"totalSize":{len(recs)},"done":true,"records":[{",".join(recs)}]}}'
                    continue
                child = ChildCursor(recs, cursor.version, "query", time.monotonic(), parent)
                url = f"/services/data/v{cursor.version}/query/{self._register(child)}-{CHILD_BATCH}"
                texts[pid] = (
                    f'{{"totalSize":{len(recs)},"done":false,"nextRecordsUrl":"{url}",'
                    f'"records":[{",".join(recs[:CHILD_BATCH])}]}}'
                )
        return out

    def fetch(self, cq: CompiledQuery, rids: list[int], version: str) -> list[str]:
        """Render the records with the given row ids, in the order given (every child record inline)."""
        rows, children = self._rows(cq, rids, version)
        rendered = {
            rel: {pid: f'{{"totalSize":{len(r)},"done":true,"records":[{",".join(r)}]}}' for pid, r in by.items()}
            for rel, by in children.items()
        }
        return [self._render(cq.root, row, version, rendered) for row in rows]

    def _rows(
        self, cq: CompiledQuery, rids: list[int], version: str
    ) -> tuple[list[tuple[Any, ...]], dict[str, dict[str, list[str]]]]:
        """The rows with the given row ids, in the order given, and each relationship's rendered children by
        parent id."""
        if not rids:
            return [], {}
        lo, hi = min(rids), max(rids)
        base = f"SELECT {cq.select_exprs}, {cq.alias}.rid {cq.from_sql} WHERE "
        if hi - lo < 4 * len(rids):  # a dense page (the usual rid order): one range scan is cheaper than IN
            _, rows = self.store.query(base + f"{cq.alias}.rid BETWEEN ? AND ?", (lo, hi))
        else:
            _, rows = self.store.query(base + f"{cq.alias}.rid IN ({','.join('?' * len(rids))})", rids)
        wanted = set(rids)
        by_rid = {row[-1]: row for row in rows if row[-1] in wanted}
        ordered = [by_rid[r] for r in rids if r in by_rid]
        children = {plan.relationship: self._children(plan, ordered, cq.root.id_index, version) for plan in cq.children}
        return ordered, children

    def _children(
        self, plan: ChildPlan, parents: list[tuple[Any, ...]], id_index: int, version: str
    ) -> dict[str, list[str]]:
        """Each parent's child records, rendered (SOQL allows one level of parent-to-child)."""
        parent_ids = [row[id_index] for row in parents]
        if not parent_ids:
            return {}
        marks = ",".join("?" * len(parent_ids))
        child = plan.query
        fk_expr = child.selects[plan.fk_index]
        sql = child.sql(extra_where=f"{fk_expr} IN ({marks})")
        _, rows = self.store.query(sql, [*child.params, *parent_ids])
        grouped: dict[str, list[str]] = {}
        for row in rows:
            bucket = grouped.setdefault(row[plan.fk_index], [])
            if plan.limit is None or len(bucket) < plan.limit:
                bucket.append(self._render(child.root, row, version, {}))
        return grouped

    def _render(self, node: Node, row: tuple[Any, ...], version: str, children: dict[str, dict[str, str]]) -> str:
        record_id = row[node.id_index]
        head = f'"attributes":{attributes(node.obj, record_id, version)}'
        if node.flat is not None:  # only plain fields: one comprehension, no per-entry dispatch
            return "{" + ",".join([head, *[p + r(row[i]) for p, i, r in node.flat]]) + "}"
        parts = [head]
        for entry in node.entries:
            if type(entry) is FieldOut:
                if entry.field.type == "base64":
                    parts.append(
                        entry.prefix + render_blob(node.obj, entry.field, record_id, row[entry.index], version)
                    )
                    continue
                parts.append(entry.prefix + entry.render(row[entry.index]))
            elif isinstance(entry, ParentOut):
                if row[entry.node.id_index] is None:
                    parts.append(f'"{entry.key}":null')
                else:
                    parts.append(f'"{entry.key}":{self._render(entry.node, row, version, {})}')
            elif isinstance(entry, CompoundOut):
                values = [row[i] for i in entry.indexes]
                parts.append(f'"{entry.key}":{render_compound(entry.obj, entry.field, values)}')
            elif isinstance(entry, ChildOut):
                parts.append(f'"{entry.key}":{children.get(entry.key, {}).get(record_id, "null")}')
        return "{" + ",".join(parts) + "}"

    def _render_aggregate(self, cq: CompiledQuery, row: tuple[Any, ...]) -> str:
        parts = ['"attributes":{"type":"AggregateResult"}']
        for out in cq.agg_outputs:
            value = row[out.index]
            if out.func in ("COUNT", "COUNT_DISTINCT"):
                text = str(int(value or 0))
            elif out.func in ("SUM", "AVG"):
                text = "null" if value is None else java_double(float(value))
            elif out.field is not None:
                text = render_value(out.field, value)
            else:
                text = _dumps(value)
            parts.append(f"{_dumps(out.key)}:{text}")
        return "{" + ",".join(parts) + "}"
