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
