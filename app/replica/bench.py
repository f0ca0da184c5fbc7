"""The replica bench: lips, eyes and identity measured from rendered pixels, landmark fits, render time.

    doppel bench --lips [--out DIR]        (or: python -m app.replica.bench)

Every number comes from frames: MediaPipe's face mesh is run on them (see
app/replica/measure.py). Render time is reported as wall clock and as this
thread's CPU time (what one core spends, honest on a busy machine). Wrap any
run in ``flock /tmp/doppel-bench.lock`` on a shared machine.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from app.core.engines import SpeechChunk
from app.replica import measure
from app.replica.face import apply_affine, load_default_source
from app.replica.mesh import FaceMesh, load_face_mesh
from app.replica.replica import Replica

T0 = 10**12
SECOND_FACE = Path(__file__).resolve().parents[2] / "tests" / "data" / "grace_hopper.jpg"
FRAME_NS = 40_000_000
SENTENCE = (
    "Hello there. My name is Joe, and I am happy to meet you today. Do you see how my lips move when I speak? "
    "We could talk about books, music, or the weather."
)
CONTACT_SENTENCE = "Hello, my name is Joe. Would you like some tea with me?"
# scale, degrees, shift (px), gamma (>1 darkens)
FIT_CASES = [
    (1.0, 0.0, (0, 0), 1.0),
    (0.6, 0.0, (180, 150), 1.0),
    (1.8, 0.0, (-150, -60), 1.0),
    (1.0, 10.0, (30, 60), 1.0),
    (1.0, -10.0, (-30, 20), 1.0),
    (1.15, -7.0, (20, 30), 2.2),
    (0.8, 8.0, (100, 80), 2.6),
]
TARGETS = {
    "open_envelope_r": (">=", 0.75),
    "av_offset_ms": ("abs<=", 40.0),
    "round_spread_width_ratio": ("<=", 0.85),
    "bilabial_closed": (">=", 0.95),
    "silences_closed_by_100ms": (">=", 1.0),
}


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


def moved_portrait(case: tuple, image: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A portrait (default: the bundled one) scaled, rotated, shifted and darkened; and the 2x3 transform."""
    centre = (224.0, 120.0)
    if image is None:
        image, _ = load_default_source()
    else:
        centre = (image.shape[1] / 2 - 40, image.shape[0] / 2 - 120)
    scale, angle, shift, gamma = case
    m = cv2.getRotationMatrix2D(centre, angle, scale)
    m[:, 2] += shift
    moved = cv2.warpAffine(image, m, (640, 560), borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))
    return (255.0 * (moved / 255.0) ** gamma).astype(np.uint8), m


def fit_errors(mesh: FaceMesh, image: np.ndarray | None = None) -> list[dict]:
    """Mesh on the moved portrait vs the mesh on the original moved the same way, in eye distances."""
    ref = mesh.fit(load_default_source()[0] if image is None else image)
    assert ref is not None
    out = []
    for case in FIT_CASES:
        moved, m = moved_portrait(case, image)
        started = time.perf_counter()
        fit = mesh.fit(moved)
        ms = 1000.0 * (time.perf_counter() - started)
        if fit is None:
            out.append({"case": case, "found": False})
            continue
        err = np.hypot(*(fit.mesh - apply_affine(m, ref.mesh)).T) / (ref.iod * case[0])
        out.append({"case": case, "found": True, "mean": float(err.mean()), "p95": float(np.percentile(err, 95)),
                    "ms": ms})  # fmt: skip
    return out


def lips(mesh: FaceMesh, replica: Replica, chunks: list[SpeechChunk], fps: float = 100.0) -> dict:
    """Speak the chunks and measure every 1/fps s from the pixels."""
    meter = measure.PixelMeter(mesh, replica)
    speech = measure.push(replica, chunks)
    series = meter.series(replica, speech.end_s + measure.TAIL_S, fps, eyes=True)
    out = measure.lip_metrics(series, speech, meter.rest_gap, meter.closed_margin, meter.rest_eyes)
    out["closed_margin"] = meter.closed_margin
    out.update(measure.prosody_metrics(series, speech, meter.rest_eyes, meter.rest_brow))
    out["identity_median"] = float(np.median(series.shape))
    out["identity_max"] = float(series.shape.max())
    return out


def blinks(mesh: FaceMesh, replica: Replica, seconds: float = 60.0) -> float:
    meter = measure.PixelMeter(mesh, replica)
    series = meter.series(replica, seconds, 15.0, start_ns=T0 + 10**10, eyes=True)
    return measure.blink_rate(series, meter.rest_eyes)


def verdict(key: str, value: float) -> str:
    op, target = TARGETS[key]
    ok = {">=": value >= target, "<=": value <= target, "abs<=": abs(value) <= target}[op]
    return f"{'met' if ok else 'MISSED'} (target {op.replace('abs', '|x| ')} {target:g})"


