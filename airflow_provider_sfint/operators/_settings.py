"""What the operators share: the wait settings, and where failed rows go."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from airflow.providers.common.compat.sdk import TaskDeferred

from ..client.bulk2 import job_link
from ..client.errors import BulkJobError, PermanentError
from ..compat import AirflowFailException
from ..engines.ingest import IngestEngine
from ..lineage import file_dataset, salesforce_dataset
from ..links import JOB_URL_ATTR, announce_job


def check_waiting(poll_interval: float, timeout: float | None, min_remaining_api_percent: float | None) -> None:
    """Raise ValueError naming the setting that cannot work."""
    if float(poll_interval) <= 0:
        raise ValueError(f"poll_interval must be positive seconds, got {poll_interval}")
    if timeout is not None and float(timeout) <= 0:
        raise ValueError(f"timeout must be positive seconds or None, got {timeout}")
    if min_remaining_api_percent is not None and not 0 <= float(min_remaining_api_percent) < 100:
        raise ValueError(f"min_remaining_api_percent must be in [0, 100), got {min_remaining_api_percent}")


def failed_rows_path(target: Any) -> Any:
    """Where failed rows go, as a path the engines write to (``str`` and URLs become ObjectStoragePaths)."""
    if target is None or target == "":
        return None
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    return target if isinstance(target, ObjectStoragePath) else ObjectStoragePath(str(target))


def job_announcer(operator: Any, context: Any) -> Callable[[int, str, bool], None]:
    """The engine's ``on_job`` callback: the first part's job becomes the task's "Salesforce job" link (pushed
    to XCom when created; linked again when a retried or resumed try re-attaches to it)."""
    login = operator.hook.client.login()

    def on_job(index: int, job_id: str, created: bool) -> None:
        if index != 0:
            return
        if created:
            announce_job(operator, context, job_link(login, job_id), job_id)
        else:
            setattr(operator, JOB_URL_ATTR, job_link(login, job_id))

    return on_job


@contextmanager
def engine_run(engine: IngestEngine) -> Iterator[None]:
    """Run an engine step: on a failure, Open jobs are aborted (none is left open), and a failure that a retry
    cannot mend (bad input, the failure threshold, a job that failed) fails the task without retrying; the
    engine's spool is removed either way. A deferral passes through untouched."""
    try:
        yield
    except TaskDeferred:
        raise
    except Exception as exc:
        engine.abort_open_jobs()
        if isinstance(exc, PermanentError | BulkJobError):
            raise AirflowFailException(str(exc)) from exc
        raise
    finally:
        engine.close()


def record_ingest_lineage(operator: Any, engine: IngestEngine, source: Any) -> None:
    """Lineage of a load: the source file (when it is one) into the object's fields."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    assert engine.plan is not None
    operator._record_lineage(
        [file_dataset(source, engine.source_schema)] if isinstance(source, str | ObjectStoragePath) else [],
        [
            salesforce_dataset(
                operator.hook.client.login(), engine.settings.object, [(c.name, c.sf_type) for c in engine.plan.columns]
            )
        ],
    )
