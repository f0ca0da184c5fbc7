"""Turn-taking: streaming Silero VAD on 32 ms frames and an end-of-turn state machine.

The detector is pure (frames and probabilities in, decisions out) so tests
can drive it with exact timing; ``SileroVad`` supplies the probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

FRAME_SAMPLES = 512  # 32 ms at 16 kHz, Silero's native frame
FRAME_MS = 32.0
_CONTEXT = 64


def silero_model_path() -> Path:
    """The Silero VAD ONNX file that faster-whisper ships (found the same way frozen or not)."""
    from app.resources import silero_vad_path

    return silero_vad_path()


class SileroVad:
    """Stateful speech probability per 512-sample frame (carries LSTM state and context)."""

    def __init__(self, model_path: Path | None = None) -> None:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(
            str(model_path or silero_model_path()), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)

    def probability(self, frame: np.ndarray) -> float:
        frame = np.asarray(frame, dtype=np.float32).reshape(-1)
        if len(frame) != FRAME_SAMPLES:
            raise ValueError(f"VAD frames are {FRAME_SAMPLES} samples, got {len(frame)}")
        x = np.concatenate([self._context, frame])[None, :]
        prob, self._h, self._c = self._session.run(None, {"input": x, "h": self._h, "c": self._c})
        self._context = frame[-_CONTEXT:]
        return float(np.asarray(prob).reshape(-1)[0])


class VadDecision(Enum):
    NONE = "none"
    ONSET = "onset"  # speech began (after the minimum duration)
    PAUSE = "pause"  # first silent frame after speech: start speculative work
    RESUMED = "resumed"  # speech came back within the window: discard speculation
    END_OF_TURN = "end_of_turn"  # silence lasted the full window
    EARLY_ONSET = "early_onset"  # a little voice, not yet an onset: enough to duck the replica's speech
    BLIP = "blip"  # the early voice faded before it became an onset


@dataclass
class TurnDetectorSettings:
    silence_ms: int = 250
    min_speech_ms: int = 160
    early_speech_ms: int = 0  # >0: report EARLY_ONSET after this much voice (0: off), BLIP if it fades before onset
    threshold: float = 0.5
    neg_threshold: float = 0.35  # hysteresis: lower bar to stay in speech
    # The early onset's bar: a "Stop." opens on an unvoiced "s" that Silero scores 0.25-0.45 for
    # ~100 ms, so at 0.5 the replica fell silent ~200 ms after the user began (docs/turn-taking.md).
    early_threshold: float = 0.5


class TurnDetector:
    """Frame-by-frame state machine over speech probabilities.

    Blips shorter than ``min_speech_ms`` never become an onset.  Frame counts
    give exact, clock-free decisions; callers attach timestamps.
    """

    def __init__(self, settings: TurnDetectorSettings | None = None) -> None:
        self.settings = settings or TurnDetectorSettings()
        self.reset()

    def reset(self) -> None:
        self.in_speech = False  # an onset was reported and the turn is open
        self._voiced_run = 0
        self._silent_run = 0
        self._paused = False
        self._early = False  # EARLY_ONSET reported for the current run
        self._early_run = 0  # frames in a row at or above the early bar
        self.frames_seen = 0
        self.last_voiced_frame = -1

    @property
    def _min_speech_frames(self) -> int:
        return max(1, round(self.settings.min_speech_ms / FRAME_MS))

    @property
    def _early_frames(self) -> int:
        ms = self.settings.early_speech_ms
        return round(ms / FRAME_MS) if ms > 0 else 0

    @property
    def _silence_frames(self) -> int:
        return max(1, round(self.settings.silence_ms / FRAME_MS))

    def push(self, prob: float) -> VadDecision:
        s = self.settings
        self.frames_seen += 1
        holding = self.in_speech and not self._paused
        voiced = prob >= (s.neg_threshold if holding else s.threshold)
        if not self.in_speech:
            return self._before_onset(prob, voiced)
        if voiced:
            self.last_voiced_frame = self.frames_seen - 1
            self._silent_run = 0
            if self._paused:
                self._paused = False
                return VadDecision.RESUMED
            return VadDecision.NONE
        self._silent_run += 1
        if self._silent_run >= self._silence_frames:
            self.in_speech = False
            self._paused = False
            self._silent_run = self._voiced_run = self._early_run = 0
            return VadDecision.END_OF_TURN
        if not self._paused:
            self._paused = True
            return VadDecision.PAUSE
        return VadDecision.NONE

    def _before_onset(self, prob: float, voiced: bool) -> VadDecision:
        """No turn open: count voice towards the onset, and (lower bar) towards the early onset."""
        s = self.settings
        early_voiced = prob >= min(s.threshold, s.early_threshold)
        self._early_run = self._early_run + 1 if early_voiced else 0
        if voiced:
            self.last_voiced_frame = self.frames_seen - 1
            self._voiced_run += 1
            if self._voiced_run >= self._min_speech_frames:
                self.in_speech, self._early, self._silent_run = True, False, 0
                return VadDecision.ONSET
        else:
            self._voiced_run = 0
        if self._early and not early_voiced:
            self._early = False
            return VadDecision.BLIP
        if not self._early and self._early_frames and self._early_run >= self._early_frames:
            self._early = True
            return VadDecision.EARLY_ONSET
        return VadDecision.NONE
