"""Mouth shapes over time for one chunk of speech, from Piper's phonemes.

Each phoneme gets a target (how open, how wide, how rounded, whether the lips
must close); targets are smoothed across neighbours (coarticulation), lips are
forced shut on m/b/p, and the opening is scaled by the audio's loudness so
stressed syllables open wider. Without phoneme timing the loudness alone
drives the jaw. Tracks are sampled every 10 ms and are immutable once built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.core.engines import SpeechChunk

STEP_S = 0.010  # track resolution

# phoneme -> (open, spread, round); open is jaw+lips, 0 closed .. 1 wide "a".
_VOWELS = {
    "a": (1.0, 0.2, 0.0), "ɑ": (1.0, 0.0, 0.1), "æ": (0.9, 0.5, 0.0), "ɐ": (0.75, 0.1, 0.0),
    "ʌ": (0.7, 0.1, 0.0), "ə": (0.5, 0.1, 0.0), "ɚ": (0.45, 0.0, 0.35), "ɜ": (0.55, 0.1, 0.2),
    "ɛ": (0.62, 0.6, 0.0), "e": (0.55, 0.7, 0.0), "ɪ": (0.38, 0.8, 0.0), "i": (0.3, 1.0, 0.0),
    "ᵻ": (0.35, 0.6, 0.0), "o": (0.6, 0.0, 0.8), "ɔ": (0.75, 0.0, 0.6), "ɒ": (0.85, 0.0, 0.4),
    "ʊ": (0.35, 0.0, 0.9), "u": (0.3, 0.0, 1.0),
}  # fmt: skip
VOWELS = frozenset(_VOWELS)
_CONSONANTS = {
    "m": (0.0, 0.0, 0.0), "b": (0.0, 0.0, 0.0), "p": (0.0, 0.0, 0.0),
    "f": (0.1, 0.2, 0.0), "v": (0.1, 0.2, 0.0), "θ": (0.34, 0.2, 0.0), "ð": (0.3, 0.2, 0.0),
    "t": (0.2, 0.3, 0.0), "d": (0.2, 0.3, 0.0), "n": (0.2, 0.3, 0.0), "l": (0.28, 0.2, 0.0),
    "s": (0.12, 0.5, 0.0), "z": (0.12, 0.5, 0.0), "ɾ": (0.25, 0.2, 0.0), "ʔ": (0.1, 0.0, 0.0),
    "ʃ": (0.15, 0.0, 0.6), "ʒ": (0.15, 0.0, 0.6), "k": (0.3, 0.1, 0.0), "ɡ": (0.3, 0.1, 0.0),
    "g": (0.3, 0.1, 0.0), "ŋ": (0.25, 0.1, 0.0), "h": (0.4, 0.0, 0.0), "j": (0.2, 0.6, 0.0),
    "w": (0.12, 0.0, 1.0), "ɹ": (0.2, 0.0, 0.5), "r": (0.2, 0.0, 0.5), "x": (0.3, 0.0, 0.0),
}  # fmt: skip
# The tongue's tip shows behind the upper teeth on dental and alveolar consonants (when the mouth is open).
_TONGUE_TIP = {"θ": 1.0, "ð": 1.0, "l": 1.0, "t": 0.8, "d": 0.8, "n": 0.8, "ɾ": 0.7}
_BILABIAL = frozenset("mbp")
_LABIODENTAL = frozenset("fv")
_ATTACH_NEXT = frozenset("ˈˌ")  # stress marks: part of the vowel that follows
_ATTACH_PREV = frozenset("ːˑ")  # length marks: part of the vowel before
_REST = (0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class MouthTrack:
    """open/spread/round/tongue sampled every STEP_S from the chunk's first sample."""

    open: np.ndarray
    spread: np.ndarray
    round: np.ndarray
    duration_s: float
    tongue: np.ndarray | None = None  # tongue tip raised (0..1); None: never

    def sample(self, t_s: float) -> tuple[float, float, float, float]:
        """(open, spread, round, tongue) by linear interpolation; rest outside the chunk."""
        if t_s < 0.0 or t_s >= self.duration_s:
            return _REST
        pos = t_s / STEP_S
        i = min(int(pos), len(self.open) - 1)
        j = min(i + 1, len(self.open) - 1)
        f = pos - i
        rows = (self.open, self.spread, self.round, self.tongue if self.tongue is not None else self.round * 0)
        return tuple(float(a[i] + (a[j] - a[i]) * f) for a in rows)  # type: ignore[return-value]


