"""The plan of a compiled query: one SQL statement, and how each result row becomes a nested JSON record (or a
flat CSV row for Bulk queries)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..render import value_renderer
from ..schema import FieldDef, ObjectDef


@dataclass
class FieldOut:
    key: str
    field: FieldDef
    index: int
    prefix: str = ""  # '"Key":' -- precomputed JSON member prefix
    render: Callable[[Any], str] = str

    def __post_init__(self) -> None:
        self.prefix = f'"{self.key}":'
        self.render = value_renderer(self.field)


@dataclass
class CompoundOut:
    """A compound address or geolocation: a nested object read from its components' columns."""

    key: str
    field: FieldDef
    obj: ObjectDef
    indexes: list[int]


@dataclass
class ParentOut:
    key: str
    node: Node


@dataclass
class ChildOut:
    key: str
    plan: ChildPlan


@dataclass
class Node:
    """How one (possibly nested) record is rendered from a flat SQL row."""

    obj: ObjectDef
    id_index: int
    entries: list[FieldOut | CompoundOut | ParentOut | ChildOut] = field(default_factory=list)
    flat: list[tuple[str, int, Callable[[Any], str]]] | None = None  # set when entries are all plain fields

    def finish(self) -> None:
        """Precompute the fast path for nodes with plain fields only (recursively)."""
        for e in self.entries:
            if isinstance(e, ParentOut):
                e.node.finish()
        if all(type(e) is FieldOut and e.field.type != "base64" for e in self.entries):
            self.flat = [(e.prefix, e.index, e.render) for e in self.entries if isinstance(e, FieldOut)]

    def parent(self, key: str) -> Node | None:
        for e in self.entries:
            if isinstance(e, ParentOut) and e.key == key:
                return e.node
        return None


@dataclass
class ChildPlan:
    relationship: str
    query: CompiledQuery
    fk_index: int  # position of the foreign key column in the child query's SQL row
    limit: int | None


@dataclass
class AggOut:
    key: str
    index: int
    field: FieldDef | None  # None for COUNT / COUNT_DISTINCT
    func: str


@dataclass
class CompiledQuery:
    soql: str
    obj: ObjectDef
    sql_select: str  # "SELECT ... FROM ... JOIN ..." (no WHERE)
    where_sql: str
    params: list[Any]
    order_sql: str
    limit: int | None
    offset: int | None
    root: Node
    columns: list[tuple[str, FieldDef]]  # flat output columns in SELECT order (dotted names)
    children: list[ChildPlan]
    aggregate: bool = False
    count_only: bool = False
    group_sql: str = ""
    having_sql: str = ""
    having_params: list[Any] = field(default_factory=list)
    agg_outputs: list[AggOut] = field(default_factory=list)
    has_subquery: bool = False
    has_typeof: bool = False
    has_fields_fn: bool = False
    has_offset: bool = False
    include_deleted: bool = False
    alias: str = "t0"
    select_exprs: str = ""
    selects: list[str] = field(default_factory=list)  # the select list, one SQL expression per entry
    from_sql: str = ""
    column_index: list[int] = field(default_factory=list)  # SQL row position of each entry of ``columns``
    fk_index: int = -1  # child subqueries: position of the foreign key to the parent

    def sql(
        self,
        *,
        extra_where: str = "",
        include_deleted: bool | None = None,
        select: str | None = None,
        paged: bool = False,
    ) -> str:
        """The full statement; ``select`` replaces the select list, ``paged`` adds LIMIT/OFFSET."""
        deleted = self.include_deleted if include_deleted is None else include_deleted
        clauses = [] if deleted else [f'{self.alias}."IsDeleted" = 0']
        if self.where_sql:
            clauses.append(f"({self.where_sql})")
        if extra_where:
            clauses.append(extra_where)
        sql = f"SELECT {select} {self.from_sql}" if select else self.sql_select
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        if self.group_sql:
            sql += " GROUP BY " + self.group_sql
        if self.having_sql:
            sql += " HAVING " + self.having_sql
        sql += " ORDER BY " + (self.order_sql or f"{self.alias}.rid")
        if paged and (self.limit is not None or self.offset is not None):
            sql += f" LIMIT {self.limit if self.limit is not None else -1} OFFSET {self.offset or 0}"
        return sql

    def all_params(self) -> list[Any]:
        return [*self.params, *self.having_params]
