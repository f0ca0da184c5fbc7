"""Is the user's mouth moving? Frame-difference energy in the lower third of the face.

Both frames of a pair are cropped with the *same* (current) face box, so the
Haar detector's box jitter (several pixels per frame) cancels out; a phase
correlation over the whole face then undoes head shifts before the regions
are compared. The score is the mean absolute grey-level change of the mouth
region minus that of the nose band just above it (what registration could
not explain moves both; lips move only the lower one), in 0..255 units:
~0 for a still or swaying head with a shut mouth, several units for speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from app.vision import face_cascade

_FACE = 96  # the face box is resampled to this square before comparing
_MIN_SHIFT = 0.5  # pixels of the 96 px face
_MOUTH = (slice(64, 96), slice(19, 77))  # lower third, central 60%: lips and chin, not cheeks' edges
_NOSE = (slice(40, 62), slice(19, 77))  # the band above: moves with the head, not with the lips


def detect_face(grey: np.ndarray, detect_width: int = 256) -> tuple[int, int, int, int] | None:
    """The largest frontal face (x, y, w, h) in frame pixels, or None."""
    h, w = grey.shape[:2]
    scale = min(1.0, detect_width / max(w, 1))
    small = cv2.resize(grey, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else grey
    min_side = max(24, round(min(small.shape) * 0.15))
    found = face_cascade().detectMultiScale(cv2.equalizeHist(small), 1.1, 4, minSize=(min_side, min_side))
    if len(found) == 0:
        return None
    x, y, bw, bh = max(found, key=lambda b: int(b[2]) * int(b[3]))
    return round(x / scale), round(y / scale), round(bw / scale), round(bh / scale)


@dataclass(frozen=True)
class MouthSample:
    """One camera frame's verdict: was a face there, and how much did its mouth move."""

    t_ns: int
    face: bool
    motion: float  # grey levels; 0 when there is no face or no previous frame


class MouthMotion:
    """Turns a stream of camera frames into mouth-motion samples.

    Face detection is the expensive part (~5 ms at 256 px), so it runs every
    ``detect_every`` frames and the box is reused in between; a caller that
    already tracks the face (the vision stage) can pass its box instead.
    """

    def __init__(self, detect_every: int = 3, max_box_age: int = 8) -> None:
        self.detect_every = detect_every
        self.max_box_age = max_box_age
        self._prev: np.ndarray | None = None
        self._box: tuple[int, int, int, int] | None = None
        self._box_age = 0
        self._count = 0

    def update(self, image_bgr: np.ndarray, t_ns: int, box: tuple[int, int, int, int] | None = None) -> MouthSample:
        grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if image_bgr.ndim == 3 else image_bgr
        if box is None:
            box = self._track(grey)
        prev, self._prev = self._prev, grey
        if box is None:
            return MouthSample(t_ns, False, 0.0)
        if prev is None or prev.shape != grey.shape:
            return MouthSample(t_ns, True, 0.0)
        return MouthSample(t_ns, True, mouth_motion(prev, grey, box))

    def _track(self, grey: np.ndarray) -> tuple[int, int, int, int] | None:
        if self._count % self.detect_every == 0 or self._box is None:
            found = detect_face(grey)
            if found is not None:
                self._box, self._box_age = found, 0
            else:
                self._box_age += self.detect_every
        self._count += 1
        if self._box_age > self.max_box_age:
            self._box = None
        return self._box


def _crop(grey: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = box
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(grey.shape[1], x + w), min(grey.shape[0], y + h)
    return cv2.resize(grey[y0:y1, x0:x1], (_FACE, _FACE), interpolation=cv2.INTER_AREA).astype(np.float32)


def mouth_motion(prev_grey: np.ndarray, grey: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """How much more the mouth region changed between two frames than the rest of the face."""
    # A light blur evens out sensor noise and the resampling blur the shift below would add to one side.
    a = cv2.GaussianBlur(_crop(prev_grey, box), (5, 5), 0)
    b = cv2.GaussianBlur(_crop(grey, box), (5, 5), 0)
    (dx, dy), _ = cv2.phaseCorrelate(a, b)
    # Sub-pixel "shifts" are mostly a blink tugging the correlation; warping for them adds edges.
    if _MIN_SHIFT <= max(abs(dx), abs(dy)) < _FACE / 4:
        shift = np.float32([[1, 0, dx], [0, 1, dy]])
        a = cv2.warpAffine(a, shift, (_FACE, _FACE), borderMode=cv2.BORDER_REPLICATE)
    diff = b - a
    diff = np.abs(diff - float(np.mean(diff)))  # a global exposure change is not motion
    # What registration left over elsewhere (non-rigid head motion, blur) is not speech either.
    return max(0.0, float(np.mean(diff[_MOUTH])) - float(np.mean(diff[_NOSE])))
