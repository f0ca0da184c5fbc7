"""One headless conversation driven by spoken files at real-time pace, recorded event by event.

A controller on the calling thread releases each input when the previous
turn allows it: a question after the reply was generated and heard for a
while (then it stops the playout, as a user pressing Esc would, so long
replies do not eat the time budget; every latency mark is already taken by
then); an interrupter once the reply has been heard for ``barge_after_s``,
so the pipeline sees a real barge-in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.bench.cpu import CpuSampler
from app.bench.event_log import EventLog
from app.bench.questions import Question, word_error_rate
from app.config import Config
from app.core import events as ev
from app.core.audio_io import SOURCE_RATE, FileSource, SourceItem, WavWriterSink
from app.core.history import JsonlLog
from app.core.jobs import EngineSet

Progress = Callable[[str], None]

# Marks of a turn, in the order they happen: (name, event type, which timestamp).
MARKS: tuple[tuple[str, type, str], ...] = (
    ("vad_decided", ev.SpeechEnded, "t_ns"),
    ("asr_final", ev.TranscriptFinal, "t_ns"),
    ("llm_request", ev.LlmRequest, "t_ns"),
    ("first_token", ev.LlmToken, "t_ns"),
    ("first_chunk", ev.TtsChunkQueued, "t_ns"),
    ("tts_first_audio", ev.TtsAudio, "t_ns"),
    ("first_audio_played", ev.AudioPlayed, "t_ns"),
    ("first_replica_frame", ev.ReplicaFrame, "t_ns"),
    ("llm_done", ev.LlmDone, "t_ns"),
)


@dataclass(frozen=True)
class SessionPlan:
    gap_s: float = 0.6  # silence before the next question
    playout_cap_s: float = 2.5  # once the reply is generated, stop its playout after this much
    generation_grace_s: float = 5.0  # ...or this much later even if the LLM is still generating
    barge_after_s: float = 1.0  # the interrupter starts after the reply was heard this long
    turn_timeout_s: float = 60.0


class TimedFace:
    """The replica with each render timed; the stage sees the same face."""

    def __init__(self, face: Any) -> None:
        self.face = face
        self.fps: float = face.fps
        self.idle_fps: float = getattr(face, "idle_fps", face.fps)
        self.frames: list[tuple[int, float]] = []  # (render start ns, render ms)
        self.shown: list[int] = []  # when each frame went out (frames rendered ahead go out on their tick)
        self.held = False  # show the last frame again instead of rendering (the conversation is idle)
        self._last: Any = None

    def show(self, _frame: Any) -> None:
        self.shown.append(time.perf_counter_ns())

    def render(self, t_ns: int) -> Any:
        if self.held and self._last is not None:
            return self._last  # the bench measures the engine alone between turns
        started = time.perf_counter_ns()
        frame = self._last = self.face.render(t_ns)
        self.frames.append((started, (time.perf_counter_ns() - started) / 1e6))
        return frame

    def __getattr__(self, name: str) -> Any:
        """The rest (speech pushed and queued, barge-in, blinks) is the face's own."""
        if name == "face":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.face, name)


