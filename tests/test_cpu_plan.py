"""The CPU plan: phases switch through a real turn, a cancelled turn restores listening, output is unchanged."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pytest

from app.core import events as ev
from app.core.audio_io import WavWriterSink
from app.core.conversation import Conversation
from app.core.cpu_plan import CpuPlan, CpuPlanSettings, Phase, PhaseBudget
from app.core.history import JsonlLog
from app.core.thread_priority import thread_nice


def test_phase_switches_call_every_applier_once_and_are_journalled() -> None:
    plan = CpuPlan(CpuPlanSettings())
    seen: list[PhaseBudget] = []
    plan.on_change(seen.append)
    plan.enter(Phase.THINKING, 7)
    plan.enter(Phase.THINKING, 7)  # already there: nothing to apply
    plan.enter(Phase.SPEAKING, 7)
    plan.enter(Phase.LISTENING, 7)
    assert [b.face_fps for b in seen] == [15.0, 8.0, 30.0, 15.0]
    assert [(s.phase, s.turn_id) for s in plan.journal] == [
        (Phase.THINKING, 7),
        (Phase.SPEAKING, 7),
        (Phase.LISTENING, 7),
    ]


@pytest.mark.slow
def test_a_turn_goes_thinking_speaking_listening_and_the_stage_threads_follow_the_plan(config, engines, tmp_path):
    sink = WavWriterSink(tmp_path / "out.wav", engines.tts.sample_rate)
    conversation = Conversation(config, engines, sink=sink, log=JsonlLog(tmp_path / "t.jsonl"))
    applied: list[int] = []
    conversation.cpu.on_change(lambda budget: applied.append(budget.llm_threads))
    conversation.start()
    turn_id = conversation.say("Tell me two short facts about the sea.")
    assert conversation.wait_idle(90)
    threads = conversation.cpu.threads
    assert conversation.shutdown()
    phases = [s.phase for s in conversation.cpu.journal if s.turn_id == turn_id]
    assert phases == [Phase.THINKING, Phase.SPEAKING, Phase.LISTENING]
    assert conversation.cpu.phase is Phase.LISTENING
    assert {"vad", "asr", "llm", "tts"} <= set(threads)
    assert engines.llm.threads == config.llm_threads  # the engine is back at the plan's thread count
    assert set(applied) == {config.llm_threads}  # the LLM waits for a synthesis rather than losing a thread
    record = json.loads((tmp_path / "t.jsonl").read_text().splitlines()[-1])
    assert record["metrics"]["llm_yield_ms"] > 0  # it stood aside for the first clause's audio


@pytest.mark.slow
def test_the_face_thread_runs_at_lower_priority_than_the_critical_path(config, engines, tmp_path) -> None:
    from app.replica import Replica

    frames: list[object] = []
    conversation = Conversation(
        config, engines, face=Replica.from_assets(), on_frame=frames.append, log=JsonlLog(tmp_path / "t.jsonl")
    )
    conversation.start()
    deadline = time.monotonic() + 10
    while "replica" not in conversation.cpu.threads and time.monotonic() < deadline:
        time.sleep(0.05)
    threads = conversation.cpu.threads
    nice = {role: thread_nice(tid) for role, tid in threads.items()}
    assert conversation.shutdown()
    assert nice["replica"] is not None and nice["llm"] is not None
    assert nice["replica"] == nice["llm"] + conversation.cpu.settings.background_nice
    assert frames


@pytest.mark.slow
def test_a_cancelled_turn_restores_the_listening_plan(config, engines, tmp_path) -> None:
    conversation = Conversation(config, engines, log=JsonlLog(tmp_path / "t.jsonl"))
    conversation.start()
    tokens = threading.Event()
    conversation.bus.subscribe(lambda e: tokens.set() if isinstance(e, ev.LlmToken) else None)
    conversation.say("Describe the history of the Roman empire in detail.")
    assert tokens.wait(30)
    assert conversation.cpu.phase is not Phase.LISTENING
    conversation.interrupt("user pressed Esc")
    assert conversation.wait_idle(30)
    assert conversation.cpu.phase is Phase.LISTENING
    assert conversation.shutdown()
    assert conversation.cpu.journal[-1].phase is Phase.LISTENING


@pytest.mark.slow
def test_the_plan_does_not_change_what_the_llm_says(config, engines, tmp_path) -> None:
    """Greedy decoding with the plan on (a speaking face drawing ahead) and off: the same reply, token for token."""
    from app.replica import Replica

    greedy = replace(config, temperature=0.0)
    sampling = engines.llm.sampling
    engines.llm.sampling = {**sampling, "temp": 0.0}
    replies, rests = [], []
    try:
        for on in (True, False):
            cfg = replace(greedy, cpu_plan=on)
            face = {"face": Replica.from_assets(), "on_frame": lambda _f: None} if on else {}
            sink = WavWriterSink(None, engines.tts.sample_rate)
            conversation = Conversation(cfg, engines, sink=sink, log=JsonlLog(tmp_path / f"{on}.jsonl"), **face)
            rec: list[ev.Event] = []
            conversation.bus.subscribe(rec.append)
            conversation.start()
            conversation.say("Tell me about the history of bread in four sentences.")
            assert conversation.wait_idle(90)
            assert conversation.shutdown()
            replies.append([e.text for e in rec if isinstance(e, ev.LlmToken)])
            rests.append([e for e in rec if isinstance(e, ev.LlmYielded) and e.for_face])
            if on:
                assert conversation.replica_stage is not None and conversation.replica_stage.burst_frames > 0
    finally:
        engines.llm.sampling = sampling
    assert replies[0] and replies[0] == replies[1]
    assert rests[0] and not rests[1]  # the LLM rested while the face drew ahead, only with the plan


def _llm_decoding(plan: CpuPlan, stop: threading.Event, rests: list[float]) -> threading.Thread:
    """A reply being decoded: 8 ms tokens of busy CPU, the plan consulted between them."""

    def run() -> None:
        plan.llm_started()
        while not stop.is_set():
            token_ends = time.perf_counter() + 0.008
            while time.perf_counter() < token_ends:
                pass
            if waited := plan.yield_to_face(stop.is_set):
                rests.append(waited)
        plan.llm_finished()

    return threading.Thread(target=run, daemon=True)


class _SpeakingFace:
    """A face that speaks for ``seconds`` from when it is built; ``clear_buffer`` stops it (a barge-in)."""

    fps, idle_fps = 30.0, 15.0

    def __init__(self, seconds: float) -> None:
        from app.core.events import now_ns

        self.speech_ends = now_ns() + int(seconds * 1e9)
        self.speech_generation = 0

    def render(self, t_ns: int):
        from types import SimpleNamespace

        return SimpleNamespace(t_ns=t_ns, speaking=t_ns < self.speech_ends)

    def next_speech_ns(self, t_ns: int) -> int | None:
        return t_ns if t_ns < self.speech_ends else None

    def clear_buffer(self) -> None:
        self.speech_ends, self.speech_generation = 0, self.speech_generation + 1


@dataclass
class _FaceBesideLlm:
    """A speaking face's stage following a plan, and a reply being decoded beside it."""

    plan: CpuPlan
    face: _SpeakingFace
    stage: Any
    llm: threading.Thread
    stop: threading.Event = field(default_factory=threading.Event)
    rests: list[float] = field(default_factory=list)

    @classmethod
    def started(cls, on_frame, prepare=None) -> _FaceBesideLlm:
        from app.core.replica_stage import ReplicaStage

        plan, face = CpuPlan(), _SpeakingFace(10.0)
        stage = ReplicaStage(face, on_frame, prepare=prepare)
        stage.follow(plan)
        rig = cls(plan, face, stage, threading.Thread())
        rig.llm = _llm_decoding(plan, rig.stop, rig.rests)
        stage.start()
        rig.llm.start()
        return rig

    def finish(self) -> None:
        self.stop.set()
        self.llm.join(2)
        assert self.stage.stop()