def loudness(audio: np.ndarray, sample_rate: int, n: int) -> np.ndarray:
    """RMS in 20 ms windows centred on each 10 ms step, normalised to ~1 at loud vowels."""
    hop = sample_rate * STEP_S
    win = int(sample_rate * 0.02)
    sq = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    centres = ((np.arange(n) + 0.5) * hop).astype(int)
    lo = np.clip(centres - win // 2, 0, len(audio))
    hi = np.clip(centres + win // 2, 0, len(audio))
    rms = np.sqrt((sq[hi] - sq[lo]) / np.maximum(hi - lo, 1))
    ref = np.percentile(rms, 95) if rms.size else 0.0
    return np.clip(rms / ref, 0.0, 1.3) if ref > 1e-4 else np.zeros(n)


def smooth(x: np.ndarray, sigma_s: float) -> np.ndarray:
    """Zero-phase Gaussian smoothing: no lag, so the mouth stays on the audio."""
    radius = int(np.ceil(3 * sigma_s / STEP_S))
    if radius < 1 or x.size == 0:
        return x
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) * STEP_S / sigma_s) ** 2)
    k /= k.sum()
    padded = np.pad(x, radius, mode="constant")
    return np.convolve(padded, k, mode="valid")


def build_track(chunk: SpeechChunk) -> MouthTrack:
    """The mouth animation for one chunk (phoneme-driven, or envelope-driven without timing)."""
    sr = chunk.sample_rate
    duration = len(chunk.audio) / sr if sr else 0.0
    n = max(int(np.ceil(duration / STEP_S)), 1)
    env = smooth(loudness(chunk.audio, sr, n), 0.01)
    if not chunk.phonemes:
        gate = np.clip((env - 0.08) / 0.75, 0.0, 1.0) ** 0.8
        return MouthTrack(smooth(gate, 0.03), np.zeros(n), np.zeros(n), duration)

    target = np.zeros((3, n))
    tip = np.zeros(n)
    closure = np.zeros(n)
    known = np.zeros(n, bool)
    for symbol, a, b in _spans(chunk, n):
        tip[a:b] = _TONGUE_TIP.get(symbol, 0.0)
        if symbol in _BILABIAL or symbol in _LABIODENTAL:
            closure[a:b] = 1.0 if symbol in _BILABIAL else 0.5
        shape = _VOWELS.get(symbol) or _CONSONANTS.get(symbol)
        if shape is None:
            if symbol == " " and b - a <= 8:
                continue  # short word gap: let neighbours blend across it
            shape = (0.0, 0.0, 0.0)  # pauses, punctuation, ^ $
        target[:, a:b] = np.array(shape)[:, None]
        known[a:b] = True
    if known.any() and not known.all():
        idx = np.arange(n)
        for row in target:
            row[~known] = np.interp(idx[~known], idx[known], row[known])

    open_ = smooth(target[0], 0.03)
    spread, round_ = (smooth(row, 0.025) for row in target[1:])  # lip shape leads less than the jaw
    # Lips shut on m/b/p even though smoothing would blur a 40 ms closure away.
    shut = np.clip(1.8 * smooth(closure, 0.012), 0.0, 1.0)
    gain = 0.1 + 1.0 * np.clip(env, 0.0, 1.0)
    open_ = np.clip(open_ * gain * (1.0 - shut), 0.0, 1.0)
    return MouthTrack(open_, spread * (1.0 - 0.5 * shut), round_, duration, smooth(tip, 0.02))


def _spans(chunk: SpeechChunk, n: int) -> list[tuple[str, int, int]]:
    """(symbol, first step, end step) with stress/length marks merged into their vowel."""
    raw = [(p.phoneme, p.start, p.start + p.length) for p in chunk.phonemes if p.length > 0]
    merged: list[list] = []
    pending_start: int | None = None
    for symbol, start, end in raw:
        if symbol in _ATTACH_NEXT:
            pending_start = start if pending_start is None else pending_start
            continue
        if symbol in _ATTACH_PREV and merged:
            merged[-1][2] = end
            continue
        merged.append([symbol, start if pending_start is None else pending_start, end])
        pending_start = None
    hop = chunk.sample_rate * STEP_S
    out = []
    for symbol, start, end in merged:
        a = min(round(start / hop), n)
        b = min(max(round(end / hop), a + 1), n)
        out.append((symbol, a, b))
    return out
