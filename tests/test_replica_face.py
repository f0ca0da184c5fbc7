"""The replica without a voice: face fitting, idle life, barge-in, speed. Measured on pixels."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from app.core.engines import SpeechChunk
from app.replica import NoFaceError, Replica, paint
from app.replica import eyes as eyes_module
from app.replica import rig as rig_module
from app.replica.face import apply_affine, load_default_source, skin_mask
from app.replica.fields import ramps, sample
from app.replica.rig import FaceRig, Pose

T0 = 10**12  # an arbitrary instant on the perf_counter_ns clock
FRAME_NS = 40_000_000


@pytest.fixture(scope="module")
def replica() -> Replica:
    return Replica.from_assets(seed=3)


def eye_boxes(rep: Replica) -> list[tuple[int, int, int, int]]:
    boxes = []
    for part in (slice(36, 42), slice(42, 48)):
        pts = rep.landmarks[part]
        (x0, y0), (x1, y1) = pts.min(0) - 6, pts.max(0) + 6
        boxes.append((int(x0), int(y0), int(x1), int(y1)))
    return boxes


def lip_box(rep: Replica) -> tuple[int, int, int, int]:
    p = rep.landmarks
    return int(p[48, 0]) - 4, int(p[50:53, 1].min()) - 4, int(p[54, 0]) + 5, int(p[57, 1] + 0.3 * rep.face.iod)


def crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1]


def dark_pixels(image: np.ndarray, box: tuple[int, int, int, int], level: int = 70) -> int:
    return int((cv2.cvtColor(np.ascontiguousarray(crop(image, box)), cv2.COLOR_BGR2GRAY) < level).sum())


def transformed_portrait(scale: float, angle: float, shift: tuple[int, int], gamma: float):
    """The default portrait moved, scaled, rotated and darkened, with its true landmarks."""
    image, points = load_default_source()
    m = cv2.getRotationMatrix2D((224.0, 120.0), angle, scale)
    m[:, 2] += shift
    out = cv2.warpAffine(image, m, (640, 560), borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))
    out = (255.0 * (out / 255.0) ** gamma).astype(np.uint8)
    return out, apply_affine(m, points)


def test_default_replica_renders_512_frames(replica: Replica) -> None:
    frame = replica.render(T0)
    assert replica.size == (512, 512) and replica.fps == 30.0 and replica.idle_fps == 15.0
    assert frame.image.shape == (512, 512, 3) and frame.image.dtype == np.uint8
    assert frame.t_ns == T0 and not frame.speaking and frame.mouth_open == 0.0


@pytest.mark.parametrize(
    "image",
    [
        np.full((480, 640, 3), 128, np.uint8),
        np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8),
        cv2.cvtColor(np.tile(np.linspace(0, 255, 640, dtype=np.uint8), (480, 1)), cv2.COLOR_GRAY2BGR),
    ],
    ids=["flat", "noise", "gradient"],
)
def test_photo_without_a_face_raises_a_clear_error(image: np.ndarray) -> None:
    with pytest.raises(NoFaceError) as err:
        Replica.from_image(image)
    message = str(err.value)
    assert "No face" in message and "photo" in message and "camera" in message


@pytest.mark.parametrize(
    ("scale", "angle", "shift", "gamma"),
    [(1.0, 0, (0, 0), 1.0), (0.8, 4, (60, 40), 1.0), (1.3, -5, (-40, 10), 1.0), (1.15, -7, (20, 30), 2.2)],
)
def test_haar_fallback_lands_on_the_transformed_default_portrait(scale, angle, shift, gamma) -> None:
    """The path used without the face models; the mesh itself is measured in test_replica_mesh.py."""
    from app.replica.detect import _fit_haar

    image, truth = transformed_portrait(scale, angle, shift, gamma)
    fit = _fit_haar(image)
    iod = np.hypot(*(truth[42:48].mean(0) - truth[36:42].mean(0)))
    error = np.hypot(*(fit.points - truth).T)
    assert fit.eyes_detected
    assert error.mean() < 0.07 * iod, f"mean error {error.mean():.2f}px (iod {iod:.0f}px)"
    assert error.max() < 0.15 * iod


def test_replica_from_a_photo_is_normalised_and_animates() -> None:
    image, _ = transformed_portrait(1.3, -5, (-40, 10), 2.6)
    rep = Replica.from_image(image, seed=3)
    left, right = rep.landmarks[36:42].mean(0), rep.landmarks[42:48].mean(0)
    assert abs(left[1] - right[1]) < 1.0 and 90 < right[0] - left[0] < 102  # levelled and scaled
    still = rep.render(T0).image
    # Exposure is evened out: the darkened skin (median ~0.3 of white here) comes back toward mid-grey.
    luma = cv2.cvtColor(still, cv2.COLOR_BGR2GRAY)
    dark = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    assert np.median(dark[dark != 128]) < 90
    assert np.median(luma[skin_mask(rep.landmarks, luma.shape)]) > 100
    image, _ = transformed_portrait(1.3, -5, (-40, 10), 1.8)
    rep = Replica.from_image(image, seed=3)
    still = rep.render(T0).image
    start = rep.blink_times(T0, T0 + 6_000_000_000)[0]
    shut = rep.render(start + 100_000_000).image
    assert dark_pixels(shut, eye_boxes(rep)[0], 60) < 0.5 * dark_pixels(still, eye_boxes(rep)[0], 60)


def test_blink_happens_within_seven_seconds_of_idle(replica: Replica) -> None:
    boxes = eye_boxes(replica)
    darkness = []
    for i in range(int(7e9 / FRAME_NS)):
        image = replica.render(T0 + i * FRAME_NS).image
        darkness.append(sum(dark_pixels(image, b, 60) for b in boxes))
    darkness = np.array(darkness, float)
    open_level = np.median(darkness)
    assert open_level > 40  # irises and lashes are visible
    assert darkness.min() < 0.45 * open_level, "no frame with shut eyes in 7 s of idle"
    # A blink is brief: most frames have open eyes.
    assert (darkness > 0.8 * open_level).mean() > 0.9


def test_idle_is_a_pure_function_of_time() -> None:
    a, b = Replica.from_assets(seed=5), Replica.from_assets(seed=5)
    times = [T0 + k * 370_000_000 for k in range(6)]
    forward = [a.render(t).image for t in times]
    backward = [b.render(t).image for t in reversed(times)][::-1]
    assert all(np.array_equal(x, y) for x, y in zip(forward, backward, strict=True))
    assert not np.array_equal(forward[0], forward[3])  # but it does move


def test_gaze_target_moves_the_irises() -> None:
    rep = Replica.from_assets(seed=1)
    box = eye_boxes(rep)[1]

    def iris_x(image: np.ndarray) -> float:
        gray = cv2.cvtColor(np.ascontiguousarray(crop(image, box)), cv2.COLOR_BGR2GRAY).astype(float)
        w = np.clip(60 - gray, 0, None)
        return float((w.sum(0) * np.arange(w.shape[1])).sum() / w.sum())

    # Idle saccades and head sway move the iris a little; a gaze target moves it more. The moment
    # is one with no blink near it (a closed eye has no iris to find: 1 full run in 5 hit one).
    t = time.perf_counter_ns() + 2_000_000_000
    while rep.blink_times(t - 500_000_000, t + 500_000_000):
        t += 500_000_000
    ahead = iris_x(rep.render(t).image)
    rep.set_gaze_target(1.0, 0.0)
    right = iris_x(rep.render(t).image)
    rep.set_gaze_target(-1.0, 0.0)
    left = iris_x(rep.render(t).image)
    assert right - ahead > 1.5 and ahead - left > 1.5


def noise_speech(seconds: float, sr: int = 22050) -> SpeechChunk:
    """Syllable-like bursts with no phoneme timing: the replica must fall back to the envelope."""
    t = np.arange(int(seconds * sr)) / sr
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 2
    audio = 0.3 * envelope * np.random.default_rng(1).standard_normal(t.size)
    return SpeechChunk(audio=audio.astype(np.float32), sample_rate=sr, text="")


def test_envelope_fallback_moves_the_mouth_and_clear_buffer_returns_to_idle() -> None:
    rep, twin = Replica.from_assets(seed=2), Replica.from_assets(seed=2)
    box = lip_box(rep)
    rep.push_audio(noise_speech(2.0), T0)
    loud = T0 + round(1e9 / 12)  # the first burst's peak (3 bursts/s)
    talking = rep.render(loud)
    assert talking.speaking
    assert dark_pixels(talking.image, box) > dark_pixels(twin.render(loud).image, box) + 80
    rep.clear_buffer()
    after = rep.render(loud + FRAME_NS)
    assert not after.speaking
    assert np.array_equal(after.image, twin.render(loud + FRAME_NS).image)  # idle within one frame


def test_renders_in_real_time_on_one_core(replica: Replica) -> None:
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        rep = Replica.from_assets(seed=4)
        rep.push_audio(noise_speech(3.0), T0)
        times = []
        for i in range(60):
            # CPU time of this thread: what one core spends, even when the machine is busy.
            start = time.thread_time()
            rep.render(T0 + i * FRAME_NS)
            times.append(time.thread_time() - start)
    finally:
        cv2.setNumThreads(threads)
    median_ms = 1000 * float(np.median(times))
    assert median_ms < 25.0, f"{median_ms:.1f} ms of CPU per frame leaves too little of a 33 ms frame"


# --- the fast rig against the slow, obvious way ---------------------------------------------------------

RIG_POSES = [
    Pose(),
    Pose(open=0.8, spread=0.5, tongue=0.4, head_rot_deg=0.9, head_dx=0.015, breath=0.7, gaze_x=0.05),
    Pose(open=0.5, round=0.9, blink=0.6, gaze_x=-0.7, gaze_y=0.4, brow=0.8, head_dy=-0.01, breath=-0.9),
    Pose(open=1.0, tongue=0.9, blink=1.0, gaze_x=0.5, head_rot_deg=-1.2, head_dx=-0.02, breath=0.3),
    Pose(open=0.05, spread=0.2, gaze_y=-0.3, brow=0.3, head_rot_deg=0.4, breath=0.2),
]


def slow_ramps(y: np.ndarray, k_out: np.ndarray, k_src: np.ndarray) -> np.ndarray:
    """Every segment's ramp over every pixel, in float64: what fields.ramps computes in bands."""
    k_out, k_src = k_out.astype(np.float64), k_src.astype(np.float64)
    d_out, d_src = np.diff(k_out, axis=0), np.diff(k_src, axis=0)
    dy = np.zeros((y.shape[0], k_out.shape[1]))
    for i in range(d_out.shape[0]):
        dy += np.clip((y - k_out[i]) / np.maximum(d_out[i], 1e-3), 0.0, 1.0) * (d_src[i] - d_out[i])
    return dy


