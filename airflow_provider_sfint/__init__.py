"""Apache Airflow provider for Salesforce (Bulk API 2.0, Composite, REST) with a bundled emulator."""

__version__ = "0.1.0"
