"""Reliability suite: fixtures shared with the operator tests."""

from __future__ import annotations

from ..operators.conftest import airflow_db, conn, load_dag  # noqa: F401  (fixtures and helper)
