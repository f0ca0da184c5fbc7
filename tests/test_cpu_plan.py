"""The CPU plan: phases switch through a real turn, a cancelled turn restores listening, output is unchanged."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pytest

from app.core import cpu_plan
from app.core import events as ev
from app.core.audio_io import WavWriterSink
from app.core.conversation import Conversation
from app.core.cpu_plan import CpuPlan, CpuPlanSettings, Phase, PhaseBudget, plan_settings, thread_nice
from app.core.history import JsonlLog


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


def test_the_llm_waits_while_a_sentence_is_synthesized_beside_it() -> None:
    plan = CpuPlan(CpuPlanSettings())
    seen: list[int] = []
    plan.on_change(lambda budget: seen.append(budget.llm_threads))
    plan.enter(Phase.SPEAKING, 3)
    assert plan.wait_while_tts(lambda: False) == 0.0  # nothing synthesized: no wait
    plan.tts_started()
    ended = threading.Timer(0.15, plan.tts_finished)
    ended.start()
    waited = plan.wait_while_tts(lambda: False)
    ended.join()
    assert 100 <= waited < 1000  # held until the synthesis ended, not to the 2 s cap
    assert seen == [2, 2]  # the thread count never changes: the LLM stands aside instead
    plan.tts_started()
    assert plan.wait_while_tts(lambda: True) < 50  # a cancelled turn does not wait
    plan.tts_finished()
    off = CpuPlan(CpuPlanSettings.off(2))
    off.tts_started()
    assert off.wait_while_tts(lambda: False) == 0.0  # no plan: the LLM goes on


def test_a_synthesis_starts_once_the_llm_has_finished_its_token() -> None:
    """Piper's threads started beside a token stalled it at its barriers: the synthesis waits for the token."""
    plan = CpuPlan(replace(CpuPlanSettings(), tts_waits_for_llm_max_s=5.0))
    plan.enter(Phase.SPEAKING, 3)
    plan.llm_started()
    in_token = threading.Event()
    token_ended: list[bool] = []

    def llm() -> None:
        in_token.set()
        time.sleep(0.1)  # one token, under way when the synthesis is asked for
        token_ended.append(True)
        plan.wait_while_tts(lambda: False)  # the LLM's after-token check: it rests while the sentence is made

    thread = threading.Thread(target=llm, daemon=True)
    thread.start()
    in_token.wait()
    assert plan.tts_started() > 0
    assert token_ended  # the token had ended when the synthesis began
    plan.tts_finished()
    thread.join(5.0)
    plan.llm_finished()
    assert plan.tts_started() == 0.0  # no reply decoding: nothing to wait for
    plan.tts_finished()
    beside = CpuPlan(replace(CpuPlanSettings(), llm_threads_beside_tts=1))
    beside.llm_started()
    assert beside.tts_started() == 0.0  # the LLM goes on beside the synthesis on one thread: no wait


def test_the_llm_can_drop_to_one_thread_beside_a_synthesis_instead() -> None:
    plan = CpuPlan(replace(CpuPlanSettings(), llm_threads_beside_tts=1))
    seen: list[int] = []
    plan.on_change(lambda budget: seen.append(budget.llm_threads))
    plan.enter(Phase.SPEAKING, 3)
    plan.tts_started()
    plan.tts_started()  # a second synthesis at once: still one thread, nothing new to apply
    plan.tts_finished()
    assert plan.budget.llm_threads == 1
    plan.tts_finished()
    assert seen == [2, 2, 1, 2]
    assert [s.phase for s in plan.journal] == [Phase.SPEAKING]  # the journal keeps phase switches only
    off = CpuPlan(CpuPlanSettings.off(2))
    off.tts_started()
    assert off.budget.llm_threads == 2  # no plan: nothing changes


def test_later_tts_waits_for_the_llm_unless_the_queued_audio_runs_low() -> None:
    plan = CpuPlan(CpuPlanSettings(tts_low_water_s=1.0))
    plan.enter(Phase.SPEAKING)
    plan.llm_started()
    queued = [3.0]
    released = threading.Event()

    def tts_worker() -> None:
        plan.wait_for_tts_turn(lambda: queued[0], lambda: False)
        released.set()

    threading.Thread(target=tts_worker, daemon=True).start()
    assert not released.wait(0.15)  # plenty queued and the LLM is running: wait
    queued[0] = 0.5  # playback caught up: synthesize now, LLM or not
    assert released.wait(1.0)

    released.clear()
    queued[0] = 3.0
    threading.Thread(target=tts_worker, daemon=True).start()
    assert not released.wait(0.1)
    plan.llm_finished()
    assert released.wait(1.0)


