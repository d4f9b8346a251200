"""Sensors: wait for Salesforce state without holding a worker slot (reschedule or deferrable)."""
