"""What the speaker played, and when it was heard: the echo canceller's reference.

Blocks arrive at the sink's rate with the time their first sample is heard;
they are resampled to 16 kHz as a stream and laid on a continuous time axis,
so any stretch can be read back by timestamp. A jump in the timestamps
(device restart, underrun) re-anchors the axis instead of smearing it.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from app.core.audio_io import SOURCE_RATE

KEEP_S = 5.0  # history kept (must exceed the largest echo delay we correct)
RESAMPLE_QUALITY = "QQ"  # cubic: no look-ahead latency (HQ holds back ~21 ms); ERLE measured the same
_REANCHOR_NS = 60_000_000  # callback jitter under load reaches tens of ms; a restart is more
SILENT = 1e-4  # a sample no louder than this played nothing (the playout pads with zeros)


class PlayoutHistory:
    """The last few seconds of playout at 16 kHz, indexed by when each sample is heard.

    Fed from the speaker thread (a ``PlayoutBuffer`` tap), read from the mic side.
    """

    def __init__(self, sink_rate: int) -> None:
        import soxr

        self.sink_rate = sink_rate
        self._soxr = soxr
        self._resampler = soxr.ResampleStream(sink_rate, SOURCE_RATE, 1, dtype="float32", quality=RESAMPLE_QUALITY)
        self._lock = threading.Lock()
        self._grew = threading.Condition(self._lock)
        self._last_tap = -1.0  # time.monotonic() of the last block; waiting only makes sense while live
        # A ring, written in place: the speaker taps every few ms, and copying five seconds of
        # history per block (64 MB/s at 5 ms blocks) ran beside the LLM in the window.
        self._ring = np.zeros(int(KEEP_S * SOURCE_RATE), dtype=np.float32)
        self._written = 0  # stream index one past the newest sample (the oldest kept: _written - len(_ring))
        self._t0_ns: int | None = None  # heard time of stream index 0
        self._in_samples = 0  # sink-rate samples consumed since t0
        self._last_sound_ns: int | None = None  # when the newest audible sample is heard
        self.reanchors = 0

    def tap(self, block: np.ndarray, heard_at_ns: int) -> None:
        with self._lock:
            if self._t0_ns is not None:
                expected = self._t0_ns + int(self._in_samples * 1e9 / self.sink_rate)
                if abs(heard_at_ns - expected) > _REANCHOR_NS:  # device restart or underrun: re-anchor
                    self._t0_ns = None
                    self.reanchors += 1
            if self._t0_ns is None:
                self._t0_ns, self._in_samples, self._written = heard_at_ns, 0, 0
                self._resampler = self._soxr.ResampleStream(
                    self.sink_rate, SOURCE_RATE, 1, dtype="float32", quality=RESAMPLE_QUALITY
                )
            self._in_samples += len(block)
            samples = self._resampler.resample_chunk(np.asarray(block, dtype=np.float32))
            audible = np.flatnonzero(np.abs(samples) > SILENT)
            if audible.size:
                self._last_sound_ns = self._t0_ns + int((self._written + audible[-1]) * 1e9 / SOURCE_RATE)
            self._append(samples)
            self._last_tap = time.monotonic()
            self._grew.notify_all()

    def _append(self, samples: np.ndarray) -> None:
        size = len(self._ring)
        samples = samples[-size:]
        at = self._written % size
        first = min(len(samples), size - at)
        self._ring[at : at + first] = samples[:first]
        self._ring[: len(samples) - first] = samples[first:]
        self._written += len(samples)

    def wait_for(self, end_ns: int, timeout_s: float) -> bool:
        """Block until playout heard up to ``end_ns`` has arrived; False on timeout or when not live.

        A speaker thread that is merely late (two busy cores) delivers within a
        few ms; one that has stopped, or an offline driver, never will.
        """
        deadline = time.monotonic() + timeout_s
        with self._grew:
            while not self._known_until(end_ns):
                left = deadline - time.monotonic()
                if left <= 0 or time.monotonic() - self._last_tap > 0.2:
                    return False
                self._grew.wait(left)
            return True

    def quiet(self, start_ns: int, end_ns: int) -> bool:
        """Nothing audible is heard from ``start_ns`` to ``end_ns``, and the playout is known that far."""
        with self._lock:
            heard = self._last_sound_ns
            return self._known_until(end_ns) and (heard is None or heard < start_ns)

    def _known_until(self, end_ns: int) -> bool:
        if self._t0_ns is None:
            return False
        return round((end_ns - self._t0_ns) * SOURCE_RATE / 1e9) <= self._written

    def read(self, t_ns: int, n: int) -> tuple[np.ndarray, bool]:
        """``n`` samples heard from ``t_ns`` on (zeros where unknown), and whether all were known."""
        with self._lock:
            if self._t0_ns is None:
                return np.zeros(n, dtype=np.float32), False
            first = round((t_ns - self._t0_ns) * SOURCE_RATE / 1e9)  # stream index
            out = np.zeros(n, dtype=np.float32)
            size = len(self._ring)
            lo, hi = max(first, self._written - size, 0), min(first + n, self._written)
            if hi > lo:
                at = lo % size
                first_part = min(hi - lo, size - at)
                out[lo - first : lo - first + first_part] = self._ring[at : at + first_part]
                out[lo - first + first_part : hi - first] = self._ring[: hi - lo - first_part]
            return out, first + n <= self._written
