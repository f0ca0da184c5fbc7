"""The one place core events and replica frames cross into the GUI thread.

``EventBridge`` subscribes to a conversation's EventBus and re-emits every
event as a Qt signal.  The bridge lives on the GUI thread and events are
published on worker threads, so Qt queues each emission to the GUI thread:
widgets never see a worker thread.  Typed signals spare each widget its own
dispatch on event types.

``FrameBridge`` does the same for video (replica frames, camera preview) but
holds only the newest frame: if the GUI is behind, older frames are
dropped, never queued.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.core import events as ev
from app.core.bus import EventBus


class EventBridge(QObject):
    """Core events in (any thread), Qt signals out (GUI thread)."""

    event = Signal(object)  # every event, for anything that wants the raw stream
    state_changed = Signal(str)  # AgentState value
    user_said = Signal(int, str, bool)  # turn id, text, spoken (False: typed)
    user_speaking = Signal(int)  # voice onset: the user has the floor
    token = Signal(int, str)  # turn id, streamed LLM text
    reply_finished = Signal(int, str)  # turn id, the reply as heard
    interrupted = Signal(int)
    metrics = Signal(int, dict)  # turn id, TurnMetrics values
    error = Signal(str, str)  # source, message

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._unsubscribe: Callable[[], None] | None = None

    def attach(self, bus: EventBus) -> None:
        """Follow this bus (and stop following the previous one)."""
        self.detach()
        self._unsubscribe = bus.subscribe(self.publish)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def publish(self, event: ev.Event) -> None:
        """Bus subscriber: runs on the publishing thread and only emits."""
        self.event.emit(event)
        match event:
            case ev.StateChanged(state=state):
                self.state_changed.emit(state.value)
            case ev.UserText(text=text):
                self.user_said.emit(event.turn_id, text, False)
            case ev.TranscriptFinal(text=text):
                self.user_said.emit(event.turn_id, text, True)
            case ev.SpeechStarted():
                self.user_speaking.emit(event.turn_id)
            case ev.LlmToken(text=text):
                self.token.emit(event.turn_id, text)
            case ev.ReplyText(text=text):
                self.reply_finished.emit(event.turn_id, text)
            case ev.TurnInterrupted():
                self.interrupted.emit(event.turn_id)
            case ev.TurnMetrics(values=values):
                self.metrics.emit(event.turn_id, dict(values))
            case ev.ErrorEvent(source=source, message=message):
                self.error.emit(source, message)


class FrameBridge(QObject):
    """Latest-frame mailbox: ``push`` from any thread, ``take`` on the GUI thread.

    At most one ``ready`` signal is in flight; a frame pushed while one is
    pending replaces the waiting frame (counted in ``dropped``).
    """

    ready = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._latest: Any = None
        self._pending = False
        self.pushed = 0
        self.dropped = 0

    def push(self, frame: Any) -> None:
        with self._lock:
            self.pushed += 1
            if self._latest is not None:
                self.dropped += 1
            self._latest = frame
            notify = not self._pending
            self._pending = True
        if notify:
            self.ready.emit()

    def take(self) -> Any:
        with self._lock:
            frame, self._latest = self._latest, None
            self._pending = False
        return frame
