"""The camera path without Qt: a video file through cv2.VideoCapture -> face detection -> gaze and presence."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.devices.camera import CameraSource, list_cameras
from app.replica.face import assets_dir
from app.vision import FaceTracker, Sighting, VisionStage, detect_faces, gaze_for

FRAME_W, FRAME_H = 640, 480


def write_face_video(path: Path, seconds: float = 2.0, fps: int = 15, face: bool = True, x_from: float = 0.03) -> Path:
    """An MJPG AVI of the default portrait framed like a webcam user, drifting right from ``x_from``."""
    source = cv2.imread(str(assets_dir() / "astronaut.jpg"))
    head = cv2.resize(source[0:320, 64:384], (400, 400), interpolation=cv2.INTER_AREA)  # head and shoulders
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (FRAME_W, FRAME_H))
    assert writer.isOpened(), "OpenCV cannot write MJPG AVI here"
    for i in range(round(seconds * fps)):
        frame = np.full((FRAME_H, FRAME_W, 3), (38, 32, 28), np.uint8)
        cv2.rectangle(frame, (0, 380), (FRAME_W, FRAME_H), (50, 46, 44), -1)
        if face:
            x = min(FRAME_W - 400, round(FRAME_W * x_from + i * 2))
            frame[80:480, x : x + 400] = head
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def face_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_face_video(tmp_path_factory.mktemp("cam") / "face.avi")


def test_detects_the_portrait_and_maps_gaze_mirrored(face_video: Path) -> None:
    cap = cv2.VideoCapture(str(face_video))
    ok, frame = cap.read()
    cap.release()
    assert ok
    boxes = detect_faces(frame)
    assert boxes, "the default portrait must be found by the Haar cascade"
    x, _y, w, _h = boxes[0]
    assert 80 < w < 300 and x + w / 2 < FRAME_W / 2  # the face sits in the image's left half
    tracker = FaceTracker(appear_after=1)
    sighting = tracker.update(boxes, (FRAME_W, FRAME_H), 0)
    assert sighting.present and sighting.x < 0
    gx, gy = gaze_for(sighting)
    assert gx > 0  # image-left in the camera is the replica's image-right: look there
    assert -1 <= gy <= 1


def test_camera_source_plays_a_file_into_the_vision_stage(face_video: Path) -> None:
    gazes: list[tuple[float, float]] = []
    presence: list[bool] = []
    sightings: list[Sighting] = []
    stage = VisionStage(lambda x, y: gazes.append((x, y)), presence.append, sightings.append, rate_hz=20)
    camera = CameraSource(str(face_video), stage, loop=True)
    camera.start()
    deadline = time.monotonic() + 10
    while not (presence and gazes) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert camera.stop()
    assert presence[:1] == [True], "the face should be reported present"
    assert gazes and all(-1 <= g <= 1 for xy in gazes for g in xy)
    last = next(s for s in reversed(sightings) if s.present)
    assert last.box is not None and gazes[-1] == gaze_for(last)


def test_presence_has_hysteresis() -> None:
    tracker = FaceTracker(appear_after=2, leave_after_s=1.0)
    box = [(100, 100, 80, 80)]
    assert not tracker.update(box, (640, 480), 0).present  # one hit is not enough
    assert tracker.update(box, (640, 480), 100_000_000).present
    assert tracker.update([], (640, 480), 600_000_000).present  # a short miss keeps the user
    assert not tracker.update([], (640, 480), 1_200_000_000).present


def test_a_video_without_a_face_reports_nobody(tmp_path: Path) -> None:
    path = write_face_video(tmp_path / "empty.avi", seconds=1.0, face=False)
    seen: list[Sighting] = []
    done = threading.Event()

    def on_frame(image: np.ndarray, t_ns: int) -> None:
        s = VisionStage(rate_hz=100)(image, t_ns)
        if s is not None:
            seen.append(s)
        if len(seen) >= 5:
            done.set()

    camera = CameraSource(str(path), on_frame, loop=True)
    camera.start()
    assert done.wait(10)
    camera.stop()
    assert not any(s.present for s in seen)


def test_missing_camera_and_ended_video_are_reported(tmp_path: Path) -> None:
    errors: list[str] = []
    missing = CameraSource(str(tmp_path / "nope.avi"), lambda *_: None, errors.append)
    missing.start()
    deadline = time.monotonic() + 5
    while not errors and time.monotonic() < deadline:
        time.sleep(0.02)
    missing.stop()
    assert errors and "Could not open the camera" in errors[0]
    short = write_face_video(tmp_path / "short.avi", seconds=0.4)
    frames: list[int] = []
    ended = CameraSource(str(short), lambda img, t: frames.append(t), errors.append, loop=False)
    ended.start()
    deadline = time.monotonic() + 5
    while len(errors) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    ended.stop()
    assert frames and "ended" in errors[1]


def test_list_cameras_never_fails() -> None:
    assert isinstance(list_cameras(), list)
