"""Settings every Bulk operator shares: how it waits, and how much of the API allowance it may start with."""

from __future__ import annotations


def check_waiting(poll_interval: float, timeout: float | None, min_remaining_api_percent: float | None) -> None:
    """Raise ValueError naming the setting that cannot work."""
    if float(poll_interval) <= 0:
        raise ValueError(f"poll_interval must be positive seconds, got {poll_interval}")
    if timeout is not None and float(timeout) <= 0:
        raise ValueError(f"timeout must be positive seconds or None, got {timeout}")
    if min_remaining_api_percent is not None and not 0 <= float(min_remaining_api_percent) < 100:
        raise ValueError(f"min_remaining_api_percent must be in [0, 100), got {min_remaining_api_percent}")
