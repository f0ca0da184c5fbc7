"""The CPU plan's waits: the LLM and a sentence's synthesis take turns, woken by notify, never by a poll."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from app.core import cpu_plan
from app.core.cpu_plan import CpuPlan, CpuPlanSettings, Phase, plan_settings


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


def test_the_llm_rests_once_before_it_waits_for_a_synthesis_and_not_otherwise() -> None:
    plan = CpuPlan(CpuPlanSettings())
    rests: list[int] = []
    assert plan.wait_while_tts(lambda: False, before_wait=lambda: rests.append(1)) == 0.0
    assert rests == []  # nothing synthesized: the LLM goes straight on
    plan.tts_started()
    threading.Timer(0.05, plan.tts_finished).start()
    assert plan.wait_while_tts(lambda: False, before_wait=lambda: rests.append(1)) > 30
    assert rests == [1]
