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
from .render import _dumps, attributes, java_double, render_value
from .schema import Org
from .soql import CompiledQuery, compile_soql
from .soql.plan import ChildOut, ChildPlan, FieldOut, Node, ParentOut
from .store import Store

CURSOR_IDLE_SECONDS = 15 * 60
MAX_CURSORS = 200
#: "A user can have up to 10 query cursors open at a time": opening an 11th closes the least recently used
MAX_CURSORS_PER_USER = 10


@dataclass
class Cursor:
    query: CompiledQuery
    rids: array
    version: str
    resource: str
    touched: float
    user: str = ""


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
        self._cursors: OrderedDict[str, Cursor] = OrderedDict()
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
        if cursor is None or not offset_text.isdigit() or int(offset_text) > len(cursor.rids):
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(cursor, cursor_id, int(offset_text), batch_size)

    # --- paging ---------------------------------------------------------------------------------

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, c in self._cursors.items() if now - c.touched > CURSOR_IDLE_SECONDS]:
            del self._cursors[key]
        while len(self._cursors) > MAX_CURSORS:
            self._cursors.popitem(last=False)

    def _page(self, cursor: Cursor, cursor_id: str | None, offset: int, batch_size: int) -> str:
        total = len(cursor.rids)
        chunk = cursor.rids[offset : offset + batch_size]
        records = self.fetch(cursor.query, list(chunk), cursor.version)
        end = offset + len(chunk)
        if end >= total:
            return f'{{"totalSize":{total},"done":true,"records":[{",".join(records)}]}}'
        if cursor_id is None:
            with self._lock:
                self._counter += 1
                cursor_id = make_id("01g", self._counter)
                self._cursors[cursor_id] = cursor
                self._expire()
                if cursor.user:
                    mine = [k for k, c in self._cursors.items() if c.user == cursor.user]
                    for key in mine[: max(0, len(mine) - MAX_CURSORS_PER_USER)]:
                        del self._cursors[key]
        url = f"/services/data/v{cursor.version}/{cursor.resource}/{cursor_id}-{end}"
        return f'{{"totalSize":{total},"done":false,"nextRecordsUrl":"{url}","records":[{",".join(records)}]}}'

    def fetch(self, cq: CompiledQuery, rids: list[int], version: str) -> list[str]:
        """Render the records with the given row ids, in the order given."""
        if not rids:
            return []
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
        return [self._render(cq.root, row, version, children) for row in ordered]

    def _children(self, plan: ChildPlan, parents: list[tuple[Any, ...]], id_index: int, version: str) -> dict[str, str]:
        parent_ids = [row[id_index] for row in parents]
        if not parent_ids:
            return {}
        marks = ",".join("?" * len(parent_ids))
        child = plan.query
        fk_expr = child.selects[plan.fk_index]
        sql = child.sql(extra_where=f"{fk_expr} IN ({marks})")
        _, rows = self.store.query(sql, [*child.params, *parent_ids])
        grouped: dict[str, list[str]] = {}
        sub_children = {p.relationship: self._children(p, rows, child.root.id_index, version) for p in child.children}
        for row in rows:
            bucket = grouped.setdefault(row[plan.fk_index], [])
            if plan.limit is None or len(bucket) < plan.limit:
                bucket.append(self._render(child.root, row, version, sub_children))
        return {
            pid: f'{{"totalSize":{len(recs)},"done":true,"records":[{",".join(recs)}]}}'
            for pid, recs in grouped.items()
        }

    def _render(self, node: Node, row: tuple[Any, ...], version: str, children: dict[str, dict[str, str]]) -> str:
        record_id = row[node.id_index]
        head = f'"attributes":{attributes(node.obj, record_id, version)}'
        if node.flat is not None:  # only plain fields: one comprehension, no per-entry dispatch
            return "{" + ",".join([head, *[p + r(row[i]) for p, i, r in node.flat]]) + "}"
        parts = [head]
        for entry in node.entries:
            if type(entry) is FieldOut:
                parts.append(entry.prefix + entry.render(row[entry.index]))
            elif isinstance(entry, ParentOut):
                if row[entry.node.id_index] is None:
                    parts.append(f'"{entry.key}":null')
                else:
                    parts.append(f'"{entry.key}":{self._render(entry.node, row, version, {})}')
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