def run(out: Path | None = None, quick: bool = False) -> dict:
    """Measure, print a report, and write replica.json / replica.md into ``out`` when given."""
    from app.engines.tts_piper import PiperTts
    from app.model_registry import resolve

    cv2.setNumThreads(1)
    mesh = load_face_mesh()
    if mesh is None:
        raise SystemExit("doppel bench --lips: the face models are not installed (run `make run`).")
    tts = PiperTts(resolve("voice"), deterministic=True)
    chunks = list(tts.synthesize(SENTENCE))
    photo, _ = moved_portrait((1.0, 10.0, (30, 60), 2.2))
    faces: dict[str, Callable[[int], Replica]] = {
        "default portrait": Replica.from_assets,
        "from a photo (rotated 10°, dark)": lambda seed: Replica.from_image(photo, seed),
    }
    if SECOND_FACE.is_file():
        faces["from a second photo (another person, glasses)"] = lambda seed: Replica.from_file(SECOND_FACE, seed)
    doc: dict = {"load": os.getloadavg()[0], "sentence": SENTENCE, "faces": {}}
    for name, make in faces.items():
        doc["faces"][name] = lips(mesh, make(2), chunks)
        doc["faces"][name]["blinks_per_min"] = blinks(mesh, make(5), 20.0 if quick else 60.0)
    wall, cpu = render_times(100 if quick else 250)
    doc["render_ms"] = {"wall_median": 1e3 * float(np.median(wall)), "wall_p95": 1e3 * float(np.percentile(wall, 95)),
                        "cpu_median": 1e3 * float(np.median(cpu))}  # fmt: skip
    doc["fit"] = fit_errors(mesh)
    if SECOND_FACE.is_file():  # in a checkout: the test face with glasses (tests/data)
        doc["fit_second_face"] = fit_errors(mesh, cv2.imread(str(SECOND_FACE)))
    text = report(doc)
    print(text)
    if out is not None:
        from app.replica.contact import contact_sheet

        out.mkdir(parents=True, exist_ok=True)
        sheet = contact_sheet(Replica.from_assets(seed=2), list(tts.synthesize(CONTACT_SENTENCE)))
        cv2.imwrite(str(out / "replica-mouth.jpg"), sheet, [cv2.IMWRITE_JPEG_QUALITY, 85])
        (out / "replica.json").write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
        (out / "replica.md").write_text(text + "\n", encoding="utf-8")
    return doc


def report(doc: dict) -> str:
    lines = [
        f"# Replica bench (from pixels)\n\nLoad average at start {doc['load']:.2f}. Sentence: “{doc['sentence']}”\n"
    ]
    for name, m in doc["faces"].items():
        lines += [f"## {name}\n", "| measure | value | verdict |", "|---|--:|---|"]
        for key in TARGETS:
            lines.append(f"| {key} | {m[key]:.3f} | {verdict(key, m[key])} |")
        lines.append(f"| rounded / spread / m-b-p frames | {m['rounded_frames']} / {m['spread_frames']} / "
                     f"{m['bilabial_frames']} | |")  # fmt: skip
        lines.append(f"| silences (≥150 ms), worst closure | {m['silences']}, {m['worst_closure_ms']:.0f} ms | |")
        lines.append(f"| 'closed': measured gap within (idle wander) | {m['closed_margin']:.3f} eye distances | |")
        lines.append(f"| widest opening above rest (eye distances) | {m['open_max']:.3f} | |")
        lines.append(f"| identity: shape distance to the photo, median / max | {100 * m['identity_median']:.1f} % / "
                     f"{100 * m['identity_max']:.1f} % of the eye distance | |")  # fmt: skip
        lines.append(f"| brows at the end of questions / statements (eye distances) | "
                     f"{m['brow_lift_questions']:+.3f} / {m['brow_lift_statements']:+.3f} | |")  # fmt: skip
        lines.append(f"| blinks while speaking, share within 300 ms of a pause | {m['blinks_in_speech']}, "
                     f"{100 * m['blinks_at_pauses']:.0f} % | |")  # fmt: skip
        lines.append(f"| blinks per minute (idle) | {m['blinks_per_min']:.1f} | |\n")
    r = doc["render_ms"]
    lines.append(f"Render 512x512 on one thread: median {r['wall_median']:.1f} ms wall (p95 {r['wall_p95']:.1f}), "
                 f"{r['cpu_median']:.1f} ms CPU (target ≤ 10 ms).\n")  # fmt: skip
    for key, title in (("fit", "the bundled portrait"), ("fit_second_face", "a second face, with glasses")):
        if key not in doc:
            continue
        lines += [f"\nFace mesh on {title}, moved; error against the mesh of the original moved the same way:\n"]
        lines += ["| photo: scale, rotation, shift, gamma | mean / p95 (eye distances) | fit ms |", "|---|--:|--:|"]
        for f in doc[key]:
            if f["found"]:
                lines.append(f"| {f['case']} | {100 * f['mean']:.1f} % / {100 * f['p95']:.1f} % | {f['ms']:.0f} |")
            else:
                lines.append(f"| {f['case']} | no face found | |")
    return "\n".join(lines)


def main() -> int:
    run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
