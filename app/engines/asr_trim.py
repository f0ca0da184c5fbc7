"""The recognisers' front end: the same words give the same samples, wherever the turn began.

The listener hands over its frames from a pre-roll before the VAD's onset to
the first silent frame after the voice.  Where in those 32 ms frames the voice
starts depends on the microphone's phase and on the VAD's state, so the same
recording arrived with 0.2-0.5 s of lead silence, different every turn, and
both recognisers heard it differently (Moonshine changed its words on 8 of 12
repeated questions, Whisper on 4; docs/asr.md).  Cutting the audio at the
voice itself, with fixed margins, removes that turn-to-turn variation.
"""

from __future__ import annotations

import numpy as np

from app.core.engines import ASR_SAMPLE_RATE

WINDOW_S = 0.01  # energy measured over 10 ms, at every sample
FLOOR_DB = -40.0  # below the loudest window by this much is silence (room noise stays: it is above it)
ABS_FLOOR = 1e-3  # RMS this low is silence whatever the level


def voice_span(audio: np.ndarray) -> tuple[int, int] | None:
    """First and last sample of the voice (10 ms RMS above the floor), or None for silence."""
    win = max(1, int(WINDOW_S * ASR_SAMPLE_RATE))
    if len(audio) < win:
        return None
    power = np.convolve(audio.astype(np.float64) ** 2, np.ones(win) / win, mode="valid")
    peak = float(power.max())
    floor = max(ABS_FLOOR**2, peak * 10 ** (FLOOR_DB / 10))
    loud = np.flatnonzero(power > floor)
    if not len(loud):
        return None
    return int(loud[0]), int(loud[-1]) + win


LEAD_S, TAIL_S = 0.5, 0.5  # silence around the voice as the recognisers get it
REAL_LEAD_S, REAL_TAIL_S = 0.1, 0.03  # how much of the microphone's own audio around the voice is kept


def normalised(audio: np.ndarray) -> np.ndarray:
    """The voice with the same margins every time: a little real audio, then zeros, on each side.

    Only ``REAL_LEAD_S`` of what came before the voice is kept (the listener's pre-roll always holds
    more), so the result does not depend on where the VAD's frames fell.  Both recognisers also did
    better with 0.5 s of silence on each side (docs/asr.md): Moonshine 11.0 -> 10.0 % WER, Whisper
    15.7 -> 6.5 % on the bench's questions and their variants.
    """
    span = voice_span(audio)
    if span is None:
        return audio[:0]
    start, end = span
    first = max(0, start - int(REAL_LEAD_S * ASR_SAMPLE_RATE))
    last = min(len(audio), end + int(REAL_TAIL_S * ASR_SAMPLE_RATE))
    front = np.zeros(max(0, int(LEAD_S * ASR_SAMPLE_RATE) - (start - first)), np.float32)
    back = np.zeros(max(0, int(TAIL_S * ASR_SAMPLE_RATE) - (last - end)), np.float32)
    return np.concatenate([front, np.asarray(audio[first:last], np.float32), back])
