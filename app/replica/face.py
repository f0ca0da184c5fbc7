"""A face: a portrait normalised to the replica's frame, with its 68 landmarks.

Every replica, the default one or one made from a photo, goes through
``normalise`` so the animation rig can rely on one geometry: eyes level, at
fixed places, the face a fixed size in a 512x512 frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from app.resources import resource_path

FRAME_SIZE = 512
# Where the eye centres land in the normalised frame (x, y); 96 px apart.
CANON_EYES = np.array([[208.0, 205.0], [304.0, 205.0]], dtype=np.float64)

# iBUG 68-point layout, used by the assets and the rig.
JAW = slice(0, 17)
BROWS = slice(17, 27)
NOSE = slice(27, 36)
EYE_L = slice(36, 42)  # image-left eye (the subject's right)
EYE_R = slice(42, 48)
LIPS_OUTER = slice(48, 60)
LIPS_INNER = slice(60, 68)
N_POINTS = 68


class NoFaceError(ValueError):
    """The image has no face the replica can be built from."""


@dataclass(frozen=True)
class Face:
    """A normalised portrait: BGR uint8 image and its landmarks in that image."""

    image: np.ndarray  # FRAME_SIZE x FRAME_SIZE x 3, uint8 BGR
    points: np.ndarray  # (68, 2) float64, x/y in image pixels

    @property
    def eye_centres(self) -> np.ndarray:
        return eye_centres(self.points)

    @property
    def iod(self) -> float:
        """Inter-ocular distance, the unit every other size is scaled by."""
        left, right = self.eye_centres
        return float(np.hypot(*(right - left)))


def eye_centres(points: np.ndarray) -> np.ndarray:
    return np.stack([points[EYE_L].mean(axis=0), points[EYE_R].mean(axis=0)])


def assets_dir() -> Path:
    """assets/replica in a checkout, or inside a PyInstaller bundle."""
    return resource_path("assets", "replica")


def load_landmarks(path: Path) -> np.ndarray:
    data = json.loads(path.read_text(encoding="utf-8"))
    points = np.asarray(data["points"], dtype=np.float64)
    if points.shape != (N_POINTS, 2):
        raise ValueError(f"{path}: expected {N_POINTS} (x, y) points, found shape {points.shape}")
    return points


def load_default_source() -> tuple[np.ndarray, np.ndarray]:
    """The bundled portrait and its hand-placed landmarks, in source pixels."""
    folder = assets_dir()
    image = cv2.imread(str(folder / "astronaut.jpg"), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"The default portrait {folder / 'astronaut.jpg'} is missing; reinstall Doppel.")
    return image, load_landmarks(folder / "astronaut.landmarks.json")


def canonical_transform(points: np.ndarray) -> np.ndarray:
    """2x3 similarity taking the source eye centres onto CANON_EYES."""
    src = eye_centres(points)
    d_src = src[1] - src[0]
    d_dst = CANON_EYES[1] - CANON_EYES[0]
    scale = np.hypot(*d_dst) / max(np.hypot(*d_src), 1e-6)
    angle = np.arctan2(d_dst[1], d_dst[0]) - np.arctan2(d_src[1], d_src[0])
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    shift = CANON_EYES.mean(axis=0) - rot @ src.mean(axis=0)
    return np.hstack([rot, shift[:, None]])


def _scale_of(matrix: np.ndarray) -> float:
    return float(np.hypot(matrix[0, 0], matrix[1, 0]))


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def normalise(image_bgr: np.ndarray, points: np.ndarray) -> Face:
    """Crop, level and scale the face into the replica frame; even out exposure.

    Upscaled crops get a mild unsharp mask so small faces do not look soft;
    dark or washed-out photos get a gamma that brings skin to mid-grey.
    """
    scale = _scale_of(canonical_transform(points))
    interp = cv2.INTER_CUBIC
    if scale < 0.8:
        # Shrink first with area averaging so the warp below does not alias.
        image_bgr = cv2.resize(image_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        points = points * scale
        interp = cv2.INTER_LINEAR
    matrix = canonical_transform(points)
    size = (FRAME_SIZE, FRAME_SIZE)
    out = cv2.warpAffine(image_bgr, matrix, size, flags=interp, borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpAffine(np.ones(image_bgr.shape[:2], np.float32), matrix, size, flags=cv2.INTER_LINEAR)
    if inside.min() < 1.0:
        # Where the crop runs off the photo, fill with a soft blur of its edge, not mirrored hair.
        soft = cv2.GaussianBlur(out, (0, 0), 18)
        alpha = cv2.GaussianBlur(inside, (0, 0), 3)[:, :, None] * inside[:, :, None]
        out = (out * alpha + soft * (1.0 - alpha)).astype(np.uint8)
    new_points = apply_affine(matrix, points)
    if scale > 1.3:
        blur = cv2.GaussianBlur(out, (0, 0), 1.2)
        out = cv2.addWeighted(out, 1.35, blur, -0.35, 0)
    return Face(image=_even_exposure(out, new_points), points=new_points)


def skin_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Cheeks and forehead-below-brows: the face without eyes and mouth."""
    mask = np.zeros(shape, np.uint8)
    outline = np.vstack([points[JAW], points[BROWS][::-1]]).astype(np.int32)
    cv2.fillConvexPoly(mask, cv2.convexHull(outline), 255)
    for part in (EYE_L, EYE_R, LIPS_OUTER):
        cv2.fillConvexPoly(mask, cv2.convexHull(points[part].astype(np.int32)), 0)
    return mask > 0


def _even_exposure(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    luma = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    skin = luma[skin_mask(points, luma.shape)]
    if skin.size < 100:
        return image
    median = float(np.median(skin)) / 255.0
    if 0.42 <= median <= 0.75:
        return image
    target = 0.42 if median < 0.42 else 0.75
    gamma = float(np.clip(np.log(target) / np.log(max(median, 1e-3)), 0.45, 2.2))
    lut = (255.0 * (np.arange(256) / 255.0) ** gamma).clip(0, 255).astype(np.uint8)
    return cv2.LUT(image, lut)