def test_a_speaking_face_draws_ahead_in_bursts_while_the_llm_rests() -> None:
    from app.core.events import now_ns

    shown: list[tuple[int, int]] = []  # (the instant a frame shows, when it went out)
    rig = _FaceBesideLlm.started(lambda f: shown.append((f.t_ns, now_ns())))
    time.sleep(1.5)
    rig.finish()
    plan = rig.plan
    assert rig.stage.burst_frames >= 30  # most of 1.5 s of frames were drawn ahead...
    assert 2 <= len(rig.rests) <= 1.5 / (plan.face_ahead_s - plan.settings.face_refill_s) + 2  # ...in a few bursts
    lags_ms = np.abs([(out - at) / 1e6 for at, out in shown[5:]])
    assert np.percentile(lags_ms, 90) < 1000 / 30  # shown at their instants, not when drawn (up to 0.5 s early)
    assert np.median(np.diff([at for at, _ in shown]) / 1e6) == pytest.approx(1000 / 30, abs=1)


def test_frames_drawn_ahead_are_prepared_for_the_display_in_the_burst_not_on_their_tick() -> None:
    """The window scales each frame to its tile: for frames drawn ahead that happens while the LLM rests."""
    from types import SimpleNamespace

    from app.core.events import now_ns

    prepared_at: dict[int, int] = {}

    def prepare(frame):
        prepared_at[frame.t_ns] = now_ns()
        return SimpleNamespace(t_ns=frame.t_ns, speaking=frame.speaking, prepared=True)

    shown: list[tuple[Any, int]] = []
    rig = _FaceBesideLlm.started(lambda f: shown.append((f, now_ns())), prepare=prepare)
    time.sleep(1.0)
    rig.finish()
    assert shown and all(getattr(frame, "prepared", False) for frame, _ in shown)  # every frame, drawn ahead or not
    ahead = [out - prepared_at[frame.t_ns] > 1e9 / 30 for frame, out in shown[5:]]
    assert sum(ahead) >= len(ahead) / 2  # most were ready a tick or more before they were shown


