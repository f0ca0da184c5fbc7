"""Per-thread priority on Linux: lower a thread's (never raise it back), and read it for tests and the bench."""

from __future__ import annotations

import os


def lower_thread_priority(tid: int, by: int) -> bool:
    """Raise one thread's nice value by ``by`` (Linux: per-thread); False where the OS does not allow it."""
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + by))
        return True
    except (AttributeError, OSError):
        return False


def thread_nice(tid: int) -> int | None:
    """A thread's nice value, read from /proc (None where there is no /proc)."""
    try:
        with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return int(fields[16])  # field 19 of stat: nice
    except (OSError, IndexError, ValueError):
        return None