class Session:
    """Runs ``order`` through a fresh ``Conversation`` on ``engines``; ``run()`` returns the record."""

    def __init__(
        self,
        config: Config,
        engines: EngineSet,
        order: list[Question],
        audio: dict[str, np.ndarray],
        *,
        face: Any | None,
        log_path: Path,
        plan: SessionPlan | None = None,
        known_threads: dict[int, str] | None = None,
        progress: Progress = lambda _msg: None,
        external: bool = False,
    ) -> None:
        """``external``: the conversation is someone else's (the window's), handed over with ``adopt``."""
        from app.core.conversation import Conversation

        plan = plan or SessionPlan()
        self.order, self.plan, self.progress = order, plan, progress
        self.known_threads = known_threads or {}
        self.releases = [threading.Event() for _ in order]
        items = [
            SourceItem(
                audio[q.id],
                wait_for=self.releases[i].is_set,  # the first input too: it plays once ``run`` starts
                delay_s=0.0 if q.kind == "interrupter" else plan.gap_s,
                label=q.id,
            )
            for i, q in enumerate(order)
        ]
        self.audio_s = {q.id: len(audio[q.id]) / SOURCE_RATE for q in order}
        self.source = FileSource(items)
        self.face = TimedFace(face) if face is not None else None
        self.events = EventLog()
        self.owns_conversation = not external
        self.conversation = (
            None
            if external
            else Conversation(
                config,
                engines,
                source=self.source,
                sink=WavWriterSink(None, engines.tts.sample_rate),
                face=self.face,
                on_frame=self.face.show if self.face is not None else None,
                log=JsonlLog(log_path),
            )
        )
        if self.conversation is not None:
            self.conversation.bus.subscribe(self.events)
        # Called once a reply has ended, before the next input plays, the face held still (app/bench/replay.py).
        self.between_turns: Callable[[], None] | None = None
        self.turn_of: dict[int, int | None] = {}  # item index -> turn id
        self.cut: set[int] = set()  # turns whose playout the bench stopped
        self.skipped: list[str] = []  # inputs never played (time budget)
        self.log_path = log_path

    def adopt(self, conversation: Any) -> None:
        """Measure ``conversation`` (built and started elsewhere, its microphone reading ``self.source``)."""
        self.conversation = conversation
        conversation.bus.subscribe(self.events)

    # -- control (calling thread) -------------------------------------------------

    def run(self, release_until: float | None = None) -> dict:
        """Play every input; none is started after ``release_until`` (time.monotonic), to keep a time budget."""
        sampler = CpuSampler(known=self.known_threads)
        started = time.perf_counter()
        if self.owns_conversation:
            self.conversation.start()
        self.releases[0].set()
        sampler.start()
        try:
            turn: int | None = None
            for i, q in enumerate(self.order):
                if i:
                    if q.kind == "interrupter":
                        self._wait_heard(turn, self.plan.barge_after_s)
                    else:
                        self._finish_reply(turn)
                        self._idle_work()
                    if release_until is not None and time.monotonic() > release_until:
                        self.skipped = [later.id for later in self.order[i:]]
                        self.progress(f"  time budget spent: skipping {', '.join(self.skipped)}")
                        break
                    self.releases[i].set()
                turn = self._wait_new_turn(self.audio_s[q.id])
                self.turn_of[i] = turn
                self.progress(f"  {q.id} -> turn {turn}: {q.text}")
            self._finish_reply(turn)
            self._idle_work()
        finally:
            sampler.stop()
            clean = self.conversation.shutdown(timeout=3.0) if self.owns_conversation else True
        wall = time.perf_counter() - started
        return self._record(wall, sampler, clean)

    def _idle_work(self) -> None:
        if self.between_turns is None:
            return
        if self.face is not None:
            self.face.held = True
        try:
            self.between_turns()
        finally:
            if self.face is not None:
                self.face.held = False

    def _wait_new_turn(self, audio_s: float) -> int | None:
        known = self.events.max_turn
        deadline = time.monotonic() + audio_s + self.plan.gap_s + 10.0
        while (now := time.monotonic()) < deadline:
            seen = self.events.seq
            if self.events.max_turn > known:
                return self.events.max_turn
            self.events.wait_after(seen, deadline - now)
        self.progress("  (the VAD never heard that input)")
        return None

    def _wait_heard(self, turn: int | None, seconds: float) -> None:
        """Until the reply of ``turn`` has been audible for ``seconds`` (or the turn ended)."""
        deadline = time.monotonic() + self.plan.turn_timeout_s
        while turn is not None and (now := time.monotonic()) < deadline:
            seen = self.events.seq
            played = self.events.get(ev.AudioPlayed, turn)
            left_s = deadline - now
            if played is not None:
                left_s = seconds - (ev.now_ns() - played.t_ns) / 1e9
                if left_s <= 0:
                    return
            if self.events.get(ev.TurnEnded, turn) is not None:
                return
            self.events.wait_after(seen, left_s)

    def _finish_reply(self, turn: int | None) -> None:
        """Until the conversation is idle; a generated reply is stopped after ``playout_cap_s`` of audio.

        A slow LLM (a busy machine) gets ``generation_grace_s`` more to finish; then
        it is stopped too, so one run cannot take unbounded time.
        """
        deadline = time.monotonic() + self.plan.turn_timeout_s
        cap_ns = self.plan.playout_cap_s * 1e9
        grace_ns = cap_ns + self.plan.generation_grace_s * 1e9
        while (now := time.monotonic()) < deadline:
            seen = self.events.seq
            if self.conversation.idle:
                return
            left_s = deadline - now
            if turn is not None:
                played = self.events.get(ev.AudioPlayed, turn)
                done = self.events.get(ev.LlmDone, turn) is not None
                heard_ns = ev.now_ns() - played.t_ns if played is not None else -1
                if heard_ns >= cap_ns and (done or heard_ns >= grace_ns):
                    self.cut.add(turn)
                    self.conversation.interrupt("bench: next question")
                    self.conversation.wait_idle(5.0)
                    return
                if played is not None:  # the next moment to act, unless LlmDone or the turn's end comes first
                    left_s = ((cap_ns if heard_ns < cap_ns else grace_ns) - heard_ns) / 1e9
            self.events.wait_after(seen, left_s)
        self.progress("  (turn timed out; stopping it)")
        self.conversation.interrupt("bench: timeout")
        self.conversation.wait_idle(5.0)

    # -- the record ------------------------------------------------------------------

    def _record(self, wall_s: float, sampler: CpuSampler, clean_shutdown: bool) -> dict:
        spans = self.source.voice_spans_ns
        turns = []
        for i, q in enumerate(self.order):
            turn = self.turn_of.get(i)
            if turn is not None:
                turns.append(self._turn_record(i, q, turn))
        barge_ins = []
        for i, q in enumerate(self.order):
            if q.kind != "interrupter" or q.id in self.skipped:
                continue
            interrupted = self.turn_of.get(i - 1)
            event = next((b for b in self.events.barge_ins if b.turn_id == interrupted), None)
            true_onset = spans[i][0] if i < len(spans) else None
            barge_ins.append(
                {
                    "input": q.id,
                    "interrupted_turn": interrupted,
                    "happened": event is not None,
                    "barge_in_ms": None if event is None else (event.silent_ns - event.onset_ns) / 1e6,
                    "barge_in_true_ms": None
                    if event is None or true_onset is None
                    else (event.silent_ns - true_onset) / 1e6,
                }
            )
        return {
            "backend": getattr(self.conversation.engines.llm, "name", "local"),
            "wall_s": round(wall_s, 2),
            "clean_shutdown": clean_shutdown,
            "turns": turns,
            "barge_ins": barge_ins,
            "speculations": dict(self.conversation.speculations),
            "false_mutes": self.conversation.false_ducks,
            "errors": [{"turn_id": e.turn_id, "source": e.source, "message": e.message} for e in self.events.errors],
            "render": self._render_record(turns),
            "cpu": sampler.report(),
            "skipped_inputs": self.skipped,
            "log": str(self.log_path),
        }

    def _turn_record(self, index: int, q: Question, turn: int) -> dict:
        get = self.events.get
        metrics = self.conversation.metrics.compute(turn)
        metrics.pop("final", None)
        played, frame = get(ev.AudioPlayed, turn), get(ev.ReplicaFrame, turn)
        metrics["first_replica_frame_ms"] = (frame.t_ns - played.t_ns) / 1e6 if played and frame else None
        heard = get(ev.TranscriptFinal, turn)
        metrics["asr_wer"] = word_error_rate(q.text, heard.text) if heard is not None else None
        ended = get(ev.SpeechEnded, turn)
        marks: dict[str, float] = {}
        if ended is not None:
            for name, kind, attr in MARKS:
                found = get(kind, turn)
                if found is not None:
                    marks[name] = round((getattr(found, attr) - ended.voice_end_ns) / 1e6, 2)
        metrics.update(self._llm_extras(marks))
        spans = self.source.voice_spans_ns
        if ended is not None and index < len(spans):
            # How far the VAD's idea of the end of voice is from the file's (the true end).
            metrics["voice_end_error_ms"] = (ended.voice_end_ns - spans[index][1]) / 1e6
        transcript, reply = get(ev.TranscriptFinal, turn), get(ev.ReplyText, turn, last=True)
        done = get(ev.LlmDone, turn)
        last_audio = get(ev.TtsAudio, turn, last=True)
        busy_until = max((e.t_ns for e in (done, last_audio) if e is not None), default=None)
        played = get(ev.AudioPlayed, turn)
        talking = played is not None and busy_until is not None and busy_until > played.t_ns
        return {
            "turn_id": turn,
            "input": q.id,
            "kind": q.kind,
            "asked": q.text,
            "heard": transcript.text if transcript else None,
            "reply": reply.text if reply else None,
            "generated": done.text if done else None,
            "interrupted": get(ev.TurnInterrupted, turn) is not None,
            "playout_cut_by_bench": turn in self.cut,
            "speculative_asr_reused": bool(transcript and transcript.speculative_reused),
            "metrics": metrics,
            "marks_ms": marks,
            "busy_ns": [ended.voice_end_ns, busy_until] if ended and busy_until else None,
            # speaking while the LLM/TTS still work: the replica's hardest moments
            "talking_busy_ns": [played.t_ns, busy_until] if talking else None,  # type: ignore[union-attr]
        }

    @staticmethod
    def _llm_extras(marks: dict[str, float]) -> dict[str, float | None]:
        """What the observer's TTFT leaves out: the wait between the final transcript and the LLM request."""
        out: dict[str, float | None] = {"llm_queue_ms": None, "effective_ttft_ms": None}
        if "asr_final" in marks and "llm_request" in marks:
            out["llm_queue_ms"] = marks["llm_request"] - marks["asr_final"]
        if "asr_final" in marks and "first_token" in marks:
            out["effective_ttft_ms"] = marks["first_token"] - marks["asr_final"]
        return out

    def _render_record(self, turns: list[dict]) -> dict:
        if self.face is None:
            return {"available": False}
        frames = self.face.frames
        starts = np.array(self.face.shown, dtype=np.int64)
        windows = [t["talking_busy_ns"] for t in turns if t.get("talking_busy_ns")]
        busy_s = sum((b - a) / 1e9 for a, b in windows)
        busy_frames = sum(int(((starts >= a) & (starts < b)).sum()) for a, b in windows)
        span_s = (starts[-1] - starts[0]) / 1e9 if len(starts) > 1 else 0.0
        intervals = np.diff(starts) / 1e6 if len(starts) > 1 else np.zeros(0)
        return {
            "available": True,
            "target_fps": self.face.fps,
            "idle_fps": self.face.idle_fps,
            "frames": len(starts),
            "fps_overall": round((len(starts) - 1) / span_s, 2) if span_s else None,
            "fps_under_load": round(busy_frames / busy_s, 2) if busy_s else None,
            "load_windows_s": round(busy_s, 2),
            "render_ms": [round(ms, 2) for _, ms in frames],
            "frame_interval_ms": {
                "p50": float(np.percentile(intervals, 50)) if len(intervals) else None,
                "p90": float(np.percentile(intervals, 90)) if len(intervals) else None,
                "max": float(intervals.max()) if len(intervals) else None,
            },
        }
