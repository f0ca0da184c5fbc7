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

from app.core.cpu_plan import CpuPlan
from app.core.events import now_ns


class RenderableFace(Protocol):
    fps: float  # while speaking
    idle_fps: float  # otherwise

    def render(self, t_ns: int) -> Any:
        """A frame with ``image`` (BGR uint8) and ``speaking`` attributes."""
        ...

    def next_speech_ns(self, t_ns: int) -> int | None:
        """``t_ns`` if speaking then, else the start of the next queued speech, else None."""
        ...


FrameCallback = Callable[[Any], None]


class ReplicaStage:
    """Ticks at the face's fps while it speaks, at its idle fps otherwise; frames go to ``on_frame``.

    Idle frames come less often so that, on two cores, ASR, LLM and TTS get the
    CPU while the user waits; ``wake()`` (called when speech is queued) makes
    the first speaking frame land on the speech's first sample, not on the next
    idle tick.
    """

    def __init__(
        self,
        face: RenderableFace,
        on_frame: FrameCallback,
        on_speaking_frame: Callable[[int, int], None] | None = None,
        *,
        idle_fps: Callable[[], float] | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        self.face = face
        # The CPU plan sets the idle rate per phase (few frames while the critical path runs).
        self._idle_fps = idle_fps or (lambda: face.idle_fps)
        self._on_start = on_start
        self.on_frame = on_frame
        self.on_speaking_frame = on_speaking_frame
        self.frames = 0
        self.render_ms: list[float] = []  # recent render times (bench reads them)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="doppel-replica", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def follow(self, plan: CpuPlan) -> None:
        """Take the idle frame rate from ``plan`` and run as one of its background threads (the GUI's stage)."""
        self._idle_fps = lambda: plan.budget.face_fps
        if self._thread.native_id is not None:
            plan.adopt_thread("replica", background=True, tid=self._thread.native_id)
        else:
            self._on_start = lambda: plan.adopt_thread("replica", background=True)

    def wake(self) -> None:
        """Speech was queued: re-plan the next tick."""
        self._wake.set()

    def _run(self) -> None:
        if self._on_start is not None:
            self._on_start()
        fast_ns = int(1e9 / self.face.fps)
        next_ns = now_ns()
        while not self._stop.is_set():
            idle_ns = max(fast_ns, int(1e9 / max(1.0, self._idle_fps())))
            started = time.perf_counter()
            frame = self.face.render(next_ns)
            self.render_ms.append((time.perf_counter() - started) * 1000)
            if len(self.render_ms) > 500:
                del self.render_ms[:250]
            self.on_frame(frame)
            if frame.speaking and self.on_speaking_frame is not None:
                self.on_speaking_frame(self.frames, now_ns())
            self.frames += 1
            last_ns = next_ns
            next_ns = self._plan(last_ns, fast_ns, idle_ns)
            while not self._stop.is_set():
                self._wake.clear()
                lag = next_ns - now_ns()
                if lag < -fast_ns:  # fell behind (machine busy): draw the present now, not missed frames
                    next_ns = now_ns()
                    lag = 0
                if not self._wake.wait(max(0.0, lag / 1e9)):
                    break
                next_ns = min(next_ns, self._plan(last_ns, fast_ns, idle_ns))

    def _plan(self, last_ns: int, fast_ns: int, idle_ns: int) -> int:
        """Next render time: a fast tick while speech is on, its first sample when due, else an idle tick."""
        speech = self.face.next_speech_ns(last_ns)
        if speech is None or speech > last_ns + idle_ns:
            return last_ns + idle_ns
        return speech if speech > last_ns else last_ns + fast_ns

    def stop(self, timeout: float = 2.0) -> bool:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()
