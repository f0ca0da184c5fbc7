"""Give freed heap memory back to the operating system between turns.

glibc keeps memory that engines free (prompt buffers, audio arrays, decoder scratch)
in per-thread arenas and rarely returns it, so a long conversation's resident size
ratchets up with each turn's largest temporary. ``malloc_trim`` hands the free pages
back; it runs after a turn, while the user is thinking, and costs a few milliseconds.
Elsewhere (macOS, Windows, musl) it does nothing.  Before it, a full garbage collection
frees the turn's objects caught in reference cycles (a turn and its callbacks): Python
only collects its oldest generation now and then, so their audio arrays otherwise
lingered and resident memory swung by ~40 MB from one turn to the next (~17 ms here).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from collections.abc import Callable
from functools import cache


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory(collect_cycles: bool = True) -> bool:
    """Return free heap pages to the OS; True when the allocator could do it."""
    if collect_cycles:
        gc.collect()
    trim = _malloc_trim()
    return bool(trim is not None and trim(0))
