"""Org limits and usage counters (spec sections 2.5, 2.6 and 7)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Limits:
    """Daily allowances (rolling 24 h, reset only through the admin API here)."""

    api_max: int = 100_000
    api_used: int = 0
    bursts_max: int = 0  # > 0 lets usage exceed api_max by this much (api-bursts)
    bulk_batches_max: int = 15_000
    bulk_batches_used: int = 0
    bulk_query_jobs_max: int = 10_000
    bulk_query_jobs_used: int = 0
    bulk_query_storage_mb_max: int = 976_562
    bulk_query_storage_mb_used: int = 0
    ingest_records_max: int = 150_000_000
    ingest_records_used: int = 0
    # event delivery allocation: deliveries to Pub/Sub subscribers (each event to each subscriber counts)
    platform_events_delivered_max: int = 50_000
    platform_events_delivered_used: int = 0
    platform_events_published_max: int = 250_000
    platform_events_published_used: int = 0
    long_running_seconds: float = 20.0
    concurrent_long_running_max: int = 25
    counters: Counter[str] = field(default_factory=Counter)
    in_flight: dict[int, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 0

    @property
    def exhausted(self) -> bool:
        return self.api_used >= self.api_max + self.bursts_max

    def count_call(self, n: int = 1) -> None:
        with self._lock:
            self.api_used += n

    def count_published(self, n: int) -> None:
        with self._lock:
            self.platform_events_published_used += n

    def take_deliveries(self, n: int) -> int:
        """Count up to ``n`` deliveries against the daily allocation; returns how many were allowed."""
        with self._lock:
            allowed = max(0, min(n, self.platform_events_delivered_max - self.platform_events_delivered_used))
            self.platform_events_delivered_used += allowed
            return allowed

    def limit_info(self) -> str:
        used = self.api_used
        if self.bursts_max and used > self.api_max:
            return f"api-usage={used}/{self.api_max}; api-bursts={used - self.api_max}/{self.bursts_max}"
        return f"api-usage={used}/{self.api_max}"

    # --- concurrent long-running requests ---------------------------------------------------------

    def enter(self) -> int | None:
        """Register a request; None if the concurrent long-running limit refuses it."""
        now = time.monotonic()
        with self._lock:
            long_running = sum(1 for start in self.in_flight.values() if now - start >= self.long_running_seconds)
            if long_running >= self.concurrent_long_running_max:
                return None
            self._next += 1
            self.in_flight[self._next] = now
            return self._next

    def leave(self, ticket: int) -> None:
        with self._lock:
            self.in_flight.pop(ticket, None)

    def body(self) -> dict[str, Any]:
        def entry(max_: int, used: int) -> dict[str, int]:
            return {"Max": max_, "Remaining": max(max_ - used, 0)}

        return {
            "ConcurrentAsyncGetReportInstances": entry(200, 0),
            "ConcurrentSyncReportRuns": entry(20, 0),
            "DailyApiRequests": entry(self.api_max, self.api_used),
            "DailyAsyncApexExecutions": entry(250_000, 0),
            "DailyBulkApiBatches": entry(self.bulk_batches_max, self.bulk_batches_used),
            "DailyBulkApiRequests": entry(self.bulk_batches_max, self.bulk_batches_used),
            "DailyBulkV2QueryFileStorageMB": entry(self.bulk_query_storage_mb_max, self.bulk_query_storage_mb_used),
            "DailyBulkV2QueryJobs": entry(self.bulk_query_jobs_max, self.bulk_query_jobs_used),
            "DailyDeliveredPlatformEvents": entry(
                self.platform_events_delivered_max, self.platform_events_delivered_used
            ),
            "DailyDurableStreamingApiEvents": entry(10_000, 0),
            "DailyStandardVolumePlatformEvents": entry(10_000, 0),
            "DataStorageMB": entry(1024, 0),
            "FileStorageMB": entry(1024, 0),
            "HourlyODataCallout": entry(10_000, 0),
            "HourlyPublishedPlatformEvents": entry(
                self.platform_events_published_max, self.platform_events_published_used
            ),
            "MassEmail": entry(5000, 0),
            "SingleEmail": entry(5000, 0),
            "StreamingApiConcurrentClients": entry(2000, 0),
        }

    def settings(self) -> dict[str, Any]:
        keys = (
            "api_max",
            "api_used",
            "bursts_max",
            "bulk_batches_max",
            "bulk_batches_used",
            "bulk_query_jobs_max",
            "bulk_query_jobs_used",
            "bulk_query_storage_mb_max",
            "bulk_query_storage_mb_used",
            "ingest_records_max",
            "ingest_records_used",
            "platform_events_delivered_max",
            "platform_events_delivered_used",
            "platform_events_published_max",
            "platform_events_published_used",
            "long_running_seconds",
            "concurrent_long_running_max",
        )
        return {k: getattr(self, k) for k in keys}

    def update(self, values: dict[str, Any]) -> None:
        allowed = set(self.settings())
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(
                f"unknown limit settings: {', '.join(sorted(unknown))}; known: {', '.join(sorted(allowed))}"
            )
        with self._lock:
            for key, value in values.items():
                setattr(self, key, type(getattr(self, key))(value))
