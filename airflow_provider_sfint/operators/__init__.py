"""Operators: thin glue from parameters and context to client calls."""
