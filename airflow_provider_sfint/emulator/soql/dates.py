"""SOQL date and datetime literals: ISO literals, and relative ones (``LAST_N_DAYS:7``, ``THIS_FISCAL_QUARTER``...) as
half-open UTC ranges (the emulator's org time zone)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta


def parse_datetime_literal(raw: str) -> datetime:
    text = raw.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    return datetime.fromisoformat(text).astimezone(UTC)


def month_start(year: int, month: int) -> datetime:
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    return datetime(year, month, 1, tzinfo=UTC)


def relative_range(name: str, n: int | None, now: datetime) -> tuple[datetime, datetime] | None:
    """[start, end) of a relative date literal in UTC (the emulator's org time zone)."""
    today = datetime(now.year, now.month, now.day, tzinfo=UTC)
    day = timedelta(days=1)
    week_start = today - timedelta(days=(today.weekday() + 1) % 7)  # weeks start on Sunday
    q_month = (now.month - 1) // 3 * 3 + 1
    simple: dict[str, tuple[datetime, datetime]] = {
        "YESTERDAY": (today - day, today),
        "TODAY": (today, today + day),
        "TOMORROW": (today + day, today + 2 * day),
        "LAST_WEEK": (week_start - 7 * day, week_start),
        "THIS_WEEK": (week_start, week_start + 7 * day),
        "NEXT_WEEK": (week_start + 7 * day, week_start + 14 * day),
        "LAST_MONTH": (month_start(now.year, now.month - 1), month_start(now.year, now.month)),
        "THIS_MONTH": (month_start(now.year, now.month), month_start(now.year, now.month + 1)),
        "NEXT_MONTH": (month_start(now.year, now.month + 1), month_start(now.year, now.month + 2)),
        "LAST_90_DAYS": (today - 90 * day, today + day),
        "NEXT_90_DAYS": (today + day, today + 91 * day),
        "THIS_QUARTER": (month_start(now.year, q_month), month_start(now.year, q_month + 3)),
        "LAST_QUARTER": (month_start(now.year, q_month - 3), month_start(now.year, q_month)),
        "NEXT_QUARTER": (month_start(now.year, q_month + 3), month_start(now.year, q_month + 6)),
        "THIS_YEAR": (month_start(now.year, 1), month_start(now.year + 1, 1)),
        "LAST_YEAR": (month_start(now.year - 1, 1), month_start(now.year, 1)),
        "NEXT_YEAR": (month_start(now.year + 1, 1), month_start(now.year + 2, 1)),
    }
    for fiscal, calendar in (
        ("THIS_FISCAL_QUARTER", "THIS_QUARTER"),
        ("LAST_FISCAL_QUARTER", "LAST_QUARTER"),
        ("NEXT_FISCAL_QUARTER", "NEXT_QUARTER"),
        ("THIS_FISCAL_YEAR", "THIS_YEAR"),
        ("LAST_FISCAL_YEAR", "LAST_YEAR"),
        ("NEXT_FISCAL_YEAR", "NEXT_YEAR"),
    ):
        simple[fiscal] = simple[calendar]
    if n is None:
        return simple.get(name)
    if n < 0:
        return None
    q_start = month_start(now.year, q_month)
    with_n: dict[str, tuple[datetime, datetime]] = {
        "LAST_N_DAYS": (today - n * day, today + day),
        "NEXT_N_DAYS": (today + day, today + (n + 1) * day),
        "N_DAYS_AGO": (today - n * day, today - (n - 1) * day),
        "LAST_N_WEEKS": (week_start - 7 * n * day, week_start),
        "NEXT_N_WEEKS": (week_start + 7 * day, week_start + 7 * (n + 1) * day),
        "N_WEEKS_AGO": (week_start - 7 * n * day, week_start - 7 * (n - 1) * day),
        "LAST_N_MONTHS": (month_start(now.year, now.month - n), month_start(now.year, now.month)),
        "NEXT_N_MONTHS": (month_start(now.year, now.month + 1), month_start(now.year, now.month + 1 + n)),
        "N_MONTHS_AGO": (month_start(now.year, now.month - n), month_start(now.year, now.month - n + 1)),
        "LAST_N_QUARTERS": (month_start(q_start.year, q_start.month - 3 * n), q_start),
        "NEXT_N_QUARTERS": (
            month_start(q_start.year, q_start.month + 3),
            month_start(q_start.year, q_start.month + 3 + 3 * n),
        ),
        "N_QUARTERS_AGO": (
            month_start(q_start.year, q_start.month - 3 * n),
            month_start(q_start.year, q_start.month - 3 * n + 3),
        ),
        "LAST_N_YEARS": (month_start(now.year - n, 1), month_start(now.year, 1)),
        "NEXT_N_YEARS": (month_start(now.year + 1, 1), month_start(now.year + 1 + n, 1)),
        "N_YEARS_AGO": (month_start(now.year - n, 1), month_start(now.year - n + 1, 1)),
    }
    for fiscal, calendar in (
        ("LAST_N_FISCAL_QUARTERS", "LAST_N_QUARTERS"),
        ("NEXT_N_FISCAL_QUARTERS", "NEXT_N_QUARTERS"),
        ("N_FISCAL_QUARTERS_AGO", "N_QUARTERS_AGO"),
        ("LAST_N_FISCAL_YEARS", "LAST_N_YEARS"),
        ("NEXT_N_FISCAL_YEARS", "NEXT_N_YEARS"),
        ("N_FISCAL_YEARS_AGO", "N_YEARS_AGO"),
    ):
        with_n[fiscal] = with_n[calendar]
    return with_n.get(name)