def test_banded_ramps_equal_every_segment_over_every_pixel() -> None:
    rng = np.random.default_rng(7)
    y = (np.arange(160) + 100.37)[:, None]
    for trial in range(40):
        cols = 70
        k_out = np.sort(rng.uniform(80, 280, (7, cols)), axis=0)
        k_out[0], k_out[-1] = 90.0, 270.0
        k_src = k_out.copy()
        k_src[1:-1] += rng.uniform(-15, 15, (5, cols)) * (rng.random((5, cols)) < 0.7)  # some columns unmoved
        k_src[1:-1, :10] = k_out[1:-1, :10]
        if trial % 2 == 0:
            k_out[3] = k_out[2]  # lips shut: a zero-length segment, a jump in the source
        if trial % 4 == 1:
            k_out[[2, 3]] = k_out[[3, 2]]  # knots out of order
        k_out, k_src = k_out.astype(np.float32), k_src.astype(np.float32)
        fast = ramps(y, k_out, k_src)
        assert fast.dtype == np.float32
        # float32 rows: a jump (a 1e-3 px ramp) may land 1e-5 px off, so compare with rows moved by 1e-4 px.
        below, above = slow_ramps(y - 1e-4, k_out, k_src), slow_ramps(y + 1e-4, k_out, k_src)
        assert (fast >= np.minimum(below, above) - 1e-3).all() and (fast <= np.maximum(below, above) + 1e-3).all()


