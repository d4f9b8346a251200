"""How long a task's saved progress lives: exactly one logical execution of the task instance.

Airflow 3.3's ``task_state_store`` keeps values across tries *and* across clears, backfill re-processing and
re-runs. The operators' rule is stricter:

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


def first_try_of_execution(context: Any, retries: int | None) -> bool:
    """True when this try starts a new logical execution (see the module docstring); False for a retry, and
    when the task instance does not say (a hand-made context in a test: treated as a retry, never discarding)."""
    ti = context.get("ti")
    try_number = getattr(ti, "try_number", None)
    max_tries = getattr(ti, "max_tries", None)
    if not isinstance(try_number, int) or not isinstance(max_tries, int) or max_tries < 0:
        return False
    return try_number == max_tries - int(retries or 0) + 1


def start_execution(context: Any, retries: int | None, keys: tuple[str, ...], log: Any) -> Any:
    """The task state store, emptied of ``keys`` when this try starts a new logical execution; None without one."""
    store = context.get("task_state_store")
    if store is None:
        return None
    if first_try_of_execution(context, retries):
        stale = [key for key in keys if store.get(key) is not None]
        for key in stale:
            store.delete(key)
        if stale:
            log.info("a new run of this task: progress saved by an earlier run (%s) is not used", ", ".join(stale))
    return store
