"""The camera barge-in gate on video files: a face that starts talking vs faces that stay still.

Clips are rendered with the replica (a real face whose lips follow real Piper
speech), written with cv2.VideoWriter (MJPG, so codec noise is in play) and
read back through cv2.VideoCapture as the camera. Speech onsets are put to
the gate at several moments, each once the frames up to 200 ms after it have
arrived (about when the VAD reports an onset).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from app.duplex.gate import MouthGate

FPS = 15.0
CLIP_S = 4.0
SPEECH_AT_S = 1.5  # the "talking" clip listens quietly, then speaks
ONSETS_S = (1.55, 1.8, 2.2, 2.8, 3.4)
T0_NS = 50_000_000_000


def _render(path: Path, replica, transform=None, glances: bool = False) -> Path:
    """Write the clip; with ``glances`` the eyes dart to a new target every 0.6 s (mouth shut)."""
    from app.replica import replica as replica_module

    clock = [T0_NS]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, replica.size)
    with pytest.MonkeyPatch.context() as mp:  # gaze changes are stamped with the replica's clock
        mp.setattr(replica_module, "time", SimpleNamespace(perf_counter_ns=lambda: clock[0]))
        for i in range(int(CLIP_S * FPS)):
            clock[0] = T0_NS + int(i * 1e9 / FPS)
            if glances and i % 9 == 0:
                replica.set_gaze_target(0.8 * (-1) ** (i // 9), -0.3)
            image = replica.render(clock[0]).image
            writer.write(transform(i, image) if transform else image)
    writer.release()
    return path


def _head_drift(i: int, image: np.ndarray) -> np.ndarray:
    """A listener shifting in their seat: a slow sway of up to 6 px plus 1 px jitter."""
    dx = 6 * np.sin(i / 6) + (i % 3 - 1)
    dy = 3 * np.cos(i / 9)
    shift = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, shift, (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REPLICATE)


@pytest.fixture(scope="module")
def clips(tts, tmp_path_factory) -> dict[str, Path]:
    from app.replica import Replica

    folder = tmp_path_factory.mktemp("clips")
    talking = Replica.from_assets(seed=2)
    start = T0_NS + int(SPEECH_AT_S * 1e9)
    for chunk in tts.synthesize("Wait, stop, I have a question about that."):
        talking.push_audio(chunk, start)
        start += int(chunk.duration_s * 1e9)
    looking = Replica.from_assets(seed=3)
    return {
        "talking": _render(folder / "talking.avi", talking),
        "talking, head moving": _render(folder / "talking_drift.avi", talking, _head_drift),
        "still": _render(folder / "still.avi", Replica.from_assets(seed=2)),
        "still, glancing": _render(folder / "glancing.avi", looking, glances=True),
        "still, head moving": _render(folder / "drift.avi", Replica.from_assets(seed=4), _head_drift),
        "no face (upside down)": _render(
            folder / "noface.avi", Replica.from_assets(seed=2), lambda i, im: cv2.rotate(im, cv2.ROTATE_180)
        ),
    }


def read_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    assert len(frames) == int(CLIP_S * FPS)
    return frames


def decisions_for(frames: list[np.ndarray], gate: MouthGate) -> list[tuple[bool, str, float, float]]:
    """Feed the camera in capture order and ask the gate at each onset, as the live app would."""
    fed, out = 0, []
    for onset_s in ONSETS_S:
        while fed < len(frames) and fed / FPS <= onset_s + 0.2:
            gate.on_frame(frames[fed], T0_NS + int(fed * 1e9 / FPS))
            fed += 1
        decision = gate.decide(T0_NS + int(onset_s * 1e9))
        out.append((decision.accepted, decision.reason, decision.peak_motion, decision.threshold))
    return out


def test_gate_accepts_a_moving_mouth_and_rejects_still_faces(clips) -> None:
    table = {name: decisions_for(read_frames(path), MouthGate()) for name, path in clips.items()}
    print("\n| clip | " + " | ".join(f"onset {t:.2f} s" for t in ONSETS_S) + " |")
    for name, row in table.items():
        cells = " | ".join(f"{'accept' if a else 'reject'} ({m:.1f}/{t:.1f})" for a, _, m, t in row)
        print(f"| {name} | {cells} |")
    for talking in ("talking", "talking, head moving"):
        assert all(a and r == "mouth moving" for a, r, *_ in table[talking]), (talking, table[talking])
    for still in ("still", "still, glancing", "still, head moving"):
        assert not any(a for a, *_ in table[still]), (still, table[still])
        assert all(r == "mouth still" for _, r, *_ in table[still])
    assert all(a and r == "no face" for a, r, *_ in table["no face (upside down)"])


def test_gate_accepts_without_camera_or_when_switched_off(clips) -> None:
    gate = MouthGate()
    assert gate.accept(T0_NS) and gate.decisions[-1].reason == "no camera"
    frames = read_frames(clips["still"])
    for i, image in enumerate(frames[:15]):  # the camera delivers one second, then stops
        gate.on_frame(image, T0_NS + int(i * 1e9 / FPS))
    assert not gate.accept(T0_NS + int(0.8e9))  # a still face right there: rejected
    assert gate.accept(T0_NS + int(3e9)) and gate.decisions[-1].reason == "no camera"  # stale camera
    gate.enabled = False
    assert gate.accept(T0_NS + int(0.8e9)) and gate.decisions[-1].reason == "gate off"
