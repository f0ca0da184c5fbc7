"""Is the canceller's output still the replica's own voice? Correlate it with the reference.

AEC3 can diverge for a moment when the echo path jumps (a device or sound
server dropping samples, a laptop lid moving): its output then carries the
replica's voice, sometimes louder than the input, and the VAD would take it
for the user. Leaked echo is a delayed copy of the reference, so its
normalised cross-correlation with the reference is high at some lag; the
user's own voice is unrelated to it and scores low.

A canceller whose filter is misaligned (the echo path jumped) leaks echo it
has reshaped: the echo minus a shifted estimate, through its suppressor's
gains.  That output scores low against the reference, yet the VAD hears
speech in it, even 10-20 dB below the input.  So the microphone is scored
too: while it hears the replica alone (it correlates with the reference),
nothing the user said can be in the output, and the output is treated as
leaked echo whatever it looks like.  When the user talks, their voice
dominates the input and it correlates less within a few tens of ms.
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
        mic_window_s: float = 0.12,
        echo_alone: float = 0.85,
        audible_rms: float = 0.002,
    ) -> None:
        """``silent_ref``: a reference with no sample above this played nothing (the playout pads with zeros).

        ``echo_alone``: a microphone this correlated with the reference hears the replica alone
        (at 0.85 its echo is ~2.6x louder than everything else together, 4 dB).  In a reverberant room
        echo correlates less and this test stays quiet; AEC3 and the output's own score remain.
        ``audible_rms``: an output quieter than this (-54 dBFS) gives the VAD nothing to hear.
        """
        self.window = int(window_s * SOURCE_RATE)
        self.mic_window = int(mic_window_s * SOURCE_RATE)
        self.echo_alone, self.audible_rms = echo_alone, audible_rms
        self.max_lag = int(max_lag_s * SOURCE_RATE)
        self.threshold, self.floor_rms, self.silent_ref = threshold, floor_rms, silent_ref
        self.every = every_chunks
        self.hold_chunks = int(hold_s * 100)
        self._ref: deque[np.ndarray] = deque()
        self._ref_len = 0
        self._out: deque[np.ndarray] = deque()
        self._out_len = 0
        self._mic: deque[np.ndarray] = deque()
        self._mic_len = 0
        self._count = 0
        self._hold = 0
        self.last_score = 0.0
        self.last_mic_score = 0.0
        self.leaking_chunks = 0
        self.echo_alone_chunks = 0  # chunks flagged because the microphone heard the replica alone
        self._mic_echo_only = False
        self._mic_scored_at = -every_chunks

    def push(self, ref: np.ndarray, out: np.ndarray, mic: np.ndarray | None = None) -> bool:
        """One chunk: the reference given to the canceller, its output, and (optionally) its input."""
        self._ref_len = _append(self._ref, ref, self._ref_len, self.window + self.max_lag)
        self._out_len = _append(self._out, out, self._out_len, self.window)
        if mic is not None:
            self._mic_len = _append(self._mic, mic, self._mic_len, self.mic_window)
        self._count += 1
        due = self._count % self.every == 0 and self._out_len >= self.window
        if due and self.score() > self.threshold:
            self._hold = self.hold_chunks
        alone = mic is not None and self._hears_replica_alone(mic, out)
        self.echo_alone_chunks += alone
        leaking = alone or self._hold > 0
        self._hold = max(0, self._hold - 1)
        self.leaking_chunks += leaking
        return leaking

    def reset(self) -> None:
        """Forget the recent signals (the canceller was not run for a while: they no longer adjoin)."""
        if self._ref_len or self._hold or self._mic_len or self._mic_echo_only:
            self._ref.clear()
            self._out.clear()
            self._mic.clear()
            self._ref_len = self._out_len = self._mic_len = self._hold = 0
            self._mic_echo_only = False

    def score(self) -> float:
        """Peak normalised correlation of the recent output with the reference, 0 when quiet."""
        self.last_score = self._peak_ncc(np.concatenate(self._out)[-self.window :])
        return self.last_score

    def _hears_replica_alone(self, mic: np.ndarray, out: np.ndarray) -> bool:
        """The microphone hears the replica alone, and the output is loud enough for the VAD to hear.

        Scored at most every ``every`` chunks, and only while the output is
        audible: a converged canceller's output is not, so the FFTs run while
        AEC3 leaks or the user talks over the replica, not all the time.
        """
        if float(np.mean(np.square(mic, dtype=np.float64))) < self.floor_rms**2:
            self._mic_echo_only = False  # a quiet input: nothing to leak (AEC3's output is quieter still)
            return False
        if float(np.mean(np.square(out, dtype=np.float64))) < self.audible_rms**2:
            return False
        if self._mic_len >= self.mic_window and self._count - self._mic_scored_at >= self.every:
            self._mic_scored_at = self._count
            self.last_mic_score = self._peak_ncc(np.concatenate(self._mic)[-self.mic_window :])
            self._mic_echo_only = self.last_mic_score > self.echo_alone
        return self._mic_echo_only

    def _peak_ncc(self, signal: np.ndarray) -> float:
        """Peak normalised correlation of ``signal`` (the newest samples) with the reference, 0 when quiet."""
        sig = signal.astype(np.float64)
        n = len(sig)
        # Lags of 0..max_lag: the newest n + max_lag samples of the reference are all it needs.
        ref = np.concatenate(self._ref)[-(n + self.max_lag) :].astype(np.float64) if self._ref else np.zeros(0)
        quiet = float(np.sqrt(np.mean(sig**2))) < self.floor_rms
        # Nothing played in the window (listening, thinking): no echo to leak, and no FFTs beside the ASR.
        if quiet or len(ref) < n or not np.any(np.abs(ref) > self.silent_ref):
            return 0.0
        # sig[k] ~ ref[start + k - lag]: correlate with every reference window ending up to max_lag ago.
        # Only the lags where sig lies wholly inside ref are read, so a transform as long as ref has no
        # wrap-around in them (the microphone's score: 8192 points instead of 16384).
        size = 1 << int(np.ceil(np.log2(len(ref))))
        corr = np.fft.irfft(np.fft.rfft(ref, size) * np.conj(np.fft.rfft(sig, size)), size)[: len(ref) - n + 1]
        energy = np.concatenate([[0.0], np.cumsum(ref**2)])
        window_energy = energy[n:] - energy[: len(ref) - n + 1]
        ncc = np.abs(corr) / np.sqrt(np.maximum(window_energy, 1e-12) * float(np.sum(sig**2)))
        return float(np.max(ncc))


def _append(parts: deque[np.ndarray], chunk: np.ndarray, length: int, keep: int) -> int:
    parts.append(np.asarray(chunk, dtype=np.float32))
    length += len(chunk)
    while parts and length - len(parts[0]) >= keep:
        length -= len(parts.popleft())
    return length
