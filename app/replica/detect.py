"""Find a face in one photo and its 68 landmarks, offline.

MediaPipe's face mesh (app/replica/mesh.py) measures every landmark: lips,
jaw, lids and irises of this face. Only where its models are not installed
does the old path run: OpenCV's Haar cascades find the face box and the two
eyes, and the default portrait's hand-placed points are placed by the
similarity that puts their eyes on the detected eyes (so the mouth and jaw
are then guesses from the eyes).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from app.replica.face import CANON_EYES, NoFaceError, apply_affine, load_default_source, normalise
from app.replica.mesh import load_face_mesh

NO_FACE_HELP = (
    "No face was found in this image. Use a photo (or a webcam snapshot) with one face looking at the "
    "camera, evenly lit, eyes open and uncovered (no sunglasses), the face at least 80 pixels wide."
)
# Eye centres relative to the Haar face box (x, y as fractions of the box side),
# measured on the default portrait; used only when the eye detector fails.
_BOX_EYES = np.array([[0.258, 0.371], [0.723, 0.380]])
_MAX_DETECT_SIDE = 1024


@dataclass(frozen=True)
class Fit:
    """Where the template landed: points in the input image, and how it was found."""

    points: np.ndarray  # (68, 2) float64, input-image pixels
    face_box: tuple[int, int, int, int]  # x, y, w, h
    eyes: np.ndarray  # (2, 2) eye centres used for the fit (the irises, with the mesh)
    eyes_detected: bool
    mesh: np.ndarray | None = None  # (468, 2) when the face mesh measured the face


@cache
def _cascade(name: str) -> cv2.CascadeClassifier:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    if cascade.empty():
        raise RuntimeError(f"OpenCV's {name} could not be loaded; reinstall opencv-python (<5).")
    return cascade


@cache
def template() -> np.ndarray:
    """The 68-point template in the normalised frame (read-only)."""
    image, points = load_default_source()
    pts = normalise(image, points).points
    pts.setflags(write=False)
    return pts


def fit_landmarks(image_bgr: np.ndarray) -> Fit:
    """Detect the most plausible face and fit the landmark template to it.

    Raises NoFaceError when nothing face-like is found.
    """
    if image_bgr is None or image_bgr.ndim not in (2, 3) or min(image_bgr.shape[:2]) < 32:
        raise NoFaceError(NO_FACE_HELP)
    model = load_face_mesh()
    if model is not None:
        colour = image_bgr if image_bgr.ndim == 3 else cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
        found = model.fit(np.ascontiguousarray(colour[:, :, :3]))
        if found is None:
            raise NoFaceError(NO_FACE_HELP)
        x, y, w, h = found.detection.box
        box = (int(x - w / 2), int(y - h / 2), int(w), int(h))
        return Fit(points=found.points68, face_box=box, eyes=found.irises, eyes_detected=True, mesh=found.mesh)
    return _fit_haar(image_bgr)


def _fit_haar(image_bgr: np.ndarray) -> Fit:
    """The fallback without the face models: Haar boxes and the template placed on the eyes."""
    gray = image_bgr if image_bgr.ndim == 2 else cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    shrink = min(1.0, _MAX_DETECT_SIDE / max(gray.shape))
    if shrink < 1.0:
        gray = cv2.resize(gray, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)

    best: tuple[tuple[bool, int], tuple[int, int, int, int], np.ndarray | None] | None = None
    for box, agreed in _face_candidates(gray):
        eyes = _eye_pair(gray, box)
        if eyes is None and not agreed:
            continue  # one cascade alone, no eyes: on LFW's non-faces these were all false alarms
        score = (eyes is not None, box[2])  # a box with two eyes beats any bigger box without
        if best is None or score > best[0]:
            best = (score, box, eyes)
    if best is None:
        raise NoFaceError(NO_FACE_HELP)
    _, (x, y, w, h), eyes = best
    detected = eyes is not None
    if eyes is None:
        eyes = np.array([x, y], float) + _BOX_EYES * w
    eyes = eyes / shrink
    box = (int(x / shrink), int(y / shrink), int(w / shrink), int(h / shrink))
    points = apply_affine(_similarity(CANON_EYES, eyes), template())
    return Fit(points=points, face_box=box, eyes=eyes, eyes_detected=detected)


def _face_candidates(gray: np.ndarray) -> list[tuple[tuple[int, int, int, int], bool]]:
    """Face boxes from two cascades, each flagged if the other cascade agrees with it."""
    min_side = max(24, int(0.06 * min(gray.shape)))
    found: list[list[tuple[int, int, int, int]]] = []
    for name in ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml"):
        boxes = _cascade(name).detectMultiScale(gray, scaleFactor=1.08, minNeighbors=5, minSize=(min_side, min_side))
        found.append([tuple(int(v) for v in b) for b in boxes])
    first, second = found
    return [(b, any(_iou(b, o) > 0.4 for o in second)) for b in first] + [
        (b, any(_iou(b, o) > 0.4 for o in first)) for b in second
    ]


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


def _eye_pair(gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray | None:
    """The two eye centres inside a face box, or None if no plausible pair."""
    x, y, w, h = box
    roi = gray[y : y + int(0.62 * h), x : x + w]
    lo, hi = max(8, int(0.12 * w)), max(12, int(0.42 * w))
    found = []
    for name in ("haarcascade_eye.xml", "haarcascade_eye_tree_eyeglasses.xml"):
        eyes = _cascade(name).detectMultiScale(
            roi, scaleFactor=1.05, minNeighbors=3, minSize=(lo, lo), maxSize=(hi, hi)
        )
        found = [(ex + ew / 2.0, ey + eh / 2.0, ew) for ex, ey, ew, eh in eyes]
        if len(found) >= 2:
            break
    best, best_cost, sizes = None, np.inf, (0.0, 0.0)
    for i, (ax, ay, aw) in enumerate(found):
        for bx, by, bw in found[i + 1 :]:
            (lx, ly, lw), (rx, ry, rw) = sorted([(ax, ay, aw), (bx, by, bw)])
            dist = rx - lx
            if not (0.28 * w < dist < 0.65 * w and abs(ry - ly) < 0.2 * dist):
                continue
            if not (lx < 0.55 * w and rx > 0.45 * w and 0.15 * h < (ly + ry) / 2 < 0.55 * h):
                continue
            # Prefer pairs the size the default portrait has, level, and similar in size.
            cost = abs(dist / w - 0.465) + abs(ry - ly) / w + abs(lw - rw) / w
            if cost < best_cost:
                best, best_cost = np.array([[lx + x, ly + y], [rx + x, ry + y]], float), cost
                sizes = (lw, rw)
    if best is None:
        return None
    return np.array([_iris_centre(gray, c, s) for c, s in zip(best, sizes, strict=True)])


def _iris_centre(gray: np.ndarray, centre: np.ndarray, size: float) -> np.ndarray:
    """Pull a Haar eye-box centre toward the dark iris inside it (boxes wobble by a few px)."""
    half = size * 0.32
    x0, x1 = round(float(centre[0]) - half * 1.2), round(float(centre[0]) + half * 1.2)
    y0, y1 = round(float(centre[1]) - half * 0.7), round(float(centre[1]) + half * 0.7)
    patch = gray[max(y0, 0) : y1, max(x0, 0) : x1].astype(np.float32)
    if patch.size < 16:
        return centre
    patch = cv2.GaussianBlur(patch, (0, 0), max(size / 24.0, 0.8))
    weight = np.clip(np.percentile(patch, 15) - patch, 0, None)
    if weight.sum() <= 0:
        return centre
    ys, xs = np.mgrid[max(y0, 0) : max(y0, 0) + patch.shape[0], max(x0, 0) : max(x0, 0) + patch.shape[1]]
    found = np.array([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum()
    return 0.5 * centre + 0.5 * found


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 similarity mapping the two points src onto dst exactly."""
    d_src, d_dst = src[1] - src[0], dst[1] - dst[0]
    scale = np.hypot(*d_dst) / max(np.hypot(*d_src), 1e-9)
    angle = np.arctan2(d_dst[1], d_dst[0]) - np.arctan2(d_src[1], d_src[0])
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    shift = dst.mean(axis=0) - rot @ src.mean(axis=0)
    return np.hstack([rot, shift[:, None]])
