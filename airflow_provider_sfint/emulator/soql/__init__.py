"""SOQL parsing and compilation to SQLite."""

from .compiler import CompiledQuery, SoqlError, compile_soql, relative_range

__all__ = ["CompiledQuery", "SoqlError", "compile_soql", "relative_range"]
