"""The listening side: VAD frames -> onset, speculative pause, resume, end of turn."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app.core.audio_io import SOURCE_RATE
from app.core.vad import FRAME_SAMPLES, SileroVad, TurnDetector, TurnDetectorSettings, VadDecision

PREROLL_FRAMES = 12  # ~0.4 s kept before the onset so the first syllable is not clipped
ENERGY_FLOOR = 0.008  # RMS below this counts as silence when refining the voice end
# A monologue (or a radio the VAD takes for speech) is answered in pieces: past SOFT_TURN_S the
# next short pause ends the turn, at MAX_TURN_S it ends regardless.  Each piece then takes
# Whisper's fast path (under 25 s); one 5-minute turn took 69 s to transcribe on 2 cores and
# re-transcribed the growing audio at every pause.  Speech that goes on starts the next turn,
# preroll included, so no word is dropped.
SOFT_TURN_S = 20.0
MAX_TURN_S = 30.0


@dataclass(frozen=True)
class Utterance:
    """The user's audio so far and the true end of voice on the monotonic clock."""

    audio: np.ndarray
    voice_end_ns: int
    onset_ns: int


class Listener:
    """Feeds 32 ms frames to the VAD and calls back on each turn-taking decision.

    Callbacks run on the caller's (VAD worker's) thread:
    ``on_onset(onset_ns)``, ``on_pause(utt)``, ``on_resume()``, ``on_end(utt)``, and, when the
    detector's ``early_speech_ms`` is set, ``on_early_onset(t_ns)`` and ``on_blip()``.
    """

    def __init__(
        self,
        settings: TurnDetectorSettings,
        on_onset: Callable[[int], None],
        on_pause: Callable[[Utterance], None],
        on_resume: Callable[[], None],
        on_end: Callable[[Utterance], None],
        vad: SileroVad | None = None,
        on_early_onset: Callable[[int], None] | None = None,
        on_blip: Callable[[], None] | None = None,
    ) -> None:
        self.vad = vad or SileroVad()
        self.detector = TurnDetector(settings)
        self._callbacks = (on_onset, on_pause, on_resume, on_end)
        self._on_early_onset, self._on_blip = on_early_onset, on_blip
        self._preroll: deque[tuple[np.ndarray, int]] = deque(maxlen=PREROLL_FRAMES)
        self._frames: list[np.ndarray] = []
        self._onset_ns = 0
        self._last_voiced: tuple[np.ndarray, int] | None = None
        self.enabled = True

    def push(self, frame: np.ndarray, t_ns: int) -> None:
        on_onset, on_pause, on_resume, on_end = self._callbacks
        prob = self.vad.probability(frame) if self.enabled else 0.0
        decision = self.detector.push(prob)
        if self.detector.last_voiced_frame == self.detector.frames_seen - 1:
            self._last_voiced = (frame, t_ns)
        if decision is VadDecision.ONSET:
            run = self.detector.settings.min_speech_ms
            self._onset_ns = t_ns - int(run * 1e6) + int(FRAME_SAMPLES / SOURCE_RATE * 1e9)
            self._frames = [f for f, _ in self._preroll]
            self._preroll.clear()
        if self.detector.in_speech or decision in (VadDecision.ONSET, VadDecision.END_OF_TURN):
            self._frames.append(frame)
        else:
            self._preroll.append((frame, t_ns))
        if self.detector.in_speech and decision is not VadDecision.ONSET and self._too_long(decision):
            self.detector.reset()  # speech that goes on makes a new onset
            decision = VadDecision.END_OF_TURN
        if decision is VadDecision.ONSET:
            on_onset(self._onset_ns)
        elif decision is VadDecision.PAUSE:
            on_pause(self._utterance())
        elif decision is VadDecision.RESUMED:
            on_resume()
        elif decision is VadDecision.EARLY_ONSET and self._on_early_onset is not None:
            self._on_early_onset(t_ns)
        elif decision is VadDecision.BLIP and self._on_blip is not None:
            self._on_blip()
        elif decision is VadDecision.END_OF_TURN:
            utt = self._utterance()
            self._frames = []
            on_end(utt)

    def audio_so_far(self) -> np.ndarray | None:
        """The utterance so far (pre-roll included) while its voice goes on; None in a pause or out of speech."""
        voiced_now = self.detector.last_voiced_frame == self.detector.frames_seen - 1
        if not (self.detector.in_speech and voiced_now and self._frames):
            return None
        return np.concatenate(self._frames)

    def _too_long(self, decision: VadDecision) -> bool:
        seconds = len(self._frames) * FRAME_SAMPLES / SOURCE_RATE
        return seconds >= MAX_TURN_S or (seconds >= SOFT_TURN_S and decision is VadDecision.PAUSE)

    def _utterance(self) -> Utterance:
        audio = np.concatenate(self._frames) if self._frames else np.zeros(0, dtype=np.float32)
        return Utterance(audio=audio, voice_end_ns=self._voice_end_ns(), onset_ns=self._onset_ns)

    def _voice_end_ns(self) -> int:
        """End of the last voiced frame, refined to the last sample above the energy floor."""
        if self._last_voiced is None:
            return self._onset_ns
        frame, t_ns = self._last_voiced
        hop = 64
        energies = [float(np.sqrt(np.mean(frame[i : i + hop] ** 2))) for i in range(0, len(frame), hop)]
        last = max((i for i, e in enumerate(energies) if e >= ENERGY_FLOOR), default=len(energies) - 1)
        return t_ns + int((last + 1) * hop / SOURCE_RATE * 1e9)

    def reset(self) -> None:
        self.detector.reset()
        self.vad.reset()
        self._frames = []
        self._preroll.clear()
