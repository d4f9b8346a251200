"""Fault injection: off by default, deterministic under a seed, selectable per endpoint pattern.

These faults are not claims about real Salesforce behaviour (429 is not documented for core REST);
they exist so that clients' retry paths can be exercised.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field
from typing import Any

KINDS = (
    "503",
    "500",
    "429",
    "drop",
    "latency",
    "lock_row",
    "request_limit",
    "result_no_locator",
    "result_repeat_locator",
    "result_short_page",
    "result_pages_no_list",
)
#: Faults applied by the Bulk query results handler, not by the request pipeline.
RESULT_KINDS = frozenset({"result_no_locator", "result_repeat_locator", "result_short_page", "result_pages_no_list"})


@dataclass
class FaultRule:
    """One fault: ``kind`` fires on requests matching ``path``/``method`` with probability ``rate``.

    ``after`` skips the first N matching requests; ``count`` caps how often it fires.
    """

    kind: str
    rate: float = 1.0
    path: str = ".*"
    method: str | None = None
    retry_after: float | None = None
    latency_ms: float = 0.0
    after: int = 0
    count: int | None = None
    seen: int = 0
    fired: int = 0
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1, got {self.rate}")
        self._pattern = re.compile(self.path)

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method.upper()) and bool(self._pattern.search(path))

    def as_dict(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in ("kind", "rate", "path", "method", "retry_after", "latency_ms", "after", "count", "seen", "fired")
        }


class Faults:
    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self.seed = 0
        self.rng = random.Random(0)
        self._lock = threading.Lock()

    def configure(self, spec: dict[str, Any]) -> None:
        """Replace the rules: ``{"seed": 7, "rules": [{"kind": "503", "rate": 0.05, "path": "/query"}]}``."""
        rules = [FaultRule(**{k: v for k, v in r.items() if k not in ("seen", "fired")}) for r in spec.get("rules", [])]
        with self._lock:
            self.seed = int(spec.get("seed", 0))
            self.rng = random.Random(self.seed)
            self.rules = rules

    def clear(self) -> None:
        self.configure({})

    def _fire(self, rule: FaultRule) -> bool:
        rule.seen += 1
        if rule.seen <= rule.after:
            return False
        if rule.count is not None and rule.fired >= rule.count:
            return False
        if rule.rate < 1.0 and self.rng.random() >= rule.rate:
            return False
        rule.fired += 1
        return True

    def request_faults(self, method: str, path: str, login: bool = False) -> list[FaultRule]:
        """The request-level faults that fire for this request (record-level ones excluded); for the login
        endpoint (``login``), only rules whose path pattern names ``oauth2``."""
        with self._lock:
            return [
                r
                for r in self.rules
                if r.kind != "lock_row"
                and r.kind not in RESULT_KINDS
                and (not login or "oauth2" in r.path)
                and r.matches(method, path)
                and self._fire(r)
            ]

    def lock_fault(self, method: str, path: str) -> bool:
        """Whether one record written by this request fails with UNABLE_TO_LOCK_ROW."""
        if not self.rules:  # the usual case, checked per written record: no lock needed to see it
            return False
        with self._lock:
            return any(r.kind == "lock_row" and r.matches(method, path) and self._fire(r) for r in self.rules)

    def result_faults(self, method: str, path: str) -> set[str]:
        """The Bulk query result faults that fire for this results request."""
        if not self.rules:
            return set()
        with self._lock:
            return {r.kind for r in self.rules if r.kind in RESULT_KINDS and r.matches(method, path) and self._fire(r)}

    def as_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "rules": [r.as_dict() for r in self.rules]}
