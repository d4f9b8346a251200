"""Where a task keeps its progress, and how long it lives: exactly one logical execution of the task instance.

The store (an :class:`~airflow_provider_sfint.engines.state.StateStore`):

- ``[sfint] state_path`` (``AIRFLOW__SFINT__STATE_PATH``) set: one JSON document per task instance under that
  ObjectStoragePath (``file://``, ``s3://<conn_id>@bucket/...``), on every Airflow version. This is what gives
  Airflow 3.1 and 3.2, which have no ``task_state_store``, the same crash-and-resume guarantees as 3.3;
- else Airflow 3.3's ``task_state_store``;
- else none: progress lives in the process (a retry starts over; the docs say what that means per operator).

Airflow's ``task_state_store`` keeps values across tries *and* across clears, backfill re-processing and re-runs;
a state file is keyed by the run, which a clear keeps. The operators' rule is stricter:

- a **retry** (a try after a failed or killed one, including after a kill that came after the work was done but
  before Airflow recorded success) resumes from what the earlier try saved, or returns the summary it recorded;
- the **first try of a logical execution** (the run's first try, or the first after ``airflow tasks clear``,
  ``backfill --reprocess-behavior``, a UI clear) starts afresh: nothing saved by an earlier execution is used.

Airflow sets ``max_tries = try_number + retries`` when it clears a task instance (and ``max_tries = retries`` when
it creates one), so the first try of an execution is the one whose ``try_number`` is ``max_tries - retries + 1``.
A task instance cleared while running becomes a retry of its execution (Airflow does not reset ``max_tries``
then), which is what it is.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow.providers.common.compat.sdk import ObjectStoragePath, conf

from ..engines.state import FileStateStore, StateStore

STATE_PATH_OPTION = ("sfint", "state_path")


def first_try_of_execution(context: Any, retries: int | None) -> bool:
    """True when this try starts a new logical execution (see the module docstring); False for a retry, and
    when the task instance does not say (a hand-made context in a test: treated as a retry, never discarding)."""
    ti = context.get("ti")
    try_number = getattr(ti, "try_number", None)
    max_tries = getattr(ti, "max_tries", None)
    if not isinstance(try_number, int) or not isinstance(max_tries, int) or max_tries < 0:
        return False
    return try_number == max_tries - int(retries or 0) + 1


def state_file(root: str, context: Any) -> Any:
    """The state document of the context's task instance under ``root``: ``<dag>/<task>/<run>[.<map>].json``."""
    ti = context.get("ti")
    dag_id = getattr(ti, "dag_id", None) or "dag"
    task_id = getattr(ti, "task_id", None) or "task"
    run_id = getattr(ti, "run_id", None) or str(context.get("run_id") or "run")
    map_index = getattr(ti, "map_index", -1)
    name = quote(str(run_id), safe="") + (f".{map_index}" if isinstance(map_index, int) and map_index >= 0 else "")
    return ObjectStoragePath(root.rstrip("/")) / quote(dag_id, safe="") / quote(task_id, safe="") / f"{name}.json"


def task_store(context: Any) -> StateStore | None:
    """The store for this task instance's progress (see the module docstring), or None. An operator run outside
    Airflow (``execute({})`` in a script) has no task instance, so no state file."""
    root = conf.get(*STATE_PATH_OPTION, fallback="") or ""
    if root.strip() and context.get("ti") is not None:  # a task instance to name the document after
        return FileStateStore(state_file(root.strip(), context))
    store = context.get("task_state_store")
    return store if store is not None else None


def start_execution(context: Any, retries: int | None, keys: tuple[str, ...], log: Any) -> StateStore | None:
    """The task's store (:func:`task_store`), emptied of ``keys`` when this try starts a new logical execution;
    None without one."""
    store = task_store(context)
    if store is None:
        return None
    if first_try_of_execution(context, retries):
        stale = [key for key in keys if store.get(key) is not None]
        for key in stale:
            store.delete(key)
        if stale:
            log.info("a new run of this task: progress saved by an earlier run (%s) is not used", ", ".join(stale))
    return store
