"""A Salesforce-compatible server for tests, demos and users' own DAG tests.

Self-contained: it imports nothing from the provider's client or Airflow code.
Start it with ``sfint-emulator`` or ``python -m airflow_provider_sfint.emulator``; embed it in a
test with :class:`EmulatorServer`.
"""

from .app import ADMIN_USERNAME, CLIENT_ID, CLIENT_SECRET, DEFAULT_REFRESH_TOKEN, Emulator
from .server import EmulatorProcess, EmulatorServer

__all__ = [
    "ADMIN_USERNAME",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "DEFAULT_REFRESH_TOKEN",
    "Emulator",
    "EmulatorProcess",
    "EmulatorServer",
]
