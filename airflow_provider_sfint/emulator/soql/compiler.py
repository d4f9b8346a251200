"""SOQL -> SQLite compiler.

A query is parsed with the lark grammar next to this file, checked against the org's schema (with
Salesforce's error codes and messages), and turned into one SQL statement plus a *plan* that says
how each result row becomes a nested JSON record (or a flat CSV row for Bulk queries).

The plan's types live in ``plan.py`` and the date literals in ``dates.py``; this module stays a little over
600 lines because the :class:`Compiler` is one walk over the grammar's tree whose steps share its scopes
(joins, aliases, the parent depth), and splitting it would pass those between modules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ..errors import ApiError
from ..ids import to18
from ..schema import FieldDef, ObjectDef, Org
from .dates import parse_datetime_literal, relative_range
from .plan import AggOut, ChildOut, ChildPlan, CompiledQuery, CompoundOut, FieldOut, Node, ParentOut

AGGREGATES = {"COUNT", "COUNT_DISTINCT", "SUM", "AVG", "MIN", "MAX"}
MAX_PARENT_DEPTH = 5


@lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = (Path(__file__).with_name("grammar.lark")).read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


class SoqlError(ApiError):
    """A SOQL error with Salesforce's caret layout."""

    def __init__(self, code: str, soql: str, pos: tuple[int, int] | None, message: str) -> None:
        super().__init__(400, code, caret(soql, pos, message) if pos else message)


def caret(soql: str, pos: tuple[int, int], message: str) -> str:
    line_no, col = pos
    lines = soql.splitlines() or [""]
    line = lines[min(line_no, len(lines)) - 1]
    idx = max(col - 1, 0)
    start = max(0, idx - 32)
    shown = line[start:]
    stripped = shown.lstrip()
    offset = idx - start - (len(shown) - len(stripped))
    return f"\n{stripped}\n{' ' * max(offset, 0)}^\nERROR at Row:{line_no}:Column:{col}\n{message}"


def unescape(text: str, like: bool = False) -> str:
    """Decode a quoted SOQL string literal. In LIKE patterns ``\\%`` and ``\\_`` stay escaped."""
    body = text[1:-1]
    out: list[str] = []
    i = 0
    simple = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in simple:
                out.append("\\\\" if like and nxt == "\\" else simple[nxt])
                i += 2
                continue
            if nxt in "%_":
                out.append("\\" + nxt if like else nxt)
                i += 2
                continue
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2 : i + 6]):
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            raise ValueError(f"Invalid string literal escape sequence: \\{nxt}")
        out.append(ch)
        i += 1
    return "".join(out)


# --- compiler -----------------------------------------------------------------------------------


@dataclass
class _Join:
    alias: str
    obj: ObjectDef


class _Scope:
    """Per-query state: joins, selected SQL expressions."""

    def __init__(self, org: Org, obj: ObjectDef, soql: str, prefix: str) -> None:
        self.org = org
        self.obj = obj
        self.soql = soql
        self.prefix = prefix
        self.root_alias = f"{prefix}0"
        self.joins: dict[tuple[str, ...], _Join] = {}
        self.join_sql: list[str] = []
        self.select: list[str] = []

    def add_select(self, expr: str) -> int:
        self.select.append(expr)
        return len(self.select) - 1

    def join_for(self, chain: tuple[str, ...], ref: FieldDef, parent_alias: str, target: ObjectDef) -> _Join:
        if chain not in self.joins:
            alias = f"{self.prefix}{len(self.joins) + 1}"
            self.joins[chain] = _Join(alias, target)
            self.join_sql.append(f'LEFT JOIN {target.table} {alias} ON {alias}."Id" = {parent_alias}."{ref.name}"')
        return self.joins[chain]


def _pos(item: Tree | Token) -> tuple[int, int] | None:
    if isinstance(item, Token):
        return (item.line or 1, item.column or 1)
    meta = item.meta
    if getattr(meta, "empty", True):
        return None
    return (meta.line, meta.column)


def _alias(item: Tree) -> str | None:
    for child in item.children[1:]:
        if isinstance(child, Tree) and child.data == "alias":
            return str(child.children[0])
    return None


def _path_names(tree: Tree) -> list[str]:
    return [str(t) for t in tree.children]


