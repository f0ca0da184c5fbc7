"""A turn's outward effects (events, audio), held back while the turn is speculative.

A reply can be started at the user's first silent frame, before the VAD is
sure the turn is over.  Everything it would show or play is queued here; if
the user stays quiet the outbox opens and replays the queue in order, with the
events' original timestamps; if they go on speaking it is discarded unseen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Outbox:
    """Runs effects now when open, queues them while held, drops them once discarded."""

    def __init__(self, held: bool = False) -> None:
        self._lock = threading.RLock()  # re-entrant: an effect may queue another
        self._held = held
        self._discarded = False
        self._queue: list[Callable[[], None]] = []

    @property
    def held(self) -> bool:
        with self._lock:
            return self._held

    def run(self, effect: Callable[[], None]) -> None:
        """Do ``effect`` now, or later when the outbox opens, or never if it is discarded."""
        with self._lock:
            if self._discarded:
                return
            if self._held:
                self._queue.append(effect)
                return
            effect()

    def open(self) -> None:
        """Replay what was queued, in order; later effects run directly."""
        with self._lock:
            if self._discarded or not self._held:
                return
            self._held = False
            queue, self._queue = self._queue, []
            for effect in queue:
                effect()

    def discard(self) -> None:
        with self._lock:
            self._discarded = True
            self._queue.clear()
