"""Salesforce record ids: 15-character case-sensitive ids and their 18-character checksummed form."""

from __future__ import annotations

import re

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
ID_RE = re.compile(r"^[a-zA-Z0-9]{15}(?:[A-Z0-5]{3})?$")

#: The emulator's "pod" identifier, the two characters after the key prefix.
POD = "Hx"


def checksum(id15: str) -> str:
    """Return the three-character case-safe suffix Salesforce appends to a 15-character id."""
    out = []
    for chunk in range(3):
        bits = 0
        for i, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << i
        out.append(_SUFFIX[bits])
    return "".join(out)


def make_id(key_prefix: str, number: int) -> str:
    """Build the 18-character id of the ``number``-th record with ``key_prefix``."""
    digits = []
    n = number
    for _ in range(9):
        n, rem = divmod(n, 62)
        digits.append(_BASE62[rem])
    id15 = f"{key_prefix}{POD}0{''.join(reversed(digits))}"
    return id15 + checksum(id15)


def to18(value: str) -> str | None:
    """Normalise a 15- or 18-character id to 18 characters; None if it is not shaped like an id."""
    if not ID_RE.match(value):
        return None
    if len(value) == 15:
        return value + checksum(value)
    if checksum(value[:15]) != value[15:]:
        # An 18-character id whose suffix does not match is compared case-insensitively by
        # Salesforce: recompute from the 15-character head only when the head is intact.
        return None
    return value


_LOW: list[str] = []
_LOW_MASK: list[int] = []


def _low_table() -> tuple[list[str], list[int]]:
    """All 3-character base62 strings and the uppercase bits they set in a checksum chunk."""
    if not _LOW:
        for a in _BASE62:
            for b in _BASE62:
                for c in _BASE62:
                    _LOW.append(a + b + c)
                    _LOW_MASK.append(("A" <= a <= "Z") << 2 | ("A" <= b <= "Z") << 3 | ("A" <= c <= "Z") << 4)
    return _LOW, _LOW_MASK


def make_ids(key_prefix: str, start: int, count: int) -> list[str]:
    """``[make_id(key_prefix, n) for n in range(start, start + count)]``, table-driven for bulk seeding."""
    low, low_mask = _low_table()
    head = f"{key_prefix}{POD}0"
    first = _SUFFIX[sum(1 << i for i, ch in enumerate(head[:5]) if "A" <= ch <= "Z")]
    out: list[str] = []
    n = start
    end = start + count
    while n < end:
        high_n, low_n = divmod(n, 238328)
        digits = []
        h = high_n
        for _ in range(6):
            h, rem = divmod(h, 62)
            digits.append(_BASE62[rem])
        high = "".join(reversed(digits))
        second = _SUFFIX[sum(1 << i for i, ch in enumerate(head[5] + high[:4]) if "A" <= ch <= "Z")]
        hi_mask = ("A" <= high[4] <= "Z") | ("A" <= high[5] <= "Z") << 1
        prefix15 = head + high
        stop = min(end, (high_n + 1) * 238328)
        for i in range(low_n, low_n + (stop - n)):
            out.append(prefix15 + low[i] + first + second + _SUFFIX[hi_mask | low_mask[i]])
        n = stop
    return out