def test_a_paused_reply_synthesizes_no_later_sentence_until_it_resumes_or_is_cut() -> None:
    """The user talking over the reply: their words get the cores, not sentences nobody hears yet."""
    plan = CpuPlan(CpuPlanSettings())
    plan.enter(Phase.LISTENING)  # the LLM is done: nothing else would hold the sentence
    paused, cut = [True], [False]
    released = threading.Event()

    def tts_worker() -> None:
        plan.wait_for_tts_turn(lambda: 0.2, lambda: cut[0], held=lambda: paused[0])
        released.set()

    threading.Thread(target=tts_worker, daemon=True).start()
    assert not released.wait(0.15)  # audio runs low, yet the paused reply waits
    paused[0] = False  # a backchannel: the reply resumes
    plan.wake()
    assert released.wait(1.0)

    released.clear()
    paused[0] = True
    threading.Thread(target=tts_worker, daemon=True).start()
    assert not released.wait(0.1)
    cut[0] = True  # an interruption: the turn is cancelled
    plan.wake()
    assert released.wait(1.0)

    off = CpuPlan(CpuPlanSettings.off(2))
    off.wait_for_tts_turn(lambda: 3.0, lambda: False, held=lambda: True)  # no plan: no wait


def test_a_waiting_sentence_sleeps_until_woken_instead_of_polling(monkeypatch) -> None:
    """Each look beside the decoding LLM costs it a wake-up: the wait looks when told, or when audio runs low."""
    monkeypatch.setattr(cpu_plan, "_BACKSTOP_S", 30.0)  # only a notify can end these waits in time
    plan = CpuPlan(CpuPlanSettings(tts_low_water_s=1.0))
    plan.enter(Phase.SPEAKING)
    plan.llm_started()
    looks: list[float] = []
    cut = [False]
    released = threading.Event()

    def queued_audio_s() -> float:
        looks.append(time.perf_counter())
        return 20.0  # plenty to play: nothing but a notify should make it look again

    def tts_worker() -> None:
        plan.wait_for_tts_turn(queued_audio_s, lambda: cut[0])
        released.set()

    threading.Thread(target=tts_worker, daemon=True).start()
    assert not released.wait(0.2)
    for _ in range(50):  # the LLM asks after every token whether a synthesis holds it: none does
        assert plan.wait_while_tts(lambda: False) == 0.0
    assert not released.wait(0.2)
    assert len(looks) == 1  # it was a look every 30 ms, and one more after every token
    cut[0] = True  # the turn's cancel calls ``wake`` (the conversation registers it)
    plan.wake()
    assert released.wait(5.0)


def test_the_plan_is_not_locked_while_a_stage_reports_its_queued_audio() -> None:
    """The conversation calls ``wake`` under its own lock, and the queued audio is read under that lock too."""
    plan = CpuPlan(CpuPlanSettings(tts_low_water_s=1.0))
    plan.enter(Phase.SPEAKING)
    plan.llm_started()
    conversation_lock = threading.Lock()
    asked, cut = threading.Event(), [False]

    def queued_audio_s() -> float:
        asked.set()
        with conversation_lock:
            return 20.0

    with conversation_lock:
        worker = threading.Thread(target=plan.wait_for_tts_turn, args=(queued_audio_s, lambda: cut[0]), daemon=True)
        worker.start()
        assert asked.wait(5.0)  # the worker is reading the queued audio, blocked on the conversation's lock
        waker = threading.Thread(target=plan.wake, daemon=True)
        waker.start()
        waker.join(5.0)
        assert not waker.is_alive()  # it would wait forever if the worker held the plan's lock meanwhile
    cut[0] = True
    plan.wake()
    worker.join(5.0)
    assert not worker.is_alive()


def test_without_a_plan_nothing_waits_and_the_config_switch_turns_it_off(config) -> None:
    plan = CpuPlan(plan_settings(replace(config, cpu_plan=False)))
    plan.enter(Phase.SPEAKING)
    plan.llm_started()
    started = time.perf_counter()
    plan.wait_for_tts_turn(lambda: 10.0, lambda: False)
    assert time.perf_counter() - started < 0.05
    assert plan.budget.later_tts_waits_for_llm is False
    assert plan_settings(replace(config, llm_threads=1)).thinking.llm_threads == 1


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


def test_the_llm_rests_once_before_it_waits_for_a_synthesis_and_not_otherwise() -> None:
    plan = CpuPlan(CpuPlanSettings())
    rests: list[int] = []
    assert plan.wait_while_tts(lambda: False, before_wait=lambda: rests.append(1)) == 0.0
    assert rests == []  # nothing synthesized: the LLM goes straight on
    plan.tts_started()
    threading.Timer(0.05, plan.tts_finished).start()
    assert plan.wait_while_tts(lambda: False, before_wait=lambda: rests.append(1)) > 30
    assert rests == [1]
