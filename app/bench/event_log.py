"""Every event of a bench session, indexed by type and turn, and a way to wait for the next one that matters.

The bench's own thread runs beside the LLM it measures, and each of its
wake-ups costs that LLM (docs/cpu-plan.md), so it waits on these events
instead of polling.
"""

from __future__ import annotations

import threading
from typing import Any

from app.core import events as ev

# The bench waits on the events that can end its waits, and looks anyway at this interval (for a state
# no event announces). Each wake-up beside the measured LLM costs it (docs/cpu-plan.md): polling every
# 25 ms woke the bench's thread 40 times a second.
_LOOK_S = 0.25
# Events after which the bench looks again: turns starting and ending, the first audio, the reply done.
_WAKING = (ev.ControlEvent, ev.AudioPlayed, ev.LlmDone)


class EventLog:
    """Every event of the session, indexed by type and turn (first occurrence wins for marks)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.first: dict[tuple[type, int], ev.Event] = {}
        self.last: dict[tuple[type, int], ev.Event] = {}
        self.barge_ins: list[ev.BargeIn] = []
        self.errors: list[ev.ErrorEvent] = []
        self.max_turn = 0
        self.seq = 0  # counts the events that may end a wait of the bench's
        self._changed = threading.Condition(self._lock)

    def __call__(self, event: ev.Event) -> None:
        with self._lock:
            key = (type(event), event.turn_id)
            self.first.setdefault(key, event)
            self.last[key] = event
            if isinstance(event, _WAKING) and not isinstance(event, ev.TurnMetrics):
                self.seq += 1
                self._changed.notify_all()
            if isinstance(event, ev.SpeechStarted):
                self.max_turn = max(self.max_turn, event.turn_id)
            elif isinstance(event, ev.BargeIn):
                self.barge_ins.append(event)
            elif isinstance(event, ev.ErrorEvent):
                self.errors.append(event)

    def get(self, kind: type, turn_id: int, last: bool = False) -> Any:
        with self._lock:
            return (self.last if last else self.first).get((kind, turn_id))

    def wait_after(self, seen: int, seconds: float) -> None:
        """Until an event newer than ``seen`` (a ``seq``) arrives, or ``seconds`` pass (at most ``_LOOK_S``)."""
        with self._changed:
            self._changed.wait_for(lambda: self.seq != seen, timeout=min(max(0.0, seconds), _LOOK_S))
