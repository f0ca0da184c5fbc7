"""The face holds still while the critical path runs: no idle frames while thinking, a blink is finished first."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from types import SimpleNamespace

from app.core.cpu_plan import CpuPlan, CpuPlanSettings, Phase
from app.core.events import now_ns
from app.core.replica_stage import ReplicaStage
from app.replica import Replica
from app.replica.idle import BLINK_S


class _IdleFace:
    """Never speaks; ``blink_ends`` says until when a blink is under way (0: none)."""

    fps, idle_fps = 30.0, 15.0

    def __init__(self) -> None:
        self.blink_ends = 0

    def render(self, t_ns: int) -> SimpleNamespace:
        return SimpleNamespace(t_ns=t_ns, speaking=False)

    def next_speech_ns(self, t_ns: int) -> int | None:
        return None

    def moving_until(self, t_ns: int) -> int | None:
        return self.blink_ends if t_ns < self.blink_ends else None


def _plan(still_s: float) -> CpuPlan:
    settings = CpuPlanSettings()
    return CpuPlan(replace(settings, thinking=replace(settings.thinking, face_still_s=still_s)))


@contextmanager
def _stage_following(still_s: float) -> Iterator[tuple[CpuPlan, _IdleFace, list[int]]]:
    """A running stage on an idle face whose plan holds it still ``still_s`` while thinking; frames go out as times."""
    plan, face, shown = _plan(still_s), _IdleFace(), []
    stage = ReplicaStage(face, lambda frame: shown.append(now_ns()))
    stage.follow(plan)
    stage.start()
    try:
        yield plan, face, shown
    finally:
        assert stage.stop()


def _between(shown: list[int], start_ns: int, end_ns: int) -> int:
    return sum(start_ns <= t < end_ns for t in shown)


def test_a_thinking_face_draws_nothing_for_its_still_time_then_idles_and_listening_wakes_it() -> None:
    with _stage_following(0.6) as (plan, _face, shown):
        time.sleep(0.4)
        thinking = now_ns()
        plan.enter(Phase.THINKING, 1)
        time.sleep(1.0)
        listening = now_ns()
        plan.enter(Phase.LISTENING, 1)
        time.sleep(0.4)
    ms = 1_000_000
    assert _between(shown, thinking - 400 * ms, thinking) >= 4  # idling at 15 fps while listening
    assert _between(shown, thinking + 80 * ms, thinking + 580 * ms) == 0  # held still (one tick may be pending)
    assert _between(shown, thinking + 620 * ms, listening) >= 2  # then idling at the phase's 8 fps
    assert _between(shown, listening, listening + 400 * ms) >= 4  # listening again: 15 fps at once


def test_a_face_in_the_middle_of_a_blink_finishes_it_before_holding_still() -> None:
    with _stage_following(0.8) as (plan, face, shown):
        time.sleep(0.3)
        thinking = now_ns()
        face.blink_ends = thinking + 250_000_000
        plan.enter(Phase.THINKING, 1)
        time.sleep(0.7)
    ms = 1_000_000
    assert _between(shown, thinking, thinking + 250 * ms) >= 2  # the blink goes on at the idle rate
    assert _between(shown, thinking + 330 * ms, thinking + 700 * ms) == 0  # then the face holds still


def test_the_replica_knows_when_a_blink_under_way_ends() -> None:
    replica = Replica.from_assets(seed=3)
    start = replica.blink_times(0, 10_000_000_000)[1]
    blink_ns = round(BLINK_S * 1e9)
    ends = replica.moving_until(start + blink_ns // 2)
    assert ends is not None and abs(ends - (start + blink_ns)) <= 1  # to the nanosecond, rounding aside
    assert replica.moving_until(start + blink_ns + 1) is None  # blinks are 2-6 s apart: none under way
    assert replica.moving_until(start - 1) is None
