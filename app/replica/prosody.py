"""Head and brow motion from how a sentence is spoken: nods on stress, brows up for questions, blinks at pauses.

A face that only moves its lips looks dubbed. Speakers nod slightly and lift
their brows on the syllables they stress, raise them toward the end of a
question, and tend to blink at the pauses between phrases. Piper's phonemes
say where the stress marks (ˈ) and the punctuation pauses are; the loudness
says which stresses are strong enough to move the head. Tracks are sampled
every STEP_S like the mouth's and are immutable once built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.core.engines import SpeechChunk
from app.replica.visemes import STEP_S, VOWELS, loudness, smooth

_SENTENCE_END = frozenset(".?!;:")
_MIN_BLINK_GAP_S = 1.2  # no two pause blinks closer than this


@dataclass(frozen=True)
class Prosody:
    nod: np.ndarray  # 0..1: the head dips (down, then back) around stressed syllables
    brow: np.ndarray  # 0..1: brows raised
    blinks: tuple[float, ...]  # seconds from the chunk's start when a blink should begin
    duration_s: float

    def sample(self, t_s: float) -> tuple[float, float]:
        """(nod, brow) at t; rest outside the chunk."""
        if t_s < 0.0 or t_s >= self.duration_s or self.nod.size == 0:
            return 0.0, 0.0
        i = min(int(t_s / STEP_S), self.nod.size - 1)
        return float(self.nod[i]), float(self.brow[i])


def build_prosody(chunk: SpeechChunk) -> Prosody:
    sr = chunk.sample_rate
    duration = len(chunk.audio) / sr if sr else 0.0
    n = max(int(np.ceil(duration / STEP_S)), 1)
    env = smooth(loudness(chunk.audio, sr, n), 0.01)
    stress = np.zeros(n)
    blinks: list[float] = []
    pending_stress = False
    for p in chunk.phonemes:
        a = min(round(p.start / (sr * STEP_S)), n - 1)
        b = min(max(round((p.start + p.length) / (sr * STEP_S)), a + 1), n)
        if p.phoneme == "ˈ":
            pending_stress = True
        elif pending_stress and p.phoneme in VOWELS:
            # Only the louder stresses move the head: a nod on every syllable looks mechanical.
            stress[a:b] = np.clip((env[a:b].max() - 0.55) / 0.35, 0.0, 1.0)
            pending_stress = False
        elif p.phoneme in _SENTENCE_END or (p.phoneme == "," and p.length / sr >= 0.1):
            at = p.start / sr
            if not blinks or at - blinks[-1] >= _MIN_BLINK_GAP_S:
                blinks.append(at)
    nod = np.clip(smooth(stress, 0.07) * 2.2, 0.0, 1.0)
    brow = 0.6 * nod
    marks = [p.phoneme for p in chunk.phonemes if p.phoneme in _SENTENCE_END]
    if marks and marks[-1] == "?":
        # A question lifts the brows over its last 0.8 s and holds them to its end.
        t = np.arange(n) * STEP_S
        voiced = np.nonzero(env > 0.1)[0]
        end = (voiced[-1] if voiced.size else n - 1) * STEP_S
        brow = np.maximum(brow, np.clip((t - (end - 0.8)) / 0.5, 0.0, 1.0))
    return Prosody(nod, np.clip(smooth(brow, 0.05), 0.0, 1.0), tuple(blinks), duration)
