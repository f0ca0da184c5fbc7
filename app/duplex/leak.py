"""Is the canceller's output still the replica's own voice? Correlate it with the reference.

AEC3 can diverge for a moment when the echo path jumps (a device or sound
server dropping samples, a laptop lid moving): its output then carries the
replica's voice, sometimes louder than the input, and the VAD would take it
for the user. Leaked echo is a delayed copy of the reference, so its
normalised cross-correlation with the reference is high at some lag; the
user's own voice is unrelated to it and scores low.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from app.core.audio_io import SOURCE_RATE


class LeakDetector:
    """Fed every 10 ms chunk (reference given to AEC3, AEC3 output); says whether echo leaks."""

    def __init__(
        self,
        window_s: float = 0.25,
        max_lag_s: float = 0.3,
        threshold: float = 0.5,
        floor_rms: float = 0.004,
        every_chunks: int = 3,
        hold_s: float = 0.15,
        silent_ref: float = 1e-4,
    ) -> None:
        """``silent_ref``: a reference with no sample above this played nothing (the playout pads with zeros)."""
        self.window = int(window_s * SOURCE_RATE)
        self.max_lag = int(max_lag_s * SOURCE_RATE)
        self.threshold, self.floor_rms, self.silent_ref = threshold, floor_rms, silent_ref
        self.every = every_chunks
        self.hold_chunks = int(hold_s * 100)
        self._ref: deque[np.ndarray] = deque()
        self._ref_len = 0
        self._out: deque[np.ndarray] = deque()
        self._out_len = 0
        self._count = 0
        self._hold = 0
        self.last_score = 0.0
        self.leaking_chunks = 0

    def push(self, ref: np.ndarray, out: np.ndarray) -> bool:
        self._ref_len = _append(self._ref, ref, self._ref_len, self.window + self.max_lag)
        self._out_len = _append(self._out, out, self._out_len, self.window)
        self._count += 1
        due = self._count % self.every == 0 and self._out_len >= self.window
        if due and self.score() > self.threshold:
            self._hold = self.hold_chunks
        leaking = self._hold > 0
        self._hold = max(0, self._hold - 1)
        self.leaking_chunks += leaking
        return leaking

    def reset(self) -> None:
        """Forget the recent signals (the canceller was not run for a while: they no longer adjoin)."""
        if self._ref_len or self._hold:
            self._ref.clear()
            self._out.clear()
            self._ref_len = self._out_len = self._hold = 0

    def score(self) -> float:
        """Peak normalised correlation of the recent output with the reference, 0 when quiet."""
        out = np.concatenate(self._out)[-self.window :].astype(np.float64)
        ref = np.concatenate(self._ref).astype(np.float64)
        quiet = float(np.sqrt(np.mean(out**2))) < self.floor_rms
        # Nothing played in the window (listening, thinking): no echo to leak, and no FFTs beside the ASR.
        if quiet or len(ref) < self.window or not np.any(np.abs(ref) > self.silent_ref):
            self.last_score = 0.0
            return 0.0
        # out[n] ~ ref[start + n - lag]: correlate the output with every reference window ending up to max_lag ago.
        size = 1 << int(np.ceil(np.log2(len(ref) + self.window)))
        corr = np.fft.irfft(np.fft.rfft(ref, size) * np.conj(np.fft.rfft(out, size)), size)[
            : len(ref) - self.window + 1
        ]
        energy = np.concatenate([[0.0], np.cumsum(ref**2)])
        window_energy = energy[self.window :] - energy[: len(ref) - self.window + 1]
        ncc = np.abs(corr) / np.sqrt(np.maximum(window_energy, 1e-12) * float(np.sum(out**2)))
        self.last_score = float(np.max(ncc))
        return self.last_score


def _append(parts: deque[np.ndarray], chunk: np.ndarray, length: int, keep: int) -> int:
    parts.append(np.asarray(chunk, dtype=np.float32))
    length += len(chunk)
    while parts and length - len(parts[0]) >= keep:
        length -= len(parts.popleft())
    return length
