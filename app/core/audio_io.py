"""Audio in and audio out behind one interface each, plus the playout clock.

Sources push 16 kHz mono float32 blocks with the capture time of their first
sample.  Sinks play ``SpeechChunk`` audio through a ``PlayoutBuffer`` and
report, for every chunk, when its first sample was actually played: that is
the clock the replica's lips follow and the end of every latency measurement.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from app.core.audio import read_audio, write_wav
from app.core.events import now_ns

SOURCE_RATE = 16_000
BLOCK = 512  # 32 ms, one VAD frame

FramesCallback = Callable[[np.ndarray, int], None]


class AudioSource(Protocol):
    name: str

    def start(self, on_frames: FramesCallback) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class PlayTag:
    turn_id: int
    chunk_index: int


class PlayoutListener(Protocol):
    def on_chunk_started(self, tag: PlayTag, t_ns: int) -> None: ...

    def on_chunk_finished(self, tag: PlayTag, t_ns: int) -> None: ...


class AudioSink(Protocol):
    name: str
    sample_rate: int

    def start(self, listener: PlayoutListener) -> None: ...

    def play(self, audio: np.ndarray, tag: PlayTag) -> int:
        """Queue audio; returns the monotonic time its first sample will be heard."""
        ...

    def clear(self) -> int:
        """Drop all queued audio; returns the time the output falls silent."""
        ...

    def duck(self, on: bool) -> int:
        """Mute the output (queued audio runs on unheard) or unmute it; returns when that is heard."""
        ...

    def hold(self, on: bool) -> int:
        """Pause the output where it is (the queue keeps its place) or resume it; returns when that is heard."""
        ...

    def played_samples(self, tag: PlayTag) -> int: ...

    def stop(self) -> None: ...


class PlayoutBuffer:
    """Thread-safe queue of tagged audio that a real-time consumer pulls from."""

    def __init__(self, sample_rate: int, latency_ns: int = 0) -> None:
        self.sample_rate = sample_rate
        self.latency_ns = latency_ns  # device buffer: time from pull to hearing
        self._queue: deque[tuple[PlayTag, np.ndarray]] = deque()
        self._offset = 0  # samples of the head item already pulled
        self._played: dict[PlayTag, int] = {}
        self._lock = threading.Lock()
        self._ducked = False
        self._held = False
        self.listener: PlayoutListener | None = None
        # Called with every pulled block and when it is heard (echo cancellers use it as reference).
        self.taps: list[Callable[[np.ndarray, int], None]] = []

    def push(self, audio: np.ndarray, tag: PlayTag) -> int:
        with self._lock:
            queued = sum(len(a) for _, a in self._queue) - self._offset
            self._queue.append((tag, np.asarray(audio, dtype=np.float32)))
            self._played.setdefault(tag, 0)
        return now_ns() + self.latency_ns + int(queued * 1e9 / self.sample_rate)

    def clear(self) -> int:
        with self._lock:
            self._queue.clear()
            self._offset = 0
        return now_ns() + self.latency_ns

    def duck(self, on: bool) -> int:
        """While ducked, queued audio keeps its pace (lips stay in sync) but is not heard."""
        with self._lock:
            self._ducked = on
        return now_ns() + self.latency_ns

    def hold(self, on: bool) -> int:
        """While held, nothing is pulled from the queue: the reply waits at the sample it reached.

        A listener's "mm-hmm" pauses the replica this way, and the reply resumes
        where it stopped; ``duck`` instead lets the audio run on unheard.
        """
        with self._lock:
            self._held = on
        return now_ns() + self.latency_ns

    def played_samples(self, tag: PlayTag) -> int:
        with self._lock:
            return self._played.get(tag, 0)

    @property
    def busy(self) -> bool:
        with self._lock:
            return bool(self._queue)

    def pull(self, n: int, heard_at_ns: int) -> np.ndarray:
        """Next ``n`` samples (zeros where nothing is queued), heard at ``heard_at_ns``."""
        # A paced consumer may pull late; a sample cannot be heard before it was pulled.
        heard_at_ns = max(heard_at_ns, now_ns() + self.latency_ns)
        out = np.zeros(n, dtype=np.float32)
        started: list[tuple[PlayTag, int]] = []
        finished: list[tuple[PlayTag, int]] = []
        pos = 0
        with self._lock:
            while pos < n and self._queue and not self._held:
                tag, audio = self._queue[0]
                if self._offset == 0:
                    started.append((tag, heard_at_ns + int(pos * 1e9 / self.sample_rate)))
                take = min(n - pos, len(audio) - self._offset)
                out[pos : pos + take] = audio[self._offset : self._offset + take]
                pos += take
                self._offset += take
                self._played[tag] = self._played.get(tag, 0) + take
                if self._offset >= len(audio):
                    self._queue.popleft()
                    self._offset = 0
                    finished.append((tag, heard_at_ns + int(pos * 1e9 / self.sample_rate)))
            if self._ducked:
                out[:] = 0.0
        for tap in self.taps:
            tap(out, heard_at_ns)
        if self.listener is not None:
            for tag, t in started:
                self.listener.on_chunk_started(tag, t)
            for tag, t in finished:
                self.listener.on_chunk_finished(tag, t)
        return out


class BufferedSink:
    """The ``AudioSink`` calls that any sink built on a ``PlayoutBuffer`` answers the same way."""

    buffer: PlayoutBuffer

    def play(self, audio: np.ndarray, tag: PlayTag) -> int:
        return self.buffer.push(audio, tag)

    def clear(self) -> int:
        return self.buffer.clear()

    def duck(self, on: bool) -> int:
        return self.buffer.duck(on)

    def hold(self, on: bool) -> int:
        return self.buffer.hold(on)

    def played_samples(self, tag: PlayTag) -> int:
        return self.buffer.played_samples(tag)


class PacedThread:
    """Calls ``step(n_samples, t_first_ns)`` each time ``block`` samples are due, at real-time pace.

    A sound card works in blocks: a microphone hands over each block once it
    has been captured, a speaker asks for the next one as the last goes out.
    The stand-ins keep that cadence instead of polling every few ms: on a
    virtual machine each wake-up costs ~0.1-0.3 ms of CPU beside the LLM
    (docs/cpu-plan.md). A late thread catches up with every whole block that
    fell due.
    """

    def __init__(self, name: str, rate: int, block: int, step: Callable[[int, int], None]) -> None:
        self._rate, self._block, self._step = rate, block, step
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        start = time.perf_counter_ns()
        done = 0
        while not self._stop.is_set():
            due = (time.perf_counter_ns() - start) * self._rate // 1_000_000_000
            whole = (due - done) // self._block * self._block
            if whole > 0:
                self._step(whole, start + done * 1_000_000_000 // self._rate)
                done += whole
            next_ns = start + (done + self._block) * 1_000_000_000 // self._rate
            self._stop.wait(max(0.0, (next_ns - time.perf_counter_ns()) / 1e9))

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)


class BlockConverter:
    """Any capture format in, the pipeline's 16 kHz mono 32 ms blocks out.

    A microphone that cannot capture 16 kHz mono (a 48 kHz stereo USB
    interface, an 8 kHz headset) is opened at its own rate; this downmixes,
    resamples (streaming soxr, no clicks at block edges) and re-blocks, and
    stamps each output block with the capture time of its first sample.
    """

    def __init__(self, rate: int, channels: int) -> None:
        import soxr

        self.rate, self.channels = rate, channels
        self._resampler = None if rate == SOURCE_RATE else soxr.ResampleStream(rate, SOURCE_RATE, 1, dtype="float32")
        self._carry = np.zeros(0, dtype=np.float32)

    def push(self, block: np.ndarray, t_ns: int) -> list[tuple[np.ndarray, int]]:
        """``block`` is (frames,) or (frames, channels) captured from ``t_ns`` on."""
        data = np.asarray(block, dtype=np.float32)
        mono = data.mean(axis=1) if data.ndim == 2 else data.reshape(-1)
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(mono)
        first_t = t_ns - int(len(self._carry) * 1e9 / SOURCE_RATE)
        data = np.concatenate([self._carry, mono.astype(np.float32, copy=False)])
        whole = len(data) // BLOCK * BLOCK
        self._carry = data[whole:].copy()
        return [(data[i : i + BLOCK].copy(), first_t + int(i * 1e9 / SOURCE_RATE)) for i in range(0, whole, BLOCK)]


@dataclass
class SourceItem:
    """One utterance a file source plays, optionally waiting for a condition first."""

    audio: np.ndarray  # 16 kHz float32
    wait_for: Callable[[], bool] | None = None  # polled; the item starts once it returns True
    delay_s: float = 0.0  # extra silence after the condition holds
    label: str = ""


class FileSource:
    """Plays utterances at real-time pace in 32 ms blocks, with silence in between.

    Like a microphone it never stops on its own: after the last item it keeps
    sending silence until ``stop()``, so the VAD can close the turn.
    ``voice_spans_ns`` records when each item's audio started and ended on
    the monotonic clock (the true speech boundaries, known from the file).
    """

    name = "file"

    def __init__(self, items: list[SourceItem], lead_in_s: float = 0.3) -> None:
        self.items = list(items)
        self.lead_in_s = lead_in_s
        self.voice_spans_ns: list[tuple[int, int]] = []
        self.finished = threading.Event()
        self._pending = np.zeros(0, dtype=np.float32)
        self._index = -1
        self._waiting_since: float | None = None
        self._silence_left = int(lead_in_s * SOURCE_RATE)
        self._on_frames: FramesCallback | None = None
        self._carry = np.zeros(0, dtype=np.float32)
        self._pacer = PacedThread("audio-source", SOURCE_RATE, BLOCK, self._step)

    @classmethod
    def from_wavs(cls, paths: list[Path], wait_between: Callable[[], bool] | None = None) -> FileSource:
        items = [
            SourceItem(read_audio(p, SOURCE_RATE)[0], wait_between if i else None, 0.5, str(p))
            for i, p in enumerate(paths)
        ]
        return cls(items)

    def start(self, on_frames: FramesCallback) -> None:
        self._on_frames = on_frames
        self._pacer.start()

    def stop(self) -> None:
        self._pacer.stop()

    def _next_samples(self, n: int, t_ns: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.float32)
        pos = 0
        while pos < n:
            if len(self._pending):
                take = min(n - pos, len(self._pending))
                out[pos : pos + take] = self._pending[:take]
                self._pending = self._pending[take:]
                pos += take
                if not len(self._pending):
                    start, _ = self.voice_spans_ns[-1]
                    self.voice_spans_ns[-1] = (start, t_ns + int(pos * 1e9 / SOURCE_RATE))
                continue
            if self._silence_left > 0:
                take = min(n - pos, self._silence_left)
                self._silence_left -= take
                pos += take
                continue
            if not self._advance(t_ns + int(pos * 1e9 / SOURCE_RATE)):
                break
        return out

    def _advance(self, t_ns: int) -> bool:
        """Start the next item if its condition holds; False means 'silence for now'."""
        nxt = self._index + 1
        if nxt >= len(self.items):
            self.finished.set()
            return False
        item = self.items[nxt]
        if item.wait_for is not None and not item.wait_for():
            return False
        if item.delay_s and self._waiting_since is None:
            self._waiting_since = 1.0
            self._silence_left = int(item.delay_s * SOURCE_RATE)
            return True
        self._waiting_since = None
        self._index = nxt
        self._pending = item.audio
        self.voice_spans_ns.append((t_ns, t_ns))
        return True

    def _step(self, n: int, t_ns: int) -> None:
        data = np.concatenate([self._carry, self._next_samples(n, t_ns)])
        whole = len(data) // BLOCK * BLOCK
        first_t = t_ns - int(len(self._carry) * 1e9 / SOURCE_RATE)
        for i in range(0, whole, BLOCK):
            if self._on_frames is not None:
                self._on_frames(data[i : i + BLOCK], first_t + int(i * 1e9 / SOURCE_RATE))
        self._carry = data[whole:]


class WavWriterSink(BufferedSink):
    """A speaker stand-in: consumes audio at real-time pace and writes the session to a WAV.

    The file is time-aligned with the session (silence included), so what it
    holds is exactly what a listener would have heard, and when.
    """

    name = "wav"

    def __init__(self, path: Path | None, sample_rate: int = 22_050) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self.buffer = PlayoutBuffer(sample_rate)
        self._blocks: list[np.ndarray] = []
        self._pacer = PacedThread("audio-sink", sample_rate, BLOCK, self._step)  # as SpeakerSink asks PortAudio

    def start(self, listener: PlayoutListener) -> None:
        self.buffer.listener = listener
        self._pacer.start()

    def _step(self, n: int, t_ns: int) -> None:
        block = self.buffer.pull(n, t_ns)
        if self.path is not None:
            self._blocks.append(block)

    def recorded(self) -> np.ndarray:
        return np.concatenate(self._blocks) if self._blocks else np.zeros(0, dtype=np.float32)

    def stop(self) -> None:
        self._pacer.stop()
        if self.path is not None:
            write_wav(self.path, self.recorded(), self.sample_rate)
