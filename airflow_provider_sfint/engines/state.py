"""Where an engine keeps its progress between tries of a task: a small key -> JSON-value interface.

An engine records, before each step that cannot be undone, what it is about to do and what it did (the intent
to create a job, the job's id, an upload, a committed part, the final summary). A later try reads it back and
resumes instead of starting over. Three stores satisfy :class:`StateStore`:

- Airflow 3.3's ``task_state_store`` (the operators hand it in as it is: it has ``get``, ``set`` and ``delete``);
- :class:`FileStateStore`: one small JSON document per task instance on any path (local, ``s3://``, ``gs://``...),
  replaced whole on every change, for Airflow 3.1 and 3.2 (which have no ``task_state_store``) and for scripts;
- :class:`MemoryStateStore`: progress within one process only (nothing survives a crash).

Values must be JSON: dicts, lists, strings, numbers, booleans and None.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from typing import Any, Protocol

from ..client.arrowio import local_path


class StateStore(Protocol):
    """What an engine needs from a store: read, write and delete one key. ``get`` returns None when unset."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...

    def delete(self, key: str) -> None: ...


class MemoryStateStore:
    """Progress kept in this process only: an engine run from a script, or a task with no durable store."""

    durable = False

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        value = self._values.get(key)
        return None if value is None else json.loads(value)

    def set(self, key: str, value: Any) -> None:
        self._values[key] = json.dumps(value)  # the same JSON-only rule as the durable stores

    def delete(self, key: str) -> None:
        self._values.pop(key, None)


class FileStateStore:
    """One task instance's progress as one JSON document at ``path`` (a local path, or an
    ``ObjectStoragePath``/UPath on an object store).

    The document is replaced whole on every change, never edited in place: on a local disk through a temporary
    file and ``os.replace`` (atomic on POSIX), on an object store with a single PUT (an object appears whole or
    not at all). One task instance writes it at a time (Airflow runs one try of a task instance at once), so
    the copy read at the first access is kept in memory and written through.
    """

    durable = True

    def __init__(self, path: Any) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._values: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._values is None:
            try:
                with (
                    self.path.open("r", encoding="utf-8")
                    if hasattr(self.path, "open")
                    else open(self.path, encoding="utf-8") as handle
                ):
                    document = json.load(handle)
            except FileNotFoundError:
                document = {}
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"the task's saved progress at {self.path} is not JSON ({exc}); it was not written by this "
                    "provider, or was edited by hand. Delete it to start the task afresh"
                ) from exc
            self._values = dict(document.get("values", {})) if isinstance(document, dict) else {}
        return self._values

    def get(self, key: str) -> Any:
        with self._lock:
            return self._load().get(key)

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            values = self._load()
            values[key] = json.loads(json.dumps(value))  # a copy, and the JSON-only rule checked here
            self._write(values)

    def delete(self, key: str) -> None:
        with self._lock:
            values = self._load()
            if key in values:
                del values[key]
                self._write(values)

    def _write(self, values: dict[str, Any]) -> None:
        text = json.dumps({"updated": datetime.now(UTC).isoformat(), "values": values}, sort_keys=True)
        local = local_path(self.path)
        if local is not None:
            folder = os.path.dirname(local) or "."
            os.makedirs(folder, exist_ok=True)
            temporary = os.path.join(folder, f".{os.path.basename(local)}.sfint-tmp")  # one per document
            try:
                with open(temporary, "w", encoding="utf-8") as out:
                    out.write(text)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, local)
            except BaseException:
                if os.path.exists(temporary):
                    os.unlink(temporary)
                raise
            return
        with self.path.open("w", encoding="utf-8") as out:  # one PUT when the handle closes
            out.write(text)
