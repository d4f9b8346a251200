"""Reliability suite: fixtures shared with the operator tests."""

from __future__ import annotations

from ..operators.conftest import conn, load_dag  # noqa: F401  (a fixture and a helper)
