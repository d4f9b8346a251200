"""Triggers: the triggerer only waits; every read and write of data happens on the worker."""
