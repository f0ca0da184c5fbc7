"""A guard against a PySide6 build that under-counts references to None (and True/False).

PySide6/shiboken6 6.12.0 wheels (abi3) return ``None`` from every void method
without a new reference, which is only correct on Python >= 3.12, where None
is immortal.  On Python 3.11 each such call (``painter.setPen``,
``widget.update``...) takes one reference from None, and after a few thousand
calls the interpreter aborts with "deallocating None".  The probe below
detects that behaviour; when present, the singletons get a reference count
so large it can never reach zero -- what Python 3.12 does by design.
The real fix is a PySide6 that is not affected (<6.12 or a later fix) or Python >= 3.12.
"""

from __future__ import annotations

import ctypes
import sys

_SINGLETONS = (None, True, False, NotImplemented, Ellipsis)
_MARGIN = 1 << 60


def void_calls_leak_none() -> bool:
    """True when a void Qt call takes a reference from None (the broken build)."""
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False
    from PySide6.QtCore import QPoint

    point = QPoint()
    before = sys.getrefcount(None)
    for i in range(200):
        point.setX(i)
    return before - sys.getrefcount(None) >= 150


def guard_refcounts() -> bool:
    """Make None, True and False effectively immortal if this PySide6 needs it; True if it did."""
    if not void_calls_leak_none():
        return False
    for obj in _SINGLETONS:
        refcnt = ctypes.c_ssize_t.from_address(id(obj))
        if refcnt.value < _MARGIN:
            refcnt.value += _MARGIN
    return True
