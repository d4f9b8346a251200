"""How long things take in the emulated org: one timing model for REST calls, Bulk jobs and transfers.

The default (``instant``) answers as fast as the machine can: the test suite stays fast. ``realistic`` makes the
emulator feel like a typical Enterprise org reached over the internet, for benchmarks and for tests that care
about waiting (a job observably ``InProgress``, a client's polling really waits). Every value of the realistic
profile, with its source or marked as an estimate, is listed in ``docs/emulator.md`` ("Org profiles").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass
class Timing:
    """The timing knobs (admin API ``/__emulator__/timing``); 0 or None means "no delay, no cap"."""

    rest_latency_s: float = 0.0  # server time added to every API call (REST, Composite, Bulk, OAuth token)
    query_startup_s: float = 0.0  # a Bulk query job waits this long (UploadComplete) before it runs
    query_rows_per_s: float = 0.0  # a running Bulk query job stays InProgress for rows / this rate
    ingest_startup_s: float = 0.0  # an ingest job waits this long after UploadComplete before it runs
    ingest_rows_per_s: float = 0.0  # records one ingest job processes per second
    ingest_org_rows_per_s: float = 0.0  # records all ingest jobs of the org process per second together
    download_bytes_per_s: int | None = None  # per connection: every response body is sent at most this fast
    upload_bytes_per_s: int | None = None  # per connection: every request body is read at most this fast

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name: f for f in fields(self)}
        unknown = set(values) - set(known)
        if unknown:
            raise ValueError(f"unknown timing settings: {', '.join(sorted(unknown))}; known: {', '.join(known)}")
        for key, value in values.items():
            if value is not None and (not isinstance(value, int | float) or isinstance(value, bool) or value < 0):
                raise ValueError(f"timing setting {key} must be a number >= 0 (or null), got {value!r}")
            if key.endswith("bytes_per_s"):
                value = None if not value else int(value)
            elif value is None:
                value = 0.0
            setattr(self, key, value if key.endswith("bytes_per_s") else float(value))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Profile:
    """A named set of timing values and the daily API allowance of the org they stand for."""

    name: str
    timing: Timing
    daily_api_requests: int | None = None  # None: the org definition's own limit


#: A typical Enterprise Edition org reached from a cloud region (see docs/emulator.md for each value's source).
REALISTIC = Profile(
    "realistic",
    Timing(
        rest_latency_s=0.15,
        query_startup_s=3.0,
        query_rows_per_s=20_000.0,
        ingest_startup_s=3.0,
        ingest_rows_per_s=2_500.0,
        ingest_org_rows_per_s=5_000.0,
        download_bytes_per_s=8_000_000,
        upload_bytes_per_s=4_000_000,
    ),
    # Enterprise Edition: 100,000 a day plus 1,000 per Salesforce licence; 50 licences assumed.
    daily_api_requests=150_000,
)
PROFILES: dict[str, Profile] = {"instant": Profile("instant", Timing()), "realistic": REALISTIC}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}") from None


def fresh_timing(profile: Profile) -> Timing:
    return replace(profile.timing)


def sleep_until(due: float, stop: Callable[[], bool] | None = None, step: float = 0.1) -> bool:
    """Sleep until ``time.monotonic()`` reaches ``due``, waking every ``step`` to honour ``stop``.

    Returns False when ``stop`` ended the wait early.
    """
    while True:
        left = due - time.monotonic()
        if left <= 0:
            return True
        if stop is not None and stop():
            return False
        time.sleep(min(step, left))


class OrgPace:
    """The org's shared ingest capacity: each batch books its share of ``ingest_org_rows_per_s``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free_at = 0.0

    def book(self, records: int, rate: float, now: float) -> float:
        """Reserve time for ``records`` at the org's rate; returns the monotonic time the batch may finish."""
        if rate <= 0:
            return now
        with self._lock:
            start = max(self._free_at, now)
            self._free_at = start + records / rate
            return self._free_at

    def reset(self) -> None:
        with self._lock:
            self._free_at = 0.0
