"""Measure the replica: render time per frame on one thread, and landmark fit error.

    python -m app.replica.bench

Render time is reported both as wall clock and as this thread's CPU time (the
latter is what one core spends, and stays honest on a busy machine).
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from app.core.engines import SpeechChunk
from app.replica.detect import fit_landmarks
from app.replica.face import apply_affine, load_default_source
from app.replica.replica import Replica

T0 = 10**12
FRAME_NS = 40_000_000
# scale, degrees, shift (px), gamma (>1 darkens)
FIT_CASES = [
    (1.0, 0.0, (0, 0), 1.0),
    (0.8, 4.0, (60, 40), 1.0),
    (1.3, -5.0, (-40, 10), 1.0),
    (1.0, 3.0, (30, 60), 2.0),
    (0.7, -3.0, (150, 120), 1.6),
    (1.6, 6.0, (-120, -40), 1.0),
    (1.15, -7.0, (20, 30), 2.2),
]


def render_times(frames: int = 250) -> tuple[np.ndarray, np.ndarray]:
    """(wall, cpu) seconds per frame while speaking (envelope-driven bursts) and blinking."""
    sr = 22050
    t = np.arange(sr * frames // 25) / sr
    audio = 0.3 * np.clip(np.sin(2 * np.pi * 3 * t), 0, None) * np.random.default_rng(0).standard_normal(t.size)
    rep = Replica.from_assets(seed=1)
    rep.push_audio(SpeechChunk(audio.astype(np.float32), sr), T0)
    wall, cpu = [], []
    for i in range(frames):
        w, c = time.perf_counter(), time.thread_time()
        rep.render(T0 + i * FRAME_NS)
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - w)
    return np.array(wall), np.array(cpu)


def fit_errors() -> list[tuple[tuple, float, float, float]]:
    """(case, mean px, max px, inter-ocular px) of the fit on the moved default portrait."""
    image, points = load_default_source()
    out = []
    for case in FIT_CASES:
        scale, angle, shift, gamma = case
        m = cv2.getRotationMatrix2D((224.0, 120.0), angle, scale)
        m[:, 2] += shift
        moved = cv2.warpAffine(image, m, (640, 560), borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))
        moved = (255.0 * (moved / 255.0) ** gamma).astype(np.uint8)
        truth = apply_affine(m, points)
        err = np.hypot(*(fit_landmarks(moved).points - truth).T)
        iod = float(np.hypot(*(truth[42:48].mean(0) - truth[36:42].mean(0))))
        out.append((case, float(err.mean()), float(err.max()), iod))
    return out


def main() -> int:
    cv2.setNumThreads(1)
    wall, cpu = render_times()
    print(
        f"render 512x512, 1 thread: median {1e3 * np.median(wall):.1f} ms wall "
        f"(p95 {1e3 * np.percentile(wall, 95):.1f}), {1e3 * np.median(cpu):.1f} ms CPU"
    )
    for case, mean, worst, iod in fit_errors():
        print(f"fit {case}: mean {mean:.2f} px, max {worst:.2f} px (inter-ocular {iod:.0f} px)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