class Compiler:
    def __init__(self, org: Org, soql: str, now: datetime, include_deleted: bool = False) -> None:
        self.org = org
        self.soql = soql
        self.now = now
        self.include_deleted = include_deleted
        self._prefixes = iter("tuvwxyzabcdefghijklmnopqrs")

    # errors
    def malformed(self, pos: tuple[int, int] | None, message: str) -> SoqlError:
        return SoqlError("MALFORMED_QUERY", self.soql, pos, message)

    def invalid_field(self, pos: tuple[int, int] | None, message: str) -> SoqlError:
        return SoqlError("INVALID_FIELD", self.soql, pos, message)

    # entry
    def compile(self) -> CompiledQuery:
        try:
            tree = _parser().parse(self.soql)
        except UnexpectedInput as exc:
            raise self._syntax_error(exc) from None
        query = tree.children[0]
        assert isinstance(query, Tree)
        return self._query(query)

    def _syntax_error(self, exc: UnexpectedInput) -> SoqlError:
        pos = (exc.line if exc.line and exc.line > 0 else 1, exc.column if exc.column and exc.column > 0 else 1)
        if isinstance(exc, UnexpectedToken):
            tok = exc.token
            if tok.type == "$END":
                return self.malformed(None, "unexpected token: <EOF>")
            return self.malformed(pos, f"unexpected token: '{tok}'")
        if isinstance(exc, UnexpectedCharacters):
            at = exc.pos_in_stream or 0
            ch = self.soql[at] if at < len(self.soql) else "<EOF>"
            return self.malformed(pos, f"unexpected token: '{ch}'")
        if isinstance(exc, UnexpectedEOF):
            return self.malformed(None, "unexpected token: <EOF>")
        return self.malformed(pos, str(exc))

    def _clauses(self, query: Tree) -> dict[str, Tree]:
        return {c.data: c for c in query.children if isinstance(c, Tree)}

    def _resolve_object(self, from_clause: Tree) -> ObjectDef:
        name_tok = from_clause.children[1]
        obj = self.org.get(str(name_tok))
        if obj is None or obj.is_event:
            raise SoqlError(
                "INVALID_TYPE",
                self.soql,
                _pos(name_tok),
                f"sObject type '{name_tok}' is not supported. If you are attempting to use a custom object, "
                f"be sure to append the '__c' after the entity name. Please reference your WSDL or the "
                f"describe call for the appropriate names.",
            )
        return obj

    def _query(self, query: Tree, child_of: ObjectDef | None = None) -> CompiledQuery:
        clauses = self._clauses(query)
        from_clause = clauses["from_clause"]
        rel = None
        if child_of is not None:
            rel_tok = from_clause.children[1]
            rel = child_of.child_relationship(str(rel_tok))
            if rel is None:
                raise self.invalid_field(
                    _pos(rel_tok),
                    f"Didn't understand relationship '{rel_tok}' in FROM part of query call. If you are "
                    f"attempting to use a custom relationship, be sure to append the '__r' after the custom "
                    f"relationship name. Please reference your WSDL or the describe call for the "
                    f"appropriate names.",
                )
            obj = self.org.objects[rel.child_object]
        else:
            obj = self._resolve_object(from_clause)
        scope = _Scope(self.org, obj, self.soql, next(self._prefixes))
        cq = CompiledQuery(
            soql=self.soql,
            obj=obj,
            sql_select="",
            where_sql="",
            params=[],
            order_sql="",
            limit=None,
            offset=None,
            root=Node(obj, 0),
            columns=[],
            children=[],
            include_deleted=self.include_deleted,
            alias=scope.root_alias,
        )
        if "limit_clause" in clauses:
            cq.limit = int(str(clauses["limit_clause"].children[1]))
        if "offset_clause" in clauses:
            cq.offset = int(str(clauses["offset_clause"].children[1]))
            cq.has_offset = True
            if cq.offset > 2000:
                raise SoqlError("NUMBER_OUTSIDE_VALID_RANGE", self.soql, None, "Maximum SOQL offset allowed is 2000")
        items = clauses["select_clause"].children[1:]
        is_agg = (
            any(
                isinstance(it, Tree)
                and it.data == "func_item"
                and str(it.children[0].children[0]).upper() in AGGREGATES
                for it in items
            )
            or "group_clause" in clauses
        )
        cq.root.id_index = scope.add_select(f'{scope.root_alias}."Id"')
        if is_agg:
            self._aggregate_select(scope, cq, items, clauses)
        else:
            self._record_select(scope, cq, items, clauses, child_of is not None)
        if rel is not None:
            cq.fk_index = scope.add_select(f'{scope.root_alias}."{rel.field}"')
        if "where_clause" in clauses:
            params: list[Any] = []
            cq.where_sql = self._condition(scope, clauses["where_clause"].children[1], params, having=False)
            cq.params = params
        if "order_clause" in clauses:
            cq.order_sql = self._order(scope, clauses["order_clause"], cq)
        cq.root.finish()
        cq.selects = list(scope.select)
        cq.select_exprs = ", ".join(scope.select)
        cq.from_sql = f"FROM {obj.table} {scope.root_alias} " + " ".join(scope.join_sql)
        cq.sql_select = f"SELECT {cq.select_exprs} {cq.from_sql}"
        if cq.limit is not None or cq.offset is not None:
            cq.order_sql = cq.order_sql or f"{scope.root_alias}.rid"
        return cq

    # select lists ------------------------------------------------------------------------------

    def _field_path(
        self, scope: _Scope, path: Tree, use: str = "filtered"
    ) -> tuple[str, FieldDef, list[str], list[tuple[str, _Join]]]:
        """Resolve a dotted path; returns (sql expr, field, canonical names, joins along the way). A compound field
        can only be selected (``use="selected"``); anywhere else it is refused as Salesforce refuses it."""
        names = _path_names(path)
        pos = _pos(path)
        obj = scope.obj
        alias = scope.root_alias
        chain: list[str] = []
        canonical: list[str] = []
        joins: list[tuple[str, _Join]] = []
        if len(names) > 1 and names[0].lower() == obj.name.lower() and obj.relationship(names[0]) is None:
            names = names[1:]  # "Account.Name" from Account: the object name may prefix the field
        if len(names) - 1 > MAX_PARENT_DEPTH:
            raise self.malformed(
                pos,
                "SOQL statements cannot query relationships that are more than 5 levels "
                "away from the root entity object.",
            )
        for rel_name in names[:-1]:
            ref = obj.relationship(rel_name)
            if ref is None:
                raise self.invalid_field(
                    pos,
                    f"Didn't understand relationship '{rel_name}' in field path. If you are attempting "
                    f"to use a custom relationship, be sure to append the '__r' after the custom "
                    f"relationship name. Please reference your WSDL or the describe call for the "
                    f"appropriate names.",
                )
            target = self.org.objects[ref.reference_to[0]]
            chain.append(ref.relationship_name or rel_name)
            join = scope.join_for(tuple(chain), ref, alias, target)
            joins.append((ref.relationship_name or rel_name, join))
            canonical.append(ref.relationship_name or rel_name)
            obj, alias = target, join.alias
        f = obj.field(names[-1])
        if f is None:
            shown = ".".join(names)
            raise self.invalid_field(
                pos,
                f"No such column '{names[-1]}' on entity '{obj.name}'. If you are attempting to use a "
                f"custom field, be sure to append the '__c' after the custom field name. Please reference "
                f"your WSDL or the describe call for the appropriate names."
                if len(names) == 1
                else f"No such column '{names[-1]}' on entity '{obj.name}' (in path {shown}). If you are "
                f"attempting to use a custom field, be sure to append the '__c' after the custom field name. "
                f"Please reference your WSDL or the describe call for the appropriate names.",
            )
        if f.compound and use != "selected":
            raise self.invalid_field(pos, f"field '{f.name}' can not be {use} in a query call")
        canonical.append(f.name)
        return f'{alias}."{f.name}"', f, canonical, joins

    def _record_select(
        self, scope: _Scope, cq: CompiledQuery, items: list[Any], clauses: dict[str, Tree], is_child: bool
    ) -> None:
        seen: set[str] = set()
        for item in items:
            if item.data == "typeof_item":
                cq.has_typeof = True
                raise self.malformed(
                    _pos(item),
                    "TYPEOF is not supported by this emulator for polymorphic relationships it does not model",
                )
            if item.data == "subquery":
                cq.has_subquery = True
                if is_child:
                    raise self.malformed(_pos(item), "Nesting of semi join sub-selects is not supported")
                self._child(scope, cq, item)
                continue
            if item.data == "func_item":
                func = item.children[0]
                fname = str(func.children[0]).upper()
                if fname != "FIELDS":
                    raise self.malformed(_pos(func), f"unexpected token: '{func.children[0]}'")
                cq.has_fields_fn = True
                kind = _path_names(func.children[1])[0].upper() if func.children[1] is not None else ""
                fields = self._fields_fn(scope, kind, cq, clauses, func)
                for f in fields:
                    if f.name.lower() in seen:
                        continue
                    seen.add(f.name.lower())
                    if f.compound:
                        idxs = [scope.add_select(f'{scope.root_alias}."{c}"') for _, c in f.components]
                        cq.root.entries.append(CompoundOut(f.name, f, scope.obj, idxs))
                        cq.columns.append((f.name, f))
                        cq.column_index.append(idxs[0])
                        continue
                    idx = scope.add_select(f'{scope.root_alias}."{f.name}"')
                    cq.root.entries.append(FieldOut(f.name, f, idx))
                    cq.columns.append((f.name, f))
                    cq.column_index.append(idx)
                continue
            path = item.children[0]
            expr, f, canonical, joins = self._field_path(scope, path, "selected")
            dotted = ".".join(canonical)
            if dotted.lower() in seen:
                raise self.malformed(_pos(path), f"duplicate field selected: {dotted}")
            seen.add(dotted.lower())
            node = cq.root
            for rel_key, join in joins:
                child_node = node.parent(rel_key)
                if child_node is None:
                    child_node = Node(join.obj, scope.add_select(f'{join.alias}."Id"'))
                    node.entries.append(ParentOut(rel_key, child_node))
                node = child_node
            if f.compound:
                alias = expr.rsplit('."', 1)[0]
                idxs = [scope.add_select(f'{alias}."{column}"') for _, column in f.components]
                node.entries.append(CompoundOut(f.name, f, node.obj, idxs))
                cq.columns.append((dotted, f))
                cq.column_index.append(idxs[0])
                continue
            idx = scope.add_select(expr)
            node.entries.append(FieldOut(f.name, f, idx))
            cq.columns.append((dotted, f))
            cq.column_index.append(idx)

    def _fields_fn(
        self, scope: _Scope, kind: str, cq: CompiledQuery, clauses: dict[str, Tree], func: Tree
    ) -> list[FieldDef]:
        if kind not in ("ALL", "STANDARD", "CUSTOM"):
            raise self.malformed(_pos(func), f"unexpected token: '{kind}'")
        if kind in ("ALL", "CUSTOM") and (cq.limit is None or cq.limit > 200):
            raise self.malformed(_pos(func), "The SOQL FIELDS function must have a LIMIT of at most 200")
        fields = list(scope.obj.fields.values())
        if kind == "STANDARD":
            return [f for f in fields if not f.custom]
        if kind == "CUSTOM":
            return [f for f in fields if f.custom]
        return fields

    def _child(self, scope: _Scope, cq: CompiledQuery, item: Tree) -> None:
        child_cq = self._query(item.children[0], child_of=scope.obj)
        rel_name = str(self._clauses(item.children[0])["from_clause"].children[1])
        rel = scope.obj.child_relationship(rel_name)
        assert rel is not None
        plan = ChildPlan(rel.relationship_name, child_cq, child_cq.fk_index, child_cq.limit)
        child_cq.limit = None
        cq.children.append(plan)
        cq.root.entries.append(ChildOut(rel.relationship_name, plan))

    def _aggregate_select(self, scope: _Scope, cq: CompiledQuery, items: list[Any], clauses: dict[str, Tree]) -> None:
        cq.aggregate = True
        groups: list[str] = []
        group_fields: dict[str, tuple[str, FieldDef]] = {}
        if "group_clause" in clauses:
            for operand in clauses["group_clause"].children[2:]:
                if operand.data != "path":
                    raise self.malformed(_pos(operand), "GROUP BY on functions is not supported by the emulator")
                expr, f, canonical, _ = self._field_path(scope, operand, "grouped")
                groups.append(expr)
                group_fields[".".join(canonical).lower()] = (expr, f)
        cq.group_sql = ", ".join(groups)
        expr_n = 0
        for item in items:
            if item.data == "func_item":
                func = item.children[0]
                fname = str(func.children[0]).upper()
                alias = _alias(item)
                if fname == "COUNT" and func.children[1] is None:
                    if len(items) == 1 and not groups:
                        cq.count_only = True
                    idx = scope.add_select("COUNT(*)")
                    key = alias or f"expr{expr_n}"
                    if not cq.count_only:
                        expr_n += 0 if alias else 1
                    cq.agg_outputs.append(AggOut(key, idx, None, "COUNT"))
                    continue
                sql, f = self._agg_sql(scope, func)
                idx = scope.add_select(sql)
                key = alias or f"expr{expr_n}"
                if not alias:
                    expr_n += 1
                cq.agg_outputs.append(AggOut(key, idx, f if fname in ("MIN", "MAX", "SUM", "AVG") else None, fname))
                continue
            if item.data != "field_item":
                raise self.malformed(_pos(item), "Nested queries are not supported in aggregate queries")
            path = item.children[0]
            expr, f, canonical, _ = self._field_path(scope, path)
            if ".".join(canonical).lower() not in group_fields:
                raise self.malformed(_pos(path), f"Field must be grouped or aggregated: {f.name}")
            alias = _alias(item)
            idx = scope.add_select(expr)
            cq.agg_outputs.append(AggOut(alias or f.name, idx, f, "GROUP"))
        if "having_clause" in clauses:
            params: list[Any] = []
            cq.having_sql = self._condition(scope, clauses["having_clause"].children[1], params, having=True)
            cq.having_params = params

    def _agg_sql(self, scope: _Scope, func: Tree) -> tuple[str, FieldDef]:
        fname = str(func.children[0]).upper()
        arg = func.children[1]
        if fname not in AGGREGATES:
            raise self.malformed(_pos(func), f"unexpected token: '{func.children[0]}'")
        if arg is None or arg.data != "path":
            raise self.malformed(_pos(func), f"{fname} requires a field argument")
        expr, f, _, _ = self._field_path(scope, arg)
        if fname in ("SUM", "AVG") and f.type not in ("int", "double", "currency", "percent"):
            raise self.malformed(_pos(arg), f"field {f.name} does not support aggregate operator {fname}")
        sql = {
            "COUNT": f"COUNT({expr})",
            "COUNT_DISTINCT": f"COUNT(DISTINCT {expr})",
            "SUM": f"SUM({expr})",
            "AVG": f"AVG({expr})",
            "MIN": f"MIN({expr})",
            "MAX": f"MAX({expr})",
        }[fname]
        return sql, f

    # WHERE -------------------------------------------------------------------------------------

    def _operand(self, scope: _Scope, operand: Tree, having: bool) -> tuple[str, FieldDef | None]:
        if operand.data == "func":
            fname = str(operand.children[0]).upper()
            if fname in AGGREGATES:
                if not having:
                    raise self.malformed(_pos(operand), "Aggregate functions are only allowed in HAVING")
                if fname == "COUNT" and operand.children[1] is None:
                    return "COUNT(*)", None
                sql, f = self._agg_sql(scope, operand)
                return sql, (f if fname in ("MIN", "MAX", "SUM", "AVG") else None)
            raise self.malformed(_pos(operand), f"unexpected token: '{operand.children[0]}'")
        expr, f, _, _ = self._field_path(scope, operand)
        return expr, f

    def _condition(self, scope: _Scope, cond: Tree, params: list[Any], having: bool) -> str:
        kind = cond.data
        if kind in ("and_cond", "or_cond"):
            parts = [self._condition(scope, c, params, having) for c in cond.children if isinstance(c, Tree)]
            joiner = " AND " if kind == "and_cond" else " OR "
            return "(" + joiner.join(parts) + ")"
        if kind == "not_cond":
            inner = self._condition(scope, cond.children[1], params, having)
            return f"(NOT COALESCE({inner}, 0))"
        operand = cond.children[0]
        expr, f = self._operand(scope, operand, having)
        if kind == "compare":
            op = str(cond.children[1])
            return self._compare(expr, f, op, cond.children[2], params, operand)
        if kind == "like":
            value = cond.children[2]
            if value.data != "string" or (f is not None and not f.is_text):
                raise self.invalid_field(_pos(operand), f"invalid operator on field: {f.name if f else ''}")
            pattern = unescape(str(value.children[0]), like=True)
            params.append(pattern)
            return f"({expr} LIKE ? ESCAPE '\\')"
        if kind in ("in_list", "not_in_list"):
            values = cond.children[-1].children
            rendered: list[str] = []
            has_null = False
            for v in values:
                if v.data == "null":
                    has_null = True
                    continue
                rendered.append(self._literal(f, v, params, operand, op="IN"))
            parts = []
            if rendered:
                parts.append(f"{expr} IN ({', '.join(rendered)})")
            if has_null:
                parts.append(f"{expr} IS NULL")
            inner = "(" + " OR ".join(parts or ["0"]) + ")"
            if kind == "in_list":
                return inner
            return f"({expr} IS NULL OR NOT {inner})" if not has_null else f"(NOT {inner})"
        if kind in ("in_query", "not_in_query"):
            if f is None or f.type not in ("id", "reference"):
                raise self.malformed(_pos(operand), "Semi join sub-selects are only allowed on Id or reference fields")
            sub_sql, sub_params = self._semi_join(cond.children[-1], operand)
            params.extend(sub_params)
            if kind == "in_query":
                return f"({expr} IN ({sub_sql}))"
            return f"({expr} IS NULL OR {expr} NOT IN ({sub_sql}))"
        if kind in ("includes", "excludes"):
            if f is None or f.type != "multipicklist":
                raise self.invalid_field(_pos(operand), f"invalid operator on field: {f.name if f else ''}")
            checks = []
            for v in cond.children[-1].children:
                if v.data != "string":
                    raise self.invalid_field(_pos(operand), "INCLUDES and EXCLUDES take string values")
                params.append(unescape(str(v.children[0])))
                checks.append(f"sf_includes({expr}, ?)")
            any_match = "(" + " OR ".join(checks) + ")"
            return any_match if kind == "includes" else f"(NOT {any_match})"
        raise self.malformed(_pos(cond), f"unexpected condition {kind}")

    def _semi_join(self, query: Tree, operand: Tree) -> tuple[str, list[Any]]:
        sub = self._query(query)
        if sub.aggregate or sub.children or len(sub.columns) != 1:
            raise self.malformed(_pos(operand), "Semi join sub-selects must select exactly one Id or reference field")
        col_name, col_field = sub.columns[0]
        if col_field.type not in ("id", "reference") or "." in col_name:
            raise self.malformed(_pos(operand), "Semi join sub-selects must select an Id or reference field")
        select_expr = f'{sub.alias}."{col_field.name}"'
        # NULL keys are left out: SQL's NOT IN over a set containing NULL would match nothing.
        sql = sub.sql(extra_where=f"{select_expr} IS NOT NULL")
        head_end = sql.index(" FROM ")
        inner = f"SELECT {select_expr}{sql[head_end:]}"
        inner = inner.rsplit(" ORDER BY ", 1)[0]
        return inner, sub.all_params()

    def _compare(self, expr: str, f: FieldDef | None, op: str, value: Tree, params: list[Any], operand: Tree) -> str:
        op = "!=" if op == "<>" else op
        if value.data == "null":
            if op == "=":
                return f"({expr} IS NULL)"
            if op == "!=":
                return f"({expr} IS NOT NULL)"
            raise self.malformed(_pos(value), f"invalid operator {op} for null")
        if value.data in ("date_literal", "date_literal_n") and f is not None and f.type in ("date", "datetime"):
            start, end = self._relative_range(value)
            lo, hi = self._bound(f, start), self._bound(f, end)
            params_needed = {
                "=": (f"({expr} >= ? AND {expr} < ?)", [lo, hi]),
                "!=": (f"({expr} IS NULL OR {expr} < ? OR {expr} >= ?)", [lo, hi]),
                "<": (f"({expr} < ?)", [lo]),
                "<=": (f"({expr} < ?)", [hi]),
                ">": (f"({expr} >= ?)", [hi]),
                ">=": (f"({expr} >= ?)", [lo]),
            }
            sql, p = params_needed[op]
            params.extend(p)
            return sql
        placeholder = self._literal(f, value, params, operand, op=op)
        if op == "!=":
            return f"({expr} IS NULL OR {expr} != {placeholder})"
        return f"({expr} {op} {placeholder})"

    def _bound(self, f: FieldDef, when: datetime) -> str:
        if f.type == "date":
            return when.date().isoformat()
        return when.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def _literal(self, f: FieldDef | None, value: Tree, params: list[Any], operand: Tree, op: str) -> str:
        kind = value.data
        raw = str(value.children[0]) if value.children else ""
        ftype = f.type if f is not None else "double"
        name = f.name if f is not None else "expression"

        def wrong(expected: str, quoted: bool) -> SoqlError:
            return self.invalid_field(
                _pos(operand),
                f"value of filter criterion for field '{name}' must be of type {expected} and "
                f"should {'' if quoted else 'not '}be enclosed in quotes",
            )

        if ftype in ("string", "textarea", "picklist", "multipicklist", "email", "phone", "url"):
            if kind != "string":
                raise wrong("string", True)
            params.append(unescape(raw))
            return "?"
        if ftype in ("id", "reference"):
            if kind != "string":
                raise wrong("id", True)
            text = unescape(raw)
            normal = to18(text)
            if normal is None:
                raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", self.soql, _pos(operand), f"invalid ID field: {text}")
            params.append(normal)
            return "?"
        if ftype == "boolean":
            if kind not in ("true", "false"):
                raise wrong("boolean", False)
            params.append(1 if kind == "true" else 0)
            return "?"
        if ftype in ("int", "double", "currency", "percent"):
            if kind != "number":
                raise wrong("double" if ftype != "int" else "int", False)
            params.append(float(raw) if ftype != "int" else (int(float(raw))))
            return "?"
        if ftype == "date":
            if kind != "date":
                raise wrong("date", False)
            try:
                params.append(date.fromisoformat(raw).isoformat())
            except ValueError:
                raise self.malformed(
                    _pos(value), f"line 1:{_pos(value)} no viable alternative at character '{raw}'"
                ) from None
            return "?"
        if ftype == "datetime":
            if kind != "datetime":
                raise wrong("dateTime", False)
            params.append(
                parse_datetime_literal(raw).strftime("%Y-%m-%dT%H:%M:%S.")
                + f"{parse_datetime_literal(raw).microsecond // 1000:03d}Z"
            )
            return "?"
        if ftype == "time":
            if kind != "string":
                raise wrong("time", True)
            params.append(unescape(raw))
            return "?"
        raise wrong(ftype, False)

    def _relative_range(self, value: Tree) -> tuple[datetime, datetime]:
        name = str(value.children[0]).upper()
        n = int(str(value.children[1])) if value.data == "date_literal_n" else None
        rng = relative_range(name, n, self.now)
        if rng is None:
            raise self.malformed(_pos(value), f"unexpected token: '{value.children[0]}'")
        return rng

    def _order(self, scope: _Scope, clause: Tree, cq: CompiledQuery) -> str:
        parts = []
        for item in clause.children[2:]:
            operand = item.children[0]
            if cq.aggregate and operand.data == "func":
                expr, _ = self._operand(scope, operand, having=True)
            else:
                expr, _ = self._operand(scope, operand, having=False)
            direction = "ASC"
            nulls = "FIRST"
            for extra in item.children[1:]:
                if extra is None:
                    continue
                if extra.data == "direction":
                    direction = str(extra.children[0]).upper()
                elif extra.data == "nulls":
                    nulls = str(extra.children[1]).upper()
            parts.append(f"{expr} {direction} NULLS {nulls}")
        parts.append(f"{scope.root_alias}.rid" if not cq.aggregate else "1")
        return ", ".join(parts)


def compile_soql(org: Org, soql: str, now: datetime, include_deleted: bool = False) -> CompiledQuery:
    """Parse and check ``soql`` against ``org``; raise ``SoqlError`` with Salesforce's error."""
    if not soql or not soql.strip():
        raise ApiError(400, "MALFORMED_QUERY", "SOQL statement cannot be empty")
    return Compiler(org, soql, now, include_deleted).compile()
