"""The replica as a pipeline stage: renders frames at a steady rate on its own thread.

Frames are rendered for the moment they will be shown, on the same monotonic
clock the speaker reports playout on, so the lips match what is heard.  The
first frame that shows speech in a turn is reported to the conversation
(the ``first replica frame`` metric).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from app.core.events import now_ns


class RenderableFace(Protocol):
    fps: float

    def render(self, t_ns: int) -> Any:
        """A frame with ``image`` (BGR uint8) and ``speaking`` attributes."""
        ...


FrameCallback = Callable[[Any], None]


class ReplicaStage:
    """Ticks at the face's fps; hands each frame to ``on_frame`` (GUI, recorder, bench)."""

    def __init__(
        self,
        face: RenderableFace,
        on_frame: FrameCallback,
        on_speaking_frame: Callable[[int, int], None] | None = None,
    ) -> None:
        self.face = face
        self.on_frame = on_frame
        self.on_speaking_frame = on_speaking_frame
        self.frames = 0
        self.render_ms: list[float] = []  # recent render times (bench reads them)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="doppel-replica", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        period_ns = int(1e9 / self.face.fps)
        next_ns = now_ns()
        while not self._stop.is_set():
            started = time.perf_counter()
            frame = self.face.render(next_ns)
            self.render_ms.append((time.perf_counter() - started) * 1000)
            if len(self.render_ms) > 500:
                del self.render_ms[:250]
            self.on_frame(frame)
            if frame.speaking and self.on_speaking_frame is not None:
                self.on_speaking_frame(self.frames, now_ns())
            self.frames += 1
            next_ns += period_ns
            lag = next_ns - now_ns()
            if lag < -period_ns:  # fell behind (machine busy): skip ahead rather than play catch-up
                next_ns = now_ns() + period_ns
                lag = period_ns
            self._stop.wait(max(0.0, lag / 1e9))

    def stop(self, timeout: float = 2.0) -> bool:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()
