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