def test_sample_equals_np_interp() -> None:
    table = np.random.default_rng(3).normal(size=(3, 40)).cumsum(axis=1)
    at = np.linspace(-5.0, 45.0, 301)
    got = sample(table, at.copy())
    for row, values in zip(got, table, strict=True):
        assert np.allclose(row, np.interp(at, np.arange(40.0), values), rtol=0, atol=1e-12)


def test_draw_equals_the_whole_frame_warped_and_painted_the_obvious_way(monkeypatch) -> None:
    """The rig remaps only where the face can move and paints only inside the lips: nothing else may change."""
    rig = FaceRig(Replica.from_assets().face)
    fast = [rig.draw(pose) for pose in RIG_POSES]
    monkeypatch.setattr(paint, "_band", lambda rows, on, lo, hi: ((0, rows.size), (0, on.size)))
    for pose, image in zip(RIG_POSES, fast, strict=True):
        map_x, map_y, gap = rig._maps(pose)
        slow = cv2.remap(rig.base, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        rig.painter.paint(slow[rig._mroi.slice], gap.col, gap.y, gap.top, gap.bottom, pose.tongue)
        assert np.array_equal(image, slow), pose
    # And with every ramp evaluated over every pixel in float64: within the map's 1/32-pixel steps.
    slow_f32 = lambda y, k_out, k_src: slow_ramps(y, k_out, k_src).astype(np.float32)  # noqa: E731
    monkeypatch.setattr(rig_module, "ramps", slow_f32)
    monkeypatch.setattr(eyes_module, "ramps", slow_f32)
    for pose, image in zip(RIG_POSES, fast, strict=True):
        diff = np.abs(rig.draw(pose).astype(int) - image)
        assert diff.max() <= 2 and diff.mean() < 1e-3, (pose, diff.max(), diff.mean())
        assert not np.array_equal(image, fast[0]) or pose == RIG_POSES[0]


def test_one_rig_draws_from_two_threads_at_once() -> None:
    rig = FaceRig(Replica.from_assets().face)
    poses = RIG_POSES * 4
    alone = [rig.draw(pose) for pose in poses]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(rig.draw, poses))
    assert all(np.array_equal(a, b) for a, b in zip(alone, together, strict=True))
