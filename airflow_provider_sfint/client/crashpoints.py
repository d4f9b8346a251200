"""Named crash points: places between two state transitions where a test can kill the process outright.

Each engine calls :func:`crash_point` at every transition that matters for exactly-once (a job created, its id
recorded, an upload sent, a part committed, a summary recorded...). Unarmed, a call reads one environment
variable and returns. Armed, it SIGKILLs the current process, as the kernel's OOM killer or a lost node would:
no ``finally``, no ``on_kill``, no clean-up.

Arm with the environment of the process that runs the task:

- ``SFINT_CRASH_AT``: a point's name (``query.output_committed``), or several separated by commas;
- ``SFINT_CRASH_LEDGER``: a file counting the kills so far (required: the retry must get past the point);
- ``SFINT_CRASH_TIMES``: how many times in a row to kill there (default 1: the retry runs through).

``tests/reliability/test_crash_points.py`` finds every ``crash_point("...")`` in the package and kills a real
task at each of them.
"""

from __future__ import annotations

import os
import signal

ARM = "SFINT_CRASH_AT"
LEDGER = "SFINT_CRASH_LEDGER"
TIMES = "SFINT_CRASH_TIMES"


def crash_point(name: str) -> None:
    """Die here (SIGKILL) when ``name`` is armed and has not yet killed ``SFINT_CRASH_TIMES`` processes."""
    armed = os.environ.get(ARM)
    if not armed or name not in armed.split(","):
        return
    ledger = os.environ.get(LEDGER)
    if not ledger:
        raise RuntimeError(f"{ARM}={armed} needs {LEDGER} (a file that counts the kills)")
    with open(ledger, "a+", encoding="utf-8") as handle:
        handle.seek(0)
        kills = [line for line in handle.read().splitlines() if line == name]
        if len(kills) >= int(os.environ.get(TIMES, "1")):
            return
        handle.write(name + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.kill(os.getpid(), signal.SIGKILL)
