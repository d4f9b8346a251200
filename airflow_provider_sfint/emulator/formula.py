"""A small formula language for the org definition's validation rules and formula fields.

A subset of Salesforce's formula syntax, enough to state what real orgs check and compute on one record:

- field API names of the record (``AnnualRevenue``, ``Custom__c``), number, ``'text'`` / ``"text"``, ``TRUE``,
  ``FALSE`` and ``NULL`` literals;
- ``+ - * /``, ``&`` (text concatenation), ``= == != <> < <= > >=``, ``&& || !`` and ``AND(...)``, ``OR(...)``,
  ``NOT(x)``;
- ``IF(test, then, else)``, ``ISBLANK(x)``, ``BLANKVALUE(x, fallback)``, ``LEN(text)``, ``UPPER(text)``,
  ``LOWER(text)``, ``TEXT(x)``, ``VALUE(text)``, ``ISNEW()``, ``ISCHANGED(field)``, ``PRIORVALUE(field)``,
  ``INCLUDES(multipicklist, 'value')``, ``ISPICKVAL(picklist, 'value')``, ``REGEX(text, 'pattern')``.

Blank is null or the empty text. Comparisons with a blank operand are false (as Salesforce treats blank fields as
blanks). Cross-object references (``Account.Name``) are refused at load.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<str>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>==|!=|<>|<=|>=|&&|\|\||[-+*/&=<>!(),]))"
)
FUNCTIONS = {
    "AND",
    "OR",
    "NOT",
    "IF",
    "ISBLANK",
    "BLANKVALUE",
    "LEN",
    "UPPER",
    "LOWER",
    "TEXT",
    "VALUE",
    "ISNEW",
    "ISCHANGED",
    "PRIORVALUE",
    "INCLUDES",
    "ISPICKVAL",
    "REGEX",
}
FIELD_FUNCTIONS = {"ISCHANGED", "PRIORVALUE"}  # their argument must be a field name


class FormulaError(ValueError):
    """A formula that cannot be parsed or refers to what the object lacks (raised when the org loads)."""


@dataclass
class Context:
    """What a formula sees: the record after the write, before it (None on create)."""

    record: dict[str, Any]
    prior: dict[str, Any] | None = None
    types: dict[str, str] = field(default_factory=dict)


Node = Callable[[Context], Any]


def _blank(value: Any) -> bool:
    return value is None or value == ""


def _number(value: Any) -> Decimal | None:
    if _blank(value) or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("=", "==", "!=", "<>"):
        if _blank(left) or _blank(right):
            equal = _blank(left) and _blank(right)
        elif isinstance(left, bool) or isinstance(right, bool):
            equal = bool(left) == bool(right)
        else:
            a, b = _number(left), _number(right)
            equal = a == b if a is not None and b is not None else _text(left) == _text(right)
        return equal if op in ("=", "==") else not equal
    if _blank(left) or _blank(right):
        return False
    a, b = _number(left), _number(right)
    pair: tuple[Any, Any] = (a, b) if a is not None and b is not None else (_text(left), _text(right))
    return bool(
        {"<": pair[0] < pair[1], "<=": pair[0] <= pair[1], ">": pair[0] > pair[1], ">=": pair[0] >= pair[1]}[op]
    )


class _Parser:
    def __init__(self, text: str, fields: dict[str, str]) -> None:
        self.text = text
        self.fields = fields  # lower-cased API name -> API name
        self.tokens: list[tuple[str, str]] = []
        position = 0
        while position < len(text):
            match = TOKEN.match(text, position)
            if match is None or match.end() == position:
                if text[position:].strip() == "":
                    break
                raise FormulaError(f"cannot read the formula at {text[position : position + 20]!r}")
            kind = match.lastgroup
            assert kind is not None
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.i = 0
        self.used: set[str] = set()

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1].upper() != value):
            raise FormulaError(f"expected {value or 'more'} in {self.text!r}")
        self.i += 1
        return token

    def parse(self) -> Node:
        node = self.expr()
        if self.peek() is not None:
            raise FormulaError(f"unexpected {self.peek()[1]!r} in {self.text!r}")  # type: ignore[index]
        return node

    def expr(self) -> Node:
        return self.binary(0)

    LEVELS: tuple[tuple[str, ...], ...] = (
        ("||",),
        ("&&",),
        ("=", "==", "!=", "<>", "<", "<=", ">", ">="),
        ("+", "-", "&"),
        ("*", "/"),
    )

    def binary(self, level: int) -> Node:
        if level == len(self.LEVELS):
            return self.unary()
        node = self.binary(level + 1)
        while (token := self.peek()) is not None and token[0] == "op" and token[1] in self.LEVELS[level]:
            op = self.take()[1]
            right = self.binary(level + 1)
            node = self._apply(op, node, right)
        return node

    @staticmethod
    def _apply(op: str, left: Node, right: Node) -> Node:
        if op == "||":
            return lambda c: bool(left(c)) or bool(right(c))
        if op == "&&":
            return lambda c: bool(left(c)) and bool(right(c))
        if op == "&":
            return lambda c: _text(left(c)) + _text(right(c))
        if op in ("+", "-", "*", "/"):

            def arithmetic(c: Context) -> Any:
                a, b = _number(left(c)), _number(right(c))
                if a is None or b is None:
                    return None
                if op == "/":
                    return None if b == 0 else a / b
                return {"+": a + b, "-": a - b, "*": a * b}[op]

            return arithmetic
        return lambda c: _compare(op, left(c), right(c))

    def unary(self) -> Node:
        token = self.peek()
        if token == ("op", "!"):
            self.take()
            inner = self.unary()
            return lambda c: not bool(inner(c))
        if token == ("op", "-"):
            self.take()
            inner = self.unary()
            return lambda c: None if _number(inner(c)) is None else -_number(inner(c))  # type: ignore[operator]
        return self.atom()

    def atom(self) -> Node:
        kind, value = self.take()
        if kind == "num":
            number = Decimal(value)
            return lambda c: number
        if kind == "str":
            text = re.sub(r"\\(.)", r"\1", value[1:-1])
            return lambda c: text
        if kind == "op" and value == "(":
            node = self.expr()
            self.take(")")
            return node
        if kind != "name":
            raise FormulaError(f"unexpected {value!r} in {self.text!r}")
        upper = value.upper()
        if upper in ("TRUE", "FALSE"):
            flag = upper == "TRUE"
            return lambda c: flag
        if upper == "NULL":
            return lambda c: None
        nxt = self.peek()
        if nxt == ("op", "(") and upper in FUNCTIONS:
            return self.call(upper)
        if nxt == ("op", "("):
            raise FormulaError(f"unknown function {value}() in {self.text!r}; known: {', '.join(sorted(FUNCTIONS))}")
        return self.field_ref(value)

    def field_ref(self, name: str) -> Node:
        real = self.fields.get(name.lower())
        if real is None:
            raise FormulaError(f"no field {name!r} on this object (formula {self.text!r})")
        self.used.add(real)

        def value(c: Context) -> Any:
            raw = c.record.get(real)
            return bool(raw) if c.types.get(real) == "boolean" and raw is not None else raw

        return value

    def call(self, name: str) -> Node:
        self.take("(")
        if name in FIELD_FUNCTIONS:
            kind, raw = self.take()
            real = self.fields.get(raw.lower()) if kind == "name" else None
            if real is None:
                raise FormulaError(f"{name}() takes a field of this object, got {raw!r} in {self.text!r}")
            self.take(")")
            if name == "ISCHANGED":
                return lambda c: c.prior is not None and c.prior.get(real) != c.record.get(real)
            return lambda c: (c.prior or {}).get(real)
        args: list[Node] = []
        while self.peek() != ("op", ")"):
            args.append(self.expr())
            if self.peek() == ("op", ","):
                self.take()
        self.take(")")
        return self._function(name, args)

    def _function(self, name: str, args: list[Node]) -> Node:
        count = {"NOT": 1, "IF": 3, "ISBLANK": 1, "BLANKVALUE": 2, "LEN": 1, "UPPER": 1, "LOWER": 1, "TEXT": 1}
        count.update({"VALUE": 1, "ISNEW": 0, "INCLUDES": 2, "ISPICKVAL": 2, "REGEX": 2})
        if name in count and len(args) != count[name]:
            raise FormulaError(f"{name}() takes {count[name]} argument(s), got {len(args)} in {self.text!r}")
        if name in ("AND", "OR") and not args:
            raise FormulaError(f"{name}() needs arguments in {self.text!r}")
        a = args
        table: dict[str, Node] = {
            "AND": lambda c: all(bool(x(c)) for x in a),
            "OR": lambda c: any(bool(x(c)) for x in a),
            "NOT": lambda c: not bool(a[0](c)),
            "IF": lambda c: a[1](c) if bool(a[0](c)) else a[2](c),
            "ISBLANK": lambda c: _blank(a[0](c)),
            "BLANKVALUE": lambda c: a[1](c) if _blank(a[0](c)) else a[0](c),
            "LEN": lambda c: Decimal(len(_text(a[0](c)))),
            "UPPER": lambda c: _text(a[0](c)).upper(),
            "LOWER": lambda c: _text(a[0](c)).lower(),
            "TEXT": lambda c: _text(a[0](c)),
            "VALUE": lambda c: _number(a[0](c)),
            "ISNEW": lambda c: c.prior is None,
            "INCLUDES": lambda c: _text(a[1](c)) in _text(a[0](c)).split(";"),
            "ISPICKVAL": lambda c: _text(a[0](c)) == _text(a[1](c)),
            "REGEX": lambda c: re.fullmatch(_text(a[1](c)), _text(a[0](c))) is not None,
        }
        return table[name]


@dataclass
class Formula:
    """A parsed formula over the fields of one object."""

    text: str
    node: Node
    fields: frozenset[str]  # the fields it reads

    def __call__(self, context: Context) -> Any:
        return self.node(context)


def compile_formula(text: str, fields: dict[str, str]) -> Formula:
    """Parse ``text`` against an object's fields (lower-cased name -> API name); FormulaError names what is wrong."""
    if not str(text).strip():
        raise FormulaError("the formula is empty")
    parser = _Parser(str(text), fields)
    node = parser.parse()
    return Formula(str(text), node, frozenset(parser.used))
