"""The replica as a pipeline stage: renders frames at a steady rate on its own thread.

Frames are rendered for the moment they will be shown, on the same monotonic
clock the speaker reports playout on, so the lips match what is heard.  The
first frame that shows speech in a turn is reported to the conversation
(the ``first replica frame`` metric).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from app.core.cpu_plan import CpuPlan, PhaseBudget
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

    # Optional: ``moving_until(t_ns) -> int | None``, the end of a blink under way (a still face finishes it).


FrameCallback = Callable[[Any], None]
_TICK_MARGIN_NS = 2_000_000  # a burst yields this long before a frame is due


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
        prepare: Callable[[Any], Any] | None = None,
    ) -> None:
        """``prepare``: what the display does to each frame (the window scales it), done as it is drawn.

        Frames drawn ahead in a burst are then prepared in the burst too, while the
        LLM rests, not on their tick beside it.
        """
        self.face = face
        # The CPU plan sets the idle rate per phase (few frames while the critical path runs).
        self._idle_fps = idle_fps or (lambda: face.idle_fps)
        self._on_start = on_start
        self._prepare = prepare
        self.on_frame = on_frame
        self.on_speaking_frame = on_speaking_frame
        self.frames = 0
        self.render_ms: list[float] = []  # recent render times (bench reads them)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="doppel-replica", daemon=True)
        self._plan: CpuPlan | None = None
        self._ahead: deque[tuple[int, Any]] = deque()  # frames rendered in a burst: (for when, frame)
        self._ahead_speech = 0  # the face's speech generation they were drawn from
        self._burst_until_ns: int | None = None  # a burst in progress (the LLM rests) draws up to here
        self.burst_frames = 0  # frames drawn ahead in bursts (the rest were drawn on their tick)
        self.wakes = 0  # speech queued
        self._still_until_ns = 0  # the plan holds the face still until then (no idle frames)

    def start(self) -> None:
        self._thread.start()

    def follow(self, plan: CpuPlan) -> None:
        """Take the idle frame rate from ``plan`` and run as one of its background threads (the GUI's stage)."""
        self._idle_fps = lambda: plan.budget.face_fps
        self._plan = plan
        plan.on_change(self._on_budget)
        if self._thread.native_id is not None:
            plan.adopt_thread("replica", background=True, tid=self._thread.native_id)
        else:
            self._on_start = lambda: plan.adopt_thread("replica", background=True)

    def _on_budget(self, budget: PhaseBudget) -> None:
        """A phase began: hold still for its ``face_still_s``, and re-plan the next tick either way."""
        self._still_until_ns = now_ns() + int(budget.face_still_s * 1e9) if budget.face_still_s > 0 else 0
        self._wake.set()

    def wake(self) -> None:
        """Speech was queued: re-plan the next tick."""
        self.wakes += 1
        self._wake.set()

    def _run(self) -> None:
        try:
            self._ticks()
        finally:
            self._end_burst()  # never leave the LLM resting

    def _ticks(self) -> None:
        if self._on_start is not None:
            self._on_start()
        fast_ns = int(1e9 / self.face.fps)
        next_ns = now_ns()
        while not self._stop.is_set():
            idle_ns = self._idle_ns(fast_ns)
            frame = self._drawn_ahead(next_ns, fast_ns) or self._render(next_ns)
            self.on_frame(frame)
            if frame.speaking and self.on_speaking_frame is not None:
                self.on_speaking_frame(self.frames, now_ns())
            self.frames += 1
            last_ns = next_ns
            next_ns = self._next_tick(last_ns, fast_ns, idle_ns)
            self._draw_ahead(next_ns, fast_ns)
            while not self._stop.is_set():
                self._wake.clear()
                lag = next_ns - now_ns()
                if lag < -fast_ns:  # fell behind (machine busy): draw the present now, not missed frames
                    next_ns = now_ns()
                    lag = 0
                if not self._wake.wait(max(0.0, lag / 1e9)):
                    break
                idle_ns = self._idle_ns(fast_ns)
                next_ns = min(next_ns, self._next_tick(last_ns, fast_ns, idle_ns))

    def _idle_ns(self, fast_ns: int) -> int:
        """The idle tick the plan's current phase allows (never faster than speech frames)."""
        return max(fast_ns, int(1e9 / max(1.0, self._idle_fps())))

    def _render(self, t_ns: int) -> Any:
        started = time.perf_counter()
        frame = self.face.render(t_ns)
        self.render_ms.append((time.perf_counter() - started) * 1000)
        if len(self.render_ms) > 500:
            del self.render_ms[:250]
        return self._prepare(frame) if self._prepare is not None else frame

    def _drawn_ahead(self, t_ns: int, fast_ns: int) -> Any | None:
        """The burst's frame for this tick, if one was drawn and the speech it shows still stands."""
        self._forget_stale_speech()
        while self._ahead and self._ahead[0][0] < t_ns - fast_ns // 2:
            self._ahead.popleft()  # the stage fell behind: those moments are gone
        if self._ahead and self._ahead[0][0] <= t_ns + fast_ns // 2:
            return self._ahead.popleft()[1]
        return None

    def _draw_ahead(self, next_ns: int, fast_ns: int) -> None:
        """While the LLM decodes a reply and the face speaks, draw the next frames in a burst (the CPU plan).

        A frame drawn beside the LLM's two threads stalls both of them; a burst
        while the LLM rests costs it only the drawing.  Frames are drawn for the
        ticks they will be shown at, so what is seen is the same.  A burst stops
        for each tick that comes due and goes on after it, the LLM still resting.
        """
        plan = self._plan
        if plan is None:
            return
        if self._burst_until_ns is None:
            if plan.face_ahead_s <= 0 or not plan.llm_decoding:
                return
            self._forget_stale_speech()
            t_ns = self._first_undrawn(next_ns, fast_ns)
            if t_ns - now_ns() > plan.settings.face_refill_s * 1e9 or self.face.next_speech_ns(t_ns) != t_ns:
                return  # enough drawn, or no speech there to draw ahead
            self._burst_until_ns = now_ns() + int(plan.face_ahead_s * 1e9)
            plan.face_burst_begin()
        t_ns = self._first_undrawn(next_ns, fast_ns)
        while t_ns <= self._burst_until_ns and self.face.next_speech_ns(t_ns) == t_ns and not self._stop.is_set():
            if now_ns() >= next_ns - _TICK_MARGIN_NS:
                return  # show the frame that is due first
            self._ahead.append((t_ns, self._render(t_ns)))
            self.burst_frames += 1
            t_ns += fast_ns
        self._end_burst()

    def _forget_stale_speech(self) -> None:
        speech = getattr(self.face, "speech_generation", 0)
        if speech != self._ahead_speech:
            self._ahead.clear()  # a barge-in cleared the speech those frames show
            self._ahead_speech = speech

    def _first_undrawn(self, next_ns: int, fast_ns: int) -> int:
        """The first tick with no frame drawn for it yet."""
        return self._ahead[-1][0] + fast_ns if self._ahead else next_ns

    def _end_burst(self) -> None:
        if self._burst_until_ns is not None and self._plan is not None:
            self._burst_until_ns = None
            self._plan.face_burst_end()

    def _next_tick(self, last_ns: int, fast_ns: int, idle_ns: int) -> int:
        """Next render time: a fast tick while speech is on, its first sample when due, else an idle tick.

        While the plan holds the face still, the idle ticks up to then are skipped.
        """
        speech = self.face.next_speech_ns(last_ns)
        if speech is not None and speech <= last_ns + idle_ns:
            return speech if speech > last_ns else last_ns + fast_ns
        still = self._still_until(last_ns)
        if still > last_ns + idle_ns:
            return still if speech is None else min(still, speech)
        return last_ns + idle_ns

    def _still_until(self, last_ns: int) -> int:
        """When the hold ends, or 0 when the face is not held (or must first finish a blink it is in)."""
        if last_ns >= self._still_until_ns:
            return 0
        moving_until = getattr(self.face, "moving_until", None)
        blink_ends = moving_until(last_ns) if moving_until is not None else None
        return 0 if blink_ends is not None and blink_ends > last_ns else self._still_until_ns

    def stop(self, timeout: float = 2.0) -> bool:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()
