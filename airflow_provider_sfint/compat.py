"""Imports whose home moved between Airflow 3.1 (the floor) and 3.3."""

from __future__ import annotations

try:  # Airflow >= 3.2
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # Airflow 3.1
    from airflow.exceptions import AirflowFailException  # type: ignore[no-redef,attr-defined,unused-ignore]

try:
    from airflow.sdk.log import mask_secret
except ImportError:  # pragma: no cover - older task SDK layouts
    from airflow.sdk.execution_time.secrets_masker import mask_secret  # type: ignore[no-redef,unused-ignore]

__all__ = ["AirflowFailException", "mask_secret"]
