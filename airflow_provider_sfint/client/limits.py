"""API usage: the ``Sforce-Limit-Info`` header, the ``/limits`` resource, and the budget check."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import BudgetExhaustedError

_PAIR = re.compile(r"(?P<key>[\w-]+)=(?P<used>\d+)/(?P<max>\d+)")


@dataclass(frozen=True)
class ApiUsage:
    """Daily API usage as the last response reported it.

    :param used: calls used in the rolling 24 hours (may exceed ``limit`` while bursting)
    :param limit: the daily allowance
    :param bursts_used: burst calls used, when the org reports ``api-bursts``
    :param bursts_limit: the burst entitlement
    """

    used: int
    limit: int
    bursts_used: int | None = None
    bursts_limit: int | None = None

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)

    @property
    def remaining_percent(self) -> float:
        return 100.0 * self.remaining / self.limit if self.limit else 0.0


def parse_limit_info(header: str | None) -> ApiUsage | None:
    """Parse ``api-usage=U/M[; api-bursts=B/E][; per-app-api-usage=...]`` tolerantly; None if absent."""
    if not header:
        return None
    pairs = {m["key"].lower(): (int(m["used"]), int(m["max"])) for m in _PAIR.finditer(header)}
    if "api-usage" not in pairs:
        return None
    used, limit = pairs["api-usage"]
    bursts = pairs.get("api-bursts")
    return ApiUsage(used, limit, bursts[0] if bursts else None, bursts[1] if bursts else None)


@dataclass(frozen=True)
class LimitValue:
    """One entry of ``/limits``: ``Max`` and ``Remaining``."""

    max: int
    remaining: int

    @property
    def used(self) -> int:
        return self.max - self.remaining


def parse_limits(body: dict[str, Any]) -> dict[str, LimitValue]:
    return {
        name: LimitValue(int(v.get("Max", 0)), int(v.get("Remaining", 0)))
        for name, v in body.items()
        if isinstance(v, dict) and "Max" in v
    }


#: The ``/limits`` key of the daily event delivery allocation (Pub/Sub subscribers spend it).
DELIVERY_LIMIT = "DailyDeliveredPlatformEvents"


def check_allocation(
    limit: LimitValue | None, min_remaining_percent: float, *, what: str, purpose: str = "this work"
) -> None:
    """Refuse to start ``purpose`` when less than ``min_remaining_percent`` of an allocation of ``/limits``
    (``what``: e.g. "daily event deliveries") remains."""
    if limit is None or min_remaining_percent <= 0 or limit.max <= 0:
        return
    percent = 100.0 * max(limit.remaining, 0) / limit.max
    if percent < min_remaining_percent:
        raise BudgetExhaustedError(
            f"refusing to start {purpose}: {limit.remaining} of {limit.max} {what} remain ({percent:.1f}%), "
            f"below the configured minimum of {min_remaining_percent:g}%"
        )


def check_budget(usage: ApiUsage | None, min_remaining_percent: float, *, purpose: str = "this work") -> None:
    """Refuse to start ``purpose`` when less than ``min_remaining_percent`` of the daily allowance remains."""
    if usage is None or min_remaining_percent <= 0:
        return
    if usage.remaining_percent < min_remaining_percent:
        raise BudgetExhaustedError(
            f"refusing to start {purpose}: {usage.remaining} of {usage.limit} daily API calls remain "
            f"({usage.remaining_percent:.1f}%), below the configured minimum of {min_remaining_percent:g}%",
            used=usage.used,
            limit=usage.limit,
        )
