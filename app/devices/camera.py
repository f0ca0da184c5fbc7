"""The webcam (or a video file standing in for one) on its own capture thread.

Frames are BGR uint8 arrays stamped with the monotonic clock the rest of the
pipeline uses.  Opening a camera can block for a second, so it happens on the
capture thread too; failures arrive through ``on_error`` with a message that
says what to do, never as an exception on the caller's (GUI) thread.
"""

from __future__ import annotations

import glob
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app.core.events import now_ns

FrameCallback = Callable[[np.ndarray, int], None]
ErrorCallback = Callable[[str], None]

_log = logging.getLogger(__name__)
_MAX_READ_FAILURES = 15  # ~1 s of failed reads at 15 fps: the camera is gone


def list_cameras() -> list[tuple[str, str]]:
    """(device id, label) of the cameras present; empty when none.

    On Linux the V4L2 nodes are listed without opening them (probing with
    OpenCV is slow and noisy); elsewhere the first three indices are probed.
    """
    if sys.platform.startswith("linux"):
        found = []
        for node in sorted(glob.glob("/dev/video*"), key=lambda p: (len(p), p)):
            index = node.removeprefix("/dev/video")
            if not index.isdigit():
                continue
            label_file = Path(f"/sys/class/video4linux/video{index}/name")
            label = label_file.read_text(encoding="utf-8").strip() if label_file.exists() else node
            found.append((index, f"{label} ({node})"))
        return found
    import cv2

    found = []
    for index in range(3):
        cap = cv2.VideoCapture(index)
        if cap.isOpened():
            found.append((str(index), f"Camera {index}"))
        cap.release()
    return found


def _open(device: str):
    import cv2

    target: int | str = int(device) if device.isdigit() else device
    return cv2.VideoCapture(target)


class CameraSource:
    """Reads frames on a thread and hands each to ``on_frame(image_bgr, t_ns)``.

    ``device`` is an index ("0") or a path to a video file; a file is played
    at its own frame rate (looping if ``loop``), like a live camera would.
    ``max_fps`` caps delivery so preview and face detection stay cheap.
    """

    def __init__(
        self,
        device: str,
        on_frame: FrameCallback,
        on_error: ErrorCallback | None = None,
        *,
        max_fps: float = 15.0,
        loop: bool = False,
        size: tuple[int, int] = (640, 480),
    ) -> None:
        self.device = device
        self.name = f"camera {device}"
        self._on_frame = on_frame
        self._on_error = on_error
        self._max_fps = max_fps
        self._loop = loop
        self._size = size
        self._stop = threading.Event()
        self.opened = threading.Event()
        self.failed: str | None = None
        self.frames = 0
        self._thread = threading.Thread(target=self._run, name="doppel-camera", daemon=True)

    @property
    def is_file(self) -> bool:
        return not self.device.isdigit()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> bool:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _fail(self, message: str) -> None:
        self.failed = message
        _log.warning("%s", message)
        if self._on_error is not None and not self._stop.is_set():
            self._on_error(message)

    def _run(self) -> None:
        import cv2

        cap = _open(self.device)
        if not cap.isOpened():
            cap.release()
            self._fail(
                f"Could not open the camera '{self.device}'. Pick another one in the settings; chat works without it."
            )
            return
        if not self.is_file:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self._size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._size[1])
        file_fps = cap.get(cv2.CAP_PROP_FPS) if self.is_file else 0.0
        period = 1.0 / min(self._max_fps, file_fps or self._max_fps)
        self.opened.set()
        failures = 0
        next_due = time.perf_counter()
        try:
            while not self._stop.is_set():
                ok, image = cap.read()
                if not ok or image is None:
                    if self.is_file and self._loop and self.frames:
                        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                        continue
                    failures += 1
                    if self.is_file or failures >= _MAX_READ_FAILURES:
                        ended = "The camera video ended." if self.is_file else "The camera stopped (unplugged?)."
                        self._fail(f"{ended} Pick a camera in the settings.")
                        return
                    self._stop.wait(0.05)
                    continue
                failures = 0
                now = time.perf_counter()
                if now < next_due and not self.is_file:
                    continue  # a live camera runs faster than we need: skip this frame
                self.frames += 1
                self._on_frame(image, now_ns())
                next_due = max(next_due + period, now)
                if self.is_file:  # a file has no pace of its own: play it in real time
                    self._stop.wait(max(0.0, next_due - time.perf_counter()))
        finally:
            cap.release()
