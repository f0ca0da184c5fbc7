"""Per-turn cancel handle: one object every stage of a turn checks between chunks."""

from __future__ import annotations

import threading


class Cancelled(Exception):
    """Raised inside a stage when its turn was cancelled."""


class CancelToken:
    """Cooperative cancellation for one turn (barge-in, stop, shutdown).

    A bare boolean is not enough: waiters need to wake up, and the reason is
    logged with the turn.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled(self.reason)

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep up to ``timeout`` seconds; True if cancelled meanwhile."""
        return self._event.wait(timeout)


NEVER_CANCELLED = CancelToken()
