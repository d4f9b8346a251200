"""Where an incremental query's window comes from, on every timetable Airflow 3 has.

Airflow 3 gives ``schedule="@daily"`` (and every cron expression) the trigger timetable: each run's data
interval is zero-length (start == end == the logical date). Manual and asset-triggered runs may have no
logical date, hence no data interval at all. The window is therefore derived as follows, first match wins:

1. ``window_start`` / ``window_end`` when given (templated overrides, for full refreshes and history loads);
2. the end: the run's ``data_interval_end``, else its logical date, else its ``run_after``;
3. the start: the run's ``data_interval_start`` when the interval is not empty (``CronDataIntervalTimetable``,
   ``create_cron_data_intervals``), and the DAG has run successfully before (or no ``initial_window_start``
   is given);
4. else the end of the previous successful DAG run's window (Airflow's ``prev_data_interval_end_success``:
   the latest successful run with an earlier logical date), so consecutive runs tile, a retry queries the
   same window, and a failed run's window is covered again by the next run (an overlap, never a gap);
5. else, on the first run, ``initial_window_start``; without it the task fails and says what to set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..compat import AirflowFailException

#: XCom key under which the query operator records the window it queried.
WINDOW_XCOM_KEY = "sfint_window"


@dataclass(frozen=True)
class Window:
    """A half-open ``[start, end)`` window and where its start came from (logged and in the summary)."""

    start: datetime
    end: datetime
    source: str

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "source": self.source}

    @classmethod
    def from_dict(cls, value: dict[str, str]) -> Window:
        return cls(datetime.fromisoformat(value["start"]), datetime.fromisoformat(value["end"]), value["source"])


def parse_bound(name: str, value: Any) -> datetime | None:
    """A templated window bound: None or "" means unset; otherwise an aware datetime or ISO 8601 text."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise AirflowFailException(
                f"{name}={value!r} is not an ISO 8601 datetime (for example 2024-01-01T00:00:00+00:00)"
            ) from None
    if parsed.tzinfo is None:
        raise AirflowFailException(f"{name}={value!r} has no UTC offset; add one (+00:00 or Z)")
    return parsed


def _aware(value: Any) -> datetime | None:
    """A context datetime (pendulum, stdlib or a lazy proxy around either) as a stdlib datetime, or None."""
    if value is None:
        return None
    try:
        if not value:  # an unresolved lazy proxy of None is falsy
            return None
    except TypeError:
        pass
    if not isinstance(value, datetime):
        return None
    return datetime.fromisoformat(value.isoformat())


def _run_end(context: Any) -> datetime | None:
    """The data interval's end, else the logical date, else when the run was due (``run_after``)."""
    for key in ("data_interval_end", "logical_date"):
        value = _aware(context.get(key))
        if value is not None:
            return value
    return _aware(getattr(context.get("dag_run"), "run_after", None))


def resolve_window(
    context: Any,
    *,
    task: str,
    field: str,
    window_start: Any = None,
    window_end: Any = None,
    initial_window_start: Any = None,
) -> Window:
    """The window this run queries; see the module docstring for the rules."""
    end = parse_bound("window_end", window_end)
    if end is None:
        end = _run_end(context)
    if end is None:
        raise AirflowFailException(
            f"{task}: incremental_field={field!r} needs a window end, and this run has no data interval, "
            "logical date or run_after; set window_end (templated, ISO 8601 with offset)"
        )
    start = parse_bound("window_start", window_start)
    source = "window_start"
    if start is None:
        initial = parse_bound("initial_window_start", initial_window_start)
        interval_start = _aware(context.get("data_interval_start"))
        interval = interval_start is not None and interval_start < end
        # The previous success is asked for only where it decides something (it costs an API call).
        previous = _aware(context.get("prev_data_interval_end_success")) if initial or not interval else None
        if interval_start is not None and interval and (previous is not None or initial is None):
            start, source = interval_start, "data interval"
        elif previous is not None:
            start, source = previous, "previous successful run"
        elif initial is not None:
            start, source = initial, "initial_window_start (first run)"
        else:
            raise AirflowFailException(
                f"{task}: incremental_field={field!r}: this run's data interval is empty (Airflow 3's default "
                "timetable for a cron schedule such as '@daily' gives zero-length intervals; manual and "
                "asset-triggered runs may have none) and the DAG has no earlier successful run to continue "
                "from. Set initial_window_start (for example '2000-01-01T00:00:00+00:00' to load the history on "
                "the first run), or window_start; or schedule with CronDataIntervalTimetable"
            )
    if end <= start:
        raise AirflowFailException(
            f"{task}: incremental_field={field!r}: the window is empty: end {end.isoformat()} <= start "
            f"{start.isoformat()} (start from the {source}). A run whose logical date is not after the "
            "previous successful run's has nothing of its own to load: trigger it with a later logical date, "
            "or set window_start/window_end explicitly"
        )
    return Window(start, end, source)
