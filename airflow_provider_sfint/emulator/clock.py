"""The emulator's clock: real time plus an offset that tests can set through the admin API."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    """Wall-clock time shifted by a settable offset; monotonic time is left alone."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), tz=UTC)

    def set_now(self, when: datetime) -> None:
        self.offset = when.timestamp() - time.time()


def format_datetime(value: datetime) -> str:
    """Salesforce JSON datetime form: ``2024-09-09T19:25:27.000+0000``."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def storage_datetime(value: datetime) -> str:
    """The sortable UTC form datetimes are stored in: ``2024-09-09T19:25:27.000Z``."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def stored_to_json(value: str) -> str:
    """Convert a stored ``...000Z`` datetime to the ``...000+0000`` JSON form."""
    return value[:-1] + "+0000"
