"""Where is the user? Face detection on webcam frames, for gaze and presence.

OpenCV's frontal-face Haar cascade runs on a small grey copy of the frame a
few times a second (two cores are shared with the models).  The largest face
is tracked with light smoothing; presence has hysteresis so a missed
detection or two never makes the replica think the user left.  No Qt here:
the camera thread calls ``VisionStage`` directly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

CASCADE = "haarcascade_frontalface_default.xml"


@cache
def face_cascade() -> cv2.CascadeClassifier:
    """OpenCV's frontal-face Haar cascade, loaded once (vision and the mouth gate share it)."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
    if cascade.empty():
        raise RuntimeError(f"OpenCV's {CASCADE} could not be loaded; reinstall opencv-python (<5).")
    return cascade


@dataclass(frozen=True)
class Sighting:
    """One detection result: ``x``/``y`` are the face centre in -1..1 of the camera frame (+ right/down)."""

    present: bool
    x: float
    y: float
    box: tuple[int, int, int, int] | None  # x, y, w, h in frame pixels
    t_ns: int


def detect_faces(
    image_bgr: np.ndarray, detect_width: int = 240, min_face: float = 0.18
) -> list[tuple[int, int, int, int]]:
    """Face boxes in frame pixels, largest first.

    A webcam user sits within arm's length, so faces smaller than ``min_face``
    of the frame height are not searched for: that bounds the cascade's scan
    (the cost that matters on two shared cores).
    """
    h, w = image_bgr.shape[:2]
    scale = min(1.0, detect_width / max(w, 1))
    grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if image_bgr.ndim == 3 else image_bgr
    if scale < 1.0:
        grey = cv2.resize(grey, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    grey = cv2.equalizeHist(grey)
    min_side = max(20, round(grey.shape[0] * min_face))
    found = face_cascade().detectMultiScale(grey, scaleFactor=1.2, minNeighbors=4, minSize=(min_side, min_side))
    boxes = [tuple(round(float(v) / scale) for v in box) for box in found]
    return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)  # type: ignore[return-value]


class FaceTracker:
    """Largest face, smoothed; present after ``appear_after`` hits, absent after ``leave_after_s`` of misses."""

    def __init__(self, appear_after: int = 2, leave_after_s: float = 4.0, smoothing: float = 0.5) -> None:
        self.appear_after = appear_after
        self.leave_after_ns = int(leave_after_s * 1e9)
        self.smoothing = smoothing
        self.present = False
        self._hits = 0
        self._last_seen_ns: int | None = None
        self._pos: tuple[float, float] = (0.0, 0.0)
        self._box: tuple[int, int, int, int] | None = None

    def update(self, boxes: list[tuple[int, int, int, int]], frame_size: tuple[int, int], t_ns: int) -> Sighting:
        w, h = frame_size
        if boxes:
            bx, by, bw, bh = boxes[0]
            x = (bx + bw / 2) / w * 2 - 1
            y = (by + bh / 2) / h * 2 - 1
            a = self.smoothing if self._hits else 0.0
            self._pos = (a * self._pos[0] + (1 - a) * x, a * self._pos[1] + (1 - a) * y)
            self._box = boxes[0]
            self._hits += 1
            self._last_seen_ns = t_ns
            if self._hits >= self.appear_after:
                self.present = True
        else:
            self._hits = 0
            if self._last_seen_ns is None or t_ns - self._last_seen_ns > self.leave_after_ns:
                self.present = False
                self._box = None
        return Sighting(self.present, self._pos[0], self._pos[1], self._box if self.present else None, t_ns)


def gaze_for(sighting: Sighting, gain: float = 0.7) -> tuple[float, float]:
    """The replica's gaze target for a sighting (-1..1, image directions of the replica's frame).

    The camera faces the user, so its image is mirrored relative to the
    screen: a user at the camera image's left is at the replica's right.
    """
    if not sighting.present:
        return (0.0, 0.0)
    return (float(np.clip(-sighting.x * gain, -1, 1)), float(np.clip(sighting.y * gain, -1, 1)))


class VisionStage:
    """Called with every camera frame; detects at most ``rate_hz`` times a second.

    ``on_gaze(x, y)`` gets the replica's gaze target after each detection,
    ``on_presence(present)`` fires when the user appears or leaves, and
    ``on_sighting`` (optional) gets every detection result (the preview box).
    """

    def __init__(
        self,
        on_gaze: Callable[[float, float], None] | None = None,
        on_presence: Callable[[bool], None] | None = None,
        on_sighting: Callable[[Sighting], None] | None = None,
        *,
        rate_hz: float = 5.0,
        tracker: FaceTracker | None = None,
    ) -> None:
        self.on_gaze, self.on_presence, self.on_sighting = on_gaze, on_presence, on_sighting
        self.tracker = tracker or FaceTracker()
        self.period_ns = int(1e9 / rate_hz)
        self.last: Sighting | None = None
        self._next_ns = 0
        self._lock = threading.Lock()

    def __call__(self, image_bgr: np.ndarray, t_ns: int) -> Sighting | None:
        if t_ns < self._next_ns:
            return None
        self._next_ns = t_ns + self.period_ns
        boxes = detect_faces(image_bgr)
        h, w = image_bgr.shape[:2]
        with self._lock:
            was_present = self.tracker.present
            sighting = self.tracker.update(boxes, (w, h), t_ns)
            self.last = sighting
        if self.on_gaze is not None and (sighting.present or was_present):
            self.on_gaze(*gaze_for(sighting))  # back to the camera when the user leaves
        if self.on_sighting is not None:
            self.on_sighting(sighting)
        if sighting.present != was_present and self.on_presence is not None:
            self.on_presence(sighting.present)
        return sighting
