"""A fast Avro binary encoder for change events, generated per schema.

Capturing change events runs inside every write; encoding each event through a generic writer cost more
than the Bulk ingest it rides on. The change-event record is always the same shape (a fixed header, then
one nullable field or nullable record of nullable fields per slot), so this module generates, per schema,
one Python function that writes the stored column values straight to Avro bytes. The tests decode every
delivered event with fastavro, and ``tests/emulator/test_avro_fast.py`` compares the bytes with fastavro's
own encoding, so a mistake here cannot go unnoticed.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from datetime import date, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .avro_schemas import Slot

_VARINT = [bytes([i]) for i in range(128)]
NULL = b"\x00"
SOME = b"\x02"
_ONE = b"\x02"  # an array block of one item
EPOCH = date(1970, 1, 1)


def long_bytes(n: int) -> bytes:
    """Avro ``long``/``int``: zig-zag, then little-endian base-128 varint."""
    z = (n << 1) ^ (n >> 63)
    if z < 128:
        return _VARINT[z]
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def string_bytes(value: Any) -> bytes:
    data = (value if isinstance(value, str) else str(value)).encode("utf-8")
    return long_bytes(len(data)) + data


def strings_bytes(values: Sequence[str]) -> bytes:
    """An Avro array of strings (one block, then the end marker)."""
    if not values:
        return NULL
    if len(values) == 1:
        return _ONE + string_bytes(values[0]) + NULL
    return long_bytes(len(values)) + b"".join([string_bytes(v) for v in values]) + NULL


@lru_cache(maxsize=16384)
def datetime_ms(text: str) -> int:
    """A stored ``...T..:..:..mmmZ`` datetime as epoch milliseconds."""
    moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    return int(moment.timestamp() * 1000)


@lru_cache(maxsize=16384)
def date_days(text: str) -> int:
    return (date.fromisoformat(text) - EPOCH).days


@lru_cache(maxsize=16384)
def _datetime_bytes(text: str) -> bytes:
    return long_bytes(datetime_ms(text))


def _long_value(value: Any) -> bytes:
    return _datetime_bytes(value) if isinstance(value, str) else long_bytes(int(value))


def _int_value(value: Any) -> bytes:
    return long_bytes(date_days(value) if isinstance(value, str) else int(value))


def _double_value(value: Any) -> bytes:
    return struct.pack("<d", float(value))


def _bool_value(value: Any) -> bytes:
    return b"\x01" if value else b"\x00"


ENCODERS: dict[str, Callable[[Any], bytes]] = {
    "string": string_bytes,  # (values go through _string_value, which adds the union branch)
    "long": _long_value,
    "int": _int_value,
    "double": _double_value,
    "boolean": _bool_value,
}


def _string_value(value: Any) -> bytes:
    data = (value if value.__class__ is str else str(value)).encode()
    n = len(data)
    return (_SOME_SHORT[n] if n < 64 else SOME + long_bytes(n)) + data


_SOME_SHORT = [SOME + _VARINT[2 * n] for n in range(64)]


def compile_values(slots: Sequence[Slot]) -> Callable[[dict[str, Any]], bytes]:
    """A function from stored column values (absent = null) to the Avro bytes of every slot, in order.

    The generated function reads each column once and joins one tuple of byte strings: no list appends,
    every helper bound as a default argument (a local, not a global, lookup)."""
    helpers: dict[str, Any] = {"NULL": NULL, "SOME": SOME, "S": _string_value}
    helpers.update({f"E_{k}": v for k, v in ENCODERS.items()})
    reads: list[str] = []
    pieces: list[str] = []
    for n, slot in enumerate(slots):
        if not slot.compound:
            reads.append(f"    x{n} = g({slot.columns[0]!r})")
            encode = "S" if slot.kinds[0] == "string" else f"E_{slot.kinds[0]}"
            pieces.append(f"NULL if x{n} is None else {'' if encode == 'S' else 'SOME + '}{encode}(x{n})")
            continue
        parts = [f"c{n}_{i}" for i in range(len(slot.columns))]
        reads += [f"    {var} = g({column!r})" for var, column in zip(parts, slot.columns, strict=True)]
        inner = " + ".join(
            f"(NULL if {var} is None else {'' if kind == 'string' else 'SOME + '}"
            f"{'S' if kind == 'string' else 'E_' + kind}({var}))"
            for var, kind in zip(parts, slot.kinds, strict=True)
        )
        pieces.append(f"NULL if {' and '.join(f'{p} is None' for p in parts)} else SOME + {inner}")
    defaults = ", ".join(f"{name}={name}" for name in helpers)
    lines = [f"def encode(values, {defaults}):", "    g = values.get", *reads, "    return b''.join(("]
    lines += [f"        {piece}," for piece in pieces]
    lines.append("    ))")
    exec(compile("\n".join(lines), "<change-event encoder>", "exec"), helpers)
    compiled: Callable[[dict[str, Any]], bytes] = helpers["encode"]
    return compiled
