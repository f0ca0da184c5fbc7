"""Barge-in gate from the camera: is the person in front of us actually talking?

Echo cancellation leaves residue, and other people or a TV can talk in the
room. When the camera sees the user's face, a speech onset while the replica
speaks is accepted only if the mouth moved around that moment; lips start
moving a little *before* the voice does, so the window reaches back too.
With no camera, a stale camera, or no face in view, the gate accepts (the
audio path alone decides), so turning the camera off never makes the
replica deaf.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from app.duplex.mouth import MouthMotion, MouthSample


@dataclass(frozen=True)
class GateDecision:
    """Why an onset was accepted or rejected, for logs, the HUD and tests."""

    onset_ns: int
    accepted: bool
    reason: str  # "mouth moving", "mouth still", "no face", "no camera", "gate off"
    peak_motion: float  # second-largest mouth motion in the window (robust to one glitch frame)
    threshold: float
    face_frames: int


@dataclass(frozen=True)
class MouthGateSettings:
    min_threshold: float = 1.0  # grey levels; a still or swaying face scores < 0.3, speech peaks at 5-15
    noise_factor: float = 3.0  # ...or this many times the quietest motion seen lately, if higher
    before_ms: float = 400.0  # lips part before the voice starts
    after_ms: float = 400.0
    stale_ms: float = 1000.0  # no frame this recent: the camera is off or frozen
    min_face_frames: int = 2  # fewer face frames in the window: treat as "no face"
    history_s: float = 6.0


class MouthGate:
    """``BargeInGate`` fed by camera frames (``on_frame`` is a ``CameraSource`` callback)."""

    def __init__(self, settings: MouthGateSettings | None = None, motion: MouthMotion | None = None) -> None:
        self.settings = settings or MouthGateSettings()
        self.enabled = True
        self.decisions: list[GateDecision] = []
        self._motion = motion or MouthMotion()
        self._samples: deque[MouthSample] = deque()
        self._lock = threading.Lock()

    # -- camera thread ---------------------------------------------------------------

    def on_frame(self, image_bgr: np.ndarray, t_ns: int, box: tuple[int, int, int, int] | None = None) -> None:
        """One camera frame captured at ``t_ns``; ``box`` if the caller already found the face."""
        if not self.enabled:
            return
        self.add(self._motion.update(image_bgr, t_ns, box))

    def add(self, sample: MouthSample) -> None:
        with self._lock:
            self._samples.append(sample)
            horizon = sample.t_ns - int(self.settings.history_s * 1e9)
            while self._samples and self._samples[0].t_ns < horizon:
                self._samples.popleft()

    # -- VAD thread --------------------------------------------------------------------

    def accept(self, onset_ns: int) -> bool:
        decision = self.decide(onset_ns)
        with self._lock:
            self.decisions.append(decision)
        return decision.accepted

    def decide(self, onset_ns: int) -> GateDecision:
        s = self.settings
        with self._lock:
            samples = list(self._samples)
        if not self.enabled:
            return GateDecision(onset_ns, True, "gate off", 0.0, 0.0, 0)
        lo, hi = onset_ns - int(s.before_ms * 1e6), onset_ns + int(s.after_ms * 1e6)
        if not samples or samples[-1].t_ns < onset_ns - int(s.stale_ms * 1e6):
            return GateDecision(onset_ns, True, "no camera", 0.0, 0.0, 0)
        window = [x for x in samples if lo <= x.t_ns <= hi and x.face]
        threshold = self._threshold(samples)
        if len(window) < s.min_face_frames:
            return GateDecision(onset_ns, True, "no face", 0.0, threshold, len(window))
        peak = sorted((x.motion for x in window), reverse=True)[1]
        moving = peak >= threshold
        return GateDecision(onset_ns, moving, "mouth moving" if moving else "mouth still", peak, threshold, len(window))

    def _threshold(self, samples: list[MouthSample]) -> float:
        """Above the camera's own noise: a grainy webcam raises the bar, a clean one keeps the floor."""
        quiet = [x.motion for x in samples if x.face and x.motion > 0]
        floor = float(np.percentile(quiet, 10)) if len(quiet) >= 10 else 0.0
        return max(self.settings.min_threshold, self.settings.noise_factor * floor)
