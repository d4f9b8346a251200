"""Tabular I/O between Salesforce's Bulk CSV and Arrow, one concern per module:

- :mod:`.types`: describe fields -> Arrow types (``ColumnResolver``);
- :mod:`.parsing`: Bulk CSV pages -> typed tables as their chunks arrive (``CsvParser``), text-only CSV reading;
- :mod:`.writers`: Parquet/CSV/JSONL writers and query outputs committed only when complete (``QueryOutput``);
- :mod:`.ingest`: input sources, column planning and value checks against describe, CSV serialisation with
  the null policy, and splitting into upload parts (``plan_ingest``, ``PartSplitter``).
"""

from .ingest import (
    NULL_POLICIES,
    SET_NULL,
    SOURCE_SUFFIXES,
    IngestColumn,
    IngestPlan,
    PartSplitter,
    UploadPart,
    check_values,
    csv_header,
    csv_rows,
    csv_text,
    iter_source,
    plan_ingest,
    source_files,
)
from .parsing import CsvParser, header_names, read_text_csv, text_csv_options
from .records import RecordConverter
from .types import ColumnResolver, Describer, arrow_type
from .writers import FORMATS, STAGING_PREFIX, SUCCESS_MARKER, OutputPath, Part, QueryOutput, local_path, open_writer

__all__ = [
    "FORMATS",
    "NULL_POLICIES",
    "SET_NULL",
    "SOURCE_SUFFIXES",
    "STAGING_PREFIX",
    "SUCCESS_MARKER",
    "ColumnResolver",
    "CsvParser",
    "Describer",
    "IngestColumn",
    "IngestPlan",
    "OutputPath",
    "Part",
    "PartSplitter",
    "QueryOutput",
    "RecordConverter",
    "UploadPart",
    "arrow_type",
    "check_values",
    "csv_header",
    "csv_rows",
    "csv_text",
    "header_names",
    "iter_source",
    "local_path",
    "open_writer",
    "plan_ingest",
    "read_text_csv",
    "source_files",
    "text_csv_options",
]
