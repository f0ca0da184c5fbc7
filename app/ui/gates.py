"""Audio endpoints the conversation keeps for its whole life, while devices come and go.

The conversation is given one source and one sink when it is built.  These
wrappers are that source and sink: the device behind them can be swapped
(re-picked, unplugged), and the microphone can be gated (mute, push-to-talk,
nobody in front of the camera) without touching the core.  A closed gate
sends silence rather than nothing, so the VAD sees the user stop and closes
the turn cleanly.  No Qt here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum

import numpy as np

from app.core.audio_io import AudioSink, AudioSource, FramesCallback, PlayoutListener, PlayTag, WavWriterSink


class MicMode(StrEnum):
    HANDS_FREE = "hands_free"
    PUSH_TO_TALK = "push_to_talk"


class MicGate:
    """An ``AudioSource`` that forwards a swappable device's frames, zeroed while the gate is closed."""

    name = "mic"

    def __init__(self, stall_s: float = 2.0) -> None:
        self.mode = MicMode.HANDS_FREE
        self.muted = False
        self.talk_pressed = False  # push-to-talk key held
        self.away = False  # nobody in front of the camera (hands-free pauses)
        self.stall_s = stall_s
        self.frames_in = 0
        self._inner: AudioSource | None = None
        self._on_frames: FramesCallback | None = None
        self._last_frame = 0.0
        self._lock = threading.Lock()

    @property
    def device(self) -> AudioSource | None:
        return self._inner

    @property
    def is_open(self) -> bool:
        """True when the user's voice currently reaches the conversation."""
        if self.muted or self._inner is None:
            return False
        if self.mode is MicMode.PUSH_TO_TALK:
            return self.talk_pressed
        return not self.away

    def start(self, on_frames: FramesCallback) -> None:
        with self._lock:
            self._on_frames = on_frames
            inner = self._inner
        if inner is not None:
            self._start_inner(inner)

    def stop(self) -> None:
        """Stop and let go of the device (a stopped device may not start again)."""
        with self._lock:
            inner, self._on_frames, self._inner = self._inner, None, None
        if inner is not None:
            inner.stop()

    def attach(self, source: AudioSource | None) -> None:
        """Swap the device (None: no microphone); raises what the new device's ``start`` raises."""
        with self._lock:
            old, self._inner = self._inner, source
            running = self._on_frames is not None
        if old is not None:
            old.stop()
        if source is not None and running:
            try:
                self._start_inner(source)
            except Exception:
                with self._lock:
                    if self._inner is source:
                        self._inner = None
                raise

    def _start_inner(self, source: AudioSource) -> None:
        self._last_frame = time.monotonic()
        source.start(lambda frame, t_ns, src=source: self._deliver(src, frame, t_ns))

    def _deliver(self, source: AudioSource, frame: np.ndarray, t_ns: int) -> None:
        with self._lock:
            on_frames = self._on_frames if source is self._inner else None
        if on_frames is None:
            return  # a late frame from a device we already let go of
        self._last_frame = time.monotonic()
        self.frames_in += 1
        on_frames(frame if self.is_open else np.zeros_like(frame), t_ns)

    def stalled(self) -> bool:
        """True when a running device has sent nothing for ``stall_s`` (unplugged, driver gone)."""
        return (
            self._inner is not None
            and self._on_frames is not None
            and time.monotonic() - self._last_frame > self.stall_s
        )


class _TapHub:
    """Looks like a ``PlayoutBuffer`` to taps: they survive a device swap."""

    def __init__(self) -> None:
        self.taps: list[Callable[[np.ndarray, int], None]] = []


class SpeakerSwitch:
    """An ``AudioSink`` whose device can be swapped; with no device, a silent stand-in keeps time.

    The stand-in consumes audio at real-time pace, so the replica's lips still
    move with the (unheard) reply and turns end when they would have.
    """

    name = "speaker"

    def __init__(self, sample_rate: int, stall_s: float = 2.0) -> None:
        self.sample_rate = sample_rate
        self.stall_s = stall_s
        self._inner: AudioSink = WavWriterSink(None, sample_rate)
        self.silent = True
        self._listener: PlayoutListener | None = None
        self._last_pull = time.monotonic()
        self._watched = False  # the device's buffer reports pulls, so a stall can be seen
        self._lock = threading.Lock()
        self.buffer = _TapHub()  # what is played, whichever device plays it (echo canceller reference)

    @property
    def device(self) -> AudioSink | None:
        return None if self.silent else self._inner

    def start(self, listener: PlayoutListener) -> None:
        self._listener = listener
        self._start_inner(self._inner)

    def attach(self, sink: AudioSink | None) -> None:
        """Swap the device (None: silent); if the new one fails to start, fall back to silent and re-raise."""
        if sink is not None and sink.sample_rate != self.sample_rate:
            raise ValueError(f"speaker runs at {sink.sample_rate} Hz, the voice at {self.sample_rate} Hz")
        new = sink if sink is not None else WavWriterSink(None, self.sample_rate)
        with self._lock:
            old, self._inner, self.silent = self._inner, new, sink is None
        old.stop()
        if self._listener is None:
            return
        try:
            self._start_inner(new)
        except Exception:
            self.attach(None)
            raise

    def _start_inner(self, sink: AudioSink) -> None:
        self._last_pull = time.monotonic()
        buffer = getattr(sink, "buffer", None)
        self._watched = buffer is not None and hasattr(buffer, "taps")
        if self._watched:
            buffer.taps.append(self._tap)  # type: ignore[union-attr]
        assert self._listener is not None
        sink.start(self._listener)

    def _tap(self, block: np.ndarray, t_ns: int) -> None:
        self._last_pull = time.monotonic()
        for tap in self.buffer.taps:
            tap(block, t_ns)

    def play(self, audio: np.ndarray, tag: PlayTag) -> int:
        with self._lock:
            return self._inner.play(audio, tag)

    def clear(self) -> int:
        with self._lock:
            return self._inner.clear()

    def duck(self, on: bool) -> int:
        with self._lock:
            return self._inner.duck(on)

    def hold(self, on: bool) -> int:
        with self._lock:
            return self._inner.hold(on)

    def played_samples(self, tag: PlayTag) -> int:
        with self._lock:
            return self._inner.played_samples(tag)

    def stop(self) -> None:
        with self._lock:
            inner = self._inner
        inner.stop()
        self._listener = None

    def stalled(self) -> bool:
        """True when a real device has not asked for audio for ``stall_s`` (its stream died)."""
        if self.silent or not self._watched or self._listener is None:
            return False
        return time.monotonic() - self._last_pull > self.stall_s
