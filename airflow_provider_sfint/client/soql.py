"""Safe SOQL literals: values (including templated ones) cannot break out of or inject into a query."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from string import Formatter
from typing import Any

_ESCAPES = {"\\": "\\\\", "'": "\\'", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")


def quote_string(value: str) -> str:
    """A quoted SOQL string literal: backslash, quotes and control characters escaped."""
    return "'" + "".join(_ESCAPES.get(ch, ch) for ch in value) + "'"


def quote_like(value: str) -> str:
    """A LIKE pattern matching ``value`` literally (``%`` and ``_`` escaped); add wildcards yourself."""
    return quote_string(value).replace("%", "\\%").replace("_", "\\_")


def format_datetime(value: datetime) -> str:
    """A SOQL datetime literal in UTC: ``2024-01-31T23:59:59Z`` (milliseconds when present)."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: SOQL datetimes need a time zone; use an aware datetime")
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def literal(value: Any) -> str:
    """Render a Python value as a SOQL literal.

    str -> quoted string; bool -> TRUE/FALSE; None -> NULL; int/float/Decimal -> number (never in
    exponent form); datetime (aware) -> UTC datetime; date -> YYYY-MM-DD; a list/tuple/set -> ``(a, b)``.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return quote_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value!r} cannot be a SOQL number")
        text = format(Decimal(str(value)) if isinstance(value, float) else value, "f")
        if text in ("NaN", "Infinity", "-Infinity"):
            raise ValueError(f"{value!r} cannot be a SOQL number")
        return text
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        raise TypeError("a mapping cannot be a SOQL literal")
    if isinstance(value, Iterable):
        items = [literal(v) for v in value]
        if not items:
            raise ValueError("an empty list cannot be a SOQL IN list (SOQL has no empty list)")
        return "(" + ", ".join(items) + ")"
    raise TypeError(f"{type(value).__name__} cannot be a SOQL literal")


def field_name(name: str) -> str:
    """Check an API name (or dotted path) for use as a field or object name in a query."""
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a valid Salesforce field or object name")
    return name


def soql(template: str, /, **values: Any) -> str:
    """Fill ``{name}`` placeholders with SOQL literals: ``soql("... WHERE Name = {n}", n="O'Brien")``.

    Placeholders take no format specs; every value goes through :func:`literal`.
    """
    out = []
    for text, name, spec, conversion in Formatter().parse(template):
        out.append(text)
        if name is None:
            continue
        if spec or conversion:
            raise ValueError(f"placeholder {{{name}}} takes no format spec or conversion")
        if name not in values:
            raise KeyError(f"no value for placeholder {{{name}}}")
        out.append(literal(values[name]))
    return "".join(out)


# --- reading a query's shape (top level only: literals and parenthesised subqueries are skipped) ------

_WRAPPERS = frozenset({"tolabel", "convertcurrency", "format"})


def _top_level(query: str) -> list[tuple[int, str]]:
    """(position, upper-cased word) of each word outside string literals and parentheses."""
    words: list[tuple[int, str]] = []
    depth, i, n = 0, 0, len(query)
    while i < n:
        ch = query[i]
        if ch == "'":
            i += 1
            while i < n and query[i] != "'":
                i += 2 if query[i] == "\\" else 1
            i += 1
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and (ch.isalpha() or ch == "_"):
            start = i
            while i < n and (query[i].isalnum() or query[i] in "_."):
                i += 1
            words.append((start, query[start:i].upper()))
            continue
        i += 1
    return words


def bulk_refuses(query: str) -> str | None:
    """The top-level clause of ``query`` that Bulk API 2.0 query refuses (``GROUP BY``, ``OFFSET``, ``TYPEOF``),
    or None. The REST query API runs them; a query that may run either way must not use them."""
    words = _top_level(query)
    for k, (_, word) in enumerate(words):
        if word == "TYPEOF":
            return word
        clause = _clause_at(words, k)
        if clause in ("GROUP BY", "OFFSET"):
            return clause
    return None


def _clause_at(words: list[tuple[int, str]], k: int) -> str | None:
    word = words[k][1]
    nxt = words[k + 1][1] if k + 1 < len(words) else ""
    if word in ("GROUP", "ORDER") and nxt == "BY":
        return f"{word} BY"
    if word == "ALL" and nxt == "ROWS":
        return "ALL ROWS"
    return word if word in ("WHERE", "WITH", "LIMIT", "OFFSET", "FOR", "UPDATE") else None


def _split_top(text: str) -> list[str]:
    parts, depth, start, quoted = [], 0, 0, False
    for i, ch in enumerate(text):
        if ch == "'" and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and ch == ",":
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def query_shape(query: str) -> tuple[list[str], str]:
    """The selected columns (as Bulk CSV names them) and the object after FROM.

    ``toLabel(Status)`` and ``convertCurrency(Amount)`` name their column after the field. Raises
    ``ValueError`` for text that is not a ``SELECT ... FROM ...`` query.
    """
    words = _top_level(query)
    select = next((p for p, w in words if w == "SELECT"), None)
    found = next(((p, k) for k, (p, w) in enumerate(words) if w == "FROM"), None)
    if select is None or found is None:
        raise ValueError("SOQL must have the form SELECT <fields> FROM <object> ...")
    from_pos, k = found
    if k + 1 >= len(words):
        raise ValueError("SOQL has no object name after FROM")
    columns = []
    for item in _split_top(query[select + 6 : from_pos]):
        name = item.split()[0] if "(" not in item else item
        if "(" in name:
            fn, _, inner = name.partition("(")
            inner = inner.rstrip(") ").strip()
            if fn.strip().lower() not in _WRAPPERS or "(" in inner or " " in inner:
                columns.append(item)  # reported by the caller or by Salesforce as unsupported
                continue
            name = inner
        columns.append(name)
    position, word = words[k + 1]
    return columns, query[position : position + len(word)]


def add_window(query: str, field: str, start: datetime, end: datetime) -> str:
    """``query`` restricted to ``start <= field < end``, combined with any WHERE it already has.

    The window is half-open, so consecutive windows neither overlap nor leave gaps; both ends are
    floored to whole seconds (SOQL datetime literals have no finer unit in every version) which keeps
    that property. The existing condition is parenthesised, so its ORs cannot escape the window.
    """
    field_name(field)
    if end <= start:
        raise ValueError(f"the window for {field} is empty: end {end.isoformat()} <= start {start.isoformat()}")
    lo, hi = (format_datetime(v.replace(microsecond=0)) for v in (start, end))
    window = f"{field} >= {lo} AND {field} < {hi}"
    words = _top_level(query)
    from_index = next((k for k, (_, w) in enumerate(words) if w == "FROM"), None)
    if from_index is None or not words or words[0][1] != "SELECT":
        raise ValueError("SOQL must have the form SELECT <fields> FROM <object> ...")
    where_at: int | None = None
    end_at = len(query.rstrip())
    for k in range(from_index + 2, len(words)):
        clause = _clause_at(words, k)
        if clause == "WHERE" and where_at is None:
            where_at = words[k][0]
        elif clause is not None and clause != "WHERE":
            end_at = words[k][0]
            break
    if where_at is None:
        return f"{query[:end_at].rstrip()} WHERE {window} {query[end_at:]}".rstrip()
    condition = query[where_at + 5 : end_at].strip()
    return f"{query[:where_at]}WHERE ({condition}) AND {window} {query[end_at:]}".rstrip()
