"""The replica: a consumer of timed speech audio that renders the face on demand.

It follows the avatar boundary of livekit's ``VideoGenerator``: the TTS side
calls ``push_audio`` with each chunk and the instant its first sample will be
heard; barge-in calls ``clear_buffer``. The video side calls ``render(t_ns)``
whenever it wants a frame, on the same ``perf_counter_ns`` clock, so the lips
follow what is *heard*, whatever the frame rate or jitter. A frame depends
only on t, the pushed speech and the gaze target, never on the order or
number of calls, so tests can render any instant without sleeping.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.core.engines import PhonemeTiming, SpeechChunk
from app.replica.detect import fit_landmarks
from app.replica.face import FRAME_SIZE, Face, load_default_source, normalise
from app.replica.idle import BLINK_S, IdleMotion, blink_amount
from app.replica.prosody import Prosody, build_prosody
from app.replica.rig import FaceRig, Pose
from app.replica.visemes import MouthTrack, build_track

_GAZE_MOVE_NS = 120_000_000  # an eye turn takes ~120 ms
_MAX_SEGMENTS = 2000  # ~hours of sentences; the oldest are forgotten beyond that
_JOIN_NS = 5_000_000  # a piece heard this close to the end of the last joins it (clock rounding)


@dataclass(frozen=True)
class RenderedFrame:
    image: np.ndarray  # H x W x 3 uint8 BGR
    t_ns: int
    speaking: bool  # speech audio is playing at t_ns
    mouth_open: float  # 0..1 animation parameter (for a HUD; tests measure pixels)


@dataclass(frozen=True)
class _Speech:
    start_ns: int
    end_ns: int
    track: MouthTrack
    prosody: Prosody
    chunk: SpeechChunk  # kept so that the rest of its sentence can join it


class Replica:
    """A talking face. Thread-safe: push/clear/gaze from any thread, render from another."""

    fps: float = 30.0  # while speaking
    idle_fps: float = 15.0  # listening/thinking: blinks and breathing need no more, and the CPU serves ASR/LLM/TTS

    def __init__(self, face: Face, seed: int = 0) -> None:
        self.face = face
        self.size: tuple[int, int] = (FRAME_SIZE, FRAME_SIZE)
        self._rig = FaceRig(face)
        self._idle = IdleMotion(seed)
        self._lock = threading.Lock()
        self._speech: tuple[_Speech, ...] = ()
        self.speech_generation = 0
        self._gaze_from = (0.0, 0.0)
        self._gaze_to = (0.0, 0.0)
        self._gaze_set_ns = 0

    @classmethod
    def from_assets(cls, seed: int = 0) -> Replica:
        """The bundled default portrait with its hand-placed landmarks."""
        image, points = load_default_source()
        return cls(normalise(image, points), seed)

    @classmethod
    def from_image(cls, image_bgr: np.ndarray, seed: int = 0) -> Replica:
        """A replica of the face in a photo or webcam snapshot; raises NoFaceError."""
        image = np.asarray(image_bgr)
        if image.ndim == 2:  # grey
            image = np.repeat(image[:, :, None], 3, axis=2)
        elif image.ndim == 3 and image.shape[2] == 4:  # BGRA screenshot or PNG
            image = image[:, :, :3]
        fit = fit_landmarks(np.ascontiguousarray(image))
        return cls(normalise(image, fit.points), seed)

    @classmethod
    def from_file(cls, path: str | Path, seed: int = 0) -> Replica:
        """A replica of the face in an image file; OSError if unreadable, NoFaceError if no face."""
        import cv2

        image = cv2.imread(str(Path(path).expanduser()), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot read the image {path}: check the path, or use a JPEG or PNG file.")
        return cls.from_image(image, seed)

    # --- inputs ---------------------------------------------------------------

    def push_audio(self, chunk: SpeechChunk, start_ns: int) -> None:
        """Queue a chunk whose first sample is heard at ``start_ns`` (perf_counter_ns)."""
        if chunk.sample_rate <= 0 or len(chunk.audio) == 0:
            return
        with self._lock:
            last = self._speech[-1] if self._speech else None
        joined = (
            chunk.continues
            and last is not None
            and last.chunk.sample_rate == chunk.sample_rate
            and abs(last.end_ns - start_ns) <= _JOIN_NS
        )
        if joined:  # the sentence's next piece, heard right after the last: one mouth track, no seam
            chunk, start_ns = _joined(last.chunk, chunk), last.start_ns  # type: ignore[union-attr]
        track, prosody = build_track(chunk), build_prosody(chunk)  # the costly part, outside the lock
        end_ns = start_ns + round(track.duration_s * 1e9)
        speech = _Speech(start_ns, end_ns, track, prosody, chunk)
        with self._lock:
            if joined and self._speech and self._speech[-1] is last:
                self._speech = (*self._speech[:-1], speech)
                self.speech_generation += 1  # frames drawn ahead near the seam were drawn without the rest
            else:
                self._speech = (*self._speech[-_MAX_SEGMENTS + 1 :], speech)

    def next_speech_ns(self, t_ns: int) -> int | None:
        """``t_ns`` if speech is on at ``t_ns``, else when the next pushed speech starts (None: none queued)."""
        with self._lock:
            starts = [s.start_ns for s in self._speech if s.end_ns > t_ns]
        return max(t_ns, min(starts)) if starts else None

    def moving_until(self, t_ns: int) -> int | None:
        """The end of a blink under way at ``t_ns``, else None: a face told to hold still must not stop mid-blink."""
        blink_ns = round(BLINK_S * 1e9)
        with self._lock:
            speech = self._speech[-4:]
        starts = [round(s * 1e9) for s in self._idle.blink_times((t_ns - blink_ns) / 1e9, t_ns / 1e9 + 1e-9)]
        starts += [s.start_ns + round(at * 1e9) for s in speech for at in s.prosody.blinks]
        ends = [start + blink_ns for start in starts if start <= t_ns < start + blink_ns]
        return max(ends) if ends else None

    def clear_buffer(self) -> None:
        """Barge-in: forget all pushed speech; the next frame has an idle mouth."""
        with self._lock:
            self._speech = ()
            self.speech_generation += 1  # frames drawn ahead from the old speech are void

    def set_gaze_target(self, x: float, y: float) -> None:
        """Where to look, -1..1 in each axis of the frame; (0, 0) is the camera."""
        now = time.perf_counter_ns()
        with self._lock:
            self._gaze_from = self._gaze_at(now)
            self._gaze_to = (float(np.clip(x, -1, 1)), float(np.clip(y, -1, 1)))
            self._gaze_set_ns = now

    # --- output ---------------------------------------------------------------

    def render(self, t_ns: int) -> RenderedFrame:
        with self._lock:
            speech = self._speech
            gaze = self._gaze_at(t_ns)
        mouth = (0.0, 0.0, 0.0, 0.0)
        nod, brow, blink = 0.0, 0.0, 0.0
        speaking = False
        for s in reversed(speech):  # a later chunk wins where two overlap
            if s.start_ns <= t_ns < s.end_ns:
                mouth = s.track.sample((t_ns - s.start_ns) / 1e9)
                nod, brow = s.prosody.sample((t_ns - s.start_ns) / 1e9)
                speaking = True
                break
        for s in speech[-4:]:  # blinks at the pauses of the last few sentences
            for at in s.prosody.blinks:
                blink = max(blink, blink_amount((t_ns - s.start_ns) / 1e9 - at))
        # Idle blinks keep to the silences: while speaking, the eyes blink at the pauses instead.
        for start_s in self._idle.blink_times(t_ns / 1e9 - 0.3, t_ns / 1e9 + 1e-9):
            start = round(start_s * 1e9)
            if not any(s.start_ns <= start < s.end_ns for s in speech[-4:]):
                blink = max(blink, blink_amount((t_ns - start) / 1e9))
        idle = self._idle.pose(t_ns, energy=mouth[0])
        pose = Pose(
            open=mouth[0],
            spread=mouth[1],
            round=mouth[2],
            tongue=mouth[3],
            blink=blink,
            brow=brow,
            gaze_x=gaze[0] + idle.saccade_x,
            gaze_y=gaze[1] + idle.saccade_y,
            head_rot_deg=idle.head_rot_deg,
            head_dx=idle.head_dx,
            head_dy=idle.head_dy + 0.02 * nod,
            breath=idle.breath,
        )
        return RenderedFrame(self._rig.draw(pose), t_ns, speaking, mouth[0])

    # --- for tools and tests ----------------------------------------------------

    @property
    def landmarks(self) -> np.ndarray:
        """The 68 landmarks in the rendered frame at rest (read-only copy)."""
        return self.face.points.copy()

    @property
    def mouth_box(self) -> tuple[int, int, int, int]:
        return self._rig.mouth_box

    def blink_times(self, t0_ns: int, t1_ns: int) -> list[int]:
        """When idle blinks start in [t0, t1), for tools that want to show one."""
        return [math.floor(t * 1e9) for t in self._idle.blink_times(t0_ns / 1e9, t1_ns / 1e9)]

    def _gaze_at(self, t_ns: int) -> tuple[float, float]:
        f = min(max((t_ns - self._gaze_set_ns) / _GAZE_MOVE_NS, 0.0), 1.0)
        f = f * f * (3 - 2 * f)
        (x0, y0), (x1, y1) = self._gaze_from, self._gaze_to
        return x0 + (x1 - x0) * f, y0 + (y1 - y0) * f


def _joined(first: SpeechChunk, rest: SpeechChunk) -> SpeechChunk:
    """Two pieces of one sentence as one chunk: the mouth is smoothed across the cut, not closed at it."""
    offset = len(first.audio)
    shifted = tuple(PhonemeTiming(p.phoneme, p.start + offset, p.length) for p in rest.phonemes)
    audio = np.concatenate([first.audio, rest.audio])
    return SpeechChunk(audio, first.sample_rate, first.text, first.phonemes + shifted)