def test_frames_drawn_ahead_are_dropped_when_the_speech_is_cleared() -> None:
    from app.core.events import now_ns

    shown: list[tuple[int, bool]] = []
    rig = _FaceBesideLlm.started(lambda f: shown.append((now_ns(), f.speaking)))
    time.sleep(0.5)
    assert rig.stage.burst_frames > 0
    rig.face.clear_buffer()  # the user barged in: the speech, and the frames drawn from it, are gone
    cleared = now_ns()
    time.sleep(0.4)
    rig.finish()
    after = [speaking for t, speaking in shown if t > cleared + 40_000_000]
    assert after and not any(after)


def test_a_face_burst_waits_for_the_llm_to_finish_its_token_but_not_forever() -> None:
    plan = CpuPlan()
    assert plan.face_burst_begin()  # no reply decoding: nobody to wait for
    plan.face_burst_end()
    plan.llm_started()  # a reply whose LLM never checks in (a very long token)
    started = time.perf_counter()
    assert not plan.face_burst_begin()
    plan.face_burst_end()
    assert plan.settings.face_waits_for_llm_max_s <= time.perf_counter() - started < 0.5  # waited, then gave up
    with plan.llm_rests():  # the LLM waits for the first audio: the face need not wait for it
        assert plan.face_burst_begin()
        plan.face_burst_end()
    plan.llm_finished()
    assert CpuPlanSettings.off().face_ahead_s == 0 and CpuPlan(CpuPlanSettings.off()).face_ahead_s == 0


def test_the_spin_guard_drops_to_one_thread_on_stalled_tokens_and_remembers_it() -> None:
    from app.engines.llm_threads import REMEMBER_S, SpinGuard

    now = [100.0]
    guard = SpinGuard(clock=lambda: now[0])
    assert guard.threads_to_start(2) == 2
    assert not any(guard.slow(2, s) for s in (0.013, 0.012, 0.030))  # ordinary jitter is not contention
    assert not guard.slow(2, 0.080)  # a lone hiccup (a phase switch in the app) is not contention either
    assert not guard.slow(2, 0.012)
    assert not guard.slow(2, 0.400)
    assert guard.slow(2, 0.400)  # barriers waited out scheduler slices twice running: the other core is taken
    assert not guard.slow(1, 5.0)  # one thread has no barrier to wait at
    assert guard.fallbacks == 1 and guard.threads_to_start(2) == 1
    now[0] += REMEMBER_S + 0.1
    assert guard.threads_to_start(2) == 2  # tried again once the contention is old


def test_pipers_workers_sleep_between_sentences_by_the_plan(config, tts) -> None:
    """ORT's spinning workers took the LLM's cores after every sentence: the plan builds Piper without it."""
    from app.compose import load_tts
    from app.core.cpu_plan import ENGINE_THREADING

    assert ENGINE_THREADING.tts_workers != "spin"
    assert tts.workers == ENGINE_THREADING.tts_workers
    assert load_tts(config, workers="spin").workers == "spin"  # read back from the live session, not echoed
    chunks = list(tts.synthesize("Hello there."))  # and it still speaks
    assert chunks and chunks[0].audio.size > 0
