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

TOKEN_BATCH_NS = 50_000_000  # streamed text reaches the GUI at most 20 times a second


class EventBridge(QObject):
    """Core events in (any thread), Qt signals out (GUI thread).

    Streamed tokens are batched: a token is sent on once 50 ms have passed
    since the last batch, and any other event sends the waiting text first, so
    the order of what the GUI sees is kept.  One signal per token woke the GUI
    thread ~100 times a second beside the decoding LLM, and each wake-up costs
    it (docs/cpu-plan.md); the transcript only repaints every 66 ms anyway.
    """

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
        self._lock = threading.RLock()  # keeps batches and the events after them in order
        self._batch: list[str] = []
        self._batch_turn = 0
        self._sent_ns = 0

    def attach(self, bus: EventBus) -> None:
        """Follow this bus (and stop following the previous one)."""
        self.detach()
        self._unsubscribe = bus.subscribe(self.publish)

    def detach(self) -> None:
        self.flush()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def publish(self, event: ev.Event) -> None:
        """Bus subscriber: runs on the publishing thread and only emits."""
        with self._lock:
            if isinstance(event, ev.LlmToken):
                self._add_token(event)
            else:
                self._send_batch()
                self._emit(event)

    def _add_token(self, event: ev.LlmToken) -> None:
        if self._batch and event.turn_id != self._batch_turn:
            self._send_batch()
        self._batch.append(event.text)
        self._batch_turn = event.turn_id
        if event.t_ns - self._sent_ns >= TOKEN_BATCH_NS:
            self._send_batch()
            self._sent_ns = event.t_ns
        self.event.emit(event)

    def _send_batch(self) -> None:
        if self._batch:
            text, self._batch = "".join(self._batch), []
            self.token.emit(self._batch_turn, text)

    def flush(self) -> None:
        """Send any streamed text still waiting (the conversation went quiet mid-reply)."""
        with self._lock:
            self._send_batch()

    def _emit(self, event: ev.Event) -> None:
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
